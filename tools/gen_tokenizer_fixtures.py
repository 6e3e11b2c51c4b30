#!/usr/bin/env python3
"""Generates tests/fixtures/tokenizers/: tokenizer model folders and expected encodings.

Run with the pinned venv:  /root/.cache/qlora/venv/bin/python tools/gen_tokenizer_fixtures.py

What it does
1. Trains (or re-uses) a small XLM-R-style SentencePiece Unigram model on the viwiki sample and turns it
   into a Hugging Face XLM-R tokenizer folder with transformers (tokenizer.json included).
2. Copies the shippable model files the C++ tests need (aidreams260K, t5-small, the trained XLM-R model).
3. For every tokenizer and a fixed list of texts records: the fast tokenizer's ids, offsets, token types and
   sequence ids; pair encodings; decode with and without special tokens; raw sentencepiece ids; and a
   "slow" reference (see below). Written to tests/fixtures/tokenizers/<name>.json.
4. Writes the same tokenizers as transformers 5 saves them, tokenizer.json only (save_pretrained, then the
   SentencePiece .model deleted): aidreams260K-json, t5-small-json, xlmr-viwiki-json, plus aidreams260K-json-edited
   (merges edited by hand), and records <name>_json.json from those folders; each case also says whether HF gives
   the same encoding as for the SentencePiece folder ("same_as_sp_folder").

About "slow": transformers 5 removed the per-model SentencePiece ("slow") tokenizer classes;
LlamaTokenizer, T5Tokenizer and XLMRobertaTokenizer are all `tokenizers`-backed now (LlamaTokenizerFast is
an alias). The slow reference recorded here is therefore the sentencepiece Python library plus the rules the
transformers 4.x slow classes applied (special-token splitting, fairseq offset, BOS/EOS). Wherever slow and
fast disagree the case carries "slow_differs": true; the C++ tokenizer matches the fast one.

The llama2 fixture is produced only when ../shared/data/tokenizers/llama2-spm exists. Its model file is
never copied (Llama 2 licence); the JSON keeps ids and offsets only.
"""

import json
import os
import shutil
import sys
import unicodedata
from pathlib import Path

import sentencepiece as spm
import tokenizers
import transformers
from transformers import AutoTokenizer, LlamaTokenizer, XLMRobertaTokenizer

ROOT = Path(__file__).resolve().parent.parent
SHARED = (ROOT / ".." / "shared" / "data").resolve()
if not SHARED.exists():
    SHARED = Path("/work/shared/data")
OUT = ROOT / "tests" / "fixtures" / "tokenizers"
WORK = ROOT / "build" / "tokenizer_fixture_work"

VI_NFC = "Xin chào, tôi là người Việt Nam. Hà Nội có 8 triệu dân."
ENGLISH = "The quick brown fox jumps over the lazy dog, isn't it? Yes!"

# Texts shared by every tokenizer. Each line says what it exercises.
COMMON_TEXTS = [
    VI_NFC,  # Vietnamese, NFC
    unicodedata.normalize("NFD", VI_NFC),  # the same text, NFD (combining marks)
    ENGLISH,  # English + clean-up-relevant punctuation
    "  leading spaces",
    "trailing spaces   ",
    "multiple    spaces   inside",
    "tabs\tand\nnewlines\r\nhere",
    " ",  # a lone space
    "",  # empty string
    "\t\n",
    "😀 emoji 👍🏽 and ZWJ 👨‍👩‍👧 family",
    "Số 12345, 3.14159; 2024-01-01 (ok)! ... ?!",
    "Tokyo 東京 và Москва, Ελλάδα, العربية",  # mixed script; many characters absent from vocab
    "ａｂｃ１２３ full-width, ﬁ ligature, ½ and ™",  # NFKC-sensitive characters
    "non\u00a0breaking\u3000ideographic\u2003em space",
    "Nguyễn Phú Trọng đã được bầu làm Tổng Bí thư.",
    "e\u0301 a\u0300 o\u0302\u0301",  # bare combining sequences
    "▁already▁has▁metaspace",
    "It's the model's job; we'll see.",
    "Giá: 1.000.000 VND — rẻ!",
]

PAIRS = [
    ("Thủ đô của Việt Nam là gì?", "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam."),
    ("Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare around 1600."),
    ("  spaced question ", "context\twith\ttabs"),
    ("", "empty question"),
]


def train_xlmr_spm(model_prefix: Path) -> Path:
    model = model_prefix.with_suffix(".model")
    if model.exists():
        return model
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        input=str(SHARED / "text" / "viwiki" / "viwiki_sample_3mb.txt"),
        model_prefix=str(model_prefix),
        model_type="unigram",
        vocab_size=8000,
        character_coverage=0.9995,
        normalization_rule_name="nmt_nfkc",
        # XLM-R's own spm: <unk>=0 <s>=1 </s>=2, no pad piece (fairseq adds <pad> itself).
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        seed_sentencepiece_size=1000000,
        minloglevel=2,
    )
    return model


def build_xlmr_folder(model: Path, folder: Path) -> Path:
    """An HF XLM-R tokenizer folder: sentencepiece.bpe.model + configs + tokenizer.json."""
    staging = WORK / "xlmr_staging"
    staging.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, staging / "sentencepiece.bpe.model")
    (staging / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer"}))
    tok = XLMRobertaTokenizer.from_pretrained(str(staging))
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(folder))
    shutil.copy(model, folder / "sentencepiece.bpe.model")
    return folder


# ---- "slow" reference: sentencepiece + the transformers 4.x slow rules --------------------------------------


def split_on_specials(text, specials, lstrip=()):
    """Leftmost-longest split on special-token strings, as the slow tokenizers' trie did."""
    out, i, start = [], 0, 0
    ordered = sorted(specials, key=len, reverse=True)
    while i < len(text):
        hit = next((s for s in ordered if text.startswith(s, i)), None)
        if hit is None:
            i += 1
            continue
        seg = text[start:i]
        if hit in lstrip:
            seg = seg.rstrip()
        out.append((seg, False))
        out.append((hit, True))
        i += len(hit)
        start = i
    out.append((text[start:], False))
    return out


class SlowReference:
    def __init__(self, flavour, model_file, special_to_id, legacy=True):
        self.flavour = flavour
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.special_to_id = special_to_id
        self.legacy = legacy

    def piece_ids(self, segment):
        ids = self.sp.encode(segment)
        if self.flavour == "xlmr":
            ids = [3 if i == self.sp.unk_id() else i + 1 for i in ids]
        return ids

    def encode_one(self, text):
        ids = []
        lstrip = ("<mask>",) if self.flavour == "xlmr" else ()
        for seg, special in split_on_specials(text, list(self.special_to_id), lstrip):
            if special:
                ids.append(self.special_to_id[seg])
            elif seg:
                ids += self.piece_ids(seg)
        return ids

    def encode(self, a, b=None):
        A = self.encode_one(a)
        B = self.encode_one(b) if b is not None else None
        if self.flavour == "llama":
            return [1] + A + ([1] + B if B is not None else [])
        if self.flavour == "t5":
            return A + [1] + (B + [1] if B is not None else [])
        return [0] + A + [2] + ([2] + B + [2] if B is not None else [])


# ---- recording -------------------------------------------------------------------------------------------


def encode_fast(tok, a, b=None):
    enc = tok(a, b, add_special_tokens=True, return_offsets_mapping=True, return_token_type_ids=True)
    sequence_ids = enc.sequence_ids()
    return {
        "ids": enc["input_ids"],
        "offsets": [list(o) for o in enc["offset_mapping"]],
        "token_type_ids": enc["token_type_ids"],
        "sequence_ids": [-1 if s is None else s for s in sequence_ids],
    }


def record(name, tok, slow, texts, pairs, model_rel, kind, notes, keep_tokens=True, sp_tok=None, sp_model_rel=None):
    """sp_tok / sp_model_rel: for a tokenizer.json-only folder, the HF tokenizer of the SentencePiece folder it was
    saved from and that folder; each case then says whether the two agree ("same_as_sp_folder")."""
    cases = []
    for text in texts:
        fast = encode_fast(tok, text)
        plain = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        case = {
            "text": text,
            "ids": fast["ids"],
            "offsets": fast["offsets"],
            "token_type_ids": fast["token_type_ids"],
            "sequence_ids": fast["sequence_ids"],
            "ids_no_special": plain["input_ids"],
            "offsets_no_special": [list(o) for o in plain["offset_mapping"]],
            "slow_ids": slow.encode(text),
            "spm_ids": slow.sp.encode(text),
            "decode": tok.decode(fast["ids"], skip_special_tokens=False),
            "decode_skip_special": tok.decode(fast["ids"], skip_special_tokens=True),
        }
        if keep_tokens:
            case["tokens"] = tok.convert_ids_to_tokens(fast["ids"])
        case["slow_differs"] = case["slow_ids"] != case["ids"]
        if sp_tok is not None:
            case["same_as_sp_folder"] = encode_fast(sp_tok, text) == fast and sp_tok(
                text, add_special_tokens=False, return_offsets_mapping=True
            )["offset_mapping"] == plain["offset_mapping"]
        cases.append(case)
    pair_cases = []
    for a, b in pairs:
        fast = encode_fast(tok, a, b)
        case = {"a": a, "b": b, **fast, "slow_ids": slow.encode(a, b)}
        case["decode"] = tok.decode(fast["ids"], skip_special_tokens=False)
        case["decode_skip_special"] = tok.decode(fast["ids"], skip_special_tokens=True)
        case["slow_differs"] = case["slow_ids"] != case["ids"]
        if sp_tok is not None:
            case["same_as_sp_folder"] = encode_fast(sp_tok, a, b) == fast
        pair_cases.append(case)

    def sid(attr):
        v = getattr(tok, attr, None)
        return -1 if v is None else v

    doc = {
        "generator": "tools/gen_tokenizer_fixtures.py",
        "versions": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "sentencepiece": spm.__version__,
        },
        "name": name,
        "kind": kind,
        "model_dir": model_rel,
        "hf_class": type(tok).__name__,
        "vocab_size": len(tok),
        "special_ids": {k: sid(k + "_token_id") for k in ("bos", "eos", "pad", "unk", "mask", "cls", "sep")},
        "num_special_tokens_to_add": {"single": tok.num_special_tokens_to_add(False),
                                      "pair": tok.num_special_tokens_to_add(True)},
        "clean_up_tokenization_spaces": bool(tok.clean_up_tokenization_spaces),
        "notes": notes,
        **({"sp_model_dir": sp_model_rel} if sp_model_rel else {}),
        "cases": cases,
        "pairs": pair_cases,
    }
    n_diff = sum(c["slow_differs"] for c in cases + pair_cases)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    extra = ""
    if sp_tok is not None:
        n_sp = sum(not c["same_as_sp_folder"] for c in cases + pair_cases)
        extra = f", differs from the SentencePiece folder in {n_sp}"
    print(f"{path.relative_to(ROOT)}: {len(cases)} texts, {len(pair_cases)} pairs, slow!=fast in {n_diff}{extra}")


def copy_files(src: Path, dst: Path, names):
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(src / n, dst / n)


# ---- tokenizer.json-only folders (what transformers 5 saves) -------------------------------------------


def save_json_only(src: Path, dst: Path, edit=None):
    """The folder transformers 5 writes for the tokenizer in `src`: load it, save_pretrained into `dst`, delete the
    SentencePiece *.model files. tokenizer.json is re-written without indentation (whitespace only; it keeps the
    fixtures small). `edit(tokenizer_json_dict)` simulates a user-edited file. Returns the tokenizer loaded back
    from `dst` by AutoTokenizer: the reference the fixture records."""
    tok = AutoTokenizer.from_pretrained(str(src))
    shutil.rmtree(dst, ignore_errors=True)
    tok.save_pretrained(str(dst))
    for f in dst.glob("*.model"):
        f.unlink()
    path = dst / "tokenizer.json"
    j = json.loads(path.read_text(encoding="utf-8"))
    if edit is not None:
        edit(j)
    path.write_text(json.dumps(j, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return AutoTokenizer.from_pretrained(str(dst))


def merges_equal_generated(folder: Path) -> bool:
    """Whether tokenizer.json's BPE merges are what transformers' generate_merges() makes from its vocab."""
    from transformers.tokenization_utils_base import generate_merges

    model = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    generated = [tuple(m) for m in generate_merges(model["vocab"], skip_tokens={"<unk>", "<s>", "</s>"})]
    return merges == generated


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)

    # LLaMA: aidreams260K (ship, MIT).
    aid_src = SHARED / "models" / "aidreams260K"
    aid = OUT / "aidreams260K"
    copy_files(aid_src, aid, ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "config.json"])
    shutil.copy(aid_src / "UPSTREAM_README.md", aid / "UPSTREAM_README.md")
    llama_texts = COMMON_TEXTS + ["</s>hi <s> there", "<unk> x", "a</s>b", "x <extra_id_0> y"]
    tok = AutoTokenizer.from_pretrained(str(aid))
    slow = SlowReference("llama", aid / "tokenizer.model", {"<unk>": 0, "<s>": 1, "</s>": 2})
    record("llama_aidreams", tok, slow, llama_texts, PAIRS, "aidreams260K", "llama",
           ["legacy=true (tokenizer_config.json): the fast Metaspace prepends '▁' to every segment that does "
            "not already start with one.",
            "slow (sentencepiece add_dummy_prefix) always prepends, so texts with a leading space differ."])
    aid_tok, aid_slow = tok, slow

    # The same tokenizer as transformers 5 saves it: tokenizer.json + tokenizer_config.json, no tokenizer.model.
    aid_json = OUT / "aidreams260K-json"
    tok_json = save_json_only(aid, aid_json)
    same_merges = merges_equal_generated(aid_json)
    print(f"aidreams260K-json: tokenizer.json merges == generate_merges(vocab): {same_merges}")
    record("llama_aidreams_json", tok_json, aid_slow, llama_texts, PAIRS, "aidreams260K-json", "llama",
           ["tokenizer.json-only folder written by transformers save_pretrained from aidreams260K (tokenizer.model "
            "deleted). transformers 5 takes vocab + merges (+ post_processor when tokenizer_config.json has no "
            "add_bos_token/add_eos_token) from tokenizer.json and builds the rest of the LlamaTokenizer pipeline.",
            "The saved tokenizer_config.json has no 'legacy' key, so legacy=False (prepend_scheme 'first'): texts "
            "with special tokens inside differ from the aidreams260K folder (legacy=true); see same_as_sp_folder.",
            f"tokenizer.json merges equal transformers' generate_merges(vocab): {same_merges}."],
           sp_tok=aid_tok, sp_model_rel="aidreams260K")

    # A user-edited tokenizer.json: the first 10 merges removed. transformers uses the file's merges.
    aid_edit = OUT / "aidreams260K-json-edited"
    tok_edit = save_json_only(aid, aid_edit, edit=lambda j: j["model"].update(merges=j["model"]["merges"][10:]))
    record("llama_aidreams_json_edited", tok_edit, aid_slow, llama_texts, PAIRS, "aidreams260K-json-edited", "llama",
           ["aidreams260K-json with the first 10 BPE merges deleted from tokenizer.json (a user edit): the merges in "
            "the file are used, not merges generated from the vocabulary."],
           sp_tok=aid_tok, sp_model_rel="aidreams260K")

    # LLaMA-2 (local only): no tokenizer_config.json, so transformers 5 defaults apply (legacy=False).
    l2 = SHARED / "tokenizers" / "llama2-spm"
    if (l2 / "tokenizer.model").exists():
        # A bare tokenizer.model folder gets no post-processor in transformers 5 (no BOS at all); the
        # published Llama-2 tokenizer_config.json says add_bos_token=true, which is what we pass.
        tok = LlamaTokenizer.from_pretrained(str(l2), add_bos_token=True)
        slow = SlowReference("llama", l2 / "tokenizer.model", {"<unk>": 0, "<s>": 1, "</s>": 2}, legacy=False)
        record("llama2", tok, slow, llama_texts, PAIRS, "../shared/data/tokenizers/llama2-spm", "llama",
               ["LOCAL ONLY model; ids/offsets only. transformers 5 LlamaTokenizer default legacy=False "
                "(prepend_scheme 'first')."], keep_tokens=False)
    else:
        print("llama2-spm not found; skipping the llama2 fixture")
    # No fixture for the published LLaMA-2 tokenizer.json (../shared/data/tokenizers/llama2): transformers 5.17
    # cannot load it (its "a b" string merges split into more than two parts: "expected tuple of length 2").

    # T5 (ship, Apache-2.0). The C++ side needs spiece.model + tokenizer_config.json only.
    t5_src = SHARED / "tokenizers" / "t5-small"
    t5 = OUT / "t5-small"
    copy_files(t5_src, t5, ["spiece.model", "tokenizer_config.json"])
    t5_texts = COMMON_TEXTS + ["Translate: <extra_id_0> is <extra_id_1>.", "x<extra_id_99>y </s> z"]
    tok = AutoTokenizer.from_pretrained(str(t5_src))  # with tokenizer.json, as published
    tok_spm_only = AutoTokenizer.from_pretrained(str(t5))  # converted from spiece.model
    for text in t5_texts:
        a = tok(text, return_offsets_mapping=True)
        b = tok_spm_only(text, return_offsets_mapping=True)
        assert a["input_ids"] == b["input_ids"] and a["offset_mapping"] == b["offset_mapping"], text
    t5_specials = {"</s>": 1, "<pad>": 0, "<unk>": 2}
    t5_specials.update({f"<extra_id_{i}>": 32099 - i for i in range(100)})
    slow = SlowReference("t5", t5 / "spiece.model", t5_specials)
    record("t5_small", tok, slow, t5_texts, PAIRS, "t5-small", "t5",
           ["tokenizer.json folder and spiece.model-only folder give identical ids and offsets (checked).",
            "Fast pipeline: Precompiled(nmt_nfkc) -> WhitespaceSplit -> Metaspace(always, split)."])
    t5_json = OUT / "t5-small-json"
    tok_json = save_json_only(t5, t5_json)
    record("t5_small_json", tok_json, slow, t5_texts, PAIRS, "t5-small-json", "t5",
           ["tokenizer.json-only folder written by transformers save_pretrained from t5-small (spiece.model "
            "deleted; tokenizer.json re-written without indentation). transformers 5 takes the Unigram vocab and "
            "the Precompiled charsmap from tokenizer.json and builds the rest of the T5Tokenizer pipeline."],
           sp_tok=tok_spm_only, sp_model_rel="t5-small")

    # XLM-R style (trained here; CC BY-SA 3.0 data).
    model = train_xlmr_spm(WORK / "xlmr_viwiki_8k")
    # The full HF folder (with tokenizer.json) is built under build/; the shipped copy leaves out the
    # 0.8 MB tokenizer.json, which the C++ does not read and transformers rebuilds from the .model.
    xl_full = build_xlmr_folder(model, WORK / "xlmr-viwiki-full")
    xl = OUT / "xlmr-viwiki"
    xl.mkdir(parents=True, exist_ok=True)
    for f in xl_full.iterdir():
        if f.name != "tokenizer.json":
            shutil.copy(f, xl / f.name)
    (xl / "tokenizer.json").unlink(missing_ok=True)
    (xl / "ATTRIBUTION.md").write_text(
        "# xlmr-viwiki: an XLM-R-style SentencePiece Unigram model (8000 pieces)\n\n"
        "Trained by tools/gen_tokenizer_fixtures.py (sentencepiece "
        f"{spm.__version__}, model_type=unigram, nmt_nfkc, character_coverage=0.9995, one thread) on\n"
        "`viwiki_sample_3mb.txt`, Vietnamese Wikipedia text from github.com/undertheseanlp/corpus.viwiki\n"
        "@ 0b727cc0. Wikipedia text is licensed CC BY-SA 3.0 "
        "(https://creativecommons.org/licenses/by-sa/3.0/); this model is a derivative and is\n"
        "distributed under the same licence. The HF files (tokenizer_config.json, special_tokens_map.json) were "
        f"written by transformers {transformers.__version__}.\n")
    tok = AutoTokenizer.from_pretrained(str(xl_full))
    tok_shipped = AutoTokenizer.from_pretrained(str(xl))
    xl_texts = COMMON_TEXTS + ["Thủ đô là <mask>.", "a<mask>b   <mask>  c", "<s>x</s>"]
    for text in xl_texts:
        a = tok(text, return_offsets_mapping=True)
        b = tok_shipped(text, return_offsets_mapping=True)
        assert a["input_ids"] == b["input_ids"] and a["offset_mapping"] == b["offset_mapping"], text
    mask_id = tok.mask_token_id
    slow = SlowReference("xlmr", xl / "sentencepiece.bpe.model",
                         {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": mask_id})
    record("xlmr_viwiki", tok, slow, xl_texts, PAIRS, "xlmr-viwiki", "xlmr",
           ["Fast pipeline: Precompiled(nmt_nfkc) -> WhitespaceSplit -> Metaspace(always, split).",
            "<mask> is an AddedToken with lstrip=True: the stripped spaces belong to no token.",
            "Recorded from the folder with tokenizer.json; the shipped folder (no tokenizer.json) gives "
            "identical ids and offsets (checked)."])
    xl_json = OUT / "xlmr-viwiki-json"
    tok_json = save_json_only(xl, xl_json)
    (xl_json / "ATTRIBUTION.md").write_text((xl / "ATTRIBUTION.md").read_text() +
                                            "\nThis folder is the same tokenizer as transformers 5 saves it (tokenizer.json, "
                                            "no sentencepiece.bpe.model).\n")
    record("xlmr_viwiki_json", tok_json, slow, xl_texts, PAIRS, "xlmr-viwiki-json", "xlmr",
           ["tokenizer.json-only folder written by transformers save_pretrained from xlmr-viwiki "
            "(sentencepiece.bpe.model deleted). transformers 5 takes the Unigram vocab (fairseq ids), the Precompiled "
            "charsmap and the added tokens from tokenizer.json."],
           sp_tok=tok_shipped, sp_model_rel="xlmr-viwiki")

    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"tests/fixtures/tokenizers: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
