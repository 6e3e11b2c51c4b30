#!/usr/bin/env python3
"""QLoRA parity fixture: tests/fixtures/models/tiny-xlmr-qa loaded by transformers 5.17 with bitsandbytes
0.50.2 on CPU (NF4, double quantization, compute float32), a PEFT 0.21.2 LoRA on it, and what the C++
QLoRA path must reproduce:

  tests/fixtures/models/tiny-xlmr-qa-qlora/
    adapter_config.json, adapter_model.safetensors   PEFT LoRA (r 4, query/value/dense, random A and B)
    qlora_outputs.safetensors                        input batch, labels, bnb packed weights of every
                                                     Linear4bit, 4-bit logits, LoRA grads, 20-step losses
    qlora_meta.json                                  which modules transformers quantized

Run: ~/.cache/qlora/venv/bin/python tools/gen_qlora_fixtures.py
Deterministic: seeds fixed, eval mode (no dropout), lora_dropout 0.
"""

import json
import os
import shutil

import bitsandbytes as bnb
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForQuestionAnswering, BitsAndBytesConfig

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")
BASE = os.path.join(ROOT, "tiny-xlmr-qa")
OUT = os.path.join(ROOT, "tiny-xlmr-qa-qlora")
STEPS = 20
LR = 1e-2


def main():
    torch.manual_seed(0)
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForQuestionAnswering.from_pretrained(BASE, quantization_config=q, device_map="cpu",
                                                          attn_implementation="eager")
    model.eval()
    quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    tensors = {}
    for n, m in model.named_modules():
        if isinstance(m, bnb.nn.Linear4bit):
            tensors[f"bnb.{n}.packed"] = m.weight.data.reshape(-1).clone()
            tensors[f"bnb.{n}.absmax"] = m.weight.quant_state.absmax.clone()

    g = torch.Generator().manual_seed(7)
    B, T = 3, 20
    input_ids = torch.randint(3, 1000, (B, T), generator=g)
    input_ids[:, 0] = 0
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 15:] = 0
    input_ids[1, 15:] = 1
    mask[2, 9:] = 0
    input_ids[2, 9:] = 1
    start = torch.tensor([3, 5, 2])
    end = torch.tensor([6, 9, 4])
    tensors.update({"input_ids": input_ids, "attention_mask": mask, "start_positions": start, "end_positions": end})

    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask)
    tensors["base.start_logits"] = out.start_logits
    tensors["base.end_logits"] = out.end_logits

    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value", "dense"],
                     init_lora_weights=False)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, cfg)
    peft_model.eval()  # no dropout anywhere; gradients still flow
    out = peft_model(input_ids=input_ids, attention_mask=mask, start_positions=start, end_positions=end)
    tensors["lora.start_logits"] = out.start_logits.detach()
    tensors["lora.end_logits"] = out.end_logits.detach()
    tensors["lora.loss"] = out.loss.detach().reshape(1)
    out.loss.backward()
    for n, p in peft_model.named_parameters():
        if p.requires_grad:
            tensors["grad." + n.removeprefix("base_model.model.")] = p.grad.detach().clone()
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    peft_model.save_pretrained(OUT)

    # 20 AdamW steps (torch defaults, weight decay 0) on the same batch: the loss before each step.
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = peft_model(input_ids=input_ids, attention_mask=mask, start_positions=start,
                          end_positions=end).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
    tensors["curve.losses"] = torch.tensor(losses, dtype=torch.float64)

    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "qlora_outputs.safetensors"))
    with open(os.path.join(OUT, "qlora_meta.json"), "w") as f:
        json.dump({"quantized": quantized, "lr": LR, "steps": STEPS, "bitsandbytes": bnb.__version__}, f, indent=1)
    print("quantized:", quantized)
    print("losses:", [round(x, 5) for x in losses])
    print("wrote", OUT)


if __name__ == "__main__":
    main()
