#!/usr/bin/env python3
"""The reference side of bench_lora_step: the same LoRA training step with transformers + peft.

    python bench/bench_lora_step.py --model /tmp/qlora-bench/xlmr-base --attn eager --threads 2

Forward + QA loss + backward + clip_grad_norm_ + torch.optim.AdamW (two groups as the HF Trainer makes
them), model.train() so dropout is on. Same LoRA config, batch draws and JSON fields as
bench_lora_step.cpp; prints one JSON line. Run each configuration in its own process so that the peak
RSS is per configuration.
"""
import argparse
import json
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForQuestionAnswering


def proc_status_mib(key):
    """A value of /proc/self/status ("VmHWM", "VmRSS") in MiB, or -1."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return -1


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where /proc refuses it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def decays(name):
    # qlora::train::decays and the HF Trainer: biases and LayerNorm weights skip weight decay.
    return not (name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=384)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0 keeps torch's default")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--attn", default="eager", help="attn_implementation: eager (qlora's form) or sdpa "
                    "(transformers' default for XLM-R)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t_load = time.perf_counter()
    model = AutoModelForQuestionAnswering.from_pretrained(args.model, attn_implementation=args.attn,
                                                          dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules=["query", "value"],
                        modules_to_save=["qa_outputs"], task_type="QUESTION_ANS")
    torch.manual_seed(args.seed)
    model = get_peft_model(model, config)
    model.train()
    load_s = time.perf_counter() - t_load
    load_peak = proc_status_mib("VmHWM")
    rss_after_load = proc_status_mib("VmRSS")
    peak_reset = reset_peak_rss()

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in named if decays(n)], "weight_decay": args.weight_decay},
         {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0}],
        lr=args.lr)

    # Same draws as bench_lora_step.cpp.
    gen = torch.Generator().manual_seed(args.seed)
    B, T, V = args.batch, args.seq, model.config.vocab_size
    input_ids = torch.randint(5, V, (B, T), generator=gen, dtype=torch.long)  # [B, T]
    input_ids[:, 0] = 0
    input_ids[:, T - 1] = 2
    attention_mask = torch.ones(B, T, dtype=torch.long)
    start_positions = torch.randint(1, T // 2, (B,), generator=gen, dtype=torch.long)
    end_positions = start_positions + torch.randint(0, 16, (B,), generator=gen, dtype=torch.long)

    step_ms, first_loss = [], 0.0
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        out = model(input_ids=input_ids, attention_mask=attention_mask, start_positions=start_positions,
                    end_positions=end_positions)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        loss = out.loss.item()
        ms = 1000.0 * (time.perf_counter() - t0)
        if step == 0:
            first_loss = loss
        if step >= args.warmup:
            step_ms.append(ms)

    med = statistics.median(step_ms)
    hwm = proc_status_mib("VmHWM")  # since the reset when it worked, else the whole run
    trainable, _ = model.get_nb_trainable_parameters()
    print(json.dumps({
        "impl": "transformers+peft",
        "attn": model.config._attn_implementation,
        "batch": B, "seq": T, "vocab": V, "warmup": args.warmup, "steps": args.steps,
        "threads": torch.get_num_threads(),
        "samples_per_s": 1000.0 * B / med,
        "tokens_per_s": 1000.0 * B * T / med,
        "median_step_ms": med,
        "step_ms": step_ms,
        "peak_rss_mib": max(load_peak, hwm),  # the whole process
        "train_peak_rss_mib": hwm if peak_reset else None,  # during the steps
        "load_peak_rss_mib": load_peak,
        "rss_after_load_mib": rss_after_load,
        "load_s": load_s,
        "trainable_params": trainable,
        "first_loss": first_loss,
        "input_ids_sum": int(input_ids.sum()),
    }))


if __name__ == "__main__":
    main()
