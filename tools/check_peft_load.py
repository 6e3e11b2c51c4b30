#!/usr/bin/env python3
"""Loads a LoRA adapter folder (e.g. one qlora wrote) with real PEFT and prints what PEFT made of it, as JSON.

    /root/.cache/qlora/venv/bin/python tools/check_peft_load.py ADAPTER_DIR [--model MODEL_DIR]

MODEL_DIR defaults to tests/fixtures/models/tiny-xlmr-qa (an XLMRobertaForQuestionAnswering). Prints:
  adapted_modules        modules PEFT gave a LoRA layer (sorted)
  modules_to_save        modules PEFT wrapped in ModulesToSaveWrapper (sorted)
  load_warnings          PEFT's warnings while loading (missing / unexpected keys, ...): [] for a clean adapter
  adapter.start_logits / adapter.end_logits   QA logits of the "padded" batch of MODEL_DIR/hf_outputs.safetensors
  merged.start_logits / merged.end_logits     the same after merge_and_unload()
Floats are float32 values printed exactly (Python repr of the widened double).

tests/fixtures/peft/cpp_written/<case>/peft_check.json is this script's output for the adapters qlora's
test wrote there; see tests/peft/test_peft_interop.cpp for how to regenerate both.
"""

import argparse
import json
import os
import warnings

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.utils.other import ModulesToSaveWrapper
from safetensors import safe_open
from transformers import XLMRobertaForQuestionAnswering
from transformers.utils import logging as hf_logging

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("adapter_dir")
    parser.add_argument("--model", default=os.path.join(REPO, "tests/fixtures/models/tiny-xlmr-qa"))
    args = parser.parse_args()

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with safe_open(os.path.join(args.model, "hf_outputs.safetensors"), "pt") as f:
        ids, mask = f.get_tensor("padded.input_ids"), f.get_tensor("padded.attention_mask")
    base = XLMRobertaForQuestionAnswering.from_pretrained(args.model, attn_implementation="eager").eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, args.adapter_dir).eval()
    inner = model.base_model.model
    result = {
        "adapted_modules": sorted(n for n, m in inner.named_modules() if isinstance(m, LoraLayer)),
        "modules_to_save": sorted(n for n, m in inner.named_modules() if isinstance(m, ModulesToSaveWrapper)),
        "load_warnings": [str(w.message) for w in caught],
    }
    with torch.no_grad():
        r = model(input_ids=ids, attention_mask=mask)
        result["adapter"] = {"start_logits": r.start_logits.tolist(), "end_logits": r.end_logits.tolist()}
        merged = model.merge_and_unload()
        r = merged(input_ids=ids, attention_mask=mask)
        result["merged"] = {"start_logits": r.start_logits.tolist(), "end_logits": r.end_logits.tolist()}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
