// Python's text for values written into files that Python tools compare byte for byte.
#pragma once

#include <string>

namespace qlora {

// repr(float(value)) as CPython 3 writes it (and json.dumps, which uses float.__repr__): the shortest
// digits that read back to the same double, fixed notation when the decimal exponent is in
// [-4, 16), else d.ddde±XX with at least two exponent digits; "inf", "-inf", "nan" as Python does
// (json.dumps writes "Infinity", "-Infinity", "NaN": pass json = true for those).
std::string python_float_repr(double value, bool json = false);

}  // namespace qlora
