#!/usr/bin/env python3
"""Generates tests/fixtures/qa/: extractive-QA features and post-processing as Hugging Face run_qa.py.

Run with the pinned venv:  /root/.cache/qlora/venv/bin/python tools/gen_qa_fixtures.py

What it does
1. Builds MRC records (docs/DATA_FORMATS.md §1) from a few paragraphs of data/nanibot-vi-sample plus
   hand-written ones (English, an unanswerable question, a question with leading whitespace, an answer
   that is the last token of its context) and writes them to records.jsonl.
2. Loads the shipped XLM-R-style tokenizer folder tests/fixtures/tokenizers/xlmr-viwiki with transformers
   (the fast tokenizer is rebuilt from sentencepiece.bpe.model, as tools/gen_tokenizer_fixtures.py did).
3. For each configuration (max_seq_length, doc_stride) runs transcriptions of run_qa.py's
   prepare_train_features / prepare_validation_features (the real tokenizer call with the same arguments)
   and of utils_qa.py's postprocess_qa_predictions on deterministic logits without ties, v1 and v2, and
   writes inputs and expected outputs to features_<max>_<stride>.json.
4. Records the errors HF raises for settings it cannot encode (errors.json).

Logits are float32 values with three decimals (np.round in float64, then cast), so the C++ side reads the
same float32 numbers from JSON (double -> float is the cast numpy did). Each logit row has no ties, so
np.argsort's instability cannot change the candidate order.

Sources transcribed (transformers examples/pytorch/question-answering): run_qa.py prepare_train_features,
prepare_validation_features; utils_qa.py postprocess_qa_predictions (file writing left out).

The tokenizer call and tokenizers 0.23.1+
tokenizers 0.23.1 added an "early exit" for truncation (huggingface/tokenizers PR #1990): a truncated
sequence is tokenized only up to max_length tokens, so with return_overflowing_tokens the windows stop
after about max_length context tokens and the rest of a long context is silently lost (issue #2091, fix
proposed in PR #2098). run_qa relies on the documented behaviour (every context token is in some window),
which tokenizers <= 0.22.2 gives and which qlora implements. So the features here come from
`reference_tokenize`: the real Rust code of the installed tokenizers for everything (tokenizing each
sequence, Encoding.truncate's windows, the post-processor that merges question and windows, padding),
with only truncate_encodings' ten lines (tokenizers/src/utils/truncation.rs) done in Python. The generator
checks it against the real `tokenizer(...)` call run_qa makes: identical wherever the early exit cannot
cut (or everywhere, on a tokenizers without the regression). `--check-tokenizers DIR` also runs the real
call of another tokenizers build (e.g. `pip install --no-deps --target DIR tokenizers==0.22.2`) in a
subprocess and requires identical windows for every example.
"""

import argparse
import collections
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import os

import numpy as np
import tokenizers
import transformers
from transformers import AutoTokenizer

os.environ["RUST_BACKTRACE"] = "0"  # error_cases() provokes a Rust panic on purpose

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "qa"
TOKENIZER_DIR = ROOT / "tests" / "fixtures" / "tokenizers" / "xlmr-viwiki"
DATA = ROOT / "data" / "nanibot-vi-sample"

# (max_seq_length, doc_stride, postprocess settings). The second configuration also exercises smaller
# n_best_size / max_answer_length and a non-zero null threshold.
CONFIGS = [
    {"max_seq_length": 64, "doc_stride": 16, "n_best_size": 20, "max_answer_length": 30, "null_threshold": 0.0},
    {"max_seq_length": 96, "doc_stride": 32, "n_best_size": 5, "max_answer_length": 4, "null_threshold": 0.5},
]

# (file, paragraph index, question ids or None for all): nanibot paragraphs converted to records.
NANIBOT_PICKS = [
    ("train_wiki_sample.json", 0, [
        "A?R00000T636816881325596102",  # answer inside the first window
        "A?R00000T636816882100802961",
        "A?R00000T636816882570118080",  # answer text starts with a space
        "A?R00000T636816883248108107",  # long answer near the end of the context
    ]),
    ("train_wiki_sample.json", 7, [  # 1248 characters, CJK characters (unknown tokens), many windows
        "A?R00000T636816913168455068",
        "A?R00000T636816915318742846",  # 39-token answer: never fully inside a 64-token window
    ]),
    ("test_wiki_sample.json", 1, [  # three reference answers each; labels use the first
        "A?R00000T636809982408533825",
        "A?R00000T636809983220798788",
    ]),
]

HANDWRITTEN = [
    {
        "id": "vi-leading-space",
        "title": "handwritten",
        "context": "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam từ năm 1976.",
        "question": " \u00a0\t  Thủ đô của Việt Nam là thành phố nào?",  # lstrip removes NBSP and tab too
        "answers": [{"text": "Hà Nội", "answer_start": 0}],
        "is_impossible": False,
    },
    {
        "id": "vi-answer-last-token",  # start walk runs past the context into the padding (HF quirk)
        "title": "handwritten",
        "context": "Chiến tranh Việt Nam kết thúc vào năm 1975",
        "question": "Chiến tranh kết thúc năm nào?",
        "answers": [{"text": "1975", "answer_start": 38}],
        "is_impossible": False,
    },
    {
        "id": "vi-impossible",
        "title": "handwritten",
        "context": None,  # filled with the first nanibot paragraph
        "question": "Dân số của Singapore năm 2050 là bao nhiêu?",
        "answers": [],
        "is_impossible": True,
    },
    {
        "id": "en-1",
        "title": "handwritten",
        "context": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
        "It is named after the engineer Gustave Eiffel, whose company designed and built the tower "
        "from 1887 to 1889 as the centerpiece of the 1889 World's Fair.",
        "question": "Whose company built the Eiffel Tower?",
        "answers": [{"text": "Gustave Eiffel", "answer_start": 119}],
        "is_impossible": False,
    },
    {
        "id": "en-2",
        "title": "handwritten",
        "context": "Hamlet is a tragedy written by William Shakespeare sometime between 1599 and 1601.",
        "question": "   Who wrote Hamlet?",
        "answers": [{"text": "William Shakespeare", "answer_start": 31}],
        "is_impossible": False,
    },
    {
        "id": "en-short-context",  # context shorter than the question: one window
        "title": "handwritten",
        "context": "Yes.",
        "question": "Is this a question whose text is much longer than the context it is asked about?",
        "answers": [{"text": "Yes", "answer_start": 0}],
        "is_impossible": False,
    },
]

# Examples whose features get logits that favour non-context tokens only: no valid candidate, so
# post-processing falls back to "empty" (v1) or [empty, null] (v2).
EMPTY_FALLBACK_IDS = {"en-2"}
# Examples whose features get a high logit at index 0 (the null answer), so that v2 predicts "" for them.
NULL_FAVOURED_IDS = {"vi-impossible", "A?R00000T636809983220798788"}


def nfc(s):
    return unicodedata.normalize("NFC", s)


def build_records():
    records = []
    for file, paragraph_index, ids in NANIBOT_PICKS:
        data = json.loads((DATA / file).read_text(encoding="utf-8"))
        paragraphs = [(a.get("title", ""), p) for a in data["data"] for p in a["paragraphs"]]
        title, p = paragraphs[paragraph_index]
        context = nfc(p["context"])
        assert context == p["context"], "the sample is NFC already"
        by_id = {q["id"]: q for q in p["qas"]}
        for qid in ids:
            q = by_id[qid]
            answers = [{"text": a["text"], "answer_start": a["answer_start"]} for a in q["answers"]]
            for a in answers:
                assert context[a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"], qid
            records.append({"id": qid, "title": title, "context": context, "question": q["question"],
                            "answers": answers, "is_impossible": False})
    first_context = records[0]["context"]
    for r in HANDWRITTEN:
        r = dict(r)
        if r["context"] is None:
            r["context"] = first_context
        for a in r["answers"]:
            assert r["context"][a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"], r["id"]
        records.append(r)
    return records


def as_hf_examples(records):
    """The batch a datasets.map(batched=True) call gives run_qa: columns of lists, SQuAD answers."""
    return {
        "id": [r["id"] for r in records],
        "context": [r["context"] for r in records],
        "question": [r["question"] for r in records],
        "answers": [{"text": [a["text"] for a in r["answers"]],
                     "answer_start": [a["answer_start"] for a in r["answers"]]} for r in records],
    }


# ---- the tokenizer call ----------------------------------------------------------------------------------


class Features(dict):
    """The parts of a transformers BatchEncoding that run_qa reads: columns, .encodings, .sequence_ids(i)."""

    def __init__(self, encodings, sample_mapping):
        super().__init__(
            input_ids=[e.ids for e in encodings],
            attention_mask=[e.attention_mask for e in encodings],
            offset_mapping=[list(e.offsets) for e in encodings],
            overflow_to_sample_mapping=sample_mapping,
        )
        self.encodings = encodings

    def sequence_ids(self, i):
        # Tokenizer.post_process called from Python leaves the first sequence's tokens without a sequence
        # id in pair mode (tokenizer.encode(q, c) has them); they are the non-special, unpadded tokens
        # without one. check_against_hf_call / --check-tokenizers compare the result with the real call.
        e = self.encodings[i]
        return [0 if s is None and not special and mask else s
                for s, special, mask in zip(e.sequence_ids, e.special_tokens_mask, e.attention_mask)]


def plain_backend(tokenizer):
    backend = tokenizers.Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def reference_tokenize(tokenizer, questions, contexts, max_length, stride):
    """tokenizer(q, c, truncation="only_second", max_length, stride, return_overflowing_tokens=True,
    return_offsets_mapping=True, padding="max_length") without tokenizers 0.23's early exit."""
    backend = plain_backend(tokenizer)
    n_added = backend.num_special_tokens_to_add(True)
    # Tokenizer::with_truncation's check (tokenizers/src/tokenizer/mod.rs).
    if max_length - backend.num_special_tokens_to_add(False) < stride:
        raise ValueError(f"tokenizer stride set to {stride}, which is greater than or equal to its effective max length")
    encodings, sample_mapping = [], []
    for sample, (q, c) in enumerate(zip(questions, contexts)):
        first = backend.encode(q, add_special_tokens=False)
        second = backend.encode(c, add_special_tokens=False)
        second.set_sequence_id(1)
        # truncate_encodings (tokenizers/src/utils/truncation.rs), strategy OnlySecond, max_length less the
        # special tokens (TokenizerImpl::post_process).
        limit = max_length - n_added
        total = len(first.ids) + len(second.ids)
        if total > limit:
            to_remove = total - limit
            if len(second.ids) <= to_remove:
                raise ValueError("Truncation error: Sequence to truncate too short to respect the provided max_length")
            second.truncate(len(second.ids) - to_remove, stride=stride)  # Encoding::truncate, the real code
        merged = backend.post_process(first, second, add_special_tokens=True)
        for e in [merged] + list(merged.overflowing):
            e.pad(max_length, direction="right", pad_id=tokenizer.pad_token_id, pad_type_id=tokenizer.pad_token_type_id,
                  pad_token=tokenizer.pad_token)
            encodings.append(e)
            sample_mapping.append(sample)
    return Features(encodings, sample_mapping)


def hf_call(tokenizer, questions, contexts, max_length, stride):
    """The call run_qa makes, with the installed transformers / tokenizers."""
    return tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
                     return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")


def window_rows(batch):
    return [(batch["overflow_to_sample_mapping"][i], batch["input_ids"][i], batch["attention_mask"][i],
             [tuple(o) for o in batch["offset_mapping"][i]], list(batch.sequence_ids(i)))
            for i in range(len(batch["input_ids"]))]


def has_early_exit_regression():
    """huggingface/tokenizers#2091: overflowing windows stop near max_length tokens (0.23.1+)."""
    vocab = {"[UNK]": 0, **{str(i): i + 1 for i in range(100)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.enable_truncation(max_length=10, stride=2)
    return len(tok.encode(" ".join(str(i) for i in range(50))).overflowing) != 5


def check_against_hf_call(tokenizer, records, max_length, stride):
    """reference_tokenize == the real call for every example the early exit cannot cut."""
    regression = has_early_exit_regression()
    questions = [r["question"].lstrip() for r in records]
    contexts = [r["context"] for r in records]
    backend = plain_backend(tokenizer)
    ours = window_rows(reference_tokenize(tokenizer, questions, contexts, max_length, stride))
    theirs = window_rows(hf_call(tokenizer, questions, contexts, max_length, stride))
    compared = cut = 0
    for k, c in enumerate(contexts):
        a = [w for w in ours if w[0] == k]
        b = [w for w in theirs if w[0] == k]
        if regression and len(backend.encode(c, add_special_tokens=False).ids) > max_length:
            assert len(b) <= len(a), records[k]["id"]
            cut += 1
            continue
        assert a == b, f"windows of {records[k]['id']} differ from the tokenizer call"
        compared += 1
    print(f"  tokenizer call: {compared} examples identical, {cut} cut by the 0.23 early exit (not compared)")


CHECK_SCRIPT = r"""
import json, sys
import tokenizers
spec = json.load(sys.stdin)
tok = tokenizers.Tokenizer.from_str(spec["tokenizer"])
tok.enable_truncation(spec["max_length"], stride=spec["stride"], strategy="only_second")
tok.enable_padding(length=spec["max_length"], pad_id=spec["pad_id"], pad_token=spec["pad_token"])
rows = []
for k, e in enumerate(tok.encode_batch(list(zip(spec["questions"], spec["contexts"])))):
    for w in [e] + list(e.overflowing):
        rows.append([k, w.ids, w.attention_mask, [list(o) for o in w.offsets], w.sequence_ids])
json.dump({"version": tokenizers.__version__, "rows": rows}, sys.stdout)
"""


def check_with_other_tokenizers(site_dir, tokenizer, records, max_length, stride):
    """The real Rust windowing of another tokenizers build (e.g. 0.22.2) on the same tokenizer.json."""
    questions = [r["question"].lstrip() for r in records]
    contexts = [r["context"] for r in records]
    spec = {"tokenizer": plain_backend(tokenizer).to_str(), "max_length": max_length, "stride": stride,
            "pad_id": tokenizer.pad_token_id, "pad_token": tokenizer.pad_token, "questions": questions,
            "contexts": contexts}
    out = subprocess.run([sys.executable, "-c", CHECK_SCRIPT], input=json.dumps(spec), capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": site_dir, "PATH": "/usr/bin:/bin"})
    other = json.loads(out.stdout)
    theirs = [(k, ids, mask, [tuple(o) for o in offs], seq) for k, ids, mask, offs, seq in other["rows"]]
    ours = window_rows(reference_tokenize(tokenizer, questions, contexts, max_length, stride))
    assert ours == theirs, f"windows differ from tokenizers {other['version']}"
    print(f"  tokenizers {other['version']} call: all {len(ours)} windows identical")
    return other["version"]


# ---- run_qa.py, transcribed (pad_on_right = True for XLM-R) ----------------------------------------------


def prepare_train_features(examples, tokenizer, max_seq_length, doc_stride):
    pad_on_right = tokenizer.padding_side == "right"
    examples["question"] = [q.lstrip() for q in examples["question"]]
    # run_qa: tokenizer(questions, contexts, truncation="only_second", max_length=max_seq_length,
    # stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    tokenized_examples = reference_tokenize(tokenizer, examples["question"], examples["context"], max_seq_length,
                                            doc_stride)
    # Not in run_qa: XLM-R's model_input_names has no token_type_ids, so record the encodings' type ids.
    tokenized_examples["token_type_ids"] = [e.type_ids for e in tokenized_examples.encodings]
    sample_mapping = tokenized_examples.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized_examples.pop("offset_mapping")
    tokenized_examples["start_positions"] = []
    tokenized_examples["end_positions"] = []
    tokenized_examples["example_index"] = list(sample_mapping)  # kept for the fixture

    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized_examples["input_ids"][i]
        if tokenizer.cls_token_id in input_ids:
            cls_index = input_ids.index(tokenizer.cls_token_id)
        elif tokenizer.bos_token_id in input_ids:
            cls_index = input_ids.index(tokenizer.bos_token_id)
        else:
            cls_index = 0
        sequence_ids = tokenized_examples.sequence_ids(i)
        sample_index = sample_mapping[i]
        answers = examples["answers"][sample_index]
        if len(answers["answer_start"]) == 0:
            tokenized_examples["start_positions"].append(cls_index)
            tokenized_examples["end_positions"].append(cls_index)
        else:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            token_start_index = 0
            while sequence_ids[token_start_index] != (1 if pad_on_right else 0):
                token_start_index += 1
            token_end_index = len(input_ids) - 1
            while sequence_ids[token_end_index] != (1 if pad_on_right else 0):
                token_end_index -= 1
            if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
                tokenized_examples["start_positions"].append(cls_index)
                tokenized_examples["end_positions"].append(cls_index)
            else:
                while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                    token_start_index += 1
                tokenized_examples["start_positions"].append(token_start_index - 1)
                while offsets[token_end_index][1] >= end_char:
                    token_end_index -= 1
                tokenized_examples["end_positions"].append(token_end_index + 1)
    return tokenized_examples


def prepare_validation_features(examples, tokenizer, max_seq_length, doc_stride):
    pad_on_right = tokenizer.padding_side == "right"
    examples["question"] = [q.lstrip() for q in examples["question"]]
    # run_qa: tokenizer(questions, contexts, truncation="only_second", max_length=max_seq_length,
    # stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    tokenized_examples = reference_tokenize(tokenizer, examples["question"], examples["context"], max_seq_length,
                                            doc_stride)
    sample_mapping = tokenized_examples.pop("overflow_to_sample_mapping")
    tokenized_examples["example_id"] = []
    for i in range(len(tokenized_examples["input_ids"])):
        sequence_ids = tokenized_examples.sequence_ids(i)
        context_index = 1 if pad_on_right else 0
        sample_index = sample_mapping[i]
        tokenized_examples["example_id"].append(examples["id"][sample_index])
        tokenized_examples["offset_mapping"][i] = [
            (o if sequence_ids[k] == context_index else None)
            for k, o in enumerate(tokenized_examples["offset_mapping"][i])
        ]
    return tokenized_examples


# ---- utils_qa.py postprocess_qa_predictions, transcribed (no files written) -------------------------------


def postprocess_qa_predictions(examples, features, predictions, version_2_with_negative=False, n_best_size=20,
                               max_answer_length=30, null_score_diff_threshold=0.0):
    all_start_logits, all_end_logits = predictions
    assert len(predictions[0]) == len(features)
    example_id_to_index = {k: i for i, k in enumerate(examples["id"])}
    features_per_example = collections.defaultdict(list)
    for i, feature in enumerate(features):
        features_per_example[example_id_to_index[feature["example_id"]]].append(i)

    all_predictions = collections.OrderedDict()
    all_nbest_json = collections.OrderedDict()
    scores_diff_json = collections.OrderedDict()

    for example_index, example in enumerate(examples_as_rows(examples)):
        feature_indices = features_per_example[example_index]
        min_null_prediction = None
        prelim_predictions = []
        for feature_index in feature_indices:
            start_logits = all_start_logits[feature_index]
            end_logits = all_end_logits[feature_index]
            offset_mapping = features[feature_index]["offset_mapping"]
            token_is_max_context = features[feature_index].get("token_is_max_context", None)
            feature_null_score = start_logits[0] + end_logits[0]
            if min_null_prediction is None or min_null_prediction["score"] > feature_null_score:
                min_null_prediction = {
                    "offsets": (0, 0),
                    "score": feature_null_score,
                    "start_logit": start_logits[0],
                    "end_logit": end_logits[0],
                }
            start_indexes = np.argsort(start_logits)[-1 : -n_best_size - 1 : -1].tolist()
            end_indexes = np.argsort(end_logits)[-1 : -n_best_size - 1 : -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if (
                        start_index >= len(offset_mapping)
                        or end_index >= len(offset_mapping)
                        or offset_mapping[start_index] is None
                        or len(offset_mapping[start_index]) < 2
                        or offset_mapping[end_index] is None
                        or len(offset_mapping[end_index]) < 2
                    ):
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    if token_is_max_context is not None and not token_is_max_context.get(str(start_index), False):
                        continue
                    prelim_predictions.append(
                        {
                            "offsets": (offset_mapping[start_index][0], offset_mapping[end_index][1]),
                            "score": start_logits[start_index] + end_logits[end_index],
                            "start_logit": start_logits[start_index],
                            "end_logit": end_logits[end_index],
                        }
                    )
        if version_2_with_negative and min_null_prediction is not None:
            prelim_predictions.append(min_null_prediction)
            null_score = min_null_prediction["score"]

        predictions = sorted(prelim_predictions, key=lambda x: x["score"], reverse=True)[:n_best_size]

        if (
            version_2_with_negative
            and min_null_prediction is not None
            and not any(p["offsets"] == (0, 0) for p in predictions)
        ):
            predictions.append(min_null_prediction)

        context = example["context"]
        for pred in predictions:
            offsets = pred.pop("offsets")
            pred["text"] = context[offsets[0] : offsets[1]]

        if len(predictions) == 0 or (len(predictions) == 1 and predictions[0]["text"] == ""):
            predictions.insert(0, {"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0})

        scores = np.array([pred.pop("score") for pred in predictions])
        exp_scores = np.exp(scores - np.max(scores))
        probs = exp_scores / exp_scores.sum()
        for prob, pred in zip(probs, predictions):
            pred["probability"] = prob
        for score, pred in zip(scores, predictions):
            pred["score"] = score  # not in utils_qa (it pops the score); kept for the fixture

        if not version_2_with_negative:
            all_predictions[example["id"]] = predictions[0]["text"]
        else:
            i = 0
            while predictions[i]["text"] == "":
                i += 1
            best_non_null_pred = predictions[i]
            score_diff = null_score - best_non_null_pred["start_logit"] - best_non_null_pred["end_logit"]
            scores_diff_json[example["id"]] = float(score_diff)
            if score_diff > null_score_diff_threshold:
                all_predictions[example["id"]] = ""
            else:
                all_predictions[example["id"]] = best_non_null_pred["text"]

        all_nbest_json[example["id"]] = [
            {k: (float(v) if isinstance(v, (np.float16, np.float32, np.float64)) else v) for k, v in pred.items()}
            for pred in predictions
        ]
    return all_predictions, all_nbest_json, scores_diff_json


def examples_as_rows(examples):
    return [{k: examples[k][i] for k in examples} for i in range(len(examples["id"]))]


# ---- logits -----------------------------------------------------------------------------------------------


def make_logits(features, example_ids, seq_len, seed):
    """[N, T] start and end logits with 3 decimals (float64; the model's float32 logits are their casts),
    no ties within a row after the cast."""
    rng = np.random.default_rng(seed)
    rows_start, rows_end = [], []
    for f, feature in enumerate(features):
        while True:
            start = np.round(rng.normal(0.0, 3.0, seq_len), 3)
            end = np.round(rng.normal(0.0, 3.0, seq_len), 3)
            if example_ids[f] in EMPTY_FALLBACK_IDS:
                context = np.array([o is not None for o in feature["offset_mapping"]])
                start[context] -= 100.0  # every top-n index is a non-context token
                end[context] -= 100.0
            if example_ids[f] in NULL_FAVOURED_IDS:
                start[0] += 12.0
                end[0] += 12.0
            if len(set(start.astype(np.float32).tolist())) == seq_len and \
                    len(set(end.astype(np.float32).tolist())) == seq_len:
                break
        rows_start.append(start)
        rows_end.append(end)
    return np.stack(rows_start), np.stack(rows_end)


def fmt_float(x):
    """Shortest repr of the double that the float32 converts to: exact in JSON, exact back in C++."""
    return float(np.float32(x)) if isinstance(x, np.floating) else float(x)


# ---- main -------------------------------------------------------------------------------------------------


def encode_case(tokenizer, cfg, records, seed):
    T, stride = cfg["max_seq_length"], cfg["doc_stride"]
    train = prepare_train_features(as_hf_examples(records), tokenizer, T, stride)
    valid = prepare_validation_features(as_hf_examples(records), tokenizer, T, stride)
    n = len(train["input_ids"])
    assert n == len(valid["input_ids"]) and train["input_ids"] == valid["input_ids"]

    features = []
    for i in range(n):
        assert len(train["input_ids"][i]) == T
        features.append({
            "example_index": train["example_index"][i],
            "example_id": valid["example_id"][i],
            "input_ids": train["input_ids"][i],
            "attention_mask": train["attention_mask"][i],
            "token_type_ids": train["token_type_ids"][i],
            "start_position": train["start_positions"][i],
            "end_position": train["end_positions"][i],
            "offset_mapping": [list(o) if o is not None else None for o in valid["offset_mapping"][i]],
        })

    start_decimal, end_decimal = make_logits(features, valid["example_id"], T, seed)
    start_logits, end_logits = start_decimal.astype(np.float32), end_decimal.astype(np.float32)
    examples = as_hf_examples(records)
    feats = [{"example_id": f["example_id"], "offset_mapping": f["offset_mapping"]} for f in features]
    post = {}
    for v2 in (False, True):
        preds, nbest, diffs = postprocess_qa_predictions(
            examples, feats, (start_logits, end_logits), version_2_with_negative=v2,
            n_best_size=cfg["n_best_size"], max_answer_length=cfg["max_answer_length"],
            null_score_diff_threshold=cfg["null_threshold"])
        rows = []
        for ex_id, text in preds.items():
            row = {"id": ex_id, "prediction_text": text}
            if v2:
                row["null_score_diff"] = diffs[ex_id]
            row["nbest"] = [{"text": p["text"], "start_logit": fmt_float(p["start_logit"]),
                             "end_logit": fmt_float(p["end_logit"]), "score": fmt_float(p["score"]),
                             "probability": float(p["probability"])} for p in nbest[ex_id]]
            rows.append(row)
        post["v2" if v2 else "v1"] = rows

    for i, f in enumerate(features):
        # The 3-decimal doubles: short in JSON; C++ casts them to float as numpy's astype did.
        f["start_logits"] = [float(x) for x in start_decimal[i]]
        f["end_logits"] = [float(x) for x in end_decimal[i]]
    return features, post


def check_coverage(cfg, records, features, post):
    """The fixture must exercise what the tests claim; fail loudly if a data change loses a case."""
    T = cfg["max_seq_length"]
    per_example = collections.Counter(f["example_index"] for f in features)
    assert max(per_example.values()) >= 5, "some context needs several windows"
    labelled = [f for f in features if f["start_position"] != 0]
    cls_answerable = [f for f in features if f["start_position"] == 0 and records[f["example_index"]]["answers"]]
    assert labelled and cls_answerable, "answers both inside and outside windows"
    quirk = [f for f in features if f["start_position"] == T - 1]
    print(f"  {len(features)} features, {len(labelled)} labelled, {len(cls_answerable)} answer outside window, "
          f"{len(quirk)} start walked into padding")
    v2 = post["v2"]
    null_wins = sum(1 for r in v2 if r["prediction_text"] == "")
    assert 0 < null_wins < len(v2), "v2 answers both null and non-null"
    assert any(r["nbest"][0]["text"] == "empty" for r in post["v1"]), "the 'empty' fallback"
    return len(quirk)


def error_cases(tokenizer):
    """What HF does when the question leaves no room, or the stride is too large for the window."""
    context = "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam từ năm 1976, sau khi thống nhất đất nước."
    question = "Thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam là thành phố nào?"
    n_question = len(tokenizer(question, add_special_tokens=False)["input_ids"])
    cases = []
    for name, max_len, stride in [
        ("question_too_long", n_question + 4, 0),  # no room for any context token
        ("stride_not_below_window", n_question + 4 + 8, 8),  # window of 8 context tokens, stride 8
        ("stride_above_max_length", 16, 15),  # rejected when truncation is configured
    ]:
        try:
            tokenizer([question], [context], truncation="only_second", max_length=max_len, stride=stride,
                      return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
            error = None
        except BaseException as e:  # noqa: BLE001 - the stride assert is a pyo3 PanicException
            error = f"{type(e).__name__}: {e}".splitlines()[0]
        assert error is not None, name
        cases.append({"name": name, "question": question, "context": context, "max_seq_length": max_len,
                      "doc_stride": stride, "question_tokens": n_question, "hf_error": error})
    return cases


def write_features_file(path, cfg, features, post):
    lines = ["{", f'"config": {json.dumps(cfg)},', '"features": [']
    lines += [json.dumps(f, ensure_ascii=False, separators=(",", ":")) + ("," if i + 1 < len(features) else "")
              for i, f in enumerate(features)]
    lines.append("],")
    for key in ("v1", "v2"):
        lines.append(f'"{key}": [')
        rows = post[key]
        lines += [json.dumps(r, ensure_ascii=False, separators=(",", ":")) + ("," if i + 1 < len(rows) else "")
                  for i, r in enumerate(rows)]
        lines.append("]" + ("," if key == "v1" else ""))
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-tokenizers", metavar="DIR",
                        help="a --target folder with another tokenizers build (e.g. 0.22.2) to compare windows with")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.glob("features_*.json"):
        stale.unlink()
    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    assert tokenizer.is_fast and tokenizer.padding_side == "right"
    records = build_records()
    with open(OUT / "records.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    quirks = 0
    for k, cfg in enumerate(CONFIGS):
        print(f"max_seq_length={cfg['max_seq_length']} doc_stride={cfg['doc_stride']}")
        check_against_hf_call(tokenizer, records, cfg["max_seq_length"], cfg["doc_stride"])
        if args.check_tokenizers:
            check_with_other_tokenizers(args.check_tokenizers, tokenizer, records, cfg["max_seq_length"],
                                        cfg["doc_stride"])
        features, post = encode_case(tokenizer, cfg, records, seed=1234 + k)
        quirks += check_coverage(cfg, records, features, post)
        write_features_file(OUT / f"features_{cfg['max_seq_length']}_{cfg['doc_stride']}.json", cfg, features, post)
    assert quirks > 0, "a start position walked past the context (vi-answer-last-token)"

    meta = {
        "generator": "tools/gen_qa_fixtures.py",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "tokenizer": "tests/fixtures/tokenizers/xlmr-viwiki",
        "tokenizers_early_exit_regression": has_early_exit_regression(),
        "errors": error_cases(tokenizer),
    }
    (OUT / "errors.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total} bytes)")
    assert total < 500_000


if __name__ == "__main__":
    main()
