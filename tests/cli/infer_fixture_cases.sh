# qlora infer on the tiny fixture models from token ids (--input-ids; the fixtures have no tokenizer),
# against transformers 5.17 outputs (tools/gen_generation_fixtures.py), plus --output-scores, --threads,
# refused options and qa --n-best. Sourced by run_cli_tests.sh after train_cases.sh (uses its
# $work/run/checkpoint-4 adapter on data/models/xlmr-tiny for --n-best).
fix="$root/tests/fixtures"
t5cfg="$fix/models/t5_v1_1_genconfig"
hf_json() {  # hf_json FILE EXPR: evaluates a python expression over the JSON file as `d`
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

# T5: generation_config.json governs (num_beams 4, length_penalty 0.6, no_repeat_ngram_size 2,
# early_stopping, max_length 12): 11 tokens as transformers' model.generate(ids) returns them.
expect_status 0 "t5 genconfig beams" "$bin" --json infer --model "$t5cfg" --input-ids 5,17,42,9,1
[ "$(json_get 'j["ids"]')" = "$(hf_json "$t5cfg/hf_outputs.json" 'd["single"][0][1:]')" ] && ok ||
  bad "t5 generation_config ids: $(last_json)"
[ "$(json_get 'j["num_beams"]')" = "4" ] && ok || bad "t5 num_beams from generation_config: $(last_json)"

# Options given on the command line override the file: greedy, 6 new tokens (no_repeat_ngram_size stays).
expect_status 0 "t5 cli overrides" "$bin" --json infer --model "$t5cfg" --input-ids 5,17,42,9,1 --num-beams 1 \
  --max-new-tokens 6 --output-scores 3
[ "$(json_get 'j["ids"]')" = "$(hf_json "$t5cfg/hf_outputs.json" 'd["single_greedy_6"][0][1:]')" ] && ok ||
  bad "t5 --num-beams 1 --max-new-tokens 6 ids: $(last_json)"
# Greedy: each step's best log-prob is the chosen id; K entries, descending, log-probs <= 0.
[ "$(json_get 'all(len(s) == 3 and s[0]["id"] == i and s[0]["logprob"] >= s[1]["logprob"] >= s[2]["logprob"] and s[0]["logprob"] <= 0 for s, i in zip(j["top_logprobs"], j["ids"])) and len(j["top_logprobs"]) == len(j["ids"])')" = "True" ] &&
  ok || bad "t5 --output-scores: $(last_json)"

# Refused, naming the option: scores under beam search, decoder-only options for T5.
expect_status 1 "t5 --output-scores with beams" "$bin" infer --model "$t5cfg" --input-ids 5,1 --output-scores 2
contains "output-scores refusal names it" "$err" "--output-scores"
expect_status 1 "t5 --stop refused" "$bin" infer --model "$t5cfg" --input-ids 5,1 --stop x
contains "--stop refusal names it" "$err" "--stop is for decoder models"
expect_status 1 "bad --input-ids" "$bin" infer --model "$t5cfg" --input-ids 5,x
contains "--input-ids error" "$err" "--input-ids: expected comma-separated token ids"

# Decoder: row 0 of the llama3 fixture's prompts with no_repeat_ngram_size 2 equals transformers.
llama="$fix/models/llama_llama3"
prompt=$(hf_json "$fix/infer/generation.json" '",".join(map(str, d["llama_llama3_prompts"][0]))')
expect_status 0 "llama ngram" "$bin" --json --threads 1 infer --model "$llama" --input-ids "$prompt" \
  --max-new-tokens 16 --temperature 0 --no-repeat-ngram-size 2 --output-scores 2
[ "$(json_get 'j["ids"]')" = "$(hf_json "$fix/infer/generation.json" 'd["llama_llama3"]["no_repeat_ngram_2"]["sequences"][0]')" ] &&
  ok || bad "llama --no-repeat-ngram-size 2 ids: $(last_json)"
[ "$(json_get 'j["prompt_ids"]')" = "[$(echo "$prompt" | sed 's/,/, /g')]" ] && ok || bad "llama prompt_ids: $(last_json)"
[ "$(json_get 'j["threads"]')" = "1" ] && ok || bad "--threads 1 not applied: $(last_json)"
[ "$(json_get 'all(s[0]["id"] == i and s[1]["logprob"] <= s[0]["logprob"] <= 0 for s, i in zip(j["top_logprobs"], j["ids"]))')" = "True" ] && ok ||
  bad "llama --output-scores: $(last_json)"
expect_status 0 "default threads" "$bin" --json infer --model "$llama" --input-ids "$prompt" --max-new-tokens 1
[ "$(json_get 'j["threads"] >= 1')" = "True" ] && ok || bad "default threads: $(last_json)"
expect_status 2 "--threads 0" "$bin" --threads 0 infer --model "$llama" --input-ids 1
expect_status 1 "llama --num-beams refused" "$bin" infer --model "$llama" --input-ids "$prompt" --num-beams 4
contains "--num-beams refusal names it" "$err" "--num-beams 4: beam search is for T5 models"

# A generation_config.json key whose processor qlora lacks is refused, naming file and key.
mkdir -p "$work/llama_forced"
cp "$llama/config.json" "$llama/model.safetensors" "$work/llama_forced/"
printf '{"eos_token_id": 2, "forced_eos_token_id": 2}\n' >"$work/llama_forced/generation_config.json"
expect_status 1 "forced_eos refused" "$bin" infer --model "$work/llama_forced" --input-ids 1,2
contains "forced_eos refusal names the key" "$err" "generation_config.json: key 'forced_eos_token_id'"
# A key that changes no token but is not applied either is a warning naming it.
printf '{"eos_token_id": 2, "num_return_sequences": 2}\n' >"$work/llama_forced/generation_config.json"
expect_status 0 "unapplied key warns" "$bin" infer --model "$work/llama_forced" --input-ids 1,2 --max-new-tokens 2
contains "unapplied key warning names it" "$err" "key 'num_return_sequences' = 2 is not applied by qlora"

# qa --n-best K: the K best spans with their logits; the first is the answer.
xlmr="$root/data/models/xlmr-tiny"
if [ -f "$work/run/checkpoint-4/adapter_config.json" ]; then
  expect_status 0 "qa --n-best" "$bin" --json infer --task qa --model "$xlmr" --adapter "$work/run/checkpoint-4" \
    --question "Ai?" --context "Hà Nội là thủ đô của Việt Nam." --max-seq-length 64 --n-best 3
  [ "$(json_get 'len(j["answers"][0]["nbest"])')" = "3" ] && ok || bad "--n-best 3 entries: $(last_json)"
  [ "$(json_get 'j["answers"][0]["nbest"][0]["text"] == j["answers"][0]["prediction_text"] and all(abs(e["score"] - e["start_logit"] - e["end_logit"]) < 1e-4 for e in j["answers"][0]["nbest"])')" = "True" ] &&
    ok || bad "--n-best content: $(last_json)"
else
  echo "SKIP: qa --n-best (no adapter from train_cases.sh)" >&2
fi
