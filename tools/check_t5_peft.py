#!/usr/bin/env python3
"""Loads a LoRA adapter folder written for a T5 model (e.g. by qlora's save_adapter) with real PEFT and
prints what PEFT made of it, as JSON:

    ~/.cache/qlora/venv/bin/python tools/check_t5_peft.py ADAPTER_DIR [--model MODEL_DIR]

MODEL_DIR defaults to tests/fixtures/models/t5_v1_1. Prints:
  adapted_modules   modules PEFT gave a LoRA layer (sorted)
  load_warnings     PEFT's warnings while loading (missing / unexpected keys, ...): [] for a clean adapter
  max_abs_diff_vs_reference   max |logits - reference| on MODEL_DIR's labels batch, where the reference is
                    tests/fixtures/models/t5_v1_1_lora/hf_outputs.safetensors (only for the default model)
An adapter from `QLORA_T5_ADAPTER_OUT=/tmp/x build/tests/test_models --gtest_filter=T5Lora.SavedAdapterLoadsBack`
re-saves the fixture adapter, so its difference should be 0.
"""

import argparse
import json
import os
import warnings

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors import safe_open
from transformers import AutoConfig, MT5ForConditionalGeneration, T5ForConditionalGeneration
from transformers.utils import logging as hf_logging

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEFAULT_MODEL = os.path.join(REPO, "tests/fixtures/models/t5_v1_1")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("adapter_dir")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    cls = MT5ForConditionalGeneration if AutoConfig.from_pretrained(args.model).model_type == "mt5" else (
        T5ForConditionalGeneration)
    base = cls.from_pretrained(args.model, attn_implementation="eager").eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, args.adapter_dir).eval()
    inner = model.base_model.model
    result = {
        "adapted_modules": sorted(n for n, m in inner.named_modules() if isinstance(m, LoraLayer)),
        "load_warnings": [str(w.message) for w in caught],
    }
    with safe_open(os.path.join(args.model, "hf_outputs.safetensors"), "pt") as f:
        ids, mask, labels = (f.get_tensor(k) for k in ("enc.input_ids", "enc.attention_mask", "labels"))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits
    if os.path.abspath(args.model) == DEFAULT_MODEL:
        with safe_open(os.path.join(REPO, "tests/fixtures/models/t5_v1_1_lora/hf_outputs.safetensors"), "pt") as f:
            result["max_abs_diff_vs_reference"] = (logits - f.get_tensor("logits")).abs().max().item()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
