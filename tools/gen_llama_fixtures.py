#!/usr/bin/env python3
"""Tiny random LLaMA / Mistral / Qwen2 decoders and their Hugging Face outputs, for
tests/models/test_llama.cpp and tests/infer/test_generate.cpp.

Run with the pinned venv (torch 2.11, transformers 5.17, peft 0.21.2):
    /root/.cache/qlora/venv/bin/python tools/gen_llama_fixtures.py

Writes under tests/fixtures/models/ (config.json, generation_config.json, model.safetensors, hf_outputs.safetensors):
  llama_llama3/   LlamaForCausalLM, GQA 4 heads / 2 kv heads, rope_scaling llama3 (all three wavelength bands),
                  untied lm_head; plus lora/ (a PEFT adapter on q_proj, v_proj with nonzero B) and bf16 logits
  llama_linear/   LlamaForCausalLM, rope_scaling linear, attention_bias + mlp_bias, tied embeddings, MHA
  llama_dynamic/  LlamaForCausalLM, rope_scaling dynamic with max_position_embeddings 8 < T (scaling active)
  mistral_sw/     MistralForCausalLM, sliding_window 4 < T = 12, explicit head_dim 16 != hidden / heads
  qwen2_tied/     Qwen2ForCausalLM (q/k/v bias, tied embeddings, use_sliding_window false)
and tests/fixtures/infer/processors.safetensors: transformers' logits processors applied to random scores.

hf_outputs.safetensors of each model holds, for a batch of 2 rows of T = 12 tokens:
  right.{input_ids,attention_mask,logits}          row 1 right-padded by 3
  left.{input_ids,attention_mask,position_ids,logits}  row 1 left-padded by 3; position_ids as generate makes
                                                   them (cumsum(mask) - 1, pads 0)
  cache.logits                                     the left batch run as a 5-token prefill then 7 one-token
                                                   decode steps with a DynamicCache
  packed.{input_ids,segment_ids,logits}            one row holding segments of 5 and 7 tokens; the reference is
                                                   each segment run alone (what packing must reproduce)
  greedy.{prompt_ids,prompt_mask,ids}              model.generate(do_sample=False, max_new_tokens=32) on a
                                                   left-padded batch of 2 prompts (eos disabled, pad 0)
Every model runs in float32 with attn_implementation="eager" and model.eval(). Weights are re-drawn from
N(0, 0.2) (norm weights around 1) so that biases, norms and the attention pattern all matter.
"""

import json
import os
import shutil

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.cache_utils import DynamicCache
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "tests", "fixtures", "models")
INFER = os.path.join(HERE, "..", "tests", "fixtures", "infer")
VOCAB = 96
T = 12
PAD = 0
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    hidden_act="silu",
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=PAD,
    attn_implementation="eager",
)


def redraw(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def batches(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (2, T), generator=g)
    right_mask = torch.ones(2, T, dtype=torch.long)
    right_mask[1, T - 3 :] = 0
    right_ids = ids.masked_fill(right_mask == 0, PAD)
    left_mask = torch.ones(2, T, dtype=torch.long)
    left_mask[1, :3] = 0
    left_ids = ids.masked_fill(left_mask == 0, PAD)
    return right_ids, right_mask, left_ids, left_mask


def generate_positions(mask):
    # GenerationMixin._prepare_position_ids_for_generation (transformers 5.17).
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


@torch.no_grad()
def dump_model(name, model, seed, extra=None):
    model.eval()
    out_dir = os.path.join(MODELS, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    right_ids, right_mask, left_ids, left_mask = batches(seed)
    left_pos = generate_positions(left_mask)
    d = {
        "right.input_ids": right_ids,
        "right.attention_mask": right_mask,
        "right.logits": model(input_ids=right_ids, attention_mask=right_mask).logits,
        "left.input_ids": left_ids,
        "left.attention_mask": left_mask,
        "left.position_ids": left_pos,
        "left.logits": model(input_ids=left_ids, attention_mask=left_mask, position_ids=left_pos).logits,
    }
    # Prefill 5 tokens, then one token per step, the mask always covering cached + new tokens.
    cache = DynamicCache(config=model.config)
    steps = [model(input_ids=left_ids[:, :5], attention_mask=left_mask[:, :5], position_ids=left_pos[:, :5],
                   past_key_values=cache, use_cache=True).logits]
    for t in range(5, T):
        steps.append(model(input_ids=left_ids[:, t : t + 1], attention_mask=left_mask[:, : t + 1],
                           position_ids=left_pos[:, t : t + 1], past_key_values=cache, use_cache=True).logits)
    d["cache.logits"] = torch.cat(steps, dim=1)
    # Packing: segments [0, 5) and [5, 12) of row 0, each as its own sequence.
    packed = right_ids[:1].clone()
    d["packed.input_ids"] = packed
    d["packed.segment_ids"] = torch.tensor([[0] * 5 + [1] * 7])
    d["packed.logits"] = torch.cat([model(input_ids=packed[:, :5]).logits, model(input_ids=packed[:, 5:]).logits], 1)
    # Greedy generation from a left-padded batch (prompts of 5 and 3 tokens), eos disabled.
    prompt_ids = left_ids[:, 4:9].clone()
    prompt_mask = torch.ones_like(prompt_ids)
    prompt_mask[1, :2] = 0
    prompt_ids = prompt_ids.masked_fill(prompt_mask == 0, PAD)
    model.generation_config.eos_token_id = None
    gen = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=False, max_new_tokens=32,
                         pad_token_id=PAD, eos_token_id=None)
    d["greedy.prompt_ids"] = prompt_ids
    d["greedy.prompt_mask"] = prompt_mask
    d["greedy.ids"] = gen[:, prompt_ids.shape[1] :]
    if extra:
        d.update(extra(model, right_ids, right_mask, out_dir))
    d = {k: v.contiguous() for k, v in d.items()}
    save_file(d, os.path.join(out_dir, "hf_outputs.safetensors"))
    print("wrote", out_dir, sorted(os.listdir(out_dir)))


@torch.no_grad()
def llama3_extra(model, ids, mask, out_dir):
    out = {}
    # from_pretrained(dtype=bf16) keeps the RoPE inv_freq buffer in fp32 (model.to(bf16) would round it).
    bf16 = LlamaForCausalLM.from_pretrained(out_dir, dtype=torch.bfloat16, attn_implementation="eager")
    bf16.eval()
    out["bf16.logits"] = bf16(input_ids=ids, attention_mask=mask).logits
    # PEFT LoRA on q_proj, v_proj; init_lora_weights=False gives B nn.Linear's default init (nonzero).
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                     task_type="CAUSAL_LM")
    torch.manual_seed(7)
    peft_model = get_peft_model(model, cfg)
    peft_model.eval()
    out["lora.logits"] = peft_model(input_ids=ids, attention_mask=mask).logits
    peft_model.save_pretrained(os.path.join(out_dir, "lora"))
    os.remove(os.path.join(out_dir, "lora", "README.md"))
    peft_model.unload()
    return out


def build():
    torch.manual_seed(0)
    m = LlamaForCausalLM(LlamaConfig(**COMMON, num_key_value_heads=2, max_position_embeddings=64, rope_theta=100.0,
                                     rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
                                     tie_word_embeddings=False, rms_norm_eps=1e-5))
    redraw(m, 1)
    dump_model("llama_llama3", m, 11, llama3_extra)

    m = LlamaForCausalLM(LlamaConfig(**COMMON, num_key_value_heads=4, max_position_embeddings=64,
                                     rope_scaling={"rope_type": "linear", "factor": 2.0}, attention_bias=True,
                                     mlp_bias=True, tie_word_embeddings=True, rms_norm_eps=1e-6))
    redraw(m, 2)
    dump_model("llama_linear", m, 12)

    m = LlamaForCausalLM(LlamaConfig(**COMMON, num_key_value_heads=2, max_position_embeddings=8,
                                     rope_scaling={"rope_type": "dynamic", "factor": 2.0}, tie_word_embeddings=False))
    redraw(m, 3)
    dump_model("llama_dynamic", m, 13)

    m = MistralForCausalLM(MistralConfig(**COMMON, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                                         sliding_window=4, tie_word_embeddings=False))
    redraw(m, 4)
    dump_model("mistral_sw", m, 14)

    m = Qwen2ForCausalLM(Qwen2Config(**COMMON, num_key_value_heads=2, max_position_embeddings=64,
                                     rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False,
                                     rms_norm_eps=1e-6))
    redraw(m, 5)
    dump_model("qwen2_tied", m, 15)


@torch.no_grad()
def processors():
    # Scores with ties and a wide range; input_ids with repeats (the penalty gathers each id once).
    g = torch.Generator().manual_seed(21)
    V = 40
    scores = torch.randn(3, V, generator=g) * 3
    scores[1, 5] = scores[1, 6] = scores[1].max() + 1  # a tie at the top
    ids = torch.randint(0, V, (3, 8), generator=g)
    ids[0, :3] = 4
    d = {"scores": scores, "input_ids": ids}
    d["repetition_penalty_1.3"] = RepetitionPenaltyLogitsProcessor(1.3)(ids, scores.clone())
    d["repetition_penalty_0.8"] = RepetitionPenaltyLogitsProcessor(0.8)(ids, scores.clone())
    d["temperature_0.7"] = TemperatureLogitsWarper(0.7)(ids, scores.clone())
    d["top_k_5"] = TopKLogitsWarper(5)(ids, scores.clone())
    d["top_k_1"] = TopKLogitsWarper(1)(ids, scores.clone())
    d["top_p_0.8"] = TopPLogitsWarper(0.8)(ids, scores.clone())
    d["top_p_0.3"] = TopPLogitsWarper(0.3)(ids, scores.clone())
    # The sampling chain in generate's order: repetition penalty, temperature, top-k, top-p.
    s = RepetitionPenaltyLogitsProcessor(1.2)(ids, scores.clone())
    s = TemperatureLogitsWarper(0.9)(ids, s)
    s = TopKLogitsWarper(10)(ids, s)
    d["chain"] = TopPLogitsWarper(0.9)(ids, s)
    os.makedirs(INFER, exist_ok=True)
    path = os.path.join(INFER, "processors.safetensors")
    save_file({k: v.contiguous() for k, v in d.items()}, path)
    meta = {"chain": {"repetition_penalty": 1.2, "temperature": 0.9, "top_k": 10, "top_p": 0.9}}
    with open(os.path.join(INFER, "processors.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    build()
    processors()
