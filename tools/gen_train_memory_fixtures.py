#!/usr/bin/env python3
"""Fixtures of the training engine's memory features (tests/train/test_train_memory.cpp).

gradscaler.*  torch.amp.GradScaler("cpu") over a sequence of gradients with injected inf / nan:
              scale(loss).backward(), unscale_, step (SGD, skipped on overflow), update; the scale,
              growth tracker, skip decisions, unscaled grads and params after every step.
adamw8bit.*   bitsandbytes.optim.AdamW8bit (0.50.2, its CPU kernels) for 6 steps on one parameter
              above min_8bit_size (blockwise 8-bit states, block 256, last block partial) and one
              below (32-bit states), from fixed gradients: params and states after every step,
              plus the signed / unsigned dynamic quantization maps.

Pinned: torch 2.11, bitsandbytes 0.50.2 (tools/requirements.txt). Deterministic: fixed seeds.
Run: ~/.cache/qlora/venv/bin/python tools/gen_train_memory_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "train", "memory")


def gen_gradscaler():
    g = torch.Generator().manual_seed(0)
    p1 = torch.randn(5, generator=g).requires_grad_(True)
    p2 = torch.randn(3, 2, generator=g).requires_grad_(True)
    init = {"init.p1": p1.detach().clone(), "init.p2": p2.detach().clone()}
    opt = torch.optim.SGD([p1, p2], lr=0.1)
    # growth_interval 3 so that growth happens within the sequence; the other settings are the defaults.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    steps = 14
    bad = {2: ("p1", 1, float("inf")), 5: ("p2", 4, float("nan")), 6: ("p1", 0, float("-inf")),
           7: ("p2", 0, float("inf"))}
    tensors = dict(init)
    meta = {"steps": steps, "init_scale": 2.0**16, "growth_factor": 2.0, "backoff_factor": 0.5,
            "growth_interval": 3, "lr": 0.1, "scale": [], "growth_tracker": [], "skipped": []}
    for s in range(steps):
        d1 = torch.randn(5, generator=g) * 3
        d2 = torch.randn(3, 2, generator=g) * 3
        if s in bad:
            name, idx, val = bad[s]
            (d1 if name == "p1" else d2).view(-1)[idx] = val
        tensors[f"dir.{s}.p1"], tensors[f"dir.{s}.p2"] = d1.clone(), d2.clone()
        opt.zero_grad(set_to_none=True)
        loss = (p1 * d1).sum() + (p2 * d2).sum()  # grad = d * scale
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        tensors[f"unscaled.{s}.p1"], tensors[f"unscaled.{s}.p2"] = p1.grad.clone(), p2.grad.clone()
        found = sum(v.item() for v in scaler._per_optimizer_states[id(opt)]["found_inf_per_device"].values())
        scaler.step(opt)
        scaler.update()
        meta["skipped"].append(bool(found))
        meta["scale"].append(scaler.get_scale())
        meta["growth_tracker"].append(int(scaler._growth_tracker.item()))
        tensors[f"param.{s}.p1"], tensors[f"param.{s}.p2"] = p1.detach().clone(), p2.detach().clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "gradscaler.safetensors"))
    with open(os.path.join(OUT, "gradscaler.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote gradscaler.safetensors / .json:", sum(meta["skipped"]), "skipped of", steps, "final scale",
          meta["scale"][-1])


def gen_adamw8bit():
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    g = torch.Generator().manual_seed(1)
    big = torch.randn(4100 + 300, generator=g).reshape(44, 100) * 0.1  # 4400 >= 4096: 8-bit, 18 blocks, last partial
    small = torch.randn(10, 12, generator=g) * 0.1  # 120 < 4096: 32-bit states
    big.requires_grad_(True)
    small.requires_grad_(True)
    tensors = {"init.big": big.detach().clone(), "init.small": small.detach().clone(),
               "qmap.signed": F.create_dynamic_map(signed=True), "qmap.unsigned": F.create_dynamic_map(signed=False)}
    lr, wd, steps = 1e-2, 1e-2, 6
    opt = bnb.optim.AdamW8bit([big, small], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    for s in range(steps):
        gb = torch.randn(big.shape, generator=g) * (0.5 + s)
        gs = torch.randn(small.shape, generator=g) * (0.5 + s)
        if s == 3:
            gb[7, :] = 0.0  # a zero row: blocks with small absmax
        tensors[f"grad.{s}.big"], tensors[f"grad.{s}.small"] = gb.clone(), gs.clone()
        big.grad, small.grad = gb, gs
        opt.step()
        st_big, st_small = opt.state[big], opt.state[small]
        assert st_big["state1"].dtype == torch.uint8 and st_small["state1"].dtype == torch.float32
        tensors[f"param.{s}.big"], tensors[f"param.{s}.small"] = big.detach().clone(), small.detach().clone()
        for k in ("state1", "state2", "absmax1", "absmax2"):
            tensors[f"state.{s}.big.{k}"] = st_big[k].clone()
        for k in ("state1", "state2"):
            tensors[f"state.{s}.small.{k}"] = st_small[k].clone()
    # The quantizer alone on more values (bnb's CPU lookup table is not exactly nearest-code rounding):
    # 16 blocks per map, one all zero, the last partial.
    for signed in (True, False):
        name = "signed" if signed else "unsigned"
        x = torch.randn(16 * 256 - 100, generator=g)
        x = x if signed else x.abs() ** 3
        x[256:512] = 0.0
        codes, absmax = torch.ops.bitsandbytes.quantize_blockwise(x, F.create_dynamic_map(signed=signed), 256)
        tensors[f"quant.{name}.x"], tensors[f"quant.{name}.codes"], tensors[f"quant.{name}.absmax"] = x, codes, absmax
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "adamw8bit.safetensors"))
    meta = {"bitsandbytes": bnb.__version__, "lr": lr, "weight_decay": wd, "betas": [0.9, 0.999], "eps": 1e-8,
            "steps": steps, "block_size": 256, "min_8bit_size": 4096}
    with open(os.path.join(OUT, "adamw8bit.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote adamw8bit.safetensors / .json with bitsandbytes", bnb.__version__)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen_gradscaler()
    gen_adamw8bit()
