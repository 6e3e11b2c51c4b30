#!/usr/bin/env bash
# End-to-end tests of the qlora binary: exit codes, --help, the --json contract, error messages
# and atomic outputs. Run by ctest (QLORA_BIN points at the binary). Prints 'N passed, N failed'.
set -u
bin=${QLORA_BIN:?QLORA_BIN must point at the qlora binary}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0; failed=0

ok()   { passed=$((passed + 1)); }
bad()  { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# expect_status CODE NAME CMD...: runs CMD, keeps stdout/stderr in $out/$err.
expect_status() {
  local want=$1 name=$2; shift 2
  "$@" >"$work/out" 2>"$work/err"; local got=$?
  out=$(cat "$work/out"); err=$(cat "$work/err")
  if [ "$got" -eq "$want" ]; then ok; else bad "$name: exit $got, wanted $want; stderr: $err"; fi
}
contains() {  # contains NAME HAYSTACK NEEDLE
  if printf '%s' "$2" | grep -qF -- "$3"; then ok; else bad "$1: '$3' not found in: $2"; fi
}
last_json() { printf '%s\n' "$out" | tail -n 1; }
json_get() {  # json_get EXPR: evaluates a python expression over the last stdout line as `j`
  python3 -c "import json,sys; j=json.loads(sys.argv[1]); print($1)" "$(last_json)"
}

# --- help ---------------------------------------------------------------------------------
expect_status 0 "top-level help" "$bin" --help
for sub in prepare split train eval infer; do contains "help lists $sub" "$out" "$sub"; done
for sub in prepare split train eval infer; do
  expect_status 0 "$sub --help" "$bin" "$sub" --help
  contains "$sub --help has an example" "$out" "Example:"
done
expect_status 0 "--version" "$bin" --version
contains "version" "$out" "qlora 0.1.0"
"$bin" >/dev/null 2>&1 && bad "no subcommand must fail" || ok

# --- train config handling ----------------------------------------------------------------
expect_status 0 "train dry-run" "$bin" train --config "$root/configs/xlmr_vi_qa.yaml" --set adapter.r=4 --dry-run --json
[ "$(json_get 'j["config"]["adapter"]["r"]')" = "4" ] && ok || bad "--set adapter.r=4 not applied: $(last_json)"
[ "$(json_get 'j["ok"]')" = "True" ] && ok || bad "dry-run json lacks ok=true"

printf 'train:\n  epochs: 1\n  learnin_rate: 0.1\n' >"$work/typo.yaml"
expect_status 1 "unknown config key" "$bin" train --config "$work/typo.yaml" --dry-run --json
contains "unknown key names file:line" "$err" "typo.yaml:3"
contains "unknown key suggests" "$err" "did you mean 'train.learning_rate'"
[ "$(json_get 'j["ok"]')" = "False" ] && ok || bad "error json lacks ok=false: $(last_json)"

expect_status 1 "bad --set value" "$bin" train --set train.seed=abc --dry-run
contains "bad value names key" "$err" "--set train.seed: expected an integer"

# The issue's QLoRA target: LLaMA-2-7B shape, seq 1024, micro batch 1, r 32, checkpointing < 15 GB.
expect_status 0 "7B QLoRA memory budget" "$bin" train --config "$root/configs/llama2_7b_qlora_t4.yaml" \
  --set model.path="$root/configs/models/llama2-7b-shape" --dry-run --json
[ "$(json_get 'j["total_bytes"] < 15e9 and j["memory"]["trainable_params"] == 79953920')" = "True" ] && ok ||
  bad "7B budget: $(last_json)"
contains "budget table on stderr" "$err" "optimizer_states"

expect_status 1 "bad log level" "$bin" --log-level verbose train --dry-run
contains "log level suggestion" "$err" "unknown level 'verbose'"

# --- prepare / split (on the shipped sample) ----------------------------------------------
. "$root/tests/cli/prepare_split_cases.sh"

# --- eval --metric rouge / bleu / chrf on predictions files ----------------------------------
. "$root/tests/cli/eval_text_cases.sh"

# --- train / eval / infer on the tiny XLM-R ------------------------------------------------
. "$root/tests/cli/train_cases.sh"

# --- infer (generation) on the real aidreams260K LLaMA -------------------------------------
. "$root/tests/cli/infer_generate_cases.sh"

# --- infer on the tiny fixtures from token ids: generation_config.json, processors, scores ------
. "$root/tests/cli/infer_fixture_cases.sh"

# --- SFT / seq2seq training, adapters, export on the shipped tiny models ------------------------
. "$root/tests/cli/llm_train_cases.sh"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
