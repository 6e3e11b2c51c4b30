#!/usr/bin/env python3
"""Generates the byte-level BPE fixtures in tests/fixtures/tokenizers/.

Run with the pinned venv:  ~/.cache/qlora/venv/bin/python tools/gen_bpe_fixtures.py

What it does
1. Trains two small byte-level BPE tokenizers with `tokenizers` on the viwiki sample (Vietnamese Wikipedia,
   CC BY-SA 3.0; ~1 MB of it; deterministic) and writes them as HF folders:
   - vi_bpe/: Qwen2 style. NFC normalizer, Split(Qwen2 regex, Isolated) + ByteLevel(use_regex=False),
     ByteLevel post-processor, <|endoftext|> <|im_start|> <|im_end|> specials, one non-special added token.
   - llama3style_bpe/: LLaMA-3 style. No normalizer, the \\p{N}{1,3} regex, ignore_merges, a BOS
     TemplateProcessing ("<|begin_of_text|> $A"), an rstrip and an lstrip special token,
     clean_up_tokenization_spaces forced on (transformers 5 skips it for BPE models unless forced; vi_bpe
     sets it without forcing).
   - prefix_bpe (not a folder: the C++ test rebuilds it from vi_bpe and the overrides in prefix_bpe.json):
     ByteLevel pre-tokenizer with add_prefix_space and the GPT-2 regex, Sequence[NFC], RobertaProcessing,
     a normalized added token and an lstrip special token.
2. Records, for every tokenizer and a fixed list of texts, the HF fast tokenizer's ids, offsets, token
   types, sequence ids (with and without special tokens), pair encodings, decode with and without
   skip_special_tokens, decode of seeded random id lists (partial UTF-8 byte sequences included), and
   the encodings of 100 seeded random strings built from pieces that stress the pre-tokenizer regexes.
   Written to tests/fixtures/tokenizers/<name>.json.
   gpt2 (vocab.json + merges.txt, GPT2TokenizerFast) and roberta-base (tokenizer.json, AutoTokenizer) come
   from ../shared/data/tokenizers and are not copied; their JSON keeps ids only and the C++ tests skip
   when ../shared is absent.
"""

import json
import random
import unicodedata
from pathlib import Path

import tokenizers
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, GPT2TokenizerFast

ROOT = Path(__file__).resolve().parent.parent
SHARED = (ROOT / ".." / "shared" / "data").resolve()
OUT = ROOT / "tests" / "fixtures" / "tokenizers"

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")

VI = "Xin chào, tôi là người Việt Nam. Hà Nội có 8 triệu dân."
VI2 = "Tiếng Việt có sáu thanh điệu: ngang, huyền, sắc, hỏi, ngã, nặng."
VI3 = "Nguyễn Phú Trọng đã được bầu làm Tổng Bí thư năm 2011."

TEXTS = [
    VI, unicodedata.normalize("NFD", VI),  # NFC and NFD forms
    VI2, unicodedata.normalize("NFD", VI2),
    VI3, unicodedata.normalize("NFD", VI3),
    "ĐẠI HỌC QUỐC GIA HÀ NỘI", "đại học quốc gia hà nội", "ĐạI hỌc QuỐc",  # mixed case
    "Giá: 1.234,5 đồng; năm 2024; 1000000 người; 3,14", "Số 12345, 3.14159; 2024-01-01 (ok)! ... ?!",
    "Ngày 02/09/1945, Chủ tịch Hồ Chí Minh đọc bản Tuyên ngôn Độc lập.",
    "Phở bò, bún chả và bánh mì là những món ăn nổi tiếng.",
    "Trường Sa và Hoàng Sa thuộc chủ quyền của Việt Nam.",
    "e\u0301 a\u0300 o\u0302\u0301 u\u031b\u0303",  # bare combining sequences
    "Hà Nội\u0300", "\u0301đầu là dấu",  # a stray mark after a composed char; a leading mark
    "The quick brown fox jumps over the lazy dog, isn't it? Yes!",
    "It's the model's job; we'll see. They're here, I've got it, I'm done, you'd know.",
    "IT'S THE MODEL'S JOB; WE'LL SEE. THEY'RE HERE, I'VE, I'M, YOU'D, DON'T",
    "It'S mIxEd 'Ll 'Re 'vE 'M 'D 'T", "'s at the start", "end with '", "quotes ''s '''re",
    "don’t use curly ’s", "tab'\ts and new'\nline",
    "  leading spaces", "trailing spaces   ", "multiple    spaces   inside", " one leading", "trailing ",
    "tabs\tand\nnewlines\r\nhere", "\t\n", "\n\n\nthree newlines", "a\r\n\r\nb", "line1\n  line2\n\tline3",
    "x \n y", "spaces then newline   \n", "   ", " ", "", "\n", "\r", "a\u000bb\u000cc",  # vertical tab, form feed
    "😀 emoji 👍🏽 and ZWJ 👨‍👩‍👧 family", "🇻🇳 flag, ❤️ heart, 👩🏻‍💻 coder", "emoji😀glued😀text",
    "東京タワー", "中华人民共和国成立于1949年。", "한국어 문장입니다", "Tokyo 東京 và Москва, Ελλάδα, العربية",
    "ｆｕｌｌ－ｗｉｄｔｈ　ｔｅｘｔ１２３", "ﬁ ligature, ½ and ™ and ①②③", "Ⅻ roman numeral, ² superscript",
    "non\u00a0breaking\u3000ideographic\u2003em\u2028line\u2029para\u0085nel",
    "zero\u200bwidth\u200djoiner\ufeffbom", "\u1680ogham\u202fnnbsp\u205fmmsp",
    "antidisestablishmentarianism", "Supercalifragilisticexpialidocious" * 3, "a" * 300,
    "nghiêngnghiêngnghiêngnghiêngnghiêngnghiêng", "1234567890123456789",
    "<|endoftext|>", "Hello<|endoftext|>world", "Xin chào <|endoftext|> bạn", "<|im_start|>user\nChào<|im_end|>",
    "<|im_start|>assistant\n<think>suy nghĩ</think> trả lời<|im_end|>\n",
    "<|begin_of_text|>Một câu.<|end_of_text|>", "a <|sep|>  b", "c   <mask> d", "<s>roberta</s> <mask>!",
    "<pad> <unk> tokens", "<|endoftext|><|endoftext|>", "<|endoftext", "<|im_start|",
    "def f(x):\n    return x**2  # comment\n", "if (a && b) { c++; } // done", "https://vi.wikipedia.org/wiki/Việt_Nam?x=1&y=2",
    "email@example.com #hashtag @mention $100 50% ~tilde^", "«Trích dẫn» “ngoặc kép” — gạch ngang – en",
    "Hello, world! How are you?", "Hello , world ! How are you ?", "  ,  .  ", "...!!!???",
    "a.b,c;d:e", "ĠĊ already byte-level chars ĉ", "ÿþ latin-1 chars ß æ ø", "\x7f\x01\x1f controls",
]

PAIRS = [
    ("Thủ đô của Việt Nam là gì?", "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam."),
    ("Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare around 1600."),
    ("  spaced question ", "context\twith\ttabs"),
    ("", "empty question"),
    ("emoji 😀?", "👍 yes <|endoftext|> ok"),
    (unicodedata.normalize("NFD", "Tiếng Việt"), "Nam\r\nBộ"),
]


# Random strings from a pool of pieces that stress the pre-tokenizer regexes (contractions and their case
# folds, letters vs marks vs numbers, every kind of whitespace, \r\n runs) and added-token matching.
POOL = ["a", "b", "Z", "S", "s", "\u017f", "K", "\u00e9", "e", "\u0301", "\u0323", "\u0302", "'", "\u2019", " ", "  ",
        "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2028", "\u0085", "\u000b", "1", "9", "\u00bd", "\u0663",
        "\u216b", ".", ",", "!", "-", "_", "(", "\U0001F600", "\U0001F44D\U0001F3FD", "\u200d", "\u4e2d", "\u30f3",
        "\u1ea1", "\u0110", "<|endoftext|>", "<|im_end|>", "<mask>", "<|sep|>", "<s>", "re", "ll", "ve", "RE", "Ll",
        "t", "d", "m", "D", "\x00", "\x7f", "\ufeff", "Vi\u1ec7t Nam", "Vie\u0323\u0302t", "123456", "\u0130", "\u00df"]


def random_texts(n, seed):
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) for _ in range(rng.randrange(1, 25))) for _ in range(n)]


def corpus_lines(start, max_bytes):
    text = (SHARED / "text" / "viwiki" / "viwiki_sample_3mb.txt").read_text(encoding="utf-8")
    data = text.encode("utf-8")[start:start + max_bytes].decode("utf-8", errors="ignore")
    return [line for line in data.split("\n") if line.strip()]


def train(regex, specials, vocab_size, lines, nfc):
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def save_folder(tok: Tokenizer, name, config):
    folder = OUT / name
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"), pretty=False)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")
    (folder / "ATTRIBUTION.md").write_text(
        f"# {name}: a byte-level BPE tokenizer ({tok.get_vocab_size()} tokens)\n\n"
        f"Trained by tools/gen_bpe_fixtures.py (tokenizers {tokenizers.__version__}, BpeTrainer) on about 1 MB of\n"
        "`viwiki_sample_3mb.txt`, Vietnamese Wikipedia text from github.com/undertheseanlp/corpus.viwiki\n"
        "@ 0b727cc0. Wikipedia text is licensed CC BY-SA 3.0 (https://creativecommons.org/licenses/by-sa/3.0/);\n"
        "this tokenizer is a derivative and is distributed under the same licence.\n")
    return folder


def build_vi():
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = train(QWEN2_REGEX, specials, 3000, corpus_lines(0, 1_000_000), nfc=True)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False),
                    AddedToken("</think>", special=False, normalized=False)])
    return save_folder(tok, "vi_bpe", {
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "bos_token": None,
        # transformers 5 ignores this for BPE models unless forced (see llama3style_bpe).
        "clean_up_tokenization_spaces": True})


def build_llama3():
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    tok = train(LLAMA3_REGEX, specials, 2000, corpus_lines(1_500_000, 800_000), nfc=False)
    tok.add_special_tokens([AddedToken("<|sep|>", special=True, rstrip=True, normalized=False),
                            AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
    # LLaMA-3 sets ignore_merges: a pre-token that is a whole vocabulary entry is taken as is.
    spec = json.loads(tok.to_str())
    spec["model"]["ignore_merges"] = True
    tok = Tokenizer.from_str(json.dumps(spec))
    return save_folder(tok, "llama3style_bpe", {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>", "mask_token": "<mask>", "clean_up_tokenization_spaces": True,
        "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output": True})


# A variant of vi_bpe that exercises the GPT-2 / RoBERTa components on a shipped vocabulary: the C++ test
# rebuilds it by replacing these top-level keys of vi_bpe/tokenizer.json (nothing more is shipped).
PREFIX_OVERRIDES = {
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "post_processor": {"type": "RobertaProcessing", "sep": ["<|im_end|>", 2], "cls": ["<|im_start|>", 1],
                       "trim_offsets": True, "add_prefix_space": True},
}
PREFIX_CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                 "cls_token": "<|im_start|>", "sep_token": "<|im_end|>", "unk_token": "<|endoftext|>"}


def build_prefix_variant(vi: Path) -> Path:
    spec = json.loads((vi / "tokenizer.json").read_text(encoding="utf-8"))
    spec.update(PREFIX_OVERRIDES)
    # A normalized (matched after NFC) non-special added token and an lstrip special one.
    extra = [{"id": len(spec["model"]["vocab"]) + 2, "content": "Việt Nam", "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": True, "special": False},
             {"id": len(spec["model"]["vocab"]) + 3, "content": "<mask>", "single_word": False, "lstrip": True,
              "rstrip": False, "normalized": False, "special": True}]
    spec["added_tokens"] += extra
    PREFIX_OVERRIDES["added_tokens"] = spec["added_tokens"]
    folder = ROOT / "build" / "bpe_fixture_work" / "prefix_bpe"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(PREFIX_CONFIG))
    return folder


def encode(tok, a, b=None, special=True):
    enc = tok(a, b, add_special_tokens=special, return_offsets_mapping=True, return_token_type_ids=True)
    return {
        "ids": enc["input_ids"],
        "offsets": [list(o) for o in enc["offset_mapping"]],
        "token_type_ids": enc["token_type_ids"],
        "sequence_ids": [-1 if s is None else s for s in enc.sequence_ids()],
    }


def record(name, tok, model_dir, local_only, seed, extra=None):
    cases = []
    for text in TEXTS:
        fast = encode(tok, text)
        plain = encode(tok, text, special=False)
        case = {"text": text, **fast}
        # Stored only when it is not simply the encoding above without the template's specials.
        kept = [i for i, s in enumerate(fast["sequence_ids"]) if s != -1]
        if plain["ids"] != [fast["ids"][i] for i in kept] or plain["offsets"] != [fast["offsets"][i] for i in kept]:
            case.update({"ids_no_special": plain["ids"], "offsets_no_special": plain["offsets"]})
        cases.append({**case, "tokens": tok.convert_ids_to_tokens(fast["ids"]),
                      "decode": tok.decode(fast["ids"], skip_special_tokens=False),
                      "decode_skip_special": tok.decode(fast["ids"], skip_special_tokens=True)})
    pairs = []
    for a, b in PAIRS:
        fast = encode(tok, a, b)
        pairs.append({"a": a, "b": b, **fast, "decode": tok.decode(fast["ids"], skip_special_tokens=False),
                      "decode_skip_special": tok.decode(fast["ids"], skip_special_tokens=True)})
    random_cases = []
    for text in random_texts(100, seed + 100):
        fast = encode(tok, text)
        random_cases.append({"text": text, "ids": fast["ids"], "offsets": fast["offsets"]})
    rng = random.Random(seed)
    decodes = []
    n = len(tok)
    for i in range(30):
        # Mostly single-byte tokens (ids < 256 in these vocabularies are the byte alphabet) so that the
        # lists split UTF-8 sequences; a few anywhere, added/special tokens included.
        ids = [rng.randrange(256) if rng.random() < 0.6 else rng.randrange(n) for _ in range(rng.randrange(1, 12))]
        if i % 5 == 0:
            ids.append(n - 1)
        decodes.append({"ids": ids, "decode": tok.decode(ids, skip_special_tokens=False),
                        "decode_skip_special": tok.decode(ids, skip_special_tokens=True)})

    def sid(attr):
        v = getattr(tok, attr + "_token_id", None)
        return -1 if v is None else v

    doc = {
        "generator": "tools/gen_bpe_fixtures.py",
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
        "name": name,
        "model_dir": model_dir,
        "local_only": local_only,
        "hf_class": type(tok).__name__,
        "vocab_size": len(tok),
        "special_ids": {k: sid(k) for k in ("bos", "eos", "pad", "unk", "mask", "cls", "sep")},
        "num_special_tokens_to_add": {"single": tok.num_special_tokens_to_add(False),
                                      "pair": tok.num_special_tokens_to_add(True)},
        "clean_up_tokenization_spaces": bool(tok.clean_up_tokenization_spaces),
        "cases": cases,
        "pairs": pairs,
        "decodes": decodes,
        "random_cases": random_cases,
        **(extra or {}),
    }
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{path.relative_to(ROOT)}: {type(tok).__name__}, {len(cases)} texts, {len(pairs)} pairs, "
          f"{len(decodes)} decode lists, {len(random_cases)} random texts, {path.stat().st_size} bytes")


def main():
    random.seed(0)
    vi = build_vi()
    print(f"wrote {vi.relative_to(ROOT)} ({(vi / 'tokenizer.json').stat().st_size} bytes)")
    l3 = build_llama3()
    print(f"wrote {l3.relative_to(ROOT)} ({(l3 / 'tokenizer.json').stat().st_size} bytes)")
    record("vi_bpe", AutoTokenizer.from_pretrained(str(vi)), "vi_bpe", False, 1)
    record("llama3style_bpe", AutoTokenizer.from_pretrained(str(l3)), "llama3style_bpe", False, 2)
    prefix = build_prefix_variant(vi)
    record("prefix_bpe", AutoTokenizer.from_pretrained(str(prefix)), "vi_bpe", False, 5,
           {"overrides": PREFIX_OVERRIDES, "tokenizer_config": PREFIX_CONFIG})
    shared = SHARED / "tokenizers"
    # gpt2 has only vocab.json + merges.txt; AutoTokenizer cannot tell the class without a config, so name it.
    record("gpt2_bpe", GPT2TokenizerFast.from_pretrained(str(shared / "gpt2")), "gpt2", True, 3)
    record("roberta_bpe", AutoTokenizer.from_pretrained(str(shared / "roberta-base")), "roberta-base", True, 4)


if __name__ == "__main__":
    main()
