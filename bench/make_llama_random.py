#!/usr/bin/env python3
"""Writes a small LLaMA-shaped LlamaForCausalLM with random weights (no download).

    python bench/make_llama_random.py /tmp/qlora-bench/llama-small

Shapes: hidden 512, 8 layers, 8 heads with 4 key/value heads (GQA), intermediate 1376, vocab 32000 (the
LLaMA-2 tokenizer's), 2048 positions, RoPE theta 10000, untied lm_head; 55,976,448 parameters, 224 MB
fp32. Small enough that each side of bench/run_llm.sh runs in well under a minute on 2 CPU cores, with
the layer structure and vocab of a real LLaMA. Keep OUT_DIR outside the repo.
"""
import argparse
import os

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        initializer_range=0.02,
    )
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config).eval()
    os.makedirs(args.out_dir, exist_ok=True)
    model.save_pretrained(args.out_dir, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out_dir}: {n:,} parameters")


if __name__ == "__main__":
    main()
