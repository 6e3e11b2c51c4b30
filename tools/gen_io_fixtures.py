#!/usr/bin/env python3
"""Writes tests/fixtures/io/ with the real Hugging Face libraries (the oracle for src/io/).

Regenerate with one command (pinned env: torch 2.11, transformers 5.17, safetensors 0.8.0):

    /root/.cache/qlora/venv/bin/python tools/gen_io_fixtures.py

Outputs (all small; the folder stays well under 200 KB):
  dtypes.safetensors        every dtype qlora reads, arange-based values, metadata {"format": "pt"}
  no_metadata.safetensors   two tensors, no __metadata__ (save_file(..., metadata=None))
  escapes.safetensors       a non-ASCII tensor name and a metadata value that needs JSON escaping
  multi_metadata.safetensors  several metadata keys (safetensors writes them in random order)
  tiny_llama/               transformers save_pretrained of a random LlamaForCausalLM, sharded in 3
                            (model-0000N-of-00003.safetensors + model.safetensors.index.json),
                            with its real config.json and generation_config.json
  expected.json             what the C++ tests compare against: per file, per tensor: dtype, shape and
                            values (full for the small files; sum + first values for tiny_llama);
                            the generation defaults of transformers; the tiny config's values.

Every tensor in the small files is built by the recipe `recipe(dtype, shape)` below, so the C++
writer test can rebuild the same tensors from expected.json and compare bytes with these files.
"""
import json
import os
import shutil

import safetensors
import safetensors.torch as st
import torch
import transformers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "io")

# safetensors dtype name -> torch dtype, the types qlora maps to at::ScalarType.
DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "U16": torch.uint16,
    "U32": torch.uint32,
    "U64": torch.uint64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


def values_for(dtype_name, numel):
    """Exactly representable values in every dtype, spanning signs and magnitudes."""
    i = list(range(numel))
    if dtype_name == "BOOL":
        return [k % 3 == 0 for k in i]
    if dtype_name in ("F64", "F32"):
        return [(k - numel // 2) * 0.375 + (1e-3 if dtype_name == "F64" else 0.0) for k in i]
    if dtype_name in ("F16", "BF16", "F8_E4M3", "F8_E5M2"):
        return [(k - numel // 2) * 0.5 for k in i]
    if dtype_name == "I64":
        return [(k - numel // 2) * 1_000_000_000_007 for k in i]
    if dtype_name == "I32":
        return [(k - numel // 2) * 100_003 for k in i]
    if dtype_name == "I16":
        return [(k - numel // 2) * 1_001 for k in i]
    if dtype_name == "I8":
        return [(k - numel // 2) * 7 for k in i]
    if dtype_name == "U8":
        return [255 - k * 3 for k in i]
    if dtype_name == "U16":
        return [65535 - k * 257 for k in i]
    if dtype_name == "U32":
        return [4294967295 - k * 65537 for k in i]
    if dtype_name == "U64":
        return [2**53 + k * 3 for k in i]  # stays exact through a JSON double
    raise ValueError(dtype_name)


def recipe(dtype_name, shape):
    numel = 1
    for d in shape:
        numel *= d
    vals = values_for(dtype_name, numel)
    dtype = DTYPES[dtype_name]
    if dtype_name in ("F8_E4M3", "F8_E5M2"):
        t = torch.tensor(vals, dtype=torch.float32).to(dtype)
    elif dtype_name in ("U16", "U32", "U64"):  # every value fits in int64
        t = torch.tensor(vals, dtype=torch.int64).to(dtype)
    else:
        t = torch.tensor(vals, dtype=dtype)
    return t.reshape(shape), vals


def describe(specs):
    """specs: name -> (dtype_name, shape). Returns (tensors, expected entries)."""
    tensors, expected = {}, {}
    for name, (dtype_name, shape) in specs.items():
        t, vals = recipe(dtype_name, shape)
        tensors[name] = t
        expected[name] = {"dtype": dtype_name, "shape": list(shape), "values": vals}
    return tensors, expected


def small_files(expected):
    dtype_specs = {
        "f64": ("F64", [3, 4]),
        "f32": ("F32", [2, 3]),
        "f16": ("F16", [10]),
        "bf16": ("BF16", [2, 5]),
        "i64": ("I64", [5]),
        "i32": ("I32", [2, 3]),
        "i16": ("I16", [4]),
        "i8": ("I8", [8]),
        "u8": ("U8", [6]),
        "bool": ("BOOL", [5]),
        "u16": ("U16", [3]),
        "u32": ("U32", [3]),
        "u64": ("U64", [2]),
        "f8_e4m3": ("F8_E4M3", [4]),
        "f8_e5m2": ("F8_E5M2", [4]),
        "scalar": ("F32", []),
        "empty": ("F32", [0, 3]),
        "a.odd_i8": ("I8", [3]),
    }
    files = {
        "dtypes.safetensors": (dtype_specs, {"format": "pt"}),
        "no_metadata.safetensors": ({"w": ("F32", [2, 2]), "b": ("BF16", [3])}, None),
        "escapes.safetensors": (
            {"emb.\u00e9\u6f22": ("F16", [2]), "x\"y\\z": ("I32", [1])},
            {"note": "quote\" backslash\\ newline\n tab\t ctrl\x01\x1f del\x7f \u00e9 \u6f22 \U0001f600"},
        ),
        "multi_metadata.safetensors": (
            {"w": ("F32", [1])},
            {"format": "pt", "k1": "v1", "k2": "", "\u00e9": "\u6f22"},
        ),
    }
    for fname, (specs, metadata) in files.items():
        tensors, entries = describe(specs)
        st.save_file(tensors, os.path.join(OUT, fname), metadata=metadata)
        expected["files"][fname] = {"metadata": metadata, "tensors": entries}


def tiny_llama(expected):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=1,
        eos_token_id=[2, 3],
        pad_token_id=0,
        do_sample=True,
        temperature=0.7,
        top_k=20,
        top_p=0.9,
        max_new_tokens=32,
        repetition_penalty=1.1,
    )
    folder = os.path.join(OUT, "tiny_llama")
    model.save_pretrained(folder, max_shard_size="8KB")
    shards = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    assert len(shards) == 3, f"expected 3 shards, got {shards}"
    index = json.load(open(os.path.join(folder, "model.safetensors.index.json")))
    tensors = {}
    for name, t in model.state_dict().items():
        flat = t.detach().to(torch.float64).flatten()
        tensors[name] = {
            "dtype": "F32",
            "shape": list(t.shape),
            "shard": index["weight_map"][name],
            "sum": flat.sum().item(),
            "first": flat[:4].tolist(),
        }
    cfg = json.load(open(os.path.join(folder, "config.json")))
    expected["tiny_llama"] = {
        "tensors": tensors,
        "total_size": sum(t.numel() * t.element_size() for t in model.state_dict().values()),
        "config": {k: cfg[k] for k in ("model_type", "hidden_size", "num_attention_heads", "rms_norm_eps",
                                       "tie_word_embeddings", "vocab_size", "architectures")},
        # transformers 5 nests rope_theta under rope_parameters.
        "rope_theta": cfg["rope_parameters"]["rope_theta"],
        "generation": {k: getattr(model.generation_config, k) for k in (
            "bos_token_id", "eos_token_id", "pad_token_id", "do_sample", "temperature", "top_k",
            "top_p", "max_new_tokens", "repetition_penalty")},
    }


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    expected = {
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                     "safetensors": safetensors.__version__},
        "files": {},
    }
    small_files(expected)
    tiny_llama(expected)
    defaults = GenerationConfig._get_default_generation_params()
    expected["generation_defaults"] = {k: defaults[k] for k in (
        "max_length", "do_sample", "early_stopping", "num_beams", "temperature", "top_k", "top_p",
        "repetition_penalty", "length_penalty", "no_repeat_ngram_size")}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
