# prepare / split through the binary, on the shipped Vietnamese QA sample. Sourced by
# run_cli_tests.sh (uses its expect_status / contains / json_get helpers and $work, $root, $bin).
sample="$root/data/nanibot-vi-sample/train_wiki_sample.json"

# The sample holds 162 questions, 8 with a wrong answer_start, 6 of them relocatable (counted
# independently by tests/fixtures/data/make_nanibot_fixtures.py with Python str indices).
expect_status 0 "squad_to_mrc drop" "$bin" prepare squad_to_mrc --input "$sample" --output "$work/drop.jsonl" --json
[ "$(json_get 'j["counts"]["mismatched_offsets"]')" = "8" ] && ok || bad "mismatches: $(last_json)"
[ "$(json_get 'j["counts"]["written"]')" = "154" ] && ok || bad "drop written: $(last_json)"
[ "$(wc -l <"$work/drop.jsonl")" -eq 154 ] && ok || bad "drop.jsonl line count"
contains "drop warning names the question id" "$err" "A?R00000T636816930901603684"

expect_status 0 "squad_to_mrc fix" "$bin" prepare squad_to_mrc --input "$sample" --output "$work/all.jsonl" --fix-offsets --json
[ "$(json_get 'j["counts"]["fixed"]')" = "6" ] && ok || bad "fixed: $(last_json)"
[ "$(json_get 'j["counts"]["written"]')" = "160" ] && ok || bad "fix written: $(last_json)"

expect_status 1 "squad_to_mrc strict" "$bin" prepare squad_to_mrc --input "$sample" --output "$work/strict.jsonl" --strict
contains "strict names the file" "$err" "train_wiki_sample.json"
contains "strict names the JSON path" "$err" "data[15].paragraphs[0].qas[2].answers[0]"
[ ! -e "$work/strict.jsonl" ] && ok || bad "strict left a partial output"
ls "$work" | grep -q '\.tmp\.' && bad "temporary file left behind" || ok

printf '{"version": "1.1", "data": [\n  {"title": "x", "paragraphs": [}\n]}\n' >"$work/broken.json"
expect_status 1 "malformed SQuAD JSON" "$bin" prepare squad_to_mrc --input "$work/broken.json" --output "$work/b.jsonl"
contains "malformed JSON names file:line" "$err" "broken.json:2"

expect_status 2 "missing input" "$bin" prepare squad_to_mrc --input "$work/nope.json" --output "$work/n.jsonl"
contains "missing input named" "$err" "nope.json"

printf '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": 3}\n' >"$work/alpaca.jsonl"
expect_status 1 "alpaca wrong type" "$bin" prepare alpaca --input "$work/alpaca.jsonl" --output "$work/i.jsonl"
contains "alpaca error names file:line" "$err" "alpaca.jsonl:2"
[ ! -e "$work/i.jsonl" ] && ok || bad "alpaca left a partial output"
expect_status 0 "alpaca skip-invalid" "$bin" prepare alpaca --input "$work/alpaca.jsonl" --output "$work/i.jsonl" --skip-invalid --json
[ "$(json_get 'j["counts"]["written"]')" = "1" ] && ok || bad "alpaca written: $(last_json)"

printf 'a\nb\n' >"$work/src.txt"; printf 'x\n' >"$work/tgt.txt"
expect_status 1 "pairs line-count mismatch" "$bin" prepare pairs --source-text "$work/src.txt" --target-text "$work/tgt.txt" --output "$work/p.jsonl"
contains "pairs mismatch names a file" "$err" "tgt.txt"

# split: counts add up, the seed fixes the bytes, contexts never straddle.
expect_status 0 "split" "$bin" split --input "$work/all.jsonl" --train "$work/t1.jsonl" --valid "$work/v1.jsonl" --valid-ratio 0.1 --seed 7 --json
[ "$(json_get 'j["counts"]["train"] + j["counts"]["valid"]')" = "160" ] && ok || bad "split counts: $(last_json)"
"$bin" split --input "$work/all.jsonl" --train "$work/t2.jsonl" --valid "$work/v2.jsonl" --valid-ratio 0.1 --seed 7 >/dev/null 2>&1
cmp -s "$work/t1.jsonl" "$work/t2.jsonl" && cmp -s "$work/v1.jsonl" "$work/v2.jsonl" && ok || bad "same seed, different split"
python3 - "$work/t1.jsonl" "$work/v1.jsonl" <<'PY' && ok || bad "a context straddles train and valid"
import json, sys
ctx = lambda p: {json.loads(l)["context"] for l in open(p, encoding="utf-8") if l.strip()}
sys.exit(1 if ctx(sys.argv[1]) & ctx(sys.argv[2]) else 0)
PY
expect_status 2 "split bad ratio" "$bin" split --input "$work/all.jsonl" --train "$work/t3.jsonl" --valid "$work/v3.jsonl" --valid-ratio 1.5

# eval --metric em_f1 on predictions made from the references themselves: perfect scores, then
# one prediction dropped (scores 0 and is reported as missing).
python3 - "$work/v1.jsonl" "$work/preds.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in open(sys.argv[1], encoding="utf-8"):
        r = json.loads(line)
        out.write(json.dumps({"id": r["id"], "prediction_text": r["answers"][0]["text"]}, ensure_ascii=False) + "\n")
PY
expect_status 0 "eval em_f1" "$bin" eval --metric em_f1 --predictions "$work/preds.jsonl" --references "$work/v1.jsonl" --json
[ "$(json_get 'j["exact_match"]')" = "100.0" ] && ok || bad "perfect exact_match: $(last_json)"
n=$(wc -l <"$work/v1.jsonl")
tail -n +2 "$work/preds.jsonl" >"$work/preds_missing.jsonl"
expect_status 0 "eval em_f1 missing" "$bin" eval --metric em_f1 --predictions "$work/preds_missing.jsonl" --references "$work/v1.jsonl" --json
[ "$(json_get 'round(j["exact_match"], 6)')" = "$(python3 -c "print(round(100*($n-1)/$n, 6))")" ] && ok || bad "missing scores 0: $(last_json)"
contains "missing prediction warned" "$err" "have no prediction"
printf '{"id": "x"}\n' >"$work/bad_preds.jsonl"
expect_status 1 "eval bad predictions" "$bin" eval --metric em_f1 --predictions "$work/bad_preds.jsonl" --references "$work/v1.jsonl"
contains "bad predictions named" "$err" "bad_preds.jsonl:1"

# The full nanibot-vi files (local data beside the checkout): 8 wrong offsets and a repeated id in
# train_wiki, 45 wrong offsets and 15 missing ids in test_reg (counted independently by
# tests/fixtures/data/make_nanibot_fixtures.py).
nanibot="$root/../shared/data/qa/nanibot-vi"
if [ -f "$nanibot/train_wiki.json" ]; then
  expect_status 0 "nanibot train_wiki" "$bin" prepare squad_to_mrc --input "$nanibot/train_wiki.json" --output "$work/nw.jsonl" --json
  [ "$(json_get '(j["counts"]["mismatched_offsets"], j["counts"]["ids_repaired"], j["counts"]["written"])')" = "(8, 1, 591)" ] &&
    ok || bad "nanibot train_wiki counts: $(last_json)"
  expect_status 0 "nanibot test_reg" "$bin" prepare squad_to_mrc --input "$nanibot/test_reg.json" --output "$work/nr.jsonl" --fix-offsets --json
  [ "$(json_get '(j["counts"]["mismatched_offsets"], j["counts"]["fixed"], j["counts"]["ids_repaired"], j["counts"]["written"])')" = "(45, 45, 15, 95)" ] &&
    ok || bad "nanibot test_reg counts: $(last_json)"
  expect_status 1 "nanibot strict ids" "$bin" prepare squad_to_mrc --input "$nanibot/train_reg.json" --output "$work/ns.jsonl" --strict
  contains "strict names the duplicate id" "$err" "duplicate id"
else
  echo "SKIP: ../shared/data/qa/nanibot-vi not present; full-file prepare checks skipped" >&2
fi
