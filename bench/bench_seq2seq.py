#!/usr/bin/env python3
"""The reference side of bench_seq2seq: the same T5 benchmarks with transformers + peft.

    python bench/bench_seq2seq.py --mode train --model /tmp/qlora-bench/t5-small-gated
    python bench/bench_seq2seq.py --mode beam --model /tmp/qlora-bench/t5-small-gated --batch 4 --source 128

train: LoRA (r 16, alpha 32, dropout 0.05, q + v, SEQ_2_SEQ_LM) via get_peft_model, model.train(), forward
with labels (mean cross-entropy) + backward + clip_grad_norm_ + torch.optim.AdamW + zero_grad.
beam: model.generate(num_beams=B, max_new_tokens=N) with the model's generation_config.json, no_grad.
Same inputs and JSON fields as bench_seq2seq.cpp; prints one JSON line. Run each configuration in its own
process so that the peak RSS is per configuration.
"""
import argparse
import json
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForSeq2SeqLM

from bench_causal_lm import LoadInfo, decays


def random_rows(B, L, V, gen):
    """Rows of random ids ending with EOS (1), as bench_seq2seq.cpp draws them: [B, L]."""
    ids = torch.randint(2, V, (B, L), generator=gen, dtype=torch.long)
    ids[:, L - 1] = 1
    return ids


def run_train(args):
    t_load = time.perf_counter()
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model, dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q", "v"],
                        task_type="SEQ_2_SEQ_LM")
    torch.manual_seed(args.seed)
    model = get_peft_model(model, config)
    model.train()
    info = LoadInfo(t_load)

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in named if decays(n)], "weight_decay": args.weight_decay},
         {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0}], lr=args.lr)

    gen = torch.Generator().manual_seed(args.seed)
    B, S, T, V = args.batch, args.source, args.target, model.config.vocab_size
    input_ids = random_rows(B, S, V, gen)  # [B, S]
    labels = random_rows(B, T, V, gen)  # [B, T]
    attention_mask = torch.ones(B, S, dtype=torch.long)

    step_ms, first_loss = [], 0.0
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False)
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
        "impl": "transformers+peft", "mode": "train", "batch": B, "source": S, "target": T,
        "warmup": args.warmup, "steps": args.steps, "threads": torch.get_num_threads(),
        "tokens_per_s": 1000.0 * B * (S + T) / med, "samples_per_s": 1000.0 * B / med, "median_ms": med,
        "step_ms": step_ms, **info.fields(), "trainable_params": trainable, "first_loss": first_loss,
        "input_ids_sum": int(input_ids.sum()) + int(labels.sum()),
    }


def run_beam(args):
    t_load = time.perf_counter()
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    info = LoadInfo(t_load)

    gen = torch.Generator().manual_seed(args.seed)
    B, S, V = args.batch, args.source, model.config.vocab_size
    input_ids = random_rows(B, S, V, gen)  # [B, S]
    attention_mask = torch.ones(B, S, dtype=torch.long)

    batch_ms, ids = [], []
    with torch.no_grad():
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            seq = model.generate(input_ids=input_ids, attention_mask=attention_mask, num_beams=args.beams,
                                 max_new_tokens=args.new, do_sample=False)
            ms = 1000.0 * (time.perf_counter() - t0)
            if i >= args.warmup:
                batch_ms.append(ms)
            ids = seq.tolist()

    med = statistics.median(batch_ms)
    return {
        "impl": "transformers+peft", "mode": "beam", "batch": B, "source": S, "beams": args.beams,
        "new_tokens": args.new, "warmup": args.warmup, "steps": args.steps, "threads": torch.get_num_threads(),
        "s_per_batch": med / 1000.0, "median_ms": med, "batch_ms": batch_ms, "ids": ids, **info.fields(),
        "input_ids_sum": int(input_ids.sum()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["train", "beam"], default="train")
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--source", type=int, default=256)
    ap.add_argument("--target", type=int, default=64)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0 keeps torch's default")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(json.dumps(run_train(args) if args.mode == "train" else run_beam(args)))


if __name__ == "__main__":
    main()
