#!/usr/bin/env python3
"""The embedded demo model: a tiny, randomly initialised XLM-R for extractive QA.

    ~/.cache/qlora/venv/bin/python tools/gen_demo_model.py

Writes data/models/xlmr-tiny/ (config.json, model.safetensors, the XLM-R-style tokenizer trained
on Vietnamese Wikipedia text from tests/fixtures/tokenizers/xlmr-viwiki). transformers'
XLMRobertaForQuestionAnswering with its own initialisation (seed 0), saved with save_pretrained,
so the folder is exactly what a user gets from the Hub for a real model, only small: 2 layers,
hidden 64, max 258 positions. It learns little; real runs use xlm-roberta-base.
"""
import pathlib
import shutil

import torch
import transformers

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOK = ROOT / "tests" / "fixtures" / "tokenizers" / "xlmr-viwiki"
OUT = ROOT / "data" / "models" / "xlmr-tiny"


def main():
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(TOK))
    torch.manual_seed(0)
    config = transformers.XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=258, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    model = transformers.XLMRobertaForQuestionAnswering(config)
    if OUT.exists():
        shutil.rmtree(OUT)
    model.save_pretrained(str(OUT), safe_serialization=True)
    for name in ["sentencepiece.bpe.model", "tokenizer_config.json"]:
        shutil.copy(TOK / name, OUT / name)
    (OUT / "README.md").write_text(
        "# xlmr-tiny\n\nA randomly initialised 2-layer XLM-R question-answering model (hidden 64) for the\n"
        "qlora demo, made by `tools/gen_demo_model.py` with transformers "
        f"{transformers.__version__}. Its tokenizer is a SentencePiece unigram model trained on a\n"
        "Vietnamese Wikipedia sample (CC BY-SA 3.0; see ATTRIBUTION.md). It answers nothing well:\n"
        "it only shows the pipeline running. Real runs use xlm-roberta-base.\n")
    shutil.copy(TOK / "ATTRIBUTION.md", OUT / "ATTRIBUTION.md")
    print(sum(p.numel() for p in model.parameters()), "parameters")


if __name__ == "__main__":
    main()
