#!/usr/bin/env python3
"""QLoRA parity on a decoder: transformers 5.17 + PEFT 0.21.2 + bitsandbytes 0.50.2 (CPU) on the pre-quantized
tiny LLaMA tests/fixtures/models/llama_llama3-bnb-nf4 (written by tools/gen_prequant_fixtures.py: NF4, double
quantization, compute float32), with a PEFT LoRA on every linear of the blocks, for tests/tasks/test_qlora_parity.cpp:

  tests/fixtures/models/llama_llama3-bnb-nf4/qlora/
    adapter_config.json, adapter_model.safetensors   the LoRA (r 4, alpha 8, random A and B, dropout 0)
    qlora_outputs.safetensors
      input_ids, attention_mask [2, 12]   row 1 right-padded by 4
      labels [2, 12]                      input_ids with -100 on the padding
      lora.logits, lora.loss              the 4-bit model with the adapter (HF's shifted mean cross-entropy)
      grad.<PEFT key without base_model.model.>  every LoRA gradient of that loss
      curve.losses [20]                   the loss before each of 20 AdamW steps (lr 1e-2, weight decay 0)

Run: ~/.cache/qlora/venv/bin/python tools/gen_decoder_qlora_fixtures.py   (after gen_prequant_fixtures.py)
"""

import os
import shutil

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")
BASE = os.path.join(ROOT, "llama_llama3-bnb-nf4")
OUT = os.path.join(BASE, "qlora")
STEPS = 20
LR = 1e-2


def main():
    model = AutoModelForCausalLM.from_pretrained(BASE, device_map="cpu", attn_implementation="eager")
    model.eval()
    g = torch.Generator().manual_seed(5)
    input_ids = torch.randint(3, 96, (2, 12), generator=g)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    input_ids[1, 8:] = 0
    labels = input_ids.masked_fill(mask == 0, -100)

    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    torch.manual_seed(1)
    peft_model = get_peft_model(model, cfg)
    peft_model.eval()
    out = peft_model(input_ids=input_ids, attention_mask=mask, labels=labels)
    tensors = {"input_ids": input_ids, "attention_mask": mask, "labels": labels,
               "lora.logits": out.logits.detach(), "lora.loss": out.loss.detach().reshape(1)}
    out.loss.backward()
    for n, p in peft_model.named_parameters():
        if p.requires_grad:
            tensors["grad." + n.removeprefix("base_model.model.")] = p.grad.detach().clone()
    shutil.rmtree(OUT, ignore_errors=True)
    peft_model.save_pretrained(OUT)
    os.remove(os.path.join(OUT, "README.md"))  # PEFT's model-card template

    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = peft_model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
    tensors["curve.losses"] = torch.tensor(losses, dtype=torch.float64)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "qlora_outputs.safetensors"))
    print("losses:", [round(x, 5) for x in losses])
    print("wrote", OUT, sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
