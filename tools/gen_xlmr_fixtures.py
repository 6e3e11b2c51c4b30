#!/usr/bin/env python3
"""Tiny random XLM-R / BERT encoders and their Hugging Face outputs, for tests/models/test_xlmr.cpp.

Run with the pinned venv (torch 2.11, transformers 5.17, peft 0.21.2):
    /root/.cache/qlora/venv/bin/python tools/gen_xlmr_fixtures.py

Writes under tests/fixtures/models/:
  tiny-xlmr-qa/       XLMRobertaForQuestionAnswering (prefix roberta., no pooler) + hf_outputs.safetensors
  tiny-xlmr-base/     XLMRobertaModel with the same encoder weights (no prefix, with a pooler, no QA head)
  tiny-xlmr-mlm/      XLMRobertaForMaskedLM with the same encoder weights (prefix roberta., extra lm_head.*)
  tiny-xlmr-cls/      XLMRobertaForSequenceClassification (3 labels) + hf_outputs.safetensors
  tiny-bert-qa/       BertForQuestionAnswering (prefix bert., token_type_ids used) + hf_outputs.safetensors
  tiny-bert-cls/      BertForSequenceClassification (pooler + classifier) + hf_outputs.safetensors
  tiny-xlmr-qa-lora/  a PEFT LoRA adapter on tiny-xlmr-qa (query, value; qa_outputs saved) + hf_outputs.safetensors

Every model runs with attn_implementation="eager" and model.eval() (no dropout) in float32. Weights are
re-drawn from N(0, 0.2) (LayerNorm weights around 1) instead of HF's N(0, 0.02) init, so that biases,
LayerNorm affine terms and the attention pattern all matter to the outputs.
"""

import json
import os
import shutil

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
    XLMRobertaModel,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")
VOCAB = 1000
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=66,
    hidden_act="gelu",
    attn_implementation="eager",
)


def xlmr_config(**extra):
    return XLMRobertaConfig(
        **COMMON, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2, **extra
    )


def bert_config(**extra):
    return BertConfig(**COMMON, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0, **extra)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.2
            p.copy_(1.0 + noise * 0.5 if "LayerNorm.weight" in name else noise)


def save_model(model, name):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True)
    return out


def batch(pad_id, bos, eos, lengths, seq_len, seed, pair=False):
    """Right-padded ids: bos, random ids (never pad/bos/eos), eos; pad id and mask 0 after the length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), seq_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lengths), seq_len), dtype=torch.long)
    types = torch.zeros((len(lengths), seq_len), dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(5, VOCAB, (n,), generator=g)
        ids[b, 0] = bos
        ids[b, n - 1] = eos
        mask[b, :n] = 1
        if pair:  # a second segment over the second half of the real tokens, as BERT pairs have
            types[b, n // 2 : n] = 1
    return ids, mask, types


def xlmr_batches():
    padded = batch(1, 0, 2, [9, 6, 3], 9, seed=11)
    full = batch(1, 0, 2, [7, 7], 7, seed=12)
    return {"padded": padded, "full": full}


def bert_batches():
    padded = batch(0, 101 % VOCAB, 102 % VOCAB, [9, 6, 3], 9, seed=21, pair=True)
    full = batch(0, 101 % VOCAB, 102 % VOCAB, [7, 7], 7, seed=22, pair=True)
    return {"padded": padded, "full": full}


# Positions past seq_len (HF clamps them to seq_len = ignore_index) and negative ones (clamped to 0).
QA_POSITIONS = {
    "padded": (torch.tensor([2, 4, 15]), torch.tensor([5, 30, -1])),
    "full": (torch.tensor([1, 3]), torch.tensor([6, 2])),
}
CLS_LABELS = {"padded": torch.tensor([0, 2, 1]), "full": torch.tensor([1, 1])}


def run_qa(model, batches, with_types):
    out = {}
    for key, (ids, mask, types) in batches.items():
        start, end = QA_POSITIONS[key]
        kwargs = dict(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        if with_types:
            kwargs["token_type_ids"] = types
        with torch.no_grad():
            r = model(**kwargs, start_positions=start, end_positions=end)
        out.update(
            {
                f"{key}.input_ids": ids,
                f"{key}.attention_mask": mask,
                f"{key}.token_type_ids": types,
                f"{key}.start_positions": start,
                f"{key}.end_positions": end,
                f"{key}.hidden": r.hidden_states[-1],
                f"{key}.start_logits": r.start_logits,
                f"{key}.end_logits": r.end_logits,
                f"{key}.loss": r.loss.reshape(1),
            }
        )
    return out


def run_cls(model, batches, with_types):
    out = {}
    for key, (ids, mask, types) in batches.items():
        labels = CLS_LABELS[key]
        kwargs = dict(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        if with_types:
            kwargs["token_type_ids"] = types
        with torch.no_grad():
            r = model(**kwargs, labels=labels)
        out.update(
            {
                f"{key}.input_ids": ids,
                f"{key}.attention_mask": mask,
                f"{key}.token_type_ids": types,
                f"{key}.labels": labels,
                f"{key}.hidden": r.hidden_states[-1],
                f"{key}.logits": r.logits,
                f"{key}.loss": r.loss.reshape(1),
            }
        )
    return out


def save_outputs(out_dir, tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "hf_outputs.safetensors"))


def make_lora(qa_model, batches, seed):
    """PEFT LoRA on query/value with qa_outputs in modules_to_save; records outputs and gradients."""
    g = torch.Generator().manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["qa_outputs"])
    peft_model = get_peft_model(qa_model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            # lora_B non-zero so that the adapter matters; the saved qa_outputs copy differs from the base head.
            if "lora_B" in name or "modules_to_save" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    peft_model.eval()
    out_dir = os.path.join(ROOT, "tiny-xlmr-qa-lora")
    shutil.rmtree(out_dir, ignore_errors=True)
    peft_model.save_pretrained(out_dir)
    os.remove(os.path.join(out_dir, "README.md"))  # PEFT's generated model card; not part of the format

    out = {}
    for key, (ids, mask, _) in batches.items():
        start, end = QA_POSITIONS[key]
        peft_model.zero_grad()
        r = peft_model(input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
        r.loss.backward()
        out.update(
            {
                f"{key}.start_logits": r.start_logits.detach(),
                f"{key}.end_logits": r.end_logits.detach(),
                f"{key}.loss": r.loss.detach().reshape(1),
            }
        )
        for name, p in peft_model.named_parameters():
            if p.grad is None:
                continue
            # The key the adapter file uses for this parameter: adapter name and modules_to_save segment dropped.
            saved = name.replace(".default", "").replace("modules_to_save.", "")
            out[f"{key}.grad.{saved}"] = p.grad.detach().clone()
    save_outputs(out_dir, out)
    return out_dir


def main():
    os.makedirs(ROOT, exist_ok=True)
    torch.manual_seed(0)

    # XLM-R QA, and the same encoder saved as XLMRobertaModel and XLMRobertaForMaskedLM.
    qa = XLMRobertaForQuestionAnswering(xlmr_config()).eval()
    randomize(qa, seed=1)
    save_outputs(save_model(qa, "tiny-xlmr-qa"), run_qa(qa, xlmr_batches(), with_types=False))
    base = XLMRobertaModel(xlmr_config()).eval()
    randomize(base, seed=2)  # the pooler stays random; the encoder is the QA model's
    base.load_state_dict(qa.roberta.state_dict(), strict=False)
    save_model(base, "tiny-xlmr-base")
    mlm = XLMRobertaForMaskedLM(xlmr_config()).eval()
    randomize(mlm, seed=3)
    mlm.roberta.load_state_dict(qa.roberta.state_dict())
    save_model(mlm, "tiny-xlmr-mlm")

    cls = XLMRobertaForSequenceClassification(xlmr_config(num_labels=3)).eval()
    randomize(cls, seed=4)
    save_outputs(save_model(cls, "tiny-xlmr-cls"), run_cls(cls, xlmr_batches(), with_types=False))

    bert_qa = BertForQuestionAnswering(bert_config()).eval()
    randomize(bert_qa, seed=5)
    save_outputs(save_model(bert_qa, "tiny-bert-qa"), run_qa(bert_qa, bert_batches(), with_types=True))
    bert_cls = BertForSequenceClassification(bert_config(num_labels=3)).eval()
    randomize(bert_cls, seed=6)
    save_outputs(save_model(bert_cls, "tiny-bert-cls"), run_cls(bert_cls, bert_batches(), with_types=True))

    lora_dir = make_lora(qa, xlmr_batches(), seed=7)
    with open(os.path.join(lora_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    print("adapter:", cfg["r"], cfg["lora_alpha"], cfg["target_modules"], cfg["modules_to_save"])
    for name in sorted(os.listdir(ROOT)):
        d = os.path.join(ROOT, name)
        if os.path.isdir(d):
            print(f"{name}: {sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))} bytes")


if __name__ == "__main__":
    main()
