#include "qlora/core/python_repr.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <system_error>

#include "qlora/core/error.h"

namespace qlora {

std::string python_float_repr(double value, bool json) {
  if (std::isnan(value)) return json ? "NaN" : "nan";
  if (std::isinf(value)) return value > 0 ? (json ? "Infinity" : "inf") : (json ? "-Infinity" : "-inf");
  // std::to_chars without a precision gives the shortest round-trip digits (as Python's repr,
  // which uses David Gay's shortest mode); scientific form makes digits and exponent easy to read.
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  if (r.ec != std::errc()) fail("python_float_repr: cannot format a double");
  const std::string sci(buf, r.ptr);  // "-1.2345e-05"
  const size_t e = sci.find('e');
  const bool negative = sci[0] == '-';
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  const int exp10 = std::atoi(sci.c_str() + e + 1);  // value = d.ddd * 10^exp10
  std::string out = negative ? "-" : "";
  // CPython's float_repr_style 'short': fixed notation when -4 <= exp10 < 16.
  if (exp10 >= -4 && exp10 < 16) {
    const int point = exp10 + 1;  // digits before the decimal point
    if (point <= 0) {
      out += "0." + std::string(static_cast<size_t>(-point), '0') + digits;
    } else if (static_cast<size_t>(point) >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(point) - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(point)) + "." + digits.substr(static_cast<size_t>(point));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  const int mag = std::abs(exp10);
  out += std::string(exp10 < 0 ? "e-" : "e+") + (mag < 10 ? "0" : "") + std::to_string(mag);
  return out;
}

}  // namespace qlora
