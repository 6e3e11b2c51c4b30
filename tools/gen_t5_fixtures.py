#!/usr/bin/env python3
"""Writes tiny random T5-family fixtures (transformers 5.17, peft 0.21.2) for tests/models/test_t5.cpp and
tests/infer/test_seq2seq_generate.cpp:

    ~/.cache/qlora/venv/bin/python tools/gen_t5_fixtures.py

tests/fixtures/models/
  t5_v1_0/   T5 v1.0 / ViT5 style: feed_forward_proj "relu", no tie key in config.json (tied, rescaled lm input)
  t5_v1_1/   T5 v1.1 / Flan-T5 style: "gated-gelu", tie_word_embeddings false, separate lm_head
  t5_mt5/    MT5ForConditionalGeneration: "gated-gelu", separate lm_head
  t5_v1_1_lora/  a PEFT LoRA adapter (r 4, alpha 8, PEFT's default t5 targets q, v; B nonzero) on t5_v1_1
each with config.json, model.safetensors (except the adapter) and hf_outputs.safetensors / hf_outputs.json:
  enc.input_ids / enc.attention_mask [3, T]  padded batch, T = 40 (the relative-position buckets past
                                             max_exact are used), encoder_hidden [3, T, C]
  labels [3, L] with -100 tails, decoder_input_ids (HF _shift_right), logits, loss
  bf16.logits / fp16.logits: the same with from_pretrained(dtype=...) (fp16 keeps wo in fp32, as HF does)
  fp16_overflow.logits (t5_v1_0): fp16 with encoder block 0's SelfAttention.o scaled by OVERFLOW_SCALE, so
                                  that its output overflows to inf and T5Block's clamp is exercised
  buckets.bidirectional / buckets.causal: _relative_position_bucket(rel) for rel = -200..200
  hf_outputs.json: generate() results: greedy (32 new tokens) and beam searches, ids padded as HF returns
The LoRA folder's hf_outputs.safetensors holds logits, loss and the grad of every lora_A / lora_B.
"""

import json
import os
import shutil

import torch
from peft import LoraConfig, TaskType, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import MT5Config, MT5ForConditionalGeneration, T5Config, T5ForConditionalGeneration
from transformers.models.t5.modeling_t5 import T5Attention
from transformers.utils import logging as hf_logging

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(REPO, "tests/fixtures/models")
EOS = 1
OVERFLOW_SCALE = 30000.0  # on encoder block 0's SelfAttention.o in fp16 (t5_v1_0 only): fp16_overflow.logits
SHAPE = dict(vocab_size=120, d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2,
             relative_attention_num_buckets=32, relative_attention_max_distance=128,
             decoder_start_token_id=0, pad_token_id=0, eos_token_id=EOS)


def build(kind, seed):
    """A random model saved to OUT/<kind>, with the config.json a Hub checkpoint of that family has."""
    torch.manual_seed(seed)
    gated = kind != "t5_v1_0"
    cfg_cls, model_cls = (MT5Config, MT5ForConditionalGeneration) if kind == "t5_mt5" else (
        T5Config, T5ForConditionalGeneration)
    config = cfg_cls(feed_forward_proj="gated-gelu" if gated else "relu", **SHAPE)
    model = model_cls(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:  # exercise the RMS-norm weight (init is all ones)
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            if "relative_attention_bias" in name:
                p.copy_(torch.randn_like(p))
        # EOS is made a likely token so that beams finish before max_new_tokens and the finishing rules run.
        model.shared.weight[EOS] *= 2.5
    folder = os.path.join(OUT, kind)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    cfg_path = os.path.join(folder, "config.json")
    cfg = json.load(open(cfg_path))
    cfg.pop("scale_decoder_outputs", None)  # Hub configs (written by transformers 4) have no such key
    cfg.pop("tie_word_embeddings", None)
    if gated:  # v1.1 / Flan / mT5: a separate lm_head, "tie_word_embeddings": false
        cfg["tie_word_embeddings"] = False
        weights = load_file(os.path.join(folder, "model.safetensors"))
        g = torch.Generator().manual_seed(seed + 100)
        lm_head = torch.randn(weights["shared.weight"].shape, generator=g) * 0.5
        lm_head[EOS] *= 2.5
        weights["lm_head.weight"] = lm_head
        save_file(weights, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    json.dump(cfg, open(cfg_path, "w"), indent=2, sort_keys=True)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(folder, extra)):
            os.remove(os.path.join(folder, extra))
    return folder, model_cls


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = [40, 23, 9]
    ids = torch.zeros(3, 40, dtype=torch.long)
    mask = torch.zeros(3, 40, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n - 1] = torch.randint(3, 120, (n - 1,), generator=g)
        ids[b, n - 1] = EOS
        mask[b, :n] = 1
    labels = torch.randint(2, 120, (3, 12), generator=g)
    labels[1, 8:] = -100
    labels[2, 4:] = -100
    labels[0, 11] = EOS
    return ids, mask, labels


def load(folder, model_cls, dtype=torch.float32):
    return model_cls.from_pretrained(folder, dtype=dtype, attn_implementation="eager").eval()


def generations(model, ids, mask):
    """generate() with each decoding setting the C++ tests replay; also the smallest greedy top-2 logit gap."""
    runs = {
        "greedy": dict(num_beams=1),
        "beam4_lp1": dict(num_beams=4, length_penalty=1.0, early_stopping=False),
        "beam4_lp06_early": dict(num_beams=4, length_penalty=0.6, early_stopping=True),
        "beam4_never": dict(num_beams=4, length_penalty=1.0, early_stopping="never"),
        "beam4_ngram2": dict(num_beams=4, no_repeat_ngram_size=2),
        "greedy_ngram2": dict(num_beams=1, no_repeat_ngram_size=2),
    }
    out = {}
    for name, kw in runs.items():
        with torch.no_grad():
            r = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=32, do_sample=False,
                               eos_token_id=EOS, pad_token_id=0, decoder_start_token_id=0,
                               return_dict_in_generate=True, output_scores=True, **kw)
        seq = r.sequences
        entry = {"settings": {k: v for k, v in kw.items()}, "sequences": seq.tolist()}
        if kw["num_beams"] == 1:
            gaps = []
            for step, s in enumerate(r.scores):
                top = torch.topk(s, 2).values
                live = (seq[:, 1:step + 1] != EOS).all(dim=1)  # rows not finished before this step
                gaps += (top[:, 0] - top[:, 1])[live].tolist()
            entry["min_top2_gap"] = min(gaps)
        else:
            entry["sequences_scores"] = r.sequences_scores.tolist()
        out[name] = entry
    return out


def dump(kind, seed):
    folder, model_cls = build(kind, seed)
    model = load(folder, model_cls)
    ids, mask, labels = inputs(seed + 1)
    t = {"enc.input_ids": ids, "enc.attention_mask": mask, "labels": labels,
         "decoder_input_ids": model._shift_right(labels)}
    with torch.no_grad():
        t["encoder_hidden"] = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        r = model(input_ids=ids, attention_mask=mask, labels=labels)
        t["logits"], t["loss"] = r.logits, r.loss
        for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            half = load(folder, model_cls, dtype)
            r = half(input_ids=ids, attention_mask=mask, labels=labels)
            t[name + ".logits"] = r.logits.float()
        if kind == "t5_v1_0":  # fp16 overflow: block 0's attention output passes 65504 and HF clamps it
            half = load(folder, model_cls, torch.float16)
            half.encoder.block[0].layer[0].SelfAttention.o.weight.mul_(OVERFLOW_SCALE)
            seen = []
            half.encoder.block[0].layer[0].register_forward_hook(lambda m, i, o: seen.append(o[0].isinf().any()))
            r = half(input_ids=ids, attention_mask=mask, labels=labels)
            assert seen[0] and not r.logits.isnan().any(), "the overflow case must overflow, and HF must clamp it"
            t["fp16_overflow.logits"] = r.logits.float()
        rel = torch.arange(-200, 201)
        for name, bidir in (("bidirectional", True), ("causal", False)):
            t["buckets." + name] = T5Attention._relative_position_bucket(rel, bidir, 32, 128)
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(folder, "hf_outputs.safetensors"))
    gen = generations(model, ids, mask)
    json.dump(gen, open(os.path.join(folder, "hf_outputs.json"), "w"), indent=1)
    print(f"wrote {folder}: loss {t['loss'].item():.6f}")
    for name, e in gen.items():
        lens = [len([x for x in s]) for s in e["sequences"]]
        eos_rows = sum(1 for s in e["sequences"] if EOS in s[1:])
        gap = f" min greedy top-2 gap {e['min_top2_gap']:.4f}" if "min_top2_gap" in e else ""
        print(f"  {name}: {len(e['sequences'])} x {lens[0]} tokens, {eos_rows} rows holding eos (beam outputs are padded with eos){gap}")
    return folder, model_cls, ids, mask, labels


def dump_lora(folder, model_cls, ids, mask, labels):
    torch.manual_seed(7)
    model = load(folder, model_cls)
    config = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=4, lora_alpha=8, lora_dropout=0.0)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.3 * torch.randn_like(p))
    lora_dir = folder + "_lora"
    shutil.rmtree(lora_dir, ignore_errors=True)
    peft_model.save_pretrained(lora_dir)
    os.remove(os.path.join(lora_dir, "README.md"))  # PEFT's model card template: not a fixture
    cfg_path = os.path.join(lora_dir, "adapter_config.json")
    cfg = json.load(open(cfg_path))
    cfg["base_model_name_or_path"] = os.path.basename(folder)  # no machine-specific path in the fixture
    json.dump(cfg, open(cfg_path, "w"), indent=2, sort_keys=True)
    r = peft_model(input_ids=ids, attention_mask=mask, labels=labels)
    r.loss.backward()
    t = {"logits": r.logits.detach(), "loss": r.loss.detach()}
    prefix = "base_model.model."
    for name, p in peft_model.named_parameters():
        if p.requires_grad:
            t["grad." + name[len(prefix):]] = p.grad
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(lora_dir, "hf_outputs.safetensors"))
    print(f"wrote {lora_dir}: targets {sorted(config.target_modules or [])}, loss {r.loss.item():.6f}, "
          f"{sum(k.startswith('grad.') for k in t)} grads")


def main():
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    dump("t5_v1_0", 11)
    v11 = dump("t5_v1_1", 22)
    dump("t5_mt5", 33)
    dump_lora(*v11)


if __name__ == "__main__":
    main()
