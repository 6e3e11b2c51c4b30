#!/usr/bin/env python3
"""Writes tests/fixtures/quant/: bitsandbytes 0.50.2 NF4/FP4 (+double quant), int8 and serialization fixtures.

Deterministic (fixed seeds). Run from the repo root with the pinned venv:
    ~/.cache/qlora/venv/bin/python tools/gen_bnb_fixtures.py

Oracle policy. The committed expectations are what CUDA bitsandbytes produces, because the checkpoints users bring
were quantized on CUDA. bitsandbytes' CPU path (the one that runs here) agrees with CUDA except in three documented
places, found by reading csrc/kernels.cu (kQuantizeBlockwise, dQuantizeNF4/FP4, dQuantize) against
backends/default/ops.py and csrc/cpu_ops.cpp:
  1. FP4 near zero: CUDA takes the sign bit from x (code 0b1000 = -0.0 for tiny negative x, 0b0000 for tiny
     positive x); the CPU path bucketizes over a sorted code in which +0 and "-0" (== +0) are swapped, so it writes
     0b0000 for tiny negatives and 0b1000 for tiny positives, and its code table holds +0.0 at index 8.
  2. FP4 thresholds: CUDA compares |x| with literal constants (0.583333f, 0.00260417f, ...); the CPU path compares
     with fp32 midpoints of the codebook ((0.5 + 0.6666667) / 2 = 0.58333334f, ...). Values between the two differ.
  3. Double quant: CUDA's dQuantize is an exact nearest-value binary search over the 256-entry dynamic map; the CPU
     library (cquantize_blockwise_cpu_fp32) looks values up in a 65536-bin table, which near a midpoint can pick
     the farther neighbour.
  4. All-zero block: CUDA computes 1/absmax = inf, 0*inf = NaN, and its comparison trees map NaN to code 0
     (NF4 -1.0, stored absmax 0, so the value is -0.0); the CPU path clamps absmax to 1e-38 and writes code 7
     (NF4) and, for a trailing partial block, stores absmax 1e-38 instead of 0.
  5. The trailing partial block: CPU divides by absmax, CUDA multiplies by 1/absmax (an ulp apart, rarely
     changes a code).
Each expectation is bnb's CPU output; an element is replaced by the transcription of the CUDA kernel (emulate_* below)
only where the two differ, and the script asserts every such element falls in one of the classes above. The number
of replaced elements per case is stored in the fixture metadata ("cuda_patched").
"""
import json
import os

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")  # bnb wraps dequantize in torch.compile: slow, same math
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import bitsandbytes as bnb
import bitsandbytes.functional as F
from bitsandbytes.backends.default.ops import _get_4bit_quantize_bounds

assert bnb.__version__ == "0.50.2", bnb.__version__
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "quant")
f32 = np.float32


# --- Transcriptions of csrc/kernels.cu (fp32 arithmetic throughout) -------------------------------------------
def cuda_nf4(x):
    x = f32(x)
    if x > f32(0.03979014977812767):
        if x > f32(0.3893125355243683):
            if x > f32(0.6427869200706482):
                return 15 if x > f32(0.8614784181118011) else 14
            return 13 if x > f32(0.5016634166240692) else 12
        if x > f32(0.2035212516784668):
            return 11 if x > f32(0.2920137718319893) else 10
        return 9 if x > f32(0.1202552504837513) else 8
    if x > f32(-0.33967943489551544):
        if x > f32(-0.13791173323988914):
            return 7 if x > f32(-0.045525018125772476) else 6
        return 5 if x > f32(-0.23460740596055984) else 4
    if x > f32(-0.6106329262256622):
        return 3 if x > f32(-0.4599952697753906) else 2
    return 1 if x > f32(-0.8480964004993439) else 0


def cuda_fp4(x):
    x = f32(x)
    sign = 8 if x < 0 else 0
    x = abs(x)
    if x > f32(0.29166667):
        if x > f32(0.583333):
            return (3 if x > f32(0.8333333) else 2) + sign
        return (5 if x > f32(0.4166667) else 4) + sign
    if x > f32(0.0859375):
        return (7 if x > f32(0.20833333) else 6) + sign
    return (1 if x > f32(0.00260417) else 0) + sign


def cuda_dynamic(code, x):
    x = f32(x)
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = f32(-1.0), f32(1.0)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower, pivot = pivot, val, pivot + i
        else:
            upper_pivot, upper, pivot = pivot, val, pivot - i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        return upper_pivot if x > f32((upper + val) * f32(0.5)) else pivot
    return lower_pivot if x < f32((lower + val) * f32(0.5)) else pivot


def emulate_blocks(flat, blocksize, qfun):
    """CUDA kQuantizeBlockwise: per-block absmax, x * (1/absmax), then qfun. Returns (codes, absmax, scaled)."""
    n = flat.size
    nb = -(-n // blocksize)
    absmax = np.zeros(nb, f32)
    codes = np.zeros(n, np.uint8)
    scaled = np.zeros(n, f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for b in range(nb):
            blk = flat[b * blocksize:(b + 1) * blocksize]
            am = f32(np.max(np.abs(blk)))
            absmax[b] = am
            inv = f32(1.0) / am
            for j, v in enumerate(blk):
                s = f32(v) * inv
                scaled[b * blocksize + j] = s
                codes[b * blocksize + j] = qfun(s)
    return codes, absmax, scaled


def unpack(packed, n):
    p = packed.reshape(-1).numpy()
    return np.stack([p >> 4, p & 15], 1).reshape(-1)[:n].copy()


def pack(codes, pad_code):
    c = codes if codes.size % 2 == 0 else np.append(codes, np.uint8(pad_code))
    return torch.from_numpy(((c[0::2] << 4) | c[1::2]).astype(np.uint8)).unsqueeze(1)


DYN = F.create_dynamic_map().numpy()
FP4_CPU_BOUNDS = _get_4bit_quantize_bounds("fp4", torch.device("cpu"))[0].numpy()
FP4_HI = [f32(0.583333), f32(0.00260417), f32(0.29166667), f32(0.8333333), f32(0.4166667), f32(0.0859375),
          f32(0.20833333)]


def fp4_explained(s):
    """Whether a CPU/CUDA FP4 code difference at scaled value s is one of the documented classes."""
    a = abs(f32(s))
    if a <= f32(0.0026041667):
        return True  # class 1: sign of zero
    mids = [f32(m) for m in FP4_CPU_BOUNDS if m > 0]
    return any(min(t, m) <= a <= max(t, m) for t in FP4_HI for m in mids if abs(t - m) < 1e-6)


def quantize_case(w, blocksize, quant_type):
    """bnb CPU quantize_4bit (+DQ), patched to CUDA semantics. Returns dict of tensors and patch count."""
    n = w.numel()
    flat = w.float().reshape(-1).numpy()
    qfun = cuda_nf4 if quant_type == "nf4" else cuda_fp4
    packed_cpu, st = F.quantize_4bit(w, blocksize=blocksize, quant_type=quant_type, compress_statistics=False)
    codes_cuda, absmax_cuda, scaled = emulate_blocks(flat, blocksize, qfun)
    codes_cpu = unpack(packed_cpu, n)
    absmax_cpu = st.absmax.numpy()
    patched = 0
    zero_block = absmax_cuda == 0
    for i in np.nonzero(codes_cpu != codes_cuda)[0]:
        b = i // blocksize
        ok = zero_block[b] or (quant_type == "fp4" and fp4_explained(scaled[i]))
        ok = ok or abs(abs(flat[i]) / absmax_cuda[b] - abs(scaled[i])) > 0 and b == len(absmax_cuda) - 1
        assert ok, f"unexplained CPU/CUDA 4-bit difference at {i}: x={flat[i]} scaled={scaled[i]} cpu={codes_cpu[i]} cuda={codes_cuda[i]} block={b}/{len(absmax_cuda)}"
        patched += 1
    for b in np.nonzero(absmax_cpu != absmax_cuda)[0]:
        assert zero_block[b], f"absmax differs at block {b}"
        patched += 1
    # The pad nibble of an odd numel: CUDA quantizes a loaded 0.0 with the last block's 1/absmax.
    with np.errstate(divide="ignore", invalid="ignore"):
        pad = qfun(f32(0.0) * (f32(1.0) / absmax_cuda[-1]))
    packed = pack(codes_cuda, pad)
    if n % 2 and packed[-1, 0] != packed_cpu[-1, 0]:
        assert zero_block[-1] or quant_type == "fp4"
    absmax = torch.from_numpy(absmax_cuda)

    # Double quantization of the (CUDA) absmax, as functional.quantize_4bit does it.
    offset = absmax.mean()
    centred = absmax - offset
    q_cpu, st2 = F.quantize_blockwise(centred, blocksize=256)
    q_cuda, nested_absmax, nscaled = emulate_blocks(centred.numpy(), 256, lambda x: cuda_dynamic(DYN, x))
    assert np.array_equal(nested_absmax, st2.absmax.numpy())
    for i in np.nonzero(q_cpu.numpy() != q_cuda)[0]:
        d_cpu = abs(f32(nscaled[i]) - DYN[q_cpu[i]])
        d_cuda = abs(f32(nscaled[i]) - DYN[q_cuda[i]])
        assert d_cuda <= d_cpu, f"CUDA double-quant code not nearer at {i}"  # class 3
        patched += 1
    return dict(packed=packed, absmax=absmax, qabsmax=torch.from_numpy(q_cuda), nested_absmax=torch.from_numpy(
        nested_absmax), offset=offset.reshape(1)), patched


def dequantize(t, quant_type, blocksize, shape, dtype, nested):
    """bnb's dequantize_4bit on the given state, with the FP4 -0.0 of CUDA for code 8 (class 1)."""
    if nested:
        st2 = F.QuantState(absmax=t["nested_absmax"], code=torch.from_numpy(DYN), blocksize=256, dtype=torch.float32)
        st = F.QuantState(absmax=t["qabsmax"], shape=torch.Size(shape), dtype=dtype, blocksize=blocksize,
                          code=F.get_4bit_type(quant_type, device="cpu"), quant_type=quant_type, offset=t["offset"][0],
                          state2=st2)
    else:
        st = F.QuantState(absmax=t["absmax"], shape=torch.Size(shape), dtype=dtype, blocksize=blocksize,
                          code=F.get_4bit_type(quant_type, device="cpu"), quant_type=quant_type)
    out = F.dequantize_4bit(t["packed"], st).reshape(-1)
    if quant_type == "fp4":
        codes = unpack(t["packed"], out.numel())
        neg_zero = torch.from_numpy(codes == 8)
        assert (out[neg_zero] == 0).all()
        out[neg_zero] = -0.0
    return out


DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def fourbit_fixtures():
    tensors, cases = {}, []
    gen = torch.Generator().manual_seed(1234)
    table = []
    for qt in ("nf4", "fp4"):
        for dn in ("f32", "f16", "bf16"):
            for bs in (32, 64, 128, 256, 4096):
                table.append((qt, dn, bs, (13, 11)))
        table.append((qt, "bf16", 32, (67, 131)))   # 275 blocks: two nested blocks, the second partial
        table.append((qt, "f16", 64, (5, 7)))
        table.append((qt, "f32", 64, (3, 65)))      # an all-zero block (class 4)
    for qt, dn, bs, shape in table:
        name = f"{qt}_{dn}_bs{bs}_{shape[0]}x{shape[1]}"
        w = (torch.randn(shape, generator=gen) * 0.05).to(DTYPES[dn])
        if shape == (3, 65):
            w.view(-1)[64:128] = 0
        t, patched = quantize_case(w, bs, qt)
        tensors[f"{name}.input"] = w.contiguous()
        for k, v in t.items():
            tensors[f"{name}.{k}"] = v.contiguous()
        for on, od in DTYPES.items():
            tensors[f"{name}.deq_{on}"] = dequantize(t, qt, bs, shape, od, False).contiguous()
            tensors[f"{name}.deqdq_{on}"] = dequantize(t, qt, bs, shape, od, True).contiguous()
        cases.append(dict(name=name, quant_type=qt, dtype=dn, blocksize=bs, shape=list(shape), cuda_patched=patched))
    # matmul_4bit: bnb's MatMul4Bit on CPU (x @ dequant(W)^T + b) and its input gradient.
    w = (torch.randn(13, 70, generator=gen) * 0.05).to(torch.bfloat16)
    t, _ = quantize_case(w, 64, "nf4")
    for k, v in t.items():
        tensors[f"matmul.{k}"] = v.contiguous()
    x = torch.randn(3, 70, generator=gen).to(torch.bfloat16).requires_grad_(True)
    bias = torch.randn(13, generator=gen).to(torch.bfloat16)
    st2 = F.QuantState(absmax=t["nested_absmax"], code=torch.from_numpy(DYN), blocksize=256, dtype=torch.float32)
    st = F.QuantState(absmax=t["qabsmax"], shape=torch.Size([13, 70]), dtype=torch.bfloat16, blocksize=64,
                      code=F.get_4bit_type("nf4", device="cpu"), quant_type="nf4", offset=t["offset"][0], state2=st2)
    y = bnb.matmul_4bit(x, t["packed"], st, bias=bias)
    gy = torch.randn(3, 13, generator=gen).to(torch.bfloat16)
    y.backward(gy)
    tensors.update({"matmul.x": x.detach(), "matmul.bias": bias, "matmul.y": y.detach(), "matmul.grad_y": gy,
                    "matmul.grad_x": x.grad})
    save_file(tensors, os.path.join(OUT, "fourbit.safetensors"), metadata={"cases": json.dumps(cases)})
    return cases


def int8_fixtures():
    gen = torch.Generator().manual_seed(99)
    tensors = {}
    w = torch.randn(13, 37, generator=gen).half()
    w[4] = 0  # an all-zero row
    cb, scb, _ = F.int8_vectorwise_quant(w.clone())
    tensors.update({"weight": w, "CB": cb, "SCB": scb})
    # MatMul8bitFp (training path on CPU): x @ (CB * SCB/127)^T + b in x's dtype.
    lin = bnb.nn.Linear8bitLt(37, 13, has_fp16_weights=False, threshold=6.0)
    lin.weight = bnb.nn.Int8Params(w.clone(), requires_grad=False, has_fp16_weights=False)
    lin.bias = torch.nn.Parameter(torch.randn(13, generator=gen).half())
    lin = lin.to("cpu")
    assert torch.equal(lin.weight.data, cb) and torch.equal(lin.weight.SCB, scb)
    x = torch.randn(5, 37, generator=gen).half()
    x[1, 3] = 9.0   # outliers in columns 3 and 20 (|x| >= 6)
    x[2, 20] = -7.5
    lin.train()
    tensors["x"] = x
    tensors["bias"] = lin.bias.detach().clone()
    tensors["y_dequant"] = lin(x).detach()
    lin.eval()  # MatMul8bitLt: int8 activations with the fp16 outlier decomposition
    tensors["y_lt6"] = lin(x).detach()
    lin.state.threshold = 0.0
    tensors["y_lt0"] = lin(x).detach()
    save_file(tensors, os.path.join(OUT, "int8.safetensors"))


def serialization_fixtures():
    """Linear4bit._save_to_state_dict (what transformers' save_pretrained writes per module) via state_dict()."""
    gen = torch.Generator().manual_seed(7)
    for qt, dq, dt in (("nf4", True, torch.bfloat16), ("fp4", False, torch.float16)):
        w = (torch.randn(5, 7, generator=gen) * 0.1).to(dt)
        lin = bnb.nn.Linear4bit(7, 5, bias=True, compress_statistics=dq, quant_type=qt, compute_dtype=dt)
        lin.weight = bnb.nn.Params4bit(w, requires_grad=False, compress_statistics=dq, quant_type=qt, blocksize=64)
        lin = lin.to("cpu")
        sd = {f"model.layers.0.mlp.down_proj.{k}": v.contiguous() for k, v in lin.state_dict().items()}
        name = f"linear4bit_{qt}{'_dq' if dq else ''}"
        save_file(sd, os.path.join(OUT, name + ".safetensors"))
        deq = F.dequantize_4bit(lin.weight.data, lin.weight.quant_state)
        save_file({"dequant": deq.contiguous()}, os.path.join(OUT, name + "_dequant.safetensors"))
    configs = {
        "nf4_dq": bnb_config(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16),
        "bare_4bit": bnb_config(load_in_4bit=True),
        "int8": bnb_config(load_in_8bit=True, llm_int8_threshold=5.0, llm_int8_skip_modules=["lm_head"]),
    }
    with open(os.path.join(OUT, "quantization_configs.json"), "w") as f:
        json.dump(configs, f, indent=2, sort_keys=True)


def bnb_config(**kw):
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(**kw).to_dict()


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    cases = fourbit_fixtures()
    int8_fixtures()
    serialization_fixtures()
    for c in cases:
        print(f"{c['name']}: cuda_patched={c['cuda_patched']}")
    for f in sorted(os.listdir(OUT)):
        print("wrote", os.path.join("tests/fixtures/quant", f), os.path.getsize(os.path.join(OUT, f)), "bytes")


if __name__ == "__main__":
    sys.exit(main())
