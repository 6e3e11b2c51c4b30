# eval --metric rouge|bleu|chrf through the binary, on tests/fixtures/eval/text_metrics/cli (written by
# tools/gen_text_metric_fixtures.py, whose expected.json holds rouge-score's and sacrebleu's numbers).
# Sourced by run_cli_tests.sh (uses its expect_status / contains / json_get helpers and $work, $root, $bin).
tm="$root/tests/fixtures/eval/text_metrics/cli"
expected() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$1)" "$tm/expected.json"; }
# close NAME EXPR_ON_J WANT: |value - want| <= 1e-9 (the C++ port matches the packages bit for bit;
# the margin only absorbs JSON double printing).
close() {
  [ "$(json_get "abs($2 - $3) <= 1e-9")" = "True" ] && ok || bad "$1: got $(json_get "$2"), want $3"
}

expect_status 0 "eval bleu" "$bin" eval --metric bleu --predictions "$tm/hyp.txt" --references "$tm/ref.txt" --json
close "bleu score" 'j["bleu"]' "$(expected '["bleu"]')"
[ "$(json_get 'j["signature"]')" = "$(expected '["bleu_signature"]')" ] && ok || bad "bleu signature: $(last_json)"
[ "$(json_get 'len(j["precisions"]) == 4 and j["sys_len"] > 0 and j["ref_len"] > 0 and 0 < j["bp"] <= 1')" = "True" ] &&
  ok || bad "bleu fields: $(last_json)"

expect_status 0 "eval bleu two refs" "$bin" eval --metric bleu --predictions "$tm/hyp.txt" --references "$tm/ref.txt" \
  --references "$tm/ref2.txt" --json
close "bleu two refs" 'j["bleu"]' "$(expected '["bleu_two_refs"]')"
contains "two refs signature" "$(last_json)" "nrefs:2|"

expect_status 0 "eval bleu jsonl" "$bin" eval --metric bleu --predictions "$tm/pairs.jsonl" --prediction-field prediction \
  --reference-field references --json
close "bleu jsonl list refs" 'j["bleu"]' "$(expected '["bleu_two_refs"]')"

expect_status 0 "eval rouge" "$bin" eval --metric rouge --predictions "$tm/hyp.txt" --references "$tm/ref.txt" --json
for t in rouge1 rouge2 rougeL rougeLsum; do close "rouge $t (stemmer)" "j[\"$t\"]" "$(expected "[\"rouge_stem\"][\"$t\"]")"; done
[ "$(json_get 'j["use_stemmer"]')" = "True" ] && ok || bad "rouge default must report use_stemmer true"
[ "$(json_get '"rouge1_precision" in j and "rougeLsum_recall" in j')" = "True" ] && ok || bad "rouge P/R: $(last_json)"

expect_status 0 "eval rouge no stemmer" "$bin" eval --metric rouge --no-stemmer --predictions "$tm/hyp.txt" \
  --references "$tm/ref.txt" --json
close "rouge1 no stemmer" 'j["rouge1"]' "$(expected '["rouge_nostem"]["rouge1"]')"
[ "$(json_get 'j["use_stemmer"]')" = "False" ] && ok || bad "--no-stemmer not reported"

expect_status 0 "eval rouge unicode" "$bin" eval --metric rouge --rouge-tokenizer unicode --predictions "$tm/hyp.txt" \
  --references "$tm/ref.txt" --json
close "rougeL unicode" 'j["rougeL"]' "$(expected '["rouge_unicode"]["rougeL"]')"

expect_status 0 "eval chrf" "$bin" eval --metric chrf --predictions "$tm/hyp.txt" --references "$tm/ref.txt" --json
close "chrf" 'j["chrf"]' "$(expected '["chrf"]')"
expect_status 0 "eval chrf++" "$bin" eval --metric chrf --chrf-word-order 2 --predictions "$tm/hyp.txt" --references "$tm/ref.txt" --json
close "chrf++" 'j["chrf"]' "$(expected '["chrf_pp"]')"
[ "$(json_get 'j["name"]')" = "chrF2++" ] && ok || bad "chrF++ name: $(last_json)"

expect_status 0 "eval bleu human" "$bin" eval --metric bleu --predictions "$tm/hyp.txt" --references "$tm/ref.txt"
contains "human output has the score" "$out" "bleu: "

# README example: "Tiền Viết" against "Tiếng Việt".
printf 'Tiền Viết\n' >"$work/vi_hyp.txt"; printf 'Tiếng Việt\n' >"$work/vi_ref.txt"
expect_status 0 "readme default" "$bin" eval --metric rouge --predictions "$work/vi_hyp.txt" --references "$work/vi_ref.txt" --json
close "readme default" 'j["rouge1"]' "$(expected '["readme_default"]')"
expect_status 0 "readme unicode" "$bin" eval --metric rouge --rouge-tokenizer unicode --predictions "$work/vi_hyp.txt" \
  --references "$work/vi_ref.txt" --json
close "readme unicode" 'j["rouge1"]' "$(expected '["readme_unicode"]')"

# Errors: one clear message, non-zero exit.
head -n 3 "$tm/ref.txt" >"$work/short_ref.txt"
expect_status 1 "line count mismatch" "$bin" eval --metric bleu --predictions "$tm/hyp.txt" --references "$work/short_ref.txt"
contains "mismatch names the predictions" "$err" "hyp.txt has 15 lines"
contains "mismatch names the references" "$err" "short_ref.txt has 3"
expect_status 2 "missing references file" "$bin" eval --metric bleu --predictions "$tm/hyp.txt" --references "$work/nope.txt"
contains "missing file named" "$err" "nope.txt"
printf '{"prediction": "a", "references": ["a"]}\n{"prediction": "b", "references": [}\n' >"$work/bad.jsonl"
expect_status 1 "bad JSON line" "$bin" eval --metric rouge --predictions "$work/bad.jsonl" --field prediction \
  --reference-field references
contains "bad JSON names file:line" "$err" "bad.jsonl:2"
printf '{"prediction": "a", "refs": ["a"]}\n' >"$work/nofield.jsonl"
expect_status 1 "missing field" "$bin" eval --metric chrf --predictions "$work/nofield.jsonl" --prediction-field prediction \
  --reference-field references
contains "missing field named" "$err" "nofield.jsonl:1: missing field 'references'"
expect_status 1 "jsonl without field" "$bin" eval --metric bleu --predictions "$work/nofield.jsonl" --references "$tm/ref.txt"
contains "jsonl hint" "$err" "--field"
expect_status 1 "text metric without references" "$bin" eval --metric bleu --predictions "$tm/hyp.txt"
contains "needs references" "$err" "needs --references"
expect_status 0 "eval --help mentions stemmer default" "$bin" eval --help
contains "help: stemmer default" "$out" "ON by default"
