#!/usr/bin/env python3
"""Writes tests/fixtures/data/sft/: SFT (instruction-tuning) inputs and the reference renderings, token ids
and labels that the C++ pipeline (src/data/sft.cpp, src/data/prompt_template.cpp) must reproduce.

References (pinned; run with the venv of tools/requirements.txt: transformers 5.17.0, tokenizers 0.23.2):
- chatml: the chat_template of Qwen/Qwen2-0.5B-Instruct tokenizer_config.json, rendered by transformers'
  `apply_chat_template(tokenize=False)`. Default system message when messages[0] is not a system message.
- llama-2: the chat_template of meta-llama/Llama-2-7b-chat-hf tokenizer_config.json (bos/eos from the tokenizer).
- alpaca: tloen/alpaca-lora templates/alpaca.json (commit 8d58d37b) + utils/prompter.py Prompter.generate_prompt,
  and finetune.py tokenize()/generate_and_tokenize_prompt (cutoff_len, add_eos_token, train_on_inputs=False),
  re-implemented below from that source.
- phogpt: vinai/PhoGPT-4B-Chat PROMPT_TEMPLATE "### Câu hỏi: {instruction}\\n### Trả lời:" (VinAIResearch/PhoGPT
  README). Input, when present, is appended to the instruction after "\\n", as the README's own instructions
  embed their text ("Sửa lỗi chính tả:\\n{sentence_or_paragraph}", "Tóm tắt văn bản:\\n{text}").
- Tokenizer: tests/fixtures/tokenizers/aidreams260K (byte-identical copy of ../shared/data/models/aidreams260K's
  tokenizer files; SentencePiece LLaMA, MIT), loaded with AutoTokenizer.
Chat samples are tokenized per rendered segment (add_special_tokens=False) and concatenated; labels are the ids
of the assistant segments, -100 elsewhere. The script asserts that the segments join to the official rendering.

The conversations and records are authored for this repository (CC0), in English and Vietnamese.
Deterministic; prints what it wrote. Usage: python3 tools/gen_sft_fixtures.py
"""
import json
from pathlib import Path

import tokenizers
import transformers
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "data" / "sft"
TOKENIZER_DIR = ROOT / "tests" / "fixtures" / "tokenizers" / "aidreams260K"
IGNORE = -100

# Qwen/Qwen2-0.5B-Instruct, tokenizer_config.json "chat_template" (the same string in Qwen2-1.5B/7B-Instruct).
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# meta-llama/Llama-2-7b-chat-hf, tokenizer_config.json "chat_template".
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# tloen/alpaca-lora templates/alpaca.json @ 8d58d37b.
ALPACA = {
    "prompt_input": "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
    "### Input:\n{input}\n\n### Response:\n",
    "prompt_no_input": "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n",
}
PHOGPT = {"prompt_input": "### Câu hỏi: {instruction}\n{input}\n### Trả lời:",
          "prompt_no_input": "### Câu hỏi: {instruction}\n### Trả lời:"}

ALPACA_RECORDS = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "1. Eat vegetables.\n2. Sleep well.\n3. Walk every day."},
    {"instruction": "Dịch câu sau sang tiếng Anh.", "input": "Tôi yêu Hà Nội.", "output": "I love Hanoi."},
    {"instruction": "Tóm tắt văn bản.", "input": "Mùa thu ở Hà Nội có gió heo may và hoa sữa.",
     "output": "Hà Nội mùa thu đẹp."},
    {"instruction": "Name the color of this dream.", "input": "A blue dream of a forest.",
     "output": "The color is blue."},
    {"instruction": "Viết một câu về biển.", "output": "Biển xanh và sóng vỗ nhẹ."},  # no "input" key
    {"instruction": "Describe a dream about the sea in one long sentence.", "input": None,
     "output": "I dream of the sea, where the waves are silver and the wind is warm, and every gull that "
               "passes sings a quiet song about the islands far away beyond the horizon."},
]

PROMPT_RESPONSE_RECORDS = [
    {"prompt": "Thủ đô của Việt Nam là gì?", "response": "Hà Nội."},
    {"prompt": "What is 2 + 3?", "response": "5"},
    {"prompt": "Kể tên một loài hoa.", "response": "Hoa sen."},
]

CHAT_RECORDS = [
    {"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi, how can I help?"}]},
    {"messages": [{"role": "system", "content": "Bạn là một trợ lý hữu ích."},
                  {"role": "user", "content": "Xin chào, bạn tên là gì?"},
                  {"role": "assistant", "content": "Tôi là trợ lý ảo."}]},
    {"messages": [{"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "Paris."},
                  {"role": "user", "content": "And of Vietnam?"},
                  {"role": "assistant", "content": "Hanoi."}]},
    {"messages": [{"role": "system", "content": "You are a poet."},
                  {"role": "user", "content": "  Write a line about rain.  "},
                  {"role": "assistant", "content": "\nSoft rain on the roof.\n"}]},
    {"messages": [{"role": "user", "content": "Dịch sang tiếng Việt: good morning"},
                  {"role": "assistant", "content": "Chào buổi sáng"},
                  {"role": "user", "content": "Còn good night?"},
                  {"role": "assistant", "content": "Chúc ngủ ngon"},
                  {"role": "user", "content": "Cảm ơn!"},
                  {"role": "assistant", "content": "Không có gì."}]},
    {"messages": [{"role": "system", "content": "Answer briefly."},
                  {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    {"messages": [{"role": "user", "content": "Tell me a short story about a cat."},
                  {"role": "assistant", "content": "A small cat found a warm spot in the sun and slept there all "
                                                   "afternoon, dreaming of fish and gentle hands."}]},
    {"messages": [{"role": "user", "content": "Phở là gì?"},
                  {"role": "assistant", "content": "Phở là món ăn truyền thống của Việt Nam, gồm bánh phở, nước "
                                                   "dùng và thịt bò hoặc gà."}]},
    {"messages": [{"role": "system", "content": "Luôn trả lời bằng tiếng Việt."},
                  {"role": "user", "content": "How are you?"},
                  {"role": "assistant", "content": "Tôi khỏe, cảm ơn bạn."},
                  {"role": "user", "content": "Good."},
                  {"role": "assistant", "content": "Rất vui!"}]},
    {"messages": [{"role": "user", "content": "Say </s> literally?"},
                  {"role": "assistant", "content": "No."}]},
]


# --- renderers -------------------------------------------------------------------------------------------

def prompter(template, instruction, input=None, label=None):
    """alpaca-lora utils/prompter.py Prompter.generate_prompt."""
    if input:
        res = template["prompt_input"].format(instruction=instruction, input=input)
    else:
        res = template["prompt_no_input"].format(instruction=instruction)
    if label:
        res = f"{res}{label}"
    return res


def chatml_segments(messages):
    """The Qwen2 template's text, split into (text, train) pieces: an assistant turn's content + <|im_end|>."""
    segs = []
    if messages[0]["role"] != "system":
        segs.append(("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", False))
    for m in messages:
        if m["role"] == "assistant":
            segs += [("<|im_start|>assistant\n", False), (m["content"] + "<|im_end|>", True), ("\n", False)]
        else:
            segs.append(("<|im_start|>" + m["role"] + "\n" + m["content"] + "<|im_end|>\n", False))
    return segs


def llama2_segments(messages, bos, eos):
    segs = []
    system = None
    if messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    for i, m in enumerate(messages):
        content = m["content"]
        if i == 0 and system is not None:
            content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content
        if m["role"] == "user":
            segs.append((bos + "[INST] " + content.strip() + " [/INST]", False))
        else:
            segs.append((" " + content.strip() + " " + eos, True))
    return segs


def merge(segs):
    """Adjacent pieces with the same train flag become one segment (what the C++ side tokenizes)."""
    out = []
    for text, train in segs:
        if out and out[-1][1] == train:
            out[-1] = (out[-1][0] + text, train)
        else:
            out.append((text, train))
    return out


def record_messages(rec):
    """Alpaca / prompt-response records as a two-turn chat (input appended to the instruction after \\n)."""
    if "messages" in rec:
        return rec["messages"]
    instruction = rec.get("instruction", rec.get("prompt"))
    inp = rec.get("input") or ""
    output = rec.get("output", rec.get("response"))
    user = instruction + ("\n" + inp if inp else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": output}]


# --- tokenization ----------------------------------------------------------------------------------------

def alpaca_lora_sample(tok, template, rec, cutoff_len, add_eos_token=True, train_on_inputs=False):
    """tloen/alpaca-lora finetune.py tokenize() + generate_and_tokenize_prompt()."""
    def tokenize(prompt, add_eos_token=True):
        result = tok(prompt, truncation=True, max_length=cutoff_len, padding=False, return_tensors=None)
        if (result["input_ids"][-1] != tok.eos_token_id and len(result["input_ids"]) < cutoff_len
                and add_eos_token):
            result["input_ids"].append(tok.eos_token_id)
            result["attention_mask"].append(1)
        result["labels"] = result["input_ids"].copy()
        return result

    instruction = rec.get("instruction", rec.get("prompt"))
    inp = rec.get("input")
    output = rec.get("output", rec.get("response"))
    full = tokenize(prompter(template, instruction, inp, output), add_eos_token)
    untruncated = len(tok(prompter(template, instruction, inp, output))["input_ids"]) + (1 if add_eos_token else 0)
    if not train_on_inputs:
        user = tokenize(prompter(template, instruction, inp), add_eos_token=add_eos_token)
        n = len(user["input_ids"])
        if add_eos_token:
            n -= 1
        # Deviation: when the prompt alone reaches cutoff_len, alpaca-lora's n is cutoff_len - 1 (no EOS was
        # appended, yet one is subtracted), which leaves the last prompt token as a label. We mask the whole
        # prompt instead (the sample is then dropped); below cutoff_len both agree.
        n_prompt = len(tok(prompter(template, instruction, inp))["input_ids"])
        if n_prompt < cutoff_len:
            assert n == n_prompt, (n, n_prompt)
        n = min(n_prompt, len(full["input_ids"]))
        full["labels"] = [IGNORE] * n + full["labels"][n:]
    return full["input_ids"], full["labels"], untruncated > cutoff_len


def chat_sample(tok, segs, cutoff_len, train_on_inputs=False):
    ids, labels = [], []
    for text, train in segs:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if (train or train_on_inputs) else [IGNORE] * len(piece)
    truncated = len(ids) > cutoff_len
    return ids[:cutoff_len], labels[:cutoff_len], truncated


def run_case(tok, name, records, template, cutoff_len, train_on_inputs=False):
    source = {id(ALPACA_RECORDS): "alpaca.jsonl", id(PROMPT_RESPONSE_RECORDS): "prompt_response.jsonl",
              id(CHAT_RECORDS): "chat.jsonl"}[id(records)]
    samples, truncated, dropped, renders = [], 0, 0, []
    for rec in records:
        if template in ("alpaca", "phogpt"):
            t = ALPACA if template == "alpaca" else PHOGPT
            instruction = rec.get("instruction", rec.get("prompt"))
            renders.append({"prompt": prompter(t, instruction, rec.get("input")),
                            "text": prompter(t, instruction, rec.get("input"), rec.get("output", rec.get("response")))})
            ids, labels, cut = alpaca_lora_sample(tok, t, rec, cutoff_len, True, train_on_inputs)
        else:
            messages = record_messages(rec)
            if template == "chatml":
                official = tok.apply_chat_template(messages, chat_template=QWEN2_CHAT_TEMPLATE, tokenize=False)
                segs = merge(chatml_segments(messages))
            else:
                official = tok.apply_chat_template(messages, chat_template=LLAMA2_CHAT_TEMPLATE, tokenize=False)
                segs = merge(llama2_segments(messages, tok.bos_token, tok.eos_token))
            assert "".join(s for s, _ in segs) == official, (name, official, segs)
            renders.append({"text": official, "segments": [{"text": s, "train": t} for s, t in segs]})
            ids, labels, cut = chat_sample(tok, segs, cutoff_len, train_on_inputs)
        if all(l == IGNORE for l in labels):
            dropped += 1  # our rule (not alpaca-lora's): nothing left to learn
            samples.append(None)
            continue
        truncated += int(cut)
        samples.append({"input_ids": ids, "labels": labels})
    kept = [s for s in samples if s]
    return {"name": name, "input": source, "template": template, "max_seq_length": cutoff_len, "train_on_inputs": train_on_inputs,
            "renders": renders, "samples": samples,
            "stats": {"samples": len(kept), "truncated": truncated, "dropped": dropped,
                      "tokens": sum(len(s["input_ids"]) for s in kept),
                      "masked_tokens": sum(sum(1 for l in s["labels"] if l == IGNORE) for s in kept)}}


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)}: {len(records)} records")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    write_jsonl(OUT / "alpaca.jsonl", ALPACA_RECORDS)
    write_jsonl(OUT / "prompt_response.jsonl", PROMPT_RESPONSE_RECORDS)
    write_jsonl(OUT / "chat.jsonl", CHAT_RECORDS)
    cases = [
        run_case(tok, "alpaca_full", ALPACA_RECORDS, "alpaca", 512),
        run_case(tok, "alpaca_cut", ALPACA_RECORDS, "alpaca", 140),
        run_case(tok, "alpaca_inputs", ALPACA_RECORDS, "alpaca", 512, train_on_inputs=True),
        run_case(tok, "phogpt_full", ALPACA_RECORDS, "phogpt", 512),
        run_case(tok, "phogpt_prompt_response", PROMPT_RESPONSE_RECORDS, "phogpt", 512),
        run_case(tok, "chatml_full", CHAT_RECORDS, "chatml", 1024),
        run_case(tok, "chatml_cut", CHAT_RECORDS, "chatml", 100),
        run_case(tok, "chatml_alpaca", ALPACA_RECORDS, "chatml", 1024),
        run_case(tok, "llama2_full", CHAT_RECORDS, "llama-2", 1024),
        run_case(tok, "llama2_cut", CHAT_RECORDS, "llama-2", 40),
        run_case(tok, "llama2_inputs", CHAT_RECORDS, "llama-2", 1024, train_on_inputs=True),
    ]
    expected = {"generator": "tools/gen_sft_fixtures.py",
                "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
                "tokenizer": "tests/fixtures/tokenizers/aidreams260K",
                "cases": cases}
    path = OUT / "expected.json"
    path.write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for c in cases:
        print(f"  {c['name']}: {c['stats']}")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
