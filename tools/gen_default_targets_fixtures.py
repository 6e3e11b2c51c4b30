#!/usr/bin/env python3
"""PEFT's default LoRA target modules (target_modules=None) on the tiny fixture models, for
tests/peft/test_default_targets.cpp.

Run with the pinned venv (torch 2.11, transformers 5.17, peft 0.21.2) from anywhere:
    /root/.cache/qlora/venv/bin/python tools/gen_default_targets_fixtures.py

For each model of CASES (tests/fixtures/models/<model>), get_peft_model(model, LoraConfig(r=2,
lora_alpha=4)) with target_modules left None, so LoraModel._prepare_adapter_config fills in
TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type]. Writes tests/fixtures/peft/default_targets/
<model>/:
  adapter_config.json   what PeftModel.save_pretrained wrote (the resolved target set; weights and
                        README.md dropped: the test compares names only)
  peft_info.json        model_type, the modules PEFT adapted (HF module paths, model order) and the
                        resolved target_modules (sorted: PEFT keeps a set)
The string hash seed is fixed so that the saved set order is the same on every run.
"""

import json
import os
import shutil
import sys

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForQuestionAnswering, T5ForConditionalGeneration

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODELS = os.path.join(REPO, "tests", "fixtures", "models")
OUT = os.path.join(REPO, "tests", "fixtures", "peft", "default_targets")

# fixture folder -> transformers loader
CASES = {
    "tiny-xlmr-qa": AutoModelForQuestionAnswering,
    "llama_llama3": AutoModelForCausalLM,
    "mistral_sw": AutoModelForCausalLM,
    "qwen2_tied": AutoModelForCausalLM,
    "mpt_hf": AutoModelForCausalLM,
    "t5_v1_1": T5ForConditionalGeneration,
}


def make_case(name, loader):
    src = os.path.join(MODELS, name)
    model = loader.from_pretrained(src, dtype=torch.float32)
    model_type = AutoConfig.from_pretrained(src).model_type
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4))
    adapted = [n for n, m in peft_model.base_model.model.named_modules() if isinstance(m, LoraLayer)]
    out_dir = os.path.join(OUT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    peft_model.save_pretrained(out_dir)
    for f in ("README.md", "adapter_model.safetensors"):
        os.remove(os.path.join(out_dir, f))
    info = {
        "model_type": model_type,
        "adapted_modules": adapted,
        "target_modules": sorted(peft_model.peft_config["default"].target_modules),
    }
    with open(os.path.join(out_dir, "peft_info.json"), "w") as f:
        f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
    print(f"{out_dir}: {model_type} -> {info['target_modules']}, {len(adapted)} modules adapted")


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    for name, loader in CASES.items():
        make_case(name, loader)


if __name__ == "__main__":
    main()
