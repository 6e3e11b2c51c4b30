#!/usr/bin/env python3
"""Checkpoint layouts users have that our other generators do not make, with transformers' outputs on them,
for tests/models/test_layouts.cpp.

Run with the pinned venv (torch 2.11, transformers 5.17):
    /root/.cache/qlora/venv/bin/python tools/gen_layout_fixtures.py

Writes under tests/fixtures/models/ (config.json, model.safetensors, hf_outputs.safetensors):
  layout_qwen2_untied_default/  a Qwen2 config.json WITHOUT tie_word_embeddings and a checkpoint with its own
                                lm_head.weight: Qwen2Config's default (untied) applies
  layout_llama_tied_own_head/   "tie_word_embeddings": true but the checkpoint carries an lm_head.weight that
                                differs from embed_tokens: transformers 5.17 then does NOT tie (it warns) and
                                uses the stored head
  layout_mpt_transformers/      a checkpoint made by transformers' own MptForCausalLM from MptConfig values that
                                its code ignores: learned_pos_emb true (no wpe tensor), no_bias false (no bias
                                tensors), alibi_bias_max 4 (it always uses 8), expansion_ratio 2 (always 4)
hf_outputs.safetensors holds right.{input_ids,attention_mask,logits} (row 1 right-padded by 3, T = 12) and
greedy.{prompt_ids,ids} (16 greedy tokens from one prompt, eos disabled), all from AutoModelForCausalLM
.from_pretrained on the written folder (what a user gets), float32, eager attention.
"""

import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MptConfig, MptForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "tests", "fixtures", "models")
VOCAB = 96
T = 12
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def redraw(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.2
            p.copy_((1.0 if "norm" in name else 0.0) + scale * torch.randn(p.shape, generator=g))


@torch.no_grad()
def dump_outputs(name, seed):
    out_dir = os.path.join(MODELS, name)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, T - 3:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    prompt = ids[:1, :6].clone()
    gen = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                         max_new_tokens=16, pad_token_id=0, eos_token_id=None)
    d = {"right.input_ids": ids, "right.attention_mask": mask,
         "right.logits": model(input_ids=ids, attention_mask=mask).logits,
         "greedy.prompt_ids": prompt, "greedy.ids": gen[:, prompt.shape[1]:]}
    save_file({k: v.contiguous() for k, v in d.items()}, os.path.join(out_dir, "hf_outputs.safetensors"))
    return model


def fresh(name):
    out_dir = os.path.join(MODELS, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    return out_dir


def edit_config(out_dir, fn):
    path = os.path.join(out_dir, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    fn(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def qwen2_untied_default():
    out_dir = fresh("layout_qwen2_untied_default")
    m = Qwen2ForCausalLM(Qwen2Config(**COMMON, tie_word_embeddings=False, use_sliding_window=False))
    redraw(m, 31)
    m.save_pretrained(out_dir)
    edit_config(out_dir, lambda c: c.pop("tie_word_embeddings", None))
    model = dump_outputs("layout_qwen2_untied_default", 41)
    assert not model.config.tie_word_embeddings
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def llama_tied_own_head():
    out_dir = fresh("layout_llama_tied_own_head")
    m = LlamaForCausalLM(LlamaConfig(**COMMON, tie_word_embeddings=True))
    redraw(m, 32)
    m.save_pretrained(out_dir)
    path = os.path.join(out_dir, "model.safetensors")
    sd = load_file(path)
    assert "lm_head.weight" not in sd  # save_pretrained drops the tied copy
    sd["lm_head.weight"] = 0.2 * torch.randn(VOCAB, 32, generator=torch.Generator().manual_seed(33))
    save_file(sd, path, metadata={"format": "pt"})
    model = dump_outputs("layout_llama_tied_own_head", 42)
    assert model.config.tie_word_embeddings
    assert torch.equal(model.lm_head.weight, sd["lm_head.weight"])  # the stored head, untied


def mpt_transformers():
    out_dir = fresh("layout_mpt_transformers")
    cfg = MptConfig(d_model=32, n_heads=4, n_layers=2, max_seq_len=64, vocab_size=VOCAB, expansion_ratio=2,
                    no_bias=False, learned_pos_emb=True,
                    attn_config={"alibi": True, "alibi_bias_max": 4, "clip_qkv": 0.6, "softmax_scale": 0.3},
                    layer_norm_epsilon=1e-5, eos_token_id=2, bos_token_id=1, pad_token_id=0)
    m = MptForCausalLM(cfg)
    redraw(m, 34)
    m.save_pretrained(out_dir)
    names = set(load_file(os.path.join(out_dir, "model.safetensors")))
    assert not any(n.endswith(".bias") for n in names) and "transformer.wpe.weight" not in names, names
    with open(os.path.join(out_dir, "config.json")) as f:
        saved = json.load(f)
    assert saved["architectures"] == ["MptForCausalLM"] and "auto_map" not in saved
    assert saved["learned_pos_emb"] and not saved["no_bias"] and saved["attn_config"]["alibi_bias_max"] == 4
    dump_outputs("layout_mpt_transformers", 43)


if __name__ == "__main__":
    qwen2_untied_default()
    llama_tied_own_head()
    mpt_transformers()
    for n in ["layout_qwen2_untied_default", "layout_llama_tied_own_head", "layout_mpt_transformers"]:
        print("wrote", n, sorted(os.listdir(os.path.join(MODELS, n))))
