#!/usr/bin/env python3
"""Writes tests/fixtures/eval/text_metrics/: ROUGE, BLEU and chrF cases scored by the reference packages.

Oracles (pinned in tools/requirements.txt): rouge-score 0.1.2 (RougeScorer, its DefaultTokenizer and
nltk 3.10.4's PorterStemmer in its default NLTK_EXTENSIONS mode, which is what rouge-score constructs)
and sacrebleu 2.6.0 (BLEU(), sentence_bleu, CHRF()). The `unicode` ROUGE tokenizer is qlora's own; its
oracle here is the plain Python definition below passed to RougeScorer(tokenizer=...).

Text: English responses from ../shared/data/instruct/dolly-hhrlhf (CC BY-SA 3.0, via mosaicml/llm-foundry,
Apache-2.0) and Vietnamese lines from ../shared/data/text/viwiki (CC BY-SA 3.0), plus hand-written edge
cases. Deterministic (random.Random(seed)); prints what it wrote.

Usage: ~/.cache/qlora/venv/bin/python tools/gen_text_metric_fixtures.py
"""
import json
import os
import random
import re
import sys
import unicodedata

import nltk
import sacrebleu
from nltk.stem import porter
from rouge_score import rouge_scorer, tokenize as rouge_tokenize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
OUT = os.path.join(ROOT, "tests", "fixtures", "eval", "text_metrics")
ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]

assert sacrebleu.__version__ == "2.6.0", sacrebleu.__version__
assert nltk.__version__ == "3.10.4", nltk.__version__


class UnicodeTokenizer:
    """qlora's `unicode` ROUGE tokenizer: NFC(casefold(text)), words are maximal runs of L*/M*/N*."""

    def tokenize(self, text):
        text = unicodedata.normalize("NFC", text.casefold())
        words, cur = [], []
        for c in text:
            if unicodedata.category(c)[0] in "LMN":
                cur.append(c)
            elif cur:
                words.append("".join(cur))
                cur = []
        if cur:
            words.append("".join(cur))
        return words


def load_english(n):
    path = os.path.join(SHARED, "instruct", "dolly-hhrlhf", "dolly_hhrlhf_train_small.jsonl")
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)["response"].strip()
            if 40 <= len(r) <= 400:
                texts.append(r)
    return texts[:n]


def load_vietnamese(n):
    path = os.path.join(SHARED, "text", "viwiki", "viwiki_sample_200kb.txt")
    with open(path, encoding="utf-8") as f:
        lines = [l.strip() for l in f if 30 <= len(l.strip()) <= 300]
    return lines[:n]


def perturb(text, rng, pool):
    """A plausible 'prediction' for `text`: words dropped, swapped, replaced or borrowed from elsewhere."""
    words = text.split()
    kind = rng.randrange(5)
    if kind == 0 and len(words) > 3:
        words = [w for w in words if rng.random() > 0.3]
    elif kind == 1 and len(words) > 3:
        for _ in range(3):
            i, j = rng.randrange(len(words)), rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    elif kind == 2:
        other = rng.choice(pool).split()
        words = words[: len(words) // 2] + other[: len(other) // 2]
    elif kind == 3:
        words = [w.upper() if rng.random() < 0.2 else w for w in words]
        words = words + ["extra", "words."]
    else:
        words = rng.choice(pool).split()
    return " ".join(words)


def sentences_per_line(text):
    """Multi-sentence text for rougeLsum: one sentence per line."""
    return "\n".join(s for s in re.split(r"(?<=[.!?])\s+", text) if s)


EDGE_PAIRS = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("The cat sat on the mat.", ""),
    ("", "The cat sat on the mat."),
    ("", ""),
    ("hello", "hello"),
    ("hello", "world"),
    ("Running runners ran quickly; the runner's shoes were running-shoes!", "runs run running RUNNER"),
    ("In 2019, revenue grew 12.5% to $1,000,000 (approx.).", "Revenue in 2019 grew by 12.5 percent."),
    ("caresses ponies ties caress cats feed agreed plastered bled motoring sing",
     "conflated troubled sized hopping tanned falling hissing fizzed failing filing happy sky"),
    ("relational conditional rational valenci hesitanci digitizer conformabli radicalli",
     "differentli vileli analogousli vietnamization predication operator feudalism decisiveness"),
    ("Tiếng Việt là ngôn ngữ chính thức của Việt Nam.", "Tiếng Việt là ngôn ngữ của người Việt."),
    ("Tiếng Việt", "Tiếng Việt"),
    ("First sentence here.\nSecond one follows.\n\nThird after a blank line.",
     "Second one follows.\nFirst sentence here.\nA different third."),
    ("a b c a b c\nb c a", "a b c\nc b a\na a a"),
    ("The İstanbul KELVIN sign: \u212a and straße.", "istanbul kelvin k strasse"),
    ("  leading and trailing spaces  ", "leading\ttrailing\u00a0spaces"),
    ("yyyy yoyo syzygy toy", "yyy sky skies dying lying tying news innings"),
]

VI_PAIRS = [
    ("Tiếng Việt", "Tiếng Việt"),
    ("Tiếng Việt", "tiếng việt"),
    ("Tiếng Việt là ngôn ngữ chính thức của Việt Nam.", "Tiếng Việt là ngôn ngữ của người Việt."),
    # The same words, the prediction in NFD (decomposed accents): equal after NFC.
    ("Hà Nội là thủ đô của Việt Nam.", unicodedata.normalize("NFD", "Hà Nội là thủ đô của Việt Nam.")),
    ("Đà Nẵng và Huế", "ĐÀ NẴNG VÀ HUẾ"),
    ("Số 123, đường Lê Lợi.", "đường Lê Lợi số 123"),
    ("", "Việt Nam"),
    ("Việt Nam", ""),
    ("Câu thứ nhất.\nCâu thứ hai.", "Câu thứ hai.\nCâu khác."),
]


def rouge_cases(scorers, pairs, tokenizer_name):
    cases = []
    for ref, pred in pairs:
        case = {"reference": ref, "prediction": pred, "tokenizer": tokenizer_name, "scores": {}}
        for key, scorer in scorers.items():
            s = scorer.score(ref, pred)
            case["scores"][key] = {t: [s[t].precision, s[t].recall, s[t].fmeasure] for t in ROUGE_TYPES}
        cases.append(case)
    return cases


def gen_rouge(en, vi, rng):
    default = {
        "stem": rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=True),
        "nostem": rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=False),
    }
    uni = {"unicode": rouge_scorer.RougeScorer(ROUGE_TYPES, tokenizer=UnicodeTokenizer())}
    pairs = list(EDGE_PAIRS)
    for i, ref in enumerate(en[:40]):
        pred = perturb(ref, rng, en)
        if i % 3 == 0:
            ref, pred = sentences_per_line(ref), sentences_per_line(pred)
        pairs.append((ref, pred))
    vi_pairs = list(VI_PAIRS)
    for i, ref in enumerate(vi[:15]):
        pred = perturb(ref, rng, vi)
        if i % 3 == 0:
            ref, pred = sentences_per_line(ref), sentences_per_line(pred)
        vi_pairs.append((ref, pred))
    cases = rouge_cases(default, pairs + vi_pairs[:4], "default")
    cases += rouge_cases(uni, vi_pairs + EDGE_PAIRS, "unicode")

    # Multi-reference: score_multi keeps, per rouge type, the reference with the highest F.
    multi = []
    for i in range(8):
        refs = [en[40 + 3 * i], perturb(en[40 + 3 * i], rng, en), en[41 + 3 * i]]
        pred = perturb(refs[0], rng, en)
        s = default["stem"].score_multi(refs, pred)
        multi.append({"references": refs, "prediction": pred,
                      "scores": {t: [s[t].precision, s[t].recall, s[t].fmeasure] for t in ROUGE_TYPES}})

    # Tokenizer outputs, with and without the stemmer, and the unicode tokenizer's.
    stemmer = porter.PorterStemmer()
    tok_texts = [p[0] for p in EDGE_PAIRS] + [p[1] for p in VI_PAIRS] + en[:10]
    tokens = [{"text": t, "default": rouge_tokenize.tokenize(t, None),
               "default_stem": rouge_tokenize.tokenize(t, stemmer),
               "unicode": UnicodeTokenizer().tokenize(t)} for t in tok_texts]
    return {"cases": cases, "multi_reference": multi, "tokens": tokens}


PORTER_WORDS = """caresses ponies ties caress cats feed agreed plastered bled motoring sing conflated troubled
sized hopping tanned falling hissing fizzed failing filing happy sky relational conditional rational valenci
hesitanci digitizer conformabli radicalli differentli vileli analogousli vietnamization predication operator
feudalism decisiveness hopefulness callousness formaliti sensitiviti sensibiliti triplicate formative formalize
electriciti electrical hopeful goodness revival allowance inference airliner gyroscopic adjustable defensible
irritant replacement adjustment dependent adoption homologou communism activate angulariti homologous effective
bowdlerize probate rate cease controll roll generously generalization dies died spied flies skies dying lying
tying news innings inning outings canning howe proceed exceed succeed fully beautifully archaeology theology
geology analogy yyyy yoyo syzygy toy toys enjoy enjoyment spy fly try tried crying played playing agreement
agree feeding bleed exceeding national nationality nationalism organization organizational universities
university running runner runs ran swimming swims hoping hopping abilities ability possibly possible possibility
quickly electricity electric electrically eating eats eaten ate studies studying studied study 2019s 12345
abc1ing doing does goes going gone bring brings brought ssss sses ies eed ing ated ational ization oed yed
""".split()


def gen_porter(en):
    stemmer = porter.PorterStemmer()
    words = list(PORTER_WORDS)
    seen = set(words)
    for text in en:
        for w in rouge_tokenize.tokenize(text, None):
            if len(w) > 3 and w not in seen:
                seen.add(w)
                words.append(w)
    words = words[:2500]
    return {"mode": stemmer.mode, "nltk": nltk.__version__,
            "words": [[w, stemmer.stem(w)] for w in words]}


BLEU_EDGE = [
    ("The cat sat on the mat.", ["The cat sat on the mat."]),
    ("", ["The cat sat on the mat."]),
    ("The cat sat on the mat.", [""]),
    ("cat", ["cat"]),
    ("cat", ["dog"]),
    ("It costs $1,000.50 (about 1,000 euros) - or 3-4 items.", ["It costs $1,000.50, about 1,000 euros; or 3-4 items."]),
    ("He said &quot;hi&quot; &amp; left &lt;quickly&gt;.", ["He said \"hi\" & left <quickly>."]),
    ("line-\nbreak and\nnewline <skipped> token", ["linebreak and newline token"]),
    ("Tiếng Việt là ngôn ngữ chính thức của Việt Nam.", ["Tiếng Việt là ngôn ngữ của người Việt Nam."]),
    ("Trailing spaces   \t", ["Trailing spaces"]),
    ("a.b,c 1.5,2 x.,y 9-10 a-b {x}[y]~z|w", ["a.b,c 1.5,2 x.,y 9-10 a-b {x}[y]~z|w"]),
    ("the the the the the the the", ["The cat is on the mat.", "There is a cat on the mat."]),
    ("It is a guide to action which ensures that the military always obeys the commands of the party.",
     ["It is a guide to action that ensures that the military will forever heed Party commands.",
      "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
      "It is the practical guide for the army always to heed the directions of the party."]),
    ("short", ["a much longer reference sentence here", "short ref"]),
    ("no\u00a0break\u2003em space", ["no break em space"]),
    ("«Xin chào», anh ấy nói — “tạm biệt”… 1.000,5 € + 3 × 4 = 12!", ["Xin chào, anh ấy nói: tạm biệt. 1.000,5 € + 3 × 4 = 12"]),
]


def bleu_score_json(s):
    return {"score": s.score, "counts": list(s.counts), "totals": list(s.totals),
            "precisions": list(s.precisions), "bp": s.bp, "sys_len": s.sys_len, "ref_len": s.ref_len}


def gen_bleu(en, vi, rng):
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    from sacrebleu.tokenizers.tokenizer_intl import TokenizerV14International

    tok, intl = Tokenizer13a(), TokenizerV14International()
    segments = list(BLEU_EDGE)
    for i, ref in enumerate(en[60:90]):
        refs = [ref] if i % 3 else [ref, perturb(ref, rng, en)]
        segments.append((perturb(ref, rng, en), refs))
    for ref in vi[20:30]:
        segments.append((perturb(ref, rng, vi), [ref]))

    sentence = []
    for hyp, refs in segments:
        s = sacrebleu.sentence_bleu(hyp, refs)
        sentence.append({"hypothesis": hyp, "references": refs, "bleu": bleu_score_json(s)})

    def corpus(hyps, refs_per_seg, **kw):
        n = max(len(r) for r in refs_per_seg)
        streams = [[r[k] if k < len(r) else None for r in refs_per_seg] for k in range(n)]
        metric = sacrebleu.BLEU(**kw)
        s = metric.corpus_score(hyps, streams)
        return {"options": kw, "hypotheses": hyps, "references": refs_per_seg, "bleu": bleu_score_json(s),
                "signature": str(metric.get_signature())}

    single = [(h, r[:1]) for h, r in segments[15:]]
    corpora = [
        corpus([h for h, _ in single], [r for _, r in single]),
        corpus([h for h, _ in segments], [r for _, r in segments]),
        corpus([h for h, _ in segments[:15]], [r for _, r in segments[:15]]),
        corpus([h for h, _ in single], [r for _, r in single], smooth_method="floor"),
        corpus([h for h, _ in single], [r for _, r in single], smooth_method="add-k"),
        corpus([h for h, _ in single], [r for _, r in single], smooth_method="none"),
        corpus([h for h, _ in single], [r for _, r in single], lowercase=True),
        corpus([h for h, _ in single[:5]], [r for _, r in single[:5]], effective_order=True),
        corpus([h for h, _ in segments], [r for _, r in segments], tokenize="intl"),
        corpus(["", ""], [["a b c"], ["d e"]]),
        corpus(["one two three four five", "six"], [["one two three four five"], ["six"]]),
    ]
    tokens = [{"text": t, "tok_13a": tok(t.rstrip()), "tok_intl": intl(t.rstrip())}
              for t, _ in BLEU_EDGE + [(h, None) for h, _ in segments[15:]]]
    return {"sentence": sentence, "corpus": corpora, "tokens": tokens}


def gen_chrf(en, vi, rng):
    segments = [(h, r) for h, r in BLEU_EDGE]
    for i, ref in enumerate(en[100:125]):
        refs = [ref] if i % 4 else [ref, perturb(ref, rng, en)]
        segments.append((perturb(ref, rng, en), refs))
    for ref in vi[40:50]:
        segments.append((perturb(ref, rng, vi), [ref]))
    out = {"sentence": [], "corpus": []}
    for word_order in (0, 2):
        metric = sacrebleu.CHRF(word_order=word_order)
        for hyp, refs in segments:
            s = metric.sentence_score(hyp, refs)
            out["sentence"].append({"hypothesis": hyp, "references": refs, "word_order": word_order,
                                    "score": s.score})
    for kw in ({}, {"word_order": 2}, {"lowercase": True}, {"whitespace": True}, {"eps_smoothing": True},
               {"char_order": 4, "beta": 1}):
        n = max(len(r) for _, r in segments)
        streams = [[r[k] if k < len(r) else None for _, r in segments] for k in range(n)]
        metric = sacrebleu.CHRF(**kw)
        s = metric.corpus_score([h for h, _ in segments], streams)
        out["corpus"].append({"options": kw, "hypotheses": [h for h, _ in segments],
                              "references": [r for _, r in segments], "score": s.score, "name": s.name,
                              "signature": str(metric.get_signature())})
    return out


def gen_cli(en, vi, rng):
    """Files for tests/cli/eval_text_cases.sh and the scores the CLI must print."""
    d = os.path.join(OUT, "cli")
    os.makedirs(d, exist_ok=True)
    refs = [t.replace("\n", " ") for t in en[130:140]] + vi[60:65]
    hyps = [perturb(r, rng, refs) for r in refs]
    refs2 = [perturb(r, rng, refs) for r in refs]
    for name, lines in (("hyp.txt", hyps), ("ref.txt", refs), ("ref2.txt", refs2)):
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            f.write("".join(l + "\n" for l in lines))
    with open(os.path.join(d, "pairs.jsonl"), "w", encoding="utf-8") as f:
        for h, r, r2 in zip(hyps, refs, refs2):
            f.write(json.dumps({"prediction": h, "references": [r, r2]}, ensure_ascii=False) + "\n")
    expected = {}
    for key, stem in (("rouge_stem", True), ("rouge_nostem", False)):
        scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=stem)
        scores = [scorer.score(r, h) for h, r in zip(hyps, refs)]
        expected[key] = {t: 100 * sum(s[t].fmeasure for s in scores) / len(scores) for t in ROUGE_TYPES}
    uni = rouge_scorer.RougeScorer(ROUGE_TYPES, tokenizer=UnicodeTokenizer())
    scores = [uni.score(r, h) for h, r in zip(hyps, refs)]
    expected["rouge_unicode"] = {t: 100 * sum(s[t].fmeasure for s in scores) / len(scores) for t in ROUGE_TYPES}
    bleu = sacrebleu.BLEU()
    expected["bleu"] = bleu.corpus_score(hyps, [refs]).score
    expected["bleu_signature"] = str(bleu.get_signature())
    expected["bleu_two_refs"] = sacrebleu.BLEU().corpus_score(hyps, [refs, refs2]).score
    expected["chrf"] = sacrebleu.CHRF().corpus_score(hyps, [refs]).score
    expected["chrf_pp"] = sacrebleu.CHRF(word_order=2).corpus_score(hyps, [refs]).score
    # The README example: prediction "Tiền Viết" (other words) against "Tiếng Việt", both tokenizers.
    for name, sc in (("default", rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)),
                     ("unicode", rouge_scorer.RougeScorer(["rouge1"], tokenizer=UnicodeTokenizer()))):
        expected["readme_" + name] = 100 * sc.score("Tiếng Việt", "Tiền Viết")["rouge1"].fmeasure
        expected["readme_" + name + "_tokens"] = (
            UnicodeTokenizer().tokenize("Tiếng Việt") if name == "unicode"
            else rouge_tokenize.tokenize("Tiếng Việt", None))
    write(os.path.join("cli", "expected.json"), expected)
    print(f"  wrote cli/hyp.txt, ref.txt, ref2.txt, pairs.jsonl ({len(hyps)} lines each)")


def write(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"  wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


def main():
    os.makedirs(OUT, exist_ok=True)
    en = load_english(200)
    vi = load_vietnamese(80)
    print(f"rouge-score (nltk {nltk.__version__}), sacrebleu {sacrebleu.__version__}; "
          f"{len(en)} English, {len(vi)} Vietnamese texts")
    write("porter.json", gen_porter(en))
    write("rouge.json", gen_rouge(en, vi, random.Random(1)))
    write("bleu.json", gen_bleu(en, vi, random.Random(2)))
    write("chrf.json", gen_chrf(en, vi, random.Random(3)))
    gen_cli(en, vi, random.Random(4))


if __name__ == "__main__":
    sys.exit(main())
