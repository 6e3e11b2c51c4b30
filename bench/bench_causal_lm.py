#!/usr/bin/env python3
"""The reference side of bench_causal_lm: the same decoder LLM benchmarks with transformers + peft.

    python bench/bench_causal_lm.py --mode train --model /tmp/qlora-bench/llama-small --attn eager
    python bench/bench_causal_lm.py --mode generate --model /tmp/qlora-bench/llama-small --attn sdpa

train: LoRA (r 16, alpha 32, dropout 0.05, q_proj + v_proj, CAUSAL_LM) via get_peft_model, model.train(),
forward with labels = input_ids (mean next-token cross-entropy) + backward + clip_grad_norm_ +
torch.optim.AdamW + zero_grad. generate: prefill (one forward of the prompt with use_cache=True, timed
alone), then model.generate(do_sample=False, max_new_tokens=N, min_new_tokens=N, use_cache=True).
Same inputs and JSON fields as bench_causal_lm.cpp; prints one JSON line. Run each configuration in its
own process so that the peak RSS is per configuration.
"""
import argparse
import json
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


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


class LoadInfo:
    def __init__(self, t_load):
        self.load_s = time.perf_counter() - t_load
        self.load_peak = proc_status_mib("VmHWM")
        self.rss_after_load = proc_status_mib("VmRSS")
        self.peak_reset = reset_peak_rss()

    def fields(self):
        hwm = proc_status_mib("VmHWM")  # since the reset when it worked, else the whole run
        return {"peak_rss_mib": max(self.load_peak, hwm), "run_peak_rss_mib": hwm if self.peak_reset else None,
                "load_peak_rss_mib": self.load_peak, "rss_after_load_mib": self.rss_after_load,
                "load_s": self.load_s}


def run_train(args):
    t_load = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, attn_implementation=args.attn, dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                        task_type="CAUSAL_LM")
    torch.manual_seed(args.seed)
    model = get_peft_model(model, config)
    model.train()
    info = LoadInfo(t_load)

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in named if decays(n)], "weight_decay": args.weight_decay},
         {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0}], lr=args.lr)

    # Same draws as bench_causal_lm.cpp.
    gen = torch.Generator().manual_seed(args.seed)
    B, T, V = args.batch, args.seq, model.config.vocab_size
    input_ids = torch.randint(3, V, (B, T), generator=gen, dtype=torch.long)  # [B, T]
    input_ids[:, 0] = 1
    attention_mask = torch.ones(B, T, dtype=torch.long)

    step_ms, first_loss = [], 0.0
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids, use_cache=False)
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
    trainable, _ = model.get_nb_trainable_parameters()
    return {
        "impl": "transformers+peft", "mode": "train", "attn": model.config._attn_implementation,
        "batch": B, "seq": T, "warmup": args.warmup, "steps": args.steps, "threads": torch.get_num_threads(),
        "tokens_per_s": 1000.0 * B * T / med, "median_ms": med, "step_ms": step_ms, **info.fields(),
        "trainable_params": trainable, "first_loss": first_loss, "input_ids_sum": int(input_ids.sum()),
    }


def run_generate(args):
    t_load = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, attn_implementation=args.attn, dtype=torch.float32)
    model.eval()
    info = LoadInfo(t_load)

    gen = torch.Generator().manual_seed(args.seed)
    L, V, N = args.prompt, model.config.vocab_size, args.new
    prompt = torch.randint(3, V, (1, L), generator=gen, dtype=torch.long)  # [1, L]
    prompt[:, 0] = 1
    mask = torch.ones(1, L, dtype=torch.long)

    prefill_ms = []
    with torch.inference_mode():
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            out = model(input_ids=prompt, attention_mask=mask, use_cache=True)
            out.logits[:, -1].argmax(-1).item()  # as generate picks its first token
            ms = 1000.0 * (time.perf_counter() - t0)
            if i >= args.warmup:
                prefill_ms.append(ms)
            del out

    generate_ms, ids = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        seq = model.generate(input_ids=prompt, attention_mask=mask, do_sample=False, max_new_tokens=N,
                             min_new_tokens=N, use_cache=True, pad_token_id=0)
        ms = 1000.0 * (time.perf_counter() - t0)
        if i >= args.warmup:
            generate_ms.append(ms)
        ids = seq[0, L:].tolist()

    pre, gen_med = statistics.median(prefill_ms), statistics.median(generate_ms)
    decode = (gen_med - pre) / (N - 1)  # generate = prefill (first token) + N - 1 decode steps
    return {
        "impl": "transformers+peft", "mode": "generate", "attn": model.config._attn_implementation,
        "prompt": L, "new_tokens": N, "warmup": args.warmup, "steps": args.steps,
        "threads": torch.get_num_threads(), "prefill_ms": prefill_ms, "prefill_median_ms": pre,
        "prefill_tokens_per_s": 1000.0 * L / pre, "generate_ms": generate_ms, "generate_median_ms": gen_med,
        "decode_ms_per_token": decode, "decode_tokens_per_s": 1000.0 / decode, "generated_tokens": len(ids),
        "ids": ids, **info.fields(), "input_ids_sum": int(prompt.sum()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["train", "generate"], default="train")
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0 keeps torch's default")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--attn", default="eager", help="attn_implementation: eager (qlora's form) or sdpa "
                    "(transformers' default for LLaMA)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(json.dumps(run_train(args) if args.mode == "train" else run_generate(args)))


if __name__ == "__main__":
    main()
