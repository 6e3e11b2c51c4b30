#!/usr/bin/env python3
"""PEFT LoRA adapters written by real PEFT on the tiny XLM-R QA model, for tests/peft/.

Run with the pinned venv (torch 2.11, transformers 5.17, peft 0.21.2):
    /root/.cache/qlora/venv/bin/python tools/gen_peft_fixtures.py

Reads tests/fixtures/models/tiny-xlmr-qa/ (model + the "padded" input batch of its hf_outputs) and writes
tests/fixtures/peft/<case>/ for every case in CASES:
  adapter_config.json, adapter_model.safetensors   what PeftModel.save_pretrained wrote (README.md dropped)
  peft_info.json      the modules PEFT adapted (targeted_module_names, HF module paths, sorted), the
                      modules_to_save PEFT wrapped, PEFT's get_nb_trainable_parameters() numbers, and the
                      LoraConfig(...) arguments the case was built from
  peft_outputs.safetensors   start/end logits of the "padded" batch with the adapter ("adapter.*") and
                      after merge_and_unload ("merged.*")

Every lora_B is set to N(0, 0.2) before saving (lora_B = 0 would make the adapter a no-op), as are the
modules_to_save copies and, with bias != "none", the trainable biases, so that every saved tensor matters
to the outputs. The model runs in float32, eval mode (no dropout).

tests/fixtures/peft/default/adapter_config.json is what LoraConfig().save_pretrained() writes: every field
of PEFT's LoraConfig with its default (json.dumps(asdict(config), indent=2, sort_keys=True) minus
runtime_config).
"""

import copy
import json
import os
import shutil
import sys

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils.other import ModulesToSaveWrapper
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import XLMRobertaForQuestionAnswering

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# Relative paths: base_model_name_or_path in the saved configs is this string.
MODEL_DIR = "tests/fixtures/models/tiny-xlmr-qa"
OUT = "tests/fixtures/peft"

CASES = {
    # Suffix list + a head saved in full; task_type None (PeftModel, auto_mapping written).
    "list": dict(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["qa_outputs"]),
    # A regex string is re.fullmatch'ed against the whole module path.
    "regex": dict(r=2, lora_alpha=4, target_modules=r".*layer\.1\.attention\.(self\.key|output\.dense)"),
    # all-linear on a QA model without task_type: nothing is excluded, qa_outputs gets LoRA too.
    "all_linear": dict(r=2, lora_alpha=2, target_modules="all-linear"),
    # all-linear with task_type QUESTION_ANS: PeftModelForQuestionAnswering adds qa_outputs to
    # modules_to_save only after the LoRA layers are injected, so without modules_to_save=["qa_outputs"]
    # PEFT 0.21.2 raises "modules_to_save cannot be applied to modules of type lora.Linear". Listed, the
    # head is excluded from LoRA and saved in full (and the saved list holds qa_outputs twice).
    "all_linear_qa": dict(
        r=2, lora_alpha=2, target_modules="all-linear", task_type="QUESTION_ANS", modules_to_save=["qa_outputs"]
    ),
    # rank/alpha patterns (get_pattern_key: re.match(r"(.*\.)?(KEY)$")) and exclude_modules.
    "patterns": dict(
        r=4,
        lora_alpha=8,
        target_modules=["query", "key", "value", "dense"],
        exclude_modules=["intermediate.dense"],
        rank_pattern={r"layer\.1\.attention\.self\.query": 6, "value": 2},
        alpha_pattern={"dense": 3, r"layer.0.attention.self.key": 5.5},
    ),
    # layers_to_transform + layers_pattern.
    "layers": dict(r=3, lora_alpha=6, target_modules=["query", "dense"], layers_to_transform=[1], layers_pattern="layer"),
    # layers_to_transform as an int, no layers_pattern (first numbered segment).
    "layers_int": dict(r=3, lora_alpha=6, target_modules=["value"], layers_to_transform=0),
    # rsLoRA scaling alpha / sqrt(r), gaussian init, dropout recorded.
    "rslora": dict(r=4, lora_alpha=8, target_modules=["query", "value"], use_rslora=True, init_lora_weights="gaussian", lora_dropout=0.1),
    # bias="all": every bias of the model trains and is saved; modules_to_save alongside.
    "bias_all": dict(r=2, lora_alpha=4, target_modules=["query", "value"], bias="all", modules_to_save=["qa_outputs"]),
    # bias="lora_only": only the biases of adapted layers.
    "bias_lora_only": dict(r=2, lora_alpha=4, target_modules=["key", "output.dense"], bias="lora_only"),
}


def padded_batch():
    with safe_open(os.path.join(MODEL_DIR, "hf_outputs.safetensors"), "pt") as f:
        return f.get_tensor("padded.input_ids"), f.get_tensor("padded.attention_mask")


def load_base():
    return XLMRobertaForQuestionAnswering.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()


def qa_logits(model, batch, prefix):
    ids, mask = batch
    with torch.no_grad():
        r = model(input_ids=ids, attention_mask=mask)
    return {f"{prefix}.start_logits": r.start_logits.contiguous(), f"{prefix}.end_logits": r.end_logits.contiguous()}


def make_case(name, kwargs, batch, seed):
    torch.manual_seed(seed)  # LoRA A init
    # PEFT extends the modules_to_save list it was given (task heads): keep the caller's arguments intact.
    model = get_peft_model(load_base(), LoraConfig(**copy.deepcopy(kwargs)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "lora_B" in pname or "modules_to_save" in pname or (p.requires_grad and pname.endswith("bias")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    trainable, total = model.get_nb_trainable_parameters()
    adapted = sorted(n for n, m in model.base_model.model.named_modules() if isinstance(m, LoraLayer))
    wrapped = sorted(n for n, m in model.base_model.model.named_modules() if isinstance(m, ModulesToSaveWrapper))
    model.eval()
    out_dir = os.path.join(OUT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir)
    os.remove(os.path.join(out_dir, "README.md"))  # PEFT's generated model card; not part of the format
    outputs = qa_logits(model, batch, "adapter")
    outputs.update(qa_logits(model.merge_and_unload(), batch, "merged"))
    save_file(outputs, os.path.join(out_dir, "peft_outputs.safetensors"))
    info = {
        "config_kwargs": kwargs,
        "adapted_modules": adapted,
        "targeted_module_names": sorted(model.base_model.targeted_module_names),
        "modules_to_save_wrapped": wrapped,
        "trainable_params": trainable,
        "all_params": total,
    }
    with open(os.path.join(out_dir, "peft_info.json"), "w") as f:
        f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def main():
    # all-linear's target_modules is a Python set, saved in set order: fix the string hash seed so that
    # reruns write the same files.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    os.chdir(REPO)
    os.makedirs(OUT, exist_ok=True)
    LoraConfig().save_pretrained(os.path.join(OUT, "default"))  # adapter_config.json only
    batch = padded_batch()
    for i, (name, kwargs) in enumerate(CASES.items()):
        info = make_case(name, kwargs, batch, seed=100 + i)
        print(f"{name}: {len(info['adapted_modules'])} adapted, trainable {info['trainable_params']} / {info['all_params']}")
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"tests/fixtures/peft: {size} bytes")


if __name__ == "__main__":
    main()
