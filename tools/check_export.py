#!/usr/bin/env python3
"""Proves `qlora export` with transformers: merges the PEFT LoRA adapter of the tiny LLaMA fixture
(tests/fixtures/models/llama_llama3 + lora/) with the qlora binary, loads the merged folder with
transformers' AutoModelForCausalLM (no PEFT), and checks its logits against PEFT's base + adapter.
The merged folder and transformers' logits are stored as fixtures; tests/tasks/test_export.cpp
re-exports and requires byte-identical files and the same logits, so the check keeps holding.

Run: QLORA_BIN=build/bin/qlora ~/.cache/qlora/venv/bin/python tools/check_export.py
"""
import os
import shutil
import subprocess

import torch
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BASE = os.path.join(ROOT, "tests", "fixtures", "models", "llama_llama3")
OUT = os.path.join(ROOT, "tests", "fixtures", "export")
MERGED = os.path.join(OUT, "llama_llama3_merged")


def main():
    qlora = os.environ.get("QLORA_BIN", os.path.join(ROOT, "build", "bin", "qlora"))
    if os.path.isdir(MERGED):
        shutil.rmtree(MERGED)
    subprocess.run([qlora, "export", "--model", BASE, "--adapter", os.path.join(BASE, "lora"), "--out", MERGED],
                   check=True)
    g = torch.Generator().manual_seed(3)
    input_ids = torch.randint(0, 96, (2, 11), generator=g)
    base = AutoModelForCausalLM.from_pretrained(BASE, attn_implementation="eager").eval()
    peft_model = PeftModel.from_pretrained(base, os.path.join(BASE, "lora")).eval()
    merged = AutoModelForCausalLM.from_pretrained(MERGED, attn_implementation="eager").eval()
    with torch.no_grad():
        expected = peft_model(input_ids=input_ids).logits
        got = merged(input_ids=input_ids).logits
    diff = (expected - got).abs().max().item()
    print(f"transformers(merged export) vs PEFT(base + adapter): max |diff| = {diff:.3g}")
    assert diff < 1e-5, diff  # fp32; merging changes only the summation order of W x + B A x
    save_file({"input_ids": input_ids, "peft_logits": expected.contiguous(), "merged_logits": got.contiguous()},
              os.path.join(OUT, "llama_llama3_export_check.safetensors"))
    print("wrote", MERGED, "and llama_llama3_export_check.safetensors")


if __name__ == "__main__":
    main()
