#!/usr/bin/env python3
"""Writes generate() outputs of transformers 5.17 for the logits processors and generation_config.json
handling, on the existing tiny fixture models (run tools/gen_t5_fixtures.py / gen_llama_fixtures.py first):

    ~/.cache/qlora/venv/bin/python tools/gen_generation_fixtures.py

tests/fixtures/models/t5_v1_1_genconfig/  t5_v1_1's config.json and weights (a symlink) with a
    generation_config.json: num_beams 4, length_penalty 0.6, no_repeat_ngram_size 2, early_stopping true,
    max_length 12; hf_outputs.json holds model.generate(ids, mask) with no arguments (that file governs).
tests/fixtures/infer/generation.json: for t5_v1_1 (the padded batch of its hf_outputs.safetensors) and
    llama_llama3 (its greedy.prompt_ids / prompt_mask), runs of {settings, sequences[, seed, transition]}:
    settings are generation_config keys passed to generate(); sequences are generate()'s output
    (the decoder's without the prompt); seed: torch.manual_seed(seed) right before a sampling run;
    transition: compute_transition_scores(normalize_logits=True) of a greedy run (log-probs of the chosen
    ids after the processors). llama_llama3_prompts: the unpadded prompts (tests/cli uses row 0).
"""

import json
import os
import shutil

import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM, T5ForConditionalGeneration
from transformers.utils import logging as hf_logging

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODELS = os.path.join(REPO, "tests/fixtures/models")
OUT = os.path.join(REPO, "tests/fixtures/infer/generation.json")
T5_EOS, T5_PAD = 1, 0
LLAMA_PAD = 0


def run(model, settings, seed=None, transition=False, **inputs):
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        r = model.generate(**inputs, return_dict_in_generate=True, output_scores=transition, **settings)
    entry = {"settings": settings}
    prompt = 0 if model.config.is_encoder_decoder else inputs["input_ids"].shape[1]
    entry["sequences"] = r.sequences[:, prompt:].tolist()
    if seed is not None:
        entry["seed"] = seed
    if transition:
        entry["transition"] = model.compute_transition_scores(r.sequences, r.scores, normalize_logits=True).tolist()
    return entry


def t5_runs():
    folder = os.path.join(MODELS, "t5_v1_1")
    model = T5ForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
    d = load_file(os.path.join(folder, "hf_outputs.safetensors"))
    inputs = dict(input_ids=d["enc.input_ids"], attention_mask=d["enc.attention_mask"])
    base = dict(max_new_tokens=16, eos_token_id=T5_EOS, pad_token_id=T5_PAD, decoder_start_token_id=0)
    greedy = run(model, dict(base, do_sample=False), **inputs)["sequences"]
    row0 = greedy[0]
    runs = {
        "greedy_scores": run(model, dict(base, do_sample=False), transition=True, **inputs),
        "min_new_tokens": dict(base, min_new_tokens=10),
        "min_length": dict(base, min_length=9),
        # Boundaries: row 0 emits eos as new token 5 (input length 5), which these must still allow.
        "min_new_tokens_4": dict(base, min_new_tokens=4),
        "min_length_5": dict(base, min_length=5),
        "bad_words": dict(base, bad_words_ids=[[row0[1]], [row0[2], row0[3]], [T5_EOS]]),
        "suppress": dict(base, suppress_tokens=[row0[2], greedy[1][2]]),
        "begin_suppress": dict(base, begin_suppress_tokens=[row0[1], greedy[1][1], greedy[2][1]]),
        "repetition_penalty": dict(base, repetition_penalty=1.8),
        "encoder_repetition_penalty": dict(base, encoder_repetition_penalty=1.6),
        "ngram3_penalty": dict(base, no_repeat_ngram_size=3, repetition_penalty=1.3, min_new_tokens=4),
        "beam4_processors": dict(base, num_beams=4, min_new_tokens=5, repetition_penalty=1.4,
                                 bad_words_ids=[[row0[1]]], suppress_tokens=[greedy[1][2]]),
    }
    out = {}
    for name, settings in runs.items():
        out[name] = settings if "sequences" in settings else run(model, dict(settings, do_sample=False), **inputs)
    for seed in (5, 123):
        out[f"sample_seed{seed}"] = run(model, dict(base, do_sample=True, temperature=0.7, top_k=20, top_p=0.9),
                                        seed=seed, **inputs)
    return out


def t5_genconfig():
    src = os.path.join(MODELS, "t5_v1_1")
    folder = os.path.join(MODELS, "t5_v1_1_genconfig")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    shutil.copy(os.path.join(src, "config.json"), folder)
    os.symlink("../t5_v1_1/model.safetensors", os.path.join(folder, "model.safetensors"))
    gen = {"decoder_start_token_id": 0, "eos_token_id": T5_EOS, "pad_token_id": T5_PAD, "num_beams": 4,
           "length_penalty": 0.6, "no_repeat_ngram_size": 2, "early_stopping": True, "max_length": 12,
           "transformers_version": "5.17.0"}
    json.dump(gen, open(os.path.join(folder, "generation_config.json"), "w"), indent=2, sort_keys=True)
    model = T5ForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
    d = load_file(os.path.join(src, "hf_outputs.safetensors"))
    with torch.no_grad():
        r = model.generate(input_ids=d["enc.input_ids"], attention_mask=d["enc.attention_mask"])
        one = model.generate(input_ids=torch.tensor([[5, 17, 42, 9, T5_EOS]]))
        cli = model.generate(input_ids=torch.tensor([[5, 17, 42, 9, T5_EOS]]), num_beams=1, max_new_tokens=6)
    out = {"sequences": r.tolist(), "single_input_ids": [5, 17, 42, 9, T5_EOS], "single": one.tolist(),
           "single_greedy_6": cli.tolist()}
    json.dump(out, open(os.path.join(folder, "hf_outputs.json"), "w"), indent=1)
    print("wrote", folder, "sequences", [len(s) for s in out["sequences"]])


def llama_runs():
    folder = os.path.join(MODELS, "llama_llama3")
    model = LlamaForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    d = load_file(os.path.join(folder, "hf_outputs.safetensors"))
    inputs = dict(input_ids=d["greedy.prompt_ids"], attention_mask=d["greedy.prompt_mask"])
    greedy = d["greedy.ids"].tolist()
    eos = greedy[0][3]  # row 0 emits it at step 4 when nothing bans it
    base = dict(max_new_tokens=16, pad_token_id=LLAMA_PAD, eos_token_id=eos, do_sample=False)
    runs = {
        "eos_only": dict(base),
        "greedy_scores": dict(base, eos_token_id=None),
        "no_repeat_ngram_2": dict(base, eos_token_id=None, no_repeat_ngram_size=2),
        "min_new_tokens": dict(base, min_new_tokens=8),
        "min_length": dict(base, min_length=11),
        # Boundaries: row 0 emits eos as new token 4 (padded prompt 5 + 3 before it), still allowed here.
        "min_new_tokens_3": dict(base, min_new_tokens=3),
        "min_length_8": dict(base, min_length=8),
        "bad_words": dict(base, eos_token_id=None,
                          bad_words_ids=[[greedy[0][0]], [greedy[1][1], greedy[1][2]]]),
        "suppress": dict(base, eos_token_id=None, suppress_tokens=[greedy[0][1], greedy[1][0]]),
        "begin_suppress": dict(base, eos_token_id=None, begin_suppress_tokens=[greedy[0][0], greedy[1][0]]),
        "encoder_repetition_penalty": dict(base, eos_token_id=None, encoder_repetition_penalty=2.0),
        "ngram_penalty": dict(base, eos_token_id=None, no_repeat_ngram_size=3, repetition_penalty=1.3),
    }
    out = {}
    for name, settings in runs.items():
        out[name] = run(model, settings, transition=name == "greedy_scores", **inputs)
    for seed in (5, 123):
        out[f"sample_seed{seed}"] = run(model, dict(base, eos_token_id=None, do_sample=True, temperature=0.8,
                                                    top_k=30, top_p=0.95), seed=seed, **inputs)
    return out


def main():
    hf_logging.set_verbosity_error()
    torch.use_deterministic_algorithms(True)
    t5_genconfig()
    out = {"t5_v1_1": t5_runs(), "llama_llama3": llama_runs()}
    d = load_file(os.path.join(MODELS, "llama_llama3", "hf_outputs.safetensors"))
    ids, mask = d["greedy.prompt_ids"], d["greedy.prompt_mask"]
    prompts = [ids[b][mask[b].bool()].tolist() for b in range(ids.shape[0])]
    json.dump(dict(out, llama_llama3_prompts=prompts), open(OUT, "w"), indent=1)
    for model, runs in out.items():
        for name, e in runs.items():
            print(f"{model} {name}: {e['sequences'][0]}")


if __name__ == "__main__":
    main()
