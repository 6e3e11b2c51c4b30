#!/usr/bin/env python3
"""Pre-quantized bitsandbytes checkpoints as transformers 5.17 + bitsandbytes 0.50.2 (CPU) save them, for
tests/tasks/test_prequantized.cpp: loading them (4-bit and int8 layouts, config.json quantization_config) and
writing them (`qlora export --quantize`) must agree with what transformers does.

  tests/fixtures/models/llama_llama3-bnb-nf4/   NF4, double quantization, compute float32
  tests/fixtures/models/llama_llama3-bnb-fp4/   FP4, no double quantization, compute float32
  tests/fixtures/models/llama_llama3-bnb-int8/  LLM.int8 (Int8Params row-wise absmax, threshold 6.0)
each holding save_pretrained's config.json, generation_config.json and model.safetensors of
tests/fixtures/models/llama_llama3 loaded with that BitsAndBytesConfig, plus hf_outputs.safetensors:
  input_ids [2, 12]   random ids (no padding)
  logits    [2, 12, 96] the quantized model's eval-mode forward (float32 activations)
and, NF4 + double quantization only, for the other loaders:
  tests/fixtures/models/t5_v1_1-bnb-nf4/      T5ForConditionalGeneration (transformers keeps the "wo" projections
                                             dense: _keep_in_fp32_modules); hf_outputs: input_ids [2, 7],
                                             decoder_input_ids [2, 5], logits
  tests/fixtures/models/tiny-xlmr-qa-bnb-nf4/ XLMRobertaForQuestionAnswering (qa_outputs quantized too, as
                                             transformers does); hf_outputs: input_ids [2, 9], start_logits,
                                             end_logits

Oracle policy as in tools/gen_bnb_fixtures.py: the 4-bit tensors are what CUDA bitsandbytes writes (the CPU
backend's double-quant table lookup can pick a farther code, class 3 there), so every 4-bit weight saved by the
CPU run is replaced by quantize_case's CUDA-semantics tensors (the number patched goes to stdout), and the logits
come from transformers loading the patched folder.

Run: ~/.cache/qlora/venv/bin/python tools/gen_prequant_fixtures.py, then tools/gen_decoder_qlora_fixtures.py (which
writes into llama_llama3-bnb-nf4/qlora/, removed here with the folder).
"""

import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM, BitsAndBytesConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_bnb_fixtures import quantize_case  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")
BASE = os.path.join(ROOT, "llama_llama3")

CONFIGS = {
    "nf4": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.float32),
    "fp4": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False,
                              bnb_4bit_compute_dtype=torch.float32),
    "int8": BitsAndBytesConfig(load_in_8bit=True),
}


def patch_to_cuda_semantics(folder, q, base=BASE):
    path = os.path.join(folder, "model.safetensors")
    state = load_file(path)
    dense = load_file(os.path.join(base, "model.safetensors"))
    patched = 0
    for key in sorted(k for k in state if k.endswith(".weight.quant_map")):
        w = key[: -len(".quant_map")]
        t, n = quantize_case(dense[w], 64, q.bnb_4bit_quant_type)
        patched += n
        state[w] = t["packed"]
        if q.bnb_4bit_use_double_quant:
            state[w + ".absmax"] = t["qabsmax"]
            state[w + ".nested_absmax"] = t["nested_absmax"]
        else:
            state[w + ".absmax"] = t["absmax"]
    save_file(state, path, metadata={"format": "pt"})
    print(f"{folder}: {patched} elements patched to CUDA semantics")


def main():
    g = torch.Generator().manual_seed(11)
    input_ids = torch.randint(3, 96, (2, 12), generator=g)
    for name, q in CONFIGS.items():
        out = os.path.join(ROOT, f"llama_llama3-bnb-{name}")
        shutil.rmtree(out, ignore_errors=True)
        model = AutoModelForCausalLM.from_pretrained(BASE, quantization_config=q, device_map="cpu",
                                                     attn_implementation="eager")
        model.save_pretrained(out)
        if q.load_in_4bit:
            patch_to_cuda_semantics(out, q)
            model = AutoModelForCausalLM.from_pretrained(out, device_map="cpu", attn_implementation="eager")
        model.eval()
        with torch.no_grad():
            logits = model(input_ids).logits.float()
        save_file({"input_ids": input_ids, "logits": logits.contiguous()},
                  os.path.join(out, "hf_outputs.safetensors"))
        print(name, sorted(os.listdir(out)))
    other_families(CONFIGS["nf4"])


def other_families(q):
    g = torch.Generator().manual_seed(12)
    for base, cls in (("t5_v1_1", AutoModelForSeq2SeqLM), ("tiny-xlmr-qa", AutoModelForQuestionAnswering)):
        src = os.path.join(ROOT, base)
        out = os.path.join(ROOT, f"{base}-bnb-nf4")
        shutil.rmtree(out, ignore_errors=True)
        model = cls.from_pretrained(src, quantization_config=q, device_map="cpu", attn_implementation="eager")
        model.save_pretrained(out)
        for extra in ("generation_config.json",):
            if os.path.exists(os.path.join(out, extra)) and base == "tiny-xlmr-qa":
                os.remove(os.path.join(out, extra))
        patch_to_cuda_semantics(out, q, base=src)
        model = cls.from_pretrained(out, device_map="cpu", attn_implementation="eager")
        model.eval()
        with torch.no_grad():
            if cls is AutoModelForSeq2SeqLM:
                input_ids = torch.randint(3, model.config.vocab_size, (2, 7), generator=g)
                decoder_input_ids = torch.randint(3, model.config.vocab_size, (2, 5), generator=g)
                decoder_input_ids[:, 0] = model.config.decoder_start_token_id
                logits = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
                tensors = {"input_ids": input_ids, "decoder_input_ids": decoder_input_ids, "logits": logits}
            else:
                input_ids = torch.randint(3, 200, (2, 9), generator=g)
                input_ids[:, 0] = 0
                o = model(input_ids=input_ids)
                tensors = {"input_ids": input_ids, "start_logits": o.start_logits, "end_logits": o.end_logits}
        save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "hf_outputs.safetensors"))
        print(base, sorted(os.listdir(out)))


if __name__ == "__main__":
    main()
