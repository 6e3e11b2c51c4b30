#!/usr/bin/env python3
"""Generates tests/fixtures/eval/: expected extractive-QA scores from the official evaluation code.

Run with the pinned venv (transformers 5.17, Python 3.11, Unicode 14.0):

    /root/.cache/qlora/venv/bin/python tools/gen_eval_fixtures.py \
        --squad-v1-script /tmp/eval_oracle/squad_v1_compute_score.py \
        --mlqa-script /tmp/eval_oracle/mlqa_evaluation_v1.py

Oracles (none of their code is committed here; get the two script files as below):
* SQuAD v2.0: transformers.data.metrics.squad_metrics (installed), a copy of the official v2 script
  (normalize_answer, compute_exact/compute_f1, get_raw_scores, apply_no_ans_threshold, make_eval_dict,
  find_all_best_thresh via squad_evaluate).
* SQuAD v1.1: the official script as shipped by huggingface/evaluate, metrics/squad/compute_score.py at
  commit 86baf122193975dc4a910a6f1fabf0cbaeaf8cd7 (identical logic to rajpurkar's evaluate-v1.1.py):
      git -C <evaluate clone> show 86baf122193975dc4a910a6f1fabf0cbaeaf8cd7:metrics/squad/compute_score.py
* MLQA: facebookresearch/MLQA, mlqa_evaluation_v1.py at commit 5ef5c731a96acb7008b51aac4acb5fa9dff4f297:
      git -C <MLQA clone> show 5ef5c731a96acb7008b51aac4acb5fa9dff4f297:mlqa_evaluation_v1.py
  For v2 suites with MLQA normalisation, squad_metrics.normalize_answer is swapped for MLQA's
  normalize_answer(s, lang); everything else is the official v2 logic.

Outputs
* squad_cases.json: suites (options, references, predictions, expected per-question and aggregate scores),
  plus a table of texts with their normalised forms under every normaliser.
* unicode_python.json: the Python str facts the normalisers rely on (str.lower, str.split whitespace,
  re's \\w, MLQA's punctuation set, the Final_Sigma context classes), for every code point assigned in
  Python's Unicode version, so the C++ tests can check utf8proc-based code against Python directly.
* *.jsonl: small prediction/reference files for the file-reader tests (good and malformed ones).

qlora's own rule (not the official scripts'): a reference question with no prediction scores 0 and counts
in `total`. v1.1 and MLQA do exactly that; the v2 script would drop it from `total` (and crash on the
HasAns/NoAns breakdown), so no v2 suite here has a missing prediction.
"""

import argparse
import collections
import importlib.util
import json
import re
import sys
import types
import unicodedata
from pathlib import Path

import transformers
from transformers.data.metrics import squad_metrics

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "eval"
MLQA_LANGS = ["en", "es", "hi", "vi", "de", "ar", "zh"]


def load_script(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nfc(s):
    return unicodedata.normalize("NFC", s)


# ---------------------------------------------------------------------------------------------------
# Cases. Each question: (id, gold answer texts, prediction text or None for "no prediction", na_prob or
# None for "field absent"). Text is NFC unless a case says otherwise.

EN_V1 = [
    ("en_exact", ["Denver Broncos"], "Denver Broncos", None),
    ("en_case_punct", ["Denver Broncos"], "the denver broncos!", None),
    ("en_article_mid", ["Saint Bernadette Soubirous"], "a Saint the Bernadette an Soubirous", None),
    ("en_article_inside_word", ["theatre"], "the atre", None),
    ("en_partial", ["the Golden Gate Bridge"], "Golden Gate", None),
    ("en_multi_gold", ["1976", "in 1976", "May 1976"], "may 1976.", None),
    ("en_repeated_tokens", ["New York New York"], "New York", None),
    ("en_empty_pred", ["Paris"], "", None),
    ("en_space_pred", ["Paris"], " \t\n ", None),
    ("en_gold_only_article", ["The"], "a", None),
    ("en_gold_only_article_2", ["an"], "Paris", None),
    ("en_hyphen_underscore", ["state-of-the-art"], "state of the art", None),
    ("en_apostrophe", ["l'the end"], "lthe end", None),
    ("en_digits_article", ["the1 1the"], "the1 1the", None),
    ("en_unicode_quotes", ["\u201cHamlet\u201d"], "Hamlet", None),
    ("en_dashes", ["1914\u20131918"], "1914-1918", None),
    ("en_symbols", ["$5 + \u20ac6 \u00d7 2"], "5  \u20ac6 \u00d7 2", None),
    ("en_missing", ["Nile"], None, None),
    ("en_nbsp_tab", ["Mount Everest"], "mount\u00a0everest\u3000", None),
    ("en_zero_width", ["Mount Everest"], "Mount\u200bEverest", None),
    ("en_unit_separator", ["Mount Everest"], "Mount\u001fEverest", None),
]
EN_EXTRA_PREDICTIONS = [("en_not_a_question", "whatever")]

VI_V1 = [
    ("vi_exact", ["H\u00e0 N\u1ed9i"], "H\u00e0 N\u1ed9i", None),
    ("vi_lower", ["Th\u00e0nh ph\u1ed1 H\u1ed3 Ch\u00ed Minh"], "th\u00e0nh ph\u1ed1 h\u1ed3 ch\u00ed minh.", None),
    ("vi_capitals", ["\u0110\u1ea0I H\u1eccC QU\u1ed0C GIA"], "\u0111\u1ea1i h\u1ecdc qu\u1ed1c gia", None),
    ("vi_tieng_viet", ["Ti\u1ebfng Vi\u1ec7t"], "TI\u1ebeNG VI\u1ec6T", None),
    ("vi_article_cua", ["c\u1ee7a Vi\u1ec7t Nam"], "Vi\u1ec7t Nam", None),
    ("vi_article_la", ["l\u00e0 s\u00f4ng H\u1ed3ng"], "S\u00f4ng H\u1ed3ng", None),
    ("vi_articles_all", ["nh\u1eefng chi\u1ebfc c\u00e1i b\u00e0n"], "b\u00e0n", None),
    ("vi_article_not_word", ["c\u1ee7ac\u1ee7a l\u00e0m"], "l\u00e0m", None),
    ("vi_curly_quotes", ["\u201cTruy\u1ec7n Ki\u1ec1u\u201d"], "Truy\u1ec7n Ki\u1ec1u", None),
    ("vi_guillemets", ["\u00ab Ti\u1ebfng Vi\u1ec7t \u00bb"], "ti\u1ebfng vi\u1ec7t\u2026", None),
    ("vi_en_dash", ["1945\u20131954"], "1945 - 1954", None),
    ("vi_ellipsis_partial", ["s\u00f4ng C\u1eedu Long\u2026"], "C\u1eedu Long", None),
    ("vi_multi_gold", ["V\u1ecbnh H\u1ea1 Long", "H\u1ea1 Long"], "v\u1ecbnh h\u1ea1 long, qu\u1ea3ng ninh", None),
    ("vi_word_boundary_a", ["b\u00e0 a ba"], "b\u00e0 ba", None),
    ("vi_word_boundary_letter", ["\u01a0the \u00e3an"], "\u01a1the \u00e3an", None),
    ("vi_empty_pred", ["Hu\u1ebf"], "", None),
    ("vi_extra_space", ["\u0110\u00e0 N\u1eb5ng"], "  \u0111\u00e0   n\u1eb5ng  ", None),
    ("vi_nfd_pred", ["H\u00e0 N\u1ed9i"], unicodedata.normalize("NFD", "H\u00e0 N\u1ed9i"), None),
    ("vi_nfd_article", ["\u00e0o"], unicodedata.normalize("NFD", "\u00e0o"), None),
    ("vi_missing", ["Ph\u00fa Qu\u1ed1c"], None, None),
]

# Non-Vietnamese probes of str.lower(): Final_Sigma, U+0130, fullwidth and non-BMP letters.
OTHER_V1 = [
    ("x_sigma_final", ["\u039f\u0394\u039f\u03a3"], "\u03bf\u03b4\u03bf\u03c2", None),
    ("x_sigma_medial_pred", ["\u039f\u0394\u039f\u03a3"], "\u03bf\u03b4\u03bf\u03c3", None),
    ("x_sigma_dot", ["\u039f\u0394\u039f\u03a3."], "\u03bf\u03b4\u03bf\u03c2", None),
    ("x_sigma_quote_letter", ["\u039f\u0394\u039f\u03a3'\u0391"], "\u03bf\u03b4\u03bf\u03c3\u03b1", None),
    ("x_sigma_alone", ["\u03a3"], "\u03c3", None),
    ("x_dotted_i", ["\u0130stanbul"], "istanbul", None),
    ("x_fullwidth", ["\uff21\uff22\uff23"], "\uff41\uff42\uff43", None),
    ("x_non_bmp", ["\U0001d400 \U00010400 \U0001f1fb\U0001f1f3"], "\U0001d400 \U00010428 \U0001f1fb\U0001f1f3", None),
]

V2 = [
    # (id, golds, prediction, na_prob); golds == [] is an unanswerable question.
    ("v2_has_right", ["H\u00e0 N\u1ed9i"], "H\u00e0 N\u1ed9i", 0.1),
    ("v2_has_wrong", ["Hu\u1ebf"], "\u0110\u00e0 N\u1eb5ng", 0.9),
    ("v2_has_partial", ["the Red River Delta"], "Red River", 0.4),
    ("v2_has_pred_empty", ["s\u00f4ng Mekong"], "", 0.7),
    ("v2_no_empty", [], "", 0.8),
    ("v2_no_answered", [], "H\u00e0 N\u1ed9i", 0.95),
    ("v2_no_space", [], "  ", 0.3),
    ("v2_no_article_only", [], "the", 0.5),
    ("v2_gold_filtered", ["the", "Mekong"], "mekong", 0.5),
    ("v2_gold_all_filtered", ["The", "."], "", 0.2),
    ("v2_gold_all_filtered_pred", ["a"], "Mekong", 0.6),
    ("v2_no_prob_field", ["Ph\u00fa Qu\u1ed1c"], "\u0111\u1ea3o Ph\u00fa Qu\u1ed1c", None),
    ("v2_vi_article", ["c\u1ee7a Vi\u1ec7t Nam"], "\u201cVi\u1ec7t Nam\u201d", 0.5),
    ("v2_no_tie", [], "", 0.5),
    ("v2_prob_one", ["Hu\u1ebf"], "Hu\u1ebf", 1.0),
]
V2_EXTRA_PREDICTIONS = [("v2_not_a_question", "g\u00ec \u0111\u00f3", 0.25)]

V2_ANSWERABLE_ONLY = [q for q in V2 if q[1] and q[0] != "v2_gold_all_filtered"][:5]
V2_UNANSWERABLE_ONLY = [q for q in V2 if not q[1]]

# Extra texts for the normaliser table: articles of every MLQA language, Arabic "al", Chinese.
NORMALIZER_PROBES = [
    "El perro y la casa, los gatos; unas flores.",
    "Der Hund, die Katze und das Haus eines Mannes.",
    "\u0627\u0644\u0643\u062a\u0627\u0628 \u0648\u0627\u0644\u0642\u0644\u0645",
    "\u5317\u4eac\u662f\u4e2d\u56fd\u7684\u9996\u90fd\u3002abc def\uff0c\u4e0a\u6d77",
    "\u0928\u0908 \u0926\u093f\u0932\u094d\u0932\u0940 "
    "\u092d\u093e\u0930\u0924 \u0915\u0940 \u0930\u093e\u091c\u0927\u093e\u0928\u0940 \u0939\u0948\u0964",
    "Qu\u1ea3 l\u00e0 c\u1ee7a nh\u1eefng c\u00e1i chi\u1ebfc\u2014l\u00e0!",
    "C\u1ee6A L\u00c0 C\u00c1I CHI\u1ebeC NH\u1eeeNG",
    "\u00bfQu\u00e9? \u00a1S\u00ed! \u00b7 \u2027 \u3001\u300c\u300d",
]


# ---------------------------------------------------------------------------------------------------


def v1_suite(name, v1_module, normalize, lang, questions, extra=()):
    """Scores with the official v1.1 script (normalize='squad') or MLQA's (normalize='mlqa')."""
    if normalize == "squad":
        em_fn = lambda p, g: v1_module["squad"].exact_match_score(p, g)
        f1_fn = lambda p, g: v1_module["squad"].f1_score(p, g)
        evaluate = lambda data, preds: v1_module["squad"].compute_score(data, preds)
    else:
        em_fn = lambda p, g: v1_module["mlqa"].exact_match_score(p, g, lang)
        f1_fn = lambda p, g: v1_module["mlqa"].f1_score(p, g, lang)
        evaluate = lambda data, preds: v1_module["mlqa"].evaluate(data, preds, lang)

    qas = [{"id": qid, "answers": [{"text": t, "answer_start": 0} for t in golds]} for qid, golds, _, _ in questions]
    preds = collections.OrderedDict((qid, p) for qid, _, p, _ in questions if p is not None)
    for qid, p in extra:
        preds[qid] = p
    aggregate = evaluate([{"paragraphs": [{"qas": qas}]}], preds)
    per_question = {}
    for qid, golds, p, _ in questions:
        if p is None:
            continue
        per_question[qid] = {
            "exact": float(max(em_fn(p, g) for g in golds)),
            "f1": float(max(f1_fn(p, g) for g in golds)),
        }
    return {
        "name": name,
        "options": {"version": "v1", "normalize": normalize, "lang": lang, "na_threshold": 1.0},
        "references": [{"id": qid, "answers": golds, "is_impossible": False} for qid, golds, _, _ in questions],
        "predictions": prediction_records(questions, [(qid, p, None) for qid, p in extra]),
        "expected": {
            "aggregate": aggregate,
            "per_question": per_question,
            "missing": sum(1 for q in questions if q[2] is None),
            "unknown_predictions": len(extra),
        },
    }


def prediction_records(questions, extra):
    records = []
    for qid, _, p, prob in questions:
        if p is None:
            continue
        record = {"id": qid, "prediction_text": p}
        if prob is not None:
            record["no_answer_probability"] = prob
        records.append(record)
    for qid, p, prob in extra:
        record = {"id": qid, "prediction_text": p}
        if prob is not None:
            record["no_answer_probability"] = prob
        records.append(record)
    return records


def v2_suite(name, mlqa, normalize, lang, threshold, questions, extra=()):
    """Scores with transformers' squad_metrics (the official v2 logic)."""
    original = squad_metrics.normalize_answer
    if normalize == "mlqa":
        squad_metrics.normalize_answer = lambda s: mlqa.normalize_answer(s, lang)
    try:
        examples = [
            types.SimpleNamespace(qas_id=qid, answers=[{"text": t, "answer_start": 0} for t in golds])
            for qid, golds, _, _ in questions
        ]
        preds = collections.OrderedDict((qid, p) for qid, _, p, _ in questions)
        probs = collections.OrderedDict((qid, 0.0 if prob is None else prob) for qid, _, _, prob in questions)
        for qid, p, prob in extra:
            preds[qid] = p
            probs[qid] = prob
        aggregate = squad_metrics.squad_evaluate(examples, preds, probs, threshold)
        exact_raw, f1_raw = squad_metrics.get_raw_scores(examples, preds)
        has_ans = {e.qas_id: bool(e.answers) for e in examples}
        exact_thresh = squad_metrics.apply_no_ans_threshold(exact_raw, probs, has_ans, threshold)
        f1_thresh = squad_metrics.apply_no_ans_threshold(f1_raw, probs, has_ans, threshold)
    finally:
        squad_metrics.normalize_answer = original
    per_question = {
        qid: {
            "exact": float(exact_raw[qid]),
            "f1": float(f1_raw[qid]),
            "exact_thresh": float(exact_thresh[qid]),
            "f1_thresh": float(f1_thresh[qid]),
        }
        for qid in exact_raw
    }
    return {
        "name": name,
        "options": {"version": "v2", "normalize": normalize, "lang": lang, "na_threshold": threshold},
        "references": [
            {"id": qid, "answers": golds, "is_impossible": not golds} for qid, golds, _, _ in questions
        ],
        "predictions": prediction_records(questions, extra),
        "expected": {
            "aggregate": dict(aggregate),
            "per_question": per_question,
            "missing": 0,
            "unknown_predictions": len(extra),
        },
    }


def normalizer_table(mlqa, squad_v1, texts):
    rows = []
    for text in texts:
        row = {"text": text, "squad": squad_v1.normalize_answer(text)}
        assert row["squad"] == squad_metrics.normalize_answer(text)  # v1.1 and v2 normalise alike
        for lang in MLQA_LANGS:
            row["mlqa_" + lang] = mlqa.normalize_answer(text, lang)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------
# Python str facts, as ranges [first, last] of code points.


def ranges(predicate, codepoints):
    out = []
    for cp in codepoints:
        if predicate(cp):
            if out and out[-1][1] == cp - 1:
                out[-1][1] = cp
            else:
                out.append([cp, cp])
    return out


def unicode_facts(mlqa):
    everything = range(sys.maxunicode + 1)
    assigned = [cp for cp in everything if unicodedata.category(chr(cp)) not in ("Cn", "Cs")]
    word = re.compile(r"\w")
    lower = [[cp, [ord(c) for c in chr(cp).lower()]] for cp in assigned if chr(cp).lower() != chr(cp)]

    # Final_Sigma (Python's handle_capital_sigma) sees each neighbour as case-ignorable (skipped),
    # cased, or neither. Probe:  c+"Σ" is final iff c is cased and not ignorable;
    # "A"+c+"Σ" is final iff c is ignorable or cased.
    def sigma_class(cp):
        c = chr(cp)
        p1 = (c + "\u03a3").lower()[-1] == "\u03c2"
        p3 = ("A" + c + "\u03a3").lower()[-1] == "\u03c2"
        return "cased" if p1 else ("ignorable" if p3 else "other")

    sigma = {cp: sigma_class(cp) for cp in assigned}
    return {
        "python": sys.version.split()[0],
        "unicode_version": unicodedata.unidata_version,
        "assigned": ranges(lambda cp: True, assigned),
        "lower": lower,
        "whitespace": [cp for cp in everything if chr(cp).isspace()],
        "word": ranges(lambda cp: bool(word.match(chr(cp))), assigned),
        "mlqa_punct": ranges(lambda cp: chr(cp) in mlqa.PUNCT, assigned),
        "sigma_cased": ranges(lambda cp: sigma[cp] == "cased", assigned),
        "sigma_ignorable": ranges(lambda cp: sigma[cp] == "ignorable", assigned),
    }


# ---------------------------------------------------------------------------------------------------
# Files for the reader tests.


def write_text(name, text):
    (OUT / name).write_text(text, encoding="utf-8")


def jsonl(records):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def mrc_record(qid, golds, impossible=None):
    record = {
        "id": qid,
        "title": "Vi\u1ec7t Nam",
        "context": "Th\u1ee7 \u0111\u00f4 c\u1ee7a Vi\u1ec7t Nam l\u00e0 H\u00e0 N\u1ed9i.",
        "question": "Th\u1ee7 \u0111\u00f4 c\u1ee7a Vi\u1ec7t Nam l\u00e0 g\u00ec?",
        "answers": [{"text": g, "answer_start": 0} for g in golds],
        "is_impossible": (not golds) if impossible is None else impossible,
    }
    return record


def write_reader_files(suite):
    refs = [mrc_record(r["id"], r["answers"]) for r in suite["references"]]
    write_text("v2_references.jsonl", jsonl(refs))
    write_text("v2_predictions.jsonl", jsonl(suite["predictions"]))
    good_ref = mrc_record("q1", ["H\u00e0 N\u1ed9i"])
    good_pred = {"id": "q1", "prediction_text": "H\u00e0 N\u1ed9i"}
    # Each bad file has its problem on line 3 (line 2 is blank, which readers skip).
    bad_refs = {
        "bad_ref_malformed.jsonl": '{"id": "q0"',
        "bad_ref_no_id.jsonl": json.dumps({k: v for k, v in good_ref.items() if k != "id"}),
        "bad_ref_id_type.jsonl": json.dumps(dict(good_ref, id=7)),
        "bad_ref_no_answers.jsonl": json.dumps({k: v for k, v in good_ref.items() if k != "answers"}),
        "bad_ref_answer_text_type.jsonl": json.dumps(dict(good_ref, answers=[{"text": 3, "answer_start": 0}])),
        "bad_ref_impossible_type.jsonl": json.dumps(dict(good_ref, is_impossible="no")),
        "bad_ref_impossible_with_answers.jsonl": json.dumps(dict(good_ref, is_impossible=True)),
        "bad_ref_duplicate.jsonl": json.dumps(dict(good_ref, id="q0")),
    }
    for name, third in bad_refs.items():
        write_text(name, jsonl([mrc_record("q0", ["Hu\u1ebf"])]) + "\n" + third + "\n")
    bad_preds = {
        "bad_pred_malformed.jsonl": "[1, 2]",
        "bad_pred_no_text.jsonl": json.dumps({"id": "q1"}),
        "bad_pred_text_type.jsonl": json.dumps({"id": "q1", "prediction_text": None}),
        "bad_pred_prob_type.jsonl": json.dumps(dict(good_pred, no_answer_probability="0.5")),
        "bad_pred_duplicate.jsonl": json.dumps(dict(good_pred, id="q0")),
        "bad_pred_typo.jsonl": json.dumps({"id": "q1", "predicton_text": "x"}),
    }
    for name, third in bad_preds.items():
        write_text(name, jsonl([{"id": "q0", "prediction_text": "Hu\u1ebf"}]) + "\n" + third + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squad-v1-script", required=True, help="official SQuAD v1.1 compute_score.py")
    parser.add_argument("--mlqa-script", required=True, help="facebookresearch/MLQA mlqa_evaluation_v1.py")
    args = parser.parse_args()
    squad_v1 = load_script(args.squad_v1_script, "squad_v1_official")
    mlqa = load_script(args.mlqa_script, "mlqa_official")
    v1 = {"squad": squad_v1, "mlqa": mlqa}

    for q in EN_V1 + VI_V1 + OTHER_V1 + V2:
        for text in q[1] + ([q[2]] if q[2] is not None else []):
            if not q[0].startswith("vi_nfd"):
                assert unicodedata.is_normalized("NFC", text), q[0]

    en_extra = EN_EXTRA_PREDICTIONS
    suites = [
        v1_suite("v1_squad_en", v1, "squad", "en", EN_V1, en_extra),
        v1_suite("v1_squad_vi", v1, "squad", "vi", VI_V1),
        v1_suite("v1_squad_other", v1, "squad", "en", OTHER_V1),
        v1_suite("v1_mlqa_vi", v1, "mlqa", "vi", VI_V1),
        v1_suite("v1_mlqa_en", v1, "mlqa", "en", EN_V1, en_extra),
        v1_suite("v1_mlqa_vi_other", v1, "mlqa", "vi", OTHER_V1),
        v2_suite("v2_squad", mlqa, "squad", "en", 1.0, V2, V2_EXTRA_PREDICTIONS),
        v2_suite("v2_squad_thresh_0.5", mlqa, "squad", "en", 0.5, V2, V2_EXTRA_PREDICTIONS),
        v2_suite("v2_squad_thresh_0", mlqa, "squad", "en", 0.0, V2),
        v2_suite("v2_mlqa_vi", mlqa, "mlqa", "vi", 1.0, V2),
        v2_suite("v2_mlqa_vi_thresh_0.5", mlqa, "mlqa", "vi", 0.5, V2),
        v2_suite("v2_answerable_only", mlqa, "squad", "en", 1.0, V2_ANSWERABLE_ONLY),
        v2_suite("v2_unanswerable_only", mlqa, "squad", "en", 0.5, V2_UNANSWERABLE_ONLY),
        v2_suite("v2_vi_as_v2", mlqa, "squad", "vi", 1.0, [q for q in VI_V1 if q[2] is not None]),
    ]

    texts = []
    for q in EN_V1 + VI_V1 + OTHER_V1 + V2:
        for text in q[1] + ([q[2]] if q[2] is not None else []):
            if text not in texts:
                texts.append(text)
    texts += NORMALIZER_PROBES

    OUT.mkdir(parents=True, exist_ok=True)
    cases = {
        "generated_by": "tools/gen_eval_fixtures.py",
        "python": sys.version.split()[0],
        "unicode_version": unicodedata.unidata_version,
        "transformers": transformers.__version__,
        "oracles": {
            "v2": "transformers.data.metrics.squad_metrics",
            "v1": "huggingface/evaluate@86baf122193975dc4a910a6f1fabf0cbaeaf8cd7:metrics/squad/compute_score.py",
            "mlqa": "facebookresearch/MLQA@5ef5c731a96acb7008b51aac4acb5fa9dff4f297:mlqa_evaluation_v1.py",
        },
        "questions": sum(len(s["references"]) for s in suites),
        "suites": suites,
        "normalized": normalizer_table(mlqa, squad_v1, texts),
    }
    (OUT / "squad_cases.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (OUT / "unicode_python.json").write_text(json.dumps(unicode_facts(mlqa), separators=(",", ":")) + "\n")
    write_reader_files(next(s for s in suites if s["name"] == "v2_squad"))
    print(f"wrote {len(suites)} suites, {cases['questions']} questions, {len(texts)} normaliser texts to {OUT}")


if __name__ == "__main__":
    main()
