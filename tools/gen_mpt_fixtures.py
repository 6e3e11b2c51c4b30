#!/usr/bin/env python3
"""Tiny random MPT / PhoGPT decoders and their reference outputs, for tests/models/test_mpt.cpp.

Run with the pinned venv (torch 2.11, transformers 5.17, peft 0.21.2):
    /root/.cache/qlora/venv/bin/python tools/gen_mpt_fixtures.py

PhoGPT ships llm-foundry's MPT code as remote code (MPTForCausalLM via auto_map); transformers' native
MptForCausalLM cannot hold it (no biases, FFN fixed at 4x). So this script carries a small, line-by-line
re-implementation of llm-foundry's MPT forward (mosaicml/llm-foundry at commit 6e3842b, Feb 2024; each
piece cites the file and function it follows), checks it against transformers' MptForCausalLM on a
config both can represent, and dumps its outputs as the oracle for the llm-foundry-only features.

Writes under tests/fixtures/models/ (config.json, model.safetensors, outputs.safetensors):
  mpt_hf/       transformers' native MptForCausalLM (no biases, FFN 4x, 4 heads, tied), outputs from
                transformers itself. The reference re-implementation is run on the same weights and must agree
                (max |diff| printed and asserted).
  mpt_phogpt/   PhoGPT-style llm-foundry config: no_bias false (biases on every Linear and LayerNorm), 6 heads
                (non-power-of-two ALiBi slopes), expansion_ratio 3, tied embeddings, max_seq_len 512; plus
                lora/ (a PEFT adapter on Wqkv, out_proj, up_proj, down_proj with nonzero B), bf16 logits,
                packed (sequence_id) logits, and the ALiBi slopes of 24 heads (PhoGPT-4B) and 6 heads.
  mpt_variant/  the other llm-foundry options: grouped_query_attention (6 heads, kv_n_heads 2), clip_qkv 0.3,
                logit_scale "inv_sqrt_d_model", untied lm_head, learned_pos_emb (transformer.wpe),
                ffn_config.ffn_hidden_size, alibi_bias_max 4, softmax_scale 0.5.
outputs.safetensors of each model holds, for a batch of 2 rows of T = 12 tokens:
  right.{input_ids,attention_mask,logits}   row 1 right-padded by 3
  left.{input_ids,attention_mask,logits}    row 1 left-padded by 3
  cache.logits      the left batch run as a 5-token prefill, a 3-token chunk, then 4 one-token steps with a
                    KV cache, the mask always covering cached + new tokens
  greedy.{prompt_ids,prompt_mask,ids}       32 greedy tokens from a left-padded batch of 2 prompts (eos disabled)
Softmax dtype: transformers 5.17 MptAttention softmaxes scores.float() (then casts to the value dtype);
llm-foundry softmaxes in the dtype of the scores, which are float32 whenever a bias is added because
MPTModel._attn_bias builds the ALiBi / mask bias in float32 (llm-foundry #329). So both are float32 softmax
in every dtype when ALiBi or a mask is present; src/models/mpt.cpp follows llm-foundry (softmax in the scores'
dtype, promoted by the float32 bias). In float32, as here, every path coincides.
Everything runs in float32 on CPU (model.eval()). Weights are drawn from N(0, 0.2) (norm weights around 1,
biases around 0) so that biases, norms and the attention pattern all matter.
"""

import copy
import json
import math
import os
import shutil

import torch
import torch.nn as nn
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import MptConfig, MptForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "tests", "fixtures", "models")
VOCAB = 96
T = 12
PAD = 0

# llmfoundry/models/layers/blocks.py attn_config_defaults (the keys an MPT attention reads).
ATTN_DEFAULTS = {
    "attn_type": "multihead_attention",
    "attn_pdrop": 0.0,
    "attn_impl": "torch",
    "qk_ln": False,
    "qk_gn": False,
    "clip_qkv": None,
    "softmax_scale": None,
    "prefix_lm": False,
    "attn_uses_sequence_id": False,
    "sliding_window_size": -1,
    "alibi": False,
    "alibi_bias_max": 8,
    "rope": False,
}


# ---------------------------------------------------------------------------------------------------------
# The reference: llm-foundry's MPT, attn_impl "torch".
# ---------------------------------------------------------------------------------------------------------


def gen_slopes(n_heads, alibi_bias_max=8):
    # llmfoundry/models/layers/attention.py gen_slopes
    _n_heads = 2 ** math.ceil(math.log2(n_heads))
    m = torch.arange(1, _n_heads + 1, dtype=torch.float32)
    m = m.mul(alibi_bias_max / _n_heads)
    slopes = 1.0 / torch.pow(2, m)
    if _n_heads != n_heads:
        slopes = torch.concat([slopes[1::2], slopes[::2]])[:n_heads]
    return slopes.view(1, n_heads, 1, 1)


def build_alibi_bias(n_heads, seq_len, full=False, alibi_bias_max=8, dtype=None):
    # llmfoundry/models/layers/attention.py build_alibi_bias
    alibi_bias = torch.arange(1 - seq_len, 1, dtype=torch.int32).view(1, 1, 1, seq_len)
    if full:
        alibi_bias = alibi_bias - torch.arange(1 - seq_len, 1, dtype=torch.int32).view(1, 1, seq_len, 1)
        alibi_bias = alibi_bias.abs().mul(-1)
    slopes = gen_slopes(n_heads, alibi_bias_max)
    alibi_bias = alibi_bias * slopes
    return alibi_bias.to(dtype=dtype)


def attn_bias_shape(n_heads, seq_len, alibi, prefix_lm, causal, use_sequence_id):
    # llmfoundry/models/layers/attention.py attn_bias_shape (attn_impl torch)
    if alibi:
        if (prefix_lm or not causal) or use_sequence_id:
            return (1, n_heads, seq_len, seq_len)
        return (1, n_heads, 1, seq_len)
    elif prefix_lm or use_sequence_id:
        return (1, 1, seq_len, seq_len)
    return None


def repeat_kv_for_gqa(hidden, n_rep):
    # llmfoundry/models/layers/attention.py repeat_kv_for_gqa: (b, s, kv_h, d) -> (b, s, kv_h * n_rep, d)
    if n_rep == 1:
        return hidden
    b, s, kv_n_heads, d = hidden.shape
    hidden = hidden[:, :, :, None, :].expand(b, s, kv_n_heads, n_rep, d)
    return hidden.reshape(b, s, kv_n_heads * n_rep, d)


def scaled_multihead_dot_product_attention(query, key, value, n_heads, kv_n_heads, past_key_value=None,
                                           softmax_scale=None, attn_bias=None, key_padding_mask=None,
                                           is_causal=False, dropout_p=0.0, training=False):
    # llmfoundry/models/layers/attention.py scaled_multihead_dot_product_attention; rearrange written as
    # view + permute ('b s (h d) -> b h s d' and 'b s (h d) -> b h d s').
    b, s, _ = query.shape
    q = query.view(b, s, n_heads, -1).permute(0, 2, 1, 3)
    k = key.view(b, s, kv_n_heads, -1).permute(0, 2, 3, 1)
    v = value.view(b, s, kv_n_heads, -1).permute(0, 2, 1, 3)
    if past_key_value is not None:
        # The torch impl caches keys as [b, h, d, s] and values as [b, h, s, d].
        if len(past_key_value) != 0:
            k = torch.cat([past_key_value[0], k], dim=3)
            v = torch.cat([past_key_value[1], v], dim=2)
        past_key_value = (k, v)
    b, _, s_q, d = q.shape
    s_k = k.size(-1)
    if kv_n_heads > 1 and kv_n_heads < n_heads:
        k = repeat_kv_for_gqa(k.transpose(1, 2), n_heads // kv_n_heads).transpose(1, 2)
        v = repeat_kv_for_gqa(v.transpose(1, 2), n_heads // kv_n_heads).transpose(1, 2)
    if softmax_scale is None:
        softmax_scale = 1 / math.sqrt(d)
    attn_weight = q.matmul(k) * softmax_scale
    if attn_bias is not None:
        _s_q = max(0, attn_bias.size(2) - s_q)
        _s_k = max(0, attn_bias.size(3) - s_k)
        attn_bias = attn_bias[:, :, _s_q:, _s_k:]
        attn_weight = attn_weight + attn_bias
    min_val = torch.finfo(q.dtype).min
    if key_padding_mask is not None:
        attn_weight = attn_weight.masked_fill(~key_padding_mask.view((b, 1, 1, s_k)), min_val)
    if is_causal and (not q.size(2) == 1):
        s = max(s_q, s_k)
        causal_mask = attn_weight.new_ones(s, s, dtype=torch.float32)
        causal_mask = causal_mask.tril()
        causal_mask = causal_mask.to(torch.bool)
        causal_mask = ~causal_mask
        causal_mask = causal_mask[-s_q:, -s_k:]
        attn_weight = attn_weight.masked_fill(causal_mask.view(1, 1, s_q, s_k), min_val)
    attn_weight = torch.softmax(attn_weight, dim=-1)
    if dropout_p:
        attn_weight = F.dropout(attn_weight, p=dropout_p, training=training)
    out = attn_weight.to(v.dtype).matmul(v)
    out = out.permute(0, 2, 1, 3).reshape(b, s_q, -1)
    return out, past_key_value


class GroupedQueryAttention(nn.Module):
    # llmfoundry/models/layers/attention.py GroupedQueryAttention (MultiheadAttention: kv_n_heads = n_heads)
    def __init__(self, cfg):
        super().__init__()
        a = cfg["attn_config"]
        self.d_model = cfg["d_model"]
        self.n_heads = cfg["n_heads"]
        self.kv_n_heads = a.get("kv_n_heads", self.n_heads) if a["attn_type"] == "grouped_query_attention" else (
            1 if a["attn_type"] == "multiquery_attention" else self.n_heads)
        self.head_dim = self.d_model // self.n_heads
        self.clip_qkv = a["clip_qkv"]
        self.softmax_scale = a["softmax_scale"]
        if self.softmax_scale is None:
            self.softmax_scale = 1 / math.sqrt(self.d_model / self.n_heads)
        self.attn_dropout_p = a["attn_pdrop"]
        bias = not cfg["no_bias"]
        self.Wqkv = nn.Linear(self.d_model, self.d_model + 2 * self.kv_n_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(self.d_model, self.d_model, bias=bias)

    def forward(self, x, past_key_value=None, attn_bias=None, attention_mask=None, is_causal=True):
        qkv = self.Wqkv(x)
        if self.clip_qkv:
            qkv = qkv.clamp(min=-self.clip_qkv, max=self.clip_qkv)
        query, key, value = qkv.split(
            [self.d_model, self.kv_n_heads * self.head_dim, self.kv_n_heads * self.head_dim], dim=2)
        context, past_key_value = scaled_multihead_dot_product_attention(
            query, key, value, self.n_heads, self.kv_n_heads, past_key_value=past_key_value,
            softmax_scale=self.softmax_scale, attn_bias=attn_bias, key_padding_mask=attention_mask,
            is_causal=is_causal, dropout_p=self.attn_dropout_p, training=self.training)
        return self.out_proj(context), past_key_value


class MPTMLP(nn.Module):
    # llmfoundry/models/layers/ffn.py MPTMLP with _FFN_ACT_FN_DEFAULT (gelu, approximate 'none')
    def __init__(self, cfg):
        super().__init__()
        f = cfg["ffn_config"]
        hidden = f.get("ffn_hidden_size") or int(cfg["d_model"] * cfg["expansion_ratio"])
        bias = not cfg["no_bias"]
        self.up_proj = nn.Linear(cfg["d_model"], hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, cfg["d_model"], bias=bias)

    def forward(self, x):
        return self.down_proj(F.gelu(self.up_proj(x), approximate="none"))


def lp_layer_norm(d_model, no_bias):
    # llmfoundry/models/layers/norm.py LPLayerNorm: F.layer_norm(eps=1e-05) outside autocast; MPTModel
    # removes the bias parameter when no_bias.
    norm = nn.LayerNorm(d_model, eps=1e-5)
    if no_bias:
        norm.register_parameter("bias", None)
    return norm


class MPTBlock(nn.Module):
    # llmfoundry/models/layers/blocks.py MPTBlock (pre-LN, resid_pdrop dropout on both branches)
    def __init__(self, cfg):
        super().__init__()
        self.norm_1 = lp_layer_norm(cfg["d_model"], cfg["no_bias"])
        self.attn = GroupedQueryAttention(cfg)
        self.norm_2 = lp_layer_norm(cfg["d_model"], cfg["no_bias"])
        self.ffn = MPTMLP(cfg)

    def forward(self, x, past_key_value=None, attn_bias=None, attention_mask=None, is_causal=True):
        a = self.norm_1(x)
        b, past_key_value = self.attn(a, past_key_value=past_key_value, attn_bias=attn_bias,
                                      attention_mask=attention_mask, is_causal=is_causal)
        x = x + b
        m = self.norm_2(x)
        n = self.ffn(m)
        x = x + n
        return x, past_key_value


class MPTModel(nn.Module):
    # llmfoundry/models/mpt/modeling_mpt.py MPTModel
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        a = cfg["attn_config"]
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["d_model"])  # SharedEmbedding
        if cfg["learned_pos_emb"]:
            self.wpe = nn.Embedding(cfg["max_seq_len"], cfg["d_model"])
        self.blocks = nn.ModuleList([MPTBlock(cfg) for _ in range(cfg["n_layers"])])
        self.norm_f = lp_layer_norm(cfg["d_model"], cfg["no_bias"])
        self.alibi = a["alibi"]
        self.alibi_bias_max = a["alibi_bias_max"]
        self.attn_uses_sequence_id = a["attn_uses_sequence_id"]
        self.is_causal = True
        self.attn_bias_shape = attn_bias_shape(cfg["n_heads"], cfg["max_seq_len"], self.alibi, False,
                                               self.is_causal, self.attn_uses_sequence_id)
        self.attn_bias = None

    def _attn_bias(self, dtype, attention_mask=None, sequence_id=None):
        # MPTModel._attn_bias (called with dtype=torch.float32 since llm-foundry #329, June 2023)
        if self.attn_bias is None and self.attn_bias_shape:
            self.attn_bias = torch.zeros(self.attn_bias_shape, dtype=dtype)
            if self.alibi:  # build_attn_bias
                self.attn_bias = self.attn_bias.add(build_alibi_bias(
                    self.cfg["n_heads"], self.cfg["max_seq_len"], full=not self.is_causal,
                    alibi_bias_max=self.alibi_bias_max, dtype=dtype))
        attn_bias = self.attn_bias
        if self.attn_uses_sequence_id and sequence_id is not None:
            # apply_sequence_id: the first seq_len rows and columns, then block-diagonal.
            seq_len = sequence_id.shape[-1]
            attn_bias = attn_bias[..., :seq_len, :seq_len]
            cannot_attend = torch.logical_not(torch.eq(sequence_id.view(-1, seq_len, 1),
                                                       sequence_id.view(-1, 1, seq_len))).unsqueeze(1)
            attn_bias = attn_bias.masked_fill(cannot_attend, torch.finfo(attn_bias.dtype).min)
        if attention_mask is not None:
            s_k = attention_mask.shape[-1]
            if attn_bias is None:
                attn_bias = torch.zeros((1, 1, 1, s_k), dtype=dtype)
            else:
                _s_k = max(0, attn_bias.size(-1) - s_k)
                attn_bias = attn_bias[:, :, :, _s_k:]
            attn_bias = attn_bias.masked_fill(~attention_mask.view(-1, 1, 1, s_k), torch.finfo(attn_bias.dtype).min)
        return attn_bias, attention_mask

    def forward(self, input_ids, past_key_values=None, attention_mask=None, sequence_id=None, use_cache=False):
        if attention_mask is not None:
            attention_mask = attention_mask.bool()
        S = input_ids.size(1)
        x = self.wte(input_ids)
        past_position = 0
        if past_key_values is not None and len(past_key_values[0]) != 0:
            past_position = past_key_values[0][0].size(3)  # torch impl: keys are [b, h, d, s]
        if self.cfg["learned_pos_emb"]:
            pos = torch.arange(past_position, S + past_position, dtype=torch.long).unsqueeze(0)
            if attention_mask is not None:
                pos = torch.clamp(pos - torch.cumsum((~attention_mask).to(torch.int32), dim=1)[:, past_position:],
                                  min=0)
            x = x + self.wpe(pos)
        attn_bias, attention_mask = self._attn_bias(torch.float32, attention_mask=attention_mask,
                                                    sequence_id=sequence_id)
        presents = () if use_cache else None
        if use_cache and past_key_values is None:
            past_key_values = [() for _ in range(self.cfg["n_layers"])]
        for b_idx, block in enumerate(self.blocks):
            past_key_value = past_key_values[b_idx] if past_key_values is not None else None
            x, present = block(x, past_key_value=past_key_value, attn_bias=attn_bias,
                               attention_mask=attention_mask, is_causal=self.is_causal)
            if presents is not None:
                presents += (present,)
        return self.norm_f(x), presents


class MPTForCausalLM(nn.Module):
    # llmfoundry/models/mpt/modeling_mpt.py MPTForCausalLM
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.transformer = MPTModel(cfg)
        self.lm_head = None
        if not cfg["tie_word_embeddings"]:
            self.lm_head = nn.Linear(cfg["d_model"], cfg["vocab_size"], bias=False)
        self.logit_scale = cfg["logit_scale"]
        if self.logit_scale == "inv_sqrt_d_model":
            self.logit_scale = 1 / math.sqrt(cfg["d_model"])

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, sequence_id=None,
                use_cache=False, **kwargs):
        h, presents = self.transformer(input_ids, past_key_values=past_key_values,
                                       attention_mask=attention_mask, sequence_id=sequence_id,
                                       use_cache=use_cache)
        if self.lm_head is not None:
            logits = self.lm_head(h)
        else:
            logits = F.linear(h, self.transformer.wte.weight)  # SharedEmbedding(unembed=True)
        if self.logit_scale is not None:
            logits *= self.logit_scale
        return logits, presents


def with_defaults(cfg):
    # MPTConfig._set_config_defaults for attn_config / ffn_config, plus the top-level defaults read here.
    cfg = copy.deepcopy(cfg)
    cfg["attn_config"] = {**ATTN_DEFAULTS, **cfg.get("attn_config", {})}
    cfg["ffn_config"] = {"ffn_type": "mptmlp", **cfg.get("ffn_config", {})}
    cfg.setdefault("expansion_ratio", 4)
    cfg.setdefault("learned_pos_emb", True)
    cfg.setdefault("no_bias", False)
    cfg.setdefault("logit_scale", None)
    cfg.setdefault("tie_word_embeddings", True)
    return cfg


# ---------------------------------------------------------------------------------------------------------
# Inputs and dumps.
# ---------------------------------------------------------------------------------------------------------


def batches(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (2, T), generator=g)
    right_mask = torch.ones(2, T, dtype=torch.long)
    right_mask[1, T - 3:] = 0
    right_ids = ids.masked_fill(right_mask == 0, PAD)
    left_mask = torch.ones(2, T, dtype=torch.long)
    left_mask[1, :3] = 0
    left_ids = ids.masked_fill(left_mask == 0, PAD)
    return right_ids, right_mask, left_ids, left_mask


def greedy_prompts(left_ids):
    prompt_ids = left_ids[:, 4:9].clone()
    prompt_mask = torch.ones_like(prompt_ids)
    prompt_mask[1, :2] = 0
    return prompt_ids.masked_fill(prompt_mask == 0, PAD), prompt_mask


CHUNKS = [(0, 5), (5, 8)] + [(t, t + 1) for t in range(8, T)]  # prefill 5, a 3-token chunk, then 1 at a time


@torch.no_grad()
def ref_outputs(model, seed):
    """The dumps from the llm-foundry reference (what generate() does with its remote code)."""
    right_ids, right_mask, left_ids, left_mask = batches(seed)
    d = {
        "right.input_ids": right_ids,
        "right.attention_mask": right_mask,
        "right.logits": model(right_ids, attention_mask=right_mask)[0],
        "left.input_ids": left_ids,
        "left.attention_mask": left_mask,
        "left.logits": model(left_ids, attention_mask=left_mask)[0],
    }
    past, steps = None, []
    for a, b in CHUNKS:
        logits, past = model(left_ids[:, a:b], past_key_values=past, attention_mask=left_mask[:, :b], use_cache=True)
        steps.append(logits)
    d["cache.logits"] = torch.cat(steps, 1)
    # MPTForCausalLM.prepare_inputs_for_generation + greedy search: the last token and the full mask.
    prompt_ids, prompt_mask = greedy_prompts(left_ids)
    ids, mask = prompt_ids, prompt_mask
    logits, past = model(ids, attention_mask=mask, use_cache=True)
    out = []
    for _ in range(32):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.append(nxt)
        mask = torch.cat([mask, torch.ones_like(nxt)], 1)
        logits, past = model(nxt, past_key_values=past, attention_mask=mask, use_cache=True)
    d["greedy.prompt_ids"] = prompt_ids
    d["greedy.prompt_mask"] = prompt_mask
    d["greedy.ids"] = torch.cat(out, 1)
    return d


@torch.no_grad()
def hf_outputs(model, seed):
    """The same dumps from transformers' MptForCausalLM (eager, fp32 softmax)."""
    right_ids, right_mask, left_ids, left_mask = batches(seed)
    d = {
        "right.input_ids": right_ids,
        "right.attention_mask": right_mask,
        "right.logits": model(input_ids=right_ids, attention_mask=right_mask).logits,
        "left.input_ids": left_ids,
        "left.attention_mask": left_mask,
        "left.logits": model(input_ids=left_ids, attention_mask=left_mask).logits,
    }
    from transformers.cache_utils import DynamicCache

    cache, steps = DynamicCache(config=model.config), []
    for a, b in CHUNKS:
        steps.append(model(input_ids=left_ids[:, a:b], attention_mask=left_mask[:, :b], past_key_values=cache,
                           use_cache=True).logits)
    d["cache.logits"] = torch.cat(steps, 1)
    prompt_ids, prompt_mask = greedy_prompts(left_ids)
    model.generation_config.eos_token_id = None
    gen = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=False, max_new_tokens=32,
                         min_new_tokens=32, pad_token_id=PAD, eos_token_id=None)
    d["greedy.prompt_ids"] = prompt_ids
    d["greedy.prompt_mask"] = prompt_mask
    d["greedy.ids"] = gen[:, prompt_ids.shape[1]:]
    return d


def redraw(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def save(out_dir, d):
    d = {k: v.contiguous() for k, v in d.items()}
    save_file(d, os.path.join(out_dir, "outputs.safetensors"))
    print("wrote", out_dir, sorted(os.listdir(out_dir)))


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


def real(logits, mask):
    return logits[mask.bool()]


# ---------------------------------------------------------------------------------------------------------
# (a) transformers' native MptForCausalLM.
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def build_hf():
    torch.manual_seed(0)
    # alibi true and learned_pos_emb false are what MptModel does whatever the config says; writing them
    # makes the file mean the same to llm-foundry and to qlora.
    config = MptConfig(d_model=32, n_heads=4, n_layers=2, vocab_size=VOCAB, max_seq_len=64, learned_pos_emb=False,
                       attn_config={"alibi": True, "attn_impl": "torch"}, attn_implementation="eager")
    model = MptForCausalLM(config)
    redraw(model, 1)
    model.eval()
    out_dir = os.path.join(MODELS, "mpt_hf")
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    d = hf_outputs(model, 2)
    save(out_dir, d)

    # The reference re-implementation on the same weights (no_bias: true, no biases anywhere) must agree.
    with open(os.path.join(out_dir, "config.json")) as f:
        cfg = with_defaults(json.load(f))
    ref = MPTForCausalLM(cfg)
    missing = ref.load_state_dict({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}, strict=True)
    ref.eval()
    r = ref_outputs(ref, 2)
    for key, mask in [("right.logits", d["right.attention_mask"]), ("left.logits", d["left.attention_mask"]),
                      ("cache.logits", d["left.attention_mask"])]:
        diff = max_diff(real(r[key], mask), real(d[key], mask))
        print(f"  reference vs transformers MptForCausalLM {key:14s} max|diff| at real tokens = {diff:.3g}")
        assert diff < 1e-5, key
    assert torch.equal(r["greedy.ids"], d["greedy.ids"]), "greedy tokens differ between reference and transformers"
    print("  reference vs transformers greedy 32 tokens: identical")
    del missing


# ---------------------------------------------------------------------------------------------------------
# (b) llm-foundry configs (PhoGPT style and the other options).
# ---------------------------------------------------------------------------------------------------------

PHOGPT = {
    "architectures": ["MPTForCausalLM"],
    "model_type": "mpt",
    "d_model": 48,
    "n_heads": 6,
    "n_layers": 2,
    "expansion_ratio": 3,
    "max_seq_len": 512,
    "vocab_size": VOCAB,
    "attn_config": {
        "alibi": True,
        "alibi_bias_max": 8,
        "attn_impl": "torch",
        "attn_pdrop": 0.0,
        "attn_type": "multihead_attention",
        "attn_uses_sequence_id": False,
        "clip_qkv": None,
        "prefix_lm": False,
        "qk_ln": False,
        "softmax_scale": None,
        "rope": False,
    },
    "ffn_config": {"ffn_type": "mptmlp"},
    "learned_pos_emb": False,
    "logit_scale": None,
    "no_bias": False,
    "embedding_fraction": 1.0,
    "norm_type": "low_precision_layernorm",
    "emb_pdrop": 0.0,
    "resid_pdrop": 0.0,
    "init_device": "cpu",
    "use_cache": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": PAD,
}

VARIANT = copy.deepcopy(PHOGPT)
VARIANT.update({
    "max_seq_len": 48,
    "learned_pos_emb": True,
    "logit_scale": "inv_sqrt_d_model",
    "tie_word_embeddings": False,
    "ffn_config": {"ffn_type": "mptmlp", "ffn_hidden_size": 80},
})
VARIANT["attn_config"].update({"attn_type": "grouped_query_attention", "kv_n_heads": 2, "clip_qkv": 0.3,
                               "alibi_bias_max": 4, "softmax_scale": 0.5})


def write_llmfoundry(name, cfg, seed):
    torch.manual_seed(seed)
    model = MPTForCausalLM(with_defaults(cfg))
    redraw(model, seed + 1)
    model.eval()
    out_dir = os.path.join(MODELS, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})
    return model, out_dir


@torch.no_grad()
def build_phogpt():
    model, out_dir = write_llmfoundry("mpt_phogpt", PHOGPT, 10)
    d = ref_outputs(model, 12)
    ids, mask = d["right.input_ids"], d["right.attention_mask"]

    # ALiBi slopes of PhoGPT-4B (24 heads: exponents 0.5..8.0 step 0.5, then 0.25..3.75 step 0.5) and of 6 heads.
    s24 = gen_slopes(24, 8).flatten()
    expected = torch.tensor([0.5 * i for i in range(1, 17)] + [0.25 + 0.5 * i for i in range(8)])
    assert torch.allclose(s24, torch.pow(2.0, -expected), rtol=1e-6, atol=0), "gen_slopes(24) exponents"
    d["alibi.slopes_24"] = s24
    d["alibi.slopes_6"] = gen_slopes(6, 8).flatten()

    # Packing with attn_uses_sequence_id: segments [0, 5) and [5, 12) of row 0.
    packed_cfg = with_defaults(PHOGPT)
    packed_cfg["attn_config"]["attn_uses_sequence_id"] = True
    packed = MPTForCausalLM(packed_cfg)
    packed.load_state_dict(model.state_dict())
    packed.eval()
    seq = torch.tensor([[0] * 5 + [1] * 7])
    d["packed.input_ids"] = ids[:1].clone()
    d["packed.segment_ids"] = seq
    d["packed.logits"] = packed(ids[:1], attention_mask=torch.ones_like(ids[:1]), sequence_id=seq)[0]
    alone = torch.cat([model(ids[:1, :5])[0], model(ids[:1, 5:])[0]], 1)
    print(f"  packed (sequence_id) vs each segment alone: max|diff| = {max_diff(d['packed.logits'], alone):.3g}")

    # bf16: the same module cast to bfloat16 (llm-foundry keeps the ALiBi bias in float32).
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    bf16.transformer.attn_bias = None
    d["bf16.logits"] = bf16(ids, attention_mask=mask)[0]

    # PEFT LoRA on the four projections; init_lora_weights=False gives B nn.Linear's default init (nonzero).
    lcfg = LoraConfig(r=4, lora_alpha=8, target_modules=["Wqkv", "out_proj", "up_proj", "down_proj"],
                      init_lora_weights=False)
    torch.manual_seed(7)
    peft_model = get_peft_model(model, lcfg)
    peft_model.eval()
    d["lora.logits"] = peft_model(input_ids=ids, attention_mask=mask)[0]
    peft_model.save_pretrained(os.path.join(out_dir, "lora"))
    os.remove(os.path.join(out_dir, "lora", "README.md"))  # PEFT's model-card stub, not read by anything
    # target_modules is a Python set (hash-seed order): sort it so that reruns write identical bytes.
    cfg_path = os.path.join(out_dir, "lora", "adapter_config.json")
    with open(cfg_path) as f:
        adapter_cfg = json.load(f)
    adapter_cfg["target_modules"] = sorted(adapter_cfg["target_modules"])
    with open(cfg_path, "w") as f:
        json.dump(adapter_cfg, f, indent=2, sort_keys=True)
    save(out_dir, d)


@torch.no_grad()
def build_variant():
    model, out_dir = write_llmfoundry("mpt_variant", VARIANT, 20)
    d = ref_outputs(model, 22)
    save(out_dir, d)


if __name__ == "__main__":
    build_hf()
    build_phogpt()
    build_variant()
