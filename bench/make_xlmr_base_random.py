#!/usr/bin/env python3
"""Writes an XLM-R-base-shaped XLMRobertaForQuestionAnswering with random weights (no download).

    python bench/make_xlmr_base_random.py /tmp/qlora-bench/xlmr-base [--vocab 250002]

Shapes are xlm-roberta-base's: hidden 768, 12 layers, 12 heads, intermediate 3072, 514 positions,
type_vocab 1, vocab 250002. --vocab may shrink the word embedding to save disk and RAM: LoRA freezes
it, so a step only gathers B*T of its rows and the vocab size barely changes step time (it does change
the resident set: 250002 x 768 fp32 is 732 MiB of the model's 1.06 GiB).
Keep OUT_DIR outside the repo.
"""
import argparse
import os

import torch
from transformers import XLMRobertaConfig, XLMRobertaForQuestionAnswering


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--vocab", type=int, default=250002, help="vocab size (xlm-roberta-base: 250002)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    config = XLMRobertaConfig(
        vocab_size=args.vocab,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        initializer_range=0.02,
    )
    config.architectures = ["XLMRobertaForQuestionAnswering"]
    model = XLMRobertaForQuestionAnswering(config).eval()
    os.makedirs(args.out_dir, exist_ok=True)
    model.save_pretrained(args.out_dir, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out_dir}: {n:,} parameters, vocab {args.vocab}")


if __name__ == "__main__":
    main()
