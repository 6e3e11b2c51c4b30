"""Writes tests/fixtures/core/python_repr.json: doubles (as float.hex, exact) and Python's repr of each.

The values are the kind qlora writes into files that Python compares byte for byte: float32 statistics
widened to double (bitsandbytes' nested_offset = absmax.mean().item()), config values, and edge cases of
CPython's repr rules (fixed vs exponent notation at 1e-5 / 1e16, negative zero).
Run: python tools/gen_python_repr_fixtures.py (plain Python 3 + numpy).
"""
import json
import pathlib

import numpy as np

rng = np.random.default_rng(17)
values = [0.0, -0.0, 1.0, -2.5, 0.1, 1e-5, 1e-4, 9.999e-5, 1e15, 1e16, 123456789012345.6,
          1.2345678901234567e16, 5e-324, 1.7976931348623157e308, 1e22, 0.1304166615009308,
          3.0e-06, 1e-06, 1e-12, 10000.0, 500000.0, 0.02]
# float32 values widened to double, across magnitudes: about 1/3 of these print 17 digits in a naive
# %.17g and fewer in repr.
for scale in [1e-6, 1e-3, 1.0, 1e3, 1e7]:
    values += [float(np.float32(v)) for v in rng.standard_normal(120) * scale]
values += [float(v) for v in rng.standard_normal(80)]  # full doubles
out = {"generator": "tools/gen_python_repr_fixtures.py",
       "cases": [{"hex": v.hex(), "repr": repr(v), "json": json.dumps(v)} for v in values]}
path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/core/python_repr.json"
path.write_text(json.dumps(out, indent=0) + "\n")
print(f"wrote {path} ({len(values)} values)")
