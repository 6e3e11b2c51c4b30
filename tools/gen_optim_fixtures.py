#!/usr/bin/env python3
"""Fixtures for the training engine's optimizer pieces, from the reference implementations.

    ~/.cache/qlora/venv/bin/python tools/gen_optim_fixtures.py

Writes tests/fixtures/train/optim.safetensors and optim.json:
  * torch.optim.AdamW (foreach=False, the CPU default) over 6 steps on three parameters in two
    groups (weight decay 0.01 and 0), with torch.nn.utils.clip_grad_norm_(max_norm=1.0) before
    each step and a learning rate from transformers' linear schedule with warmup;
  * lr factors of transformers' get_scheduler for linear / cosine / constant with warmup.
"""
import json
import pathlib

import torch
import transformers
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "train"


def adamw_case():
    g = torch.Generator().manual_seed(0)
    shapes = {"w1": (4, 3), "w2": (5,), "b": (3,)}
    params = {k: torch.nn.Parameter(torch.randn(s, generator=g)) for k, s in shapes.items()}
    tensors = {f"init.{k}": p.detach().clone() for k, p in params.items()}
    groups = [{"params": [params["w1"], params["w2"]], "weight_decay": 0.01},
              {"params": [params["b"]], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    sched = transformers.get_scheduler("linear", opt, num_warmup_steps=2, num_training_steps=6)
    lrs, norms = [], []
    for step in range(6):
        for k, p in params.items():
            grad = torch.randn(p.shape, generator=g) * (3.0 if step % 2 == 0 else 0.1)
            p.grad = grad
            tensors[f"grad.{step}.{k}"] = grad.clone()
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        for k, p in params.items():
            tensors[f"param.{step}.{k}"] = p.detach().clone()
    for k, p in params.items():
        st = opt.state[p]
        tensors[f"exp_avg.{k}"] = st["exp_avg"].clone()
        tensors[f"exp_avg_sq.{k}"] = st["exp_avg_sq"].clone()
    return tensors, {"lrs": lrs, "grad_norms": norms, "steps": 6}


def schedule_case():
    out = {}
    for kind in ["linear", "cosine", "constant_with_warmup"]:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        sched = transformers.get_scheduler(kind, opt, num_warmup_steps=3, num_training_steps=11)
        factors = []
        for _ in range(11):
            factors.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        out[kind] = factors
    out["warmup_ratio_0.1_of_37"] = transformers.TrainingArguments(
        output_dir="/tmp/unused", warmup_steps=0.1).get_warmup_steps(37)
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tensors, adamw = adamw_case()
    save_file(tensors, str(OUT / "optim.safetensors"))
    meta = {"torch": torch.__version__, "transformers": transformers.__version__,
            "adamw": adamw, "schedules": schedule_case()}
    (OUT / "optim.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
