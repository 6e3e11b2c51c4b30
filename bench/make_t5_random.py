#!/usr/bin/env python3
"""Writes a small T5-v1.1-shaped T5ForConditionalGeneration with random weights (no download).

    python bench/make_t5_random.py /tmp/qlora-bench/t5-small-gated

Shapes: d_model 512, d_kv 64, 8 heads, 6 encoder + 6 decoder blocks, d_ff 1024 gated-gelu (T5 v1.1 /
Flan-T5 FFN), vocab 32128, untied lm_head, dropout 0.1; pad 0, eos 1, decoder start 0. 70,664,704
distinct parameters; the file holds the embedding three times (shared, encoder/decoder.embed_tokens), as
T5 v1.1 checkpoints do, so it is 414 MB fp32 and transformers counts 103,563,776. Keep OUT_DIR outside
the repo.
"""
import argparse
import os

import torch
from transformers import T5Config, T5ForConditionalGeneration


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    config = T5Config(
        vocab_size=32128,
        d_model=512,
        d_kv=64,
        d_ff=1024,
        num_layers=6,
        num_decoder_layers=6,
        num_heads=8,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.1,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    # transformers 5.17's T5Config drops the tie_word_embeddings keyword (it reads True afterwards, and
    # save_pretrained then omits lm_head.weight); T5 v1.1 unties it, so set it on the built config.
    config.tie_word_embeddings = False
    config.architectures = ["T5ForConditionalGeneration"]
    model = T5ForConditionalGeneration(config).eval()
    # transformers' T5 init (q ~ N(0, (d_model * d_kv)^-0.5), lm_head ~ N(0, 1)) leaves the residual
    # stream dominated by the token embedding, so the random model only copies its last input token
    # (greedy and beam search emit the start token forever). Fan-in scaled projections make every
    # layer contribute, so that decoding follows varied paths as a trained model's does.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and name != "shared.weight" and "relative_attention_bias" not in name:
                p.normal_(0.0, p.shape[1] ** -0.5)
        # With tie_word_embeddings false transformers 5.17 unties encoder/decoder.embed_tokens from
        # `shared` as well; real T5 v1.1 checkpoints hold three equal copies, so make them equal.
        model.encoder.embed_tokens.weight.copy_(model.shared.weight)
        model.decoder.embed_tokens.weight.copy_(model.shared.weight)
    os.makedirs(args.out_dir, exist_ok=True)
    model.save_pretrained(args.out_dir, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out_dir}: {n:,} parameters")


if __name__ == "__main__":
    main()
