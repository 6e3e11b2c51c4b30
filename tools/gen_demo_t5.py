#!/usr/bin/env python3
"""The embedded seq2seq demo model: a tiny, randomly initialised T5 (v1.0 layout: ReLU feed-forward,
tied embeddings) with the official t5-small SentencePiece tokenizer (Apache-2.0).

    ~/.cache/qlora/venv/bin/python tools/gen_demo_t5.py

Writes data/models/t5-tiny/ with transformers' T5ForConditionalGeneration initialisation (seed 0) and
save_pretrained, so the folder has the layout of a real checkpoint; 2+2 layers, d_model 32. It learns
the demo's short patterns in a few minutes on a CPU; real runs use flan-t5 / ViT5 (configs/).
"""
import pathlib
import shutil

import torch
import transformers

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOK = ROOT.parent / "shared" / "data" / "tokenizers" / "t5-small"
OUT = ROOT / "data" / "models" / "t5-tiny"


def main():
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=32128, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                   num_decoder_layers=2, num_heads=4, feed_forward_proj="relu",
                                   tie_word_embeddings=True, decoder_start_token_id=0, pad_token_id=0,
                                   eos_token_id=1)
    model = transformers.T5ForConditionalGeneration(config)
    if OUT.exists():
        shutil.rmtree(OUT)
    model.save_pretrained(OUT)
    for name in ("spiece.model", "tokenizer_config.json"):
        shutil.copy(TOK / name, OUT / name)
    (OUT / "ATTRIBUTION.md").write_text(
        "# t5-tiny\n\nRandom weights made by tools/gen_demo_t5.py. spiece.model and tokenizer_config.json are the "
        "official T5 (t5-small) tokenizer, Apache-2.0 (via meta-pytorch/torchtune tests/assets @ bd2a0fc7 and "
        "microsoft/onnxruntime-extensions test/data @ 319f8d2c).\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
