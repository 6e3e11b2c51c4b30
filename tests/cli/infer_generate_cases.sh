# qlora infer (generation) through the binary on the real aidreams260K LLaMA in ../shared (skipped
# visibly when absent). Sourced by run_cli_tests.sh (uses its expect_status / contains / json_get helpers
# and $work, $root, $bin).
aidreams="$root/../shared/data/models/aidreams260K"
if [ ! -f "$aidreams/expected_greedy_100.json" ]; then
  echo "SKIP: infer generate cases ($aidreams not present)" >&2
else
  # Greedy from BOS must reproduce the reference ids (llama2.c run.c -t 0) exactly.
  expect_status 0 "infer greedy aidreams" "$bin" infer --model "$aidreams" --prompt '' --max-new-tokens 100 \
    --temperature 0 --json
  want=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['greedy_next_ids'])" "$aidreams/expected_greedy_100.json")
  [ "$(json_get 'j["ids"]')" = "$want" ] && ok || bad "greedy ids differ from expected_greedy_100.json: $(last_json)"
  [ "$(json_get 'j["prompt_ids"]')" = "[1]" ] && ok || bad "prompt_ids: $(last_json)"
  [ "$(json_get 'j["tokens_per_second"] > 0')" = "True" ] && ok || bad "tokens_per_second: $(last_json)"
  greedy_text=$(json_get 'j["text"]')

  # Without --json the text is streamed to stdout.
  expect_status 0 "infer streams text" "$bin" infer --model "$aidreams" --prompt '' --max-new-tokens 100 --temperature 0
  contains "streamed text" "$out" "$greedy_text"

  # A stop string ends generation and is cut from the text.
  expect_status 0 "infer stop string" "$bin" infer --model "$aidreams" --prompt '' --max-new-tokens 100 \
    --temperature 0 --stop 'hum' --json
  [ "$(json_get 'j["finish_reason"]')" = "stop" ] && ok || bad "stop finish_reason: $(last_json)"
  [ "$(json_get 'j["text"]')" = "$(printf '%s' "$greedy_text" | sed 's/hum.*//')" ] && ok || bad "stop text: $(last_json)"

  # Seeded sampling is reproducible.
  expect_status 0 "infer sample a" "$bin" infer --model "$aidreams" --prompt 'Once' --max-new-tokens 30 \
    --temperature 0.8 --top-k 40 --top-p 0.9 --seed 7 --json
  sample_a=$(json_get 'j["ids"]')
  expect_status 0 "infer sample b" "$bin" infer --model "$aidreams" --prompt 'Once' --max-new-tokens 30 \
    --temperature 0.8 --top-k 40 --top-p 0.9 --seed 7 --json
  [ "$(json_get 'j["ids"]')" = "$sample_a" ] && ok || bad "same seed, different ids"

  # A JSONL of prompts in left-padded batches equals one prompt at a time; fields are copied through.
  printf '{"id": "a", "prompt": "Echoes"}\n{"id": "b", "prompt": "A gentle hum of"}\n{"id": "c", "prompt": ""}\n' \
    >"$work/prompts.jsonl"
  expect_status 0 "infer batch 2" "$bin" infer --model "$aidreams" --input "$work/prompts.jsonl" \
    --output "$work/gen_b2.jsonl" --batch-size 2 --max-new-tokens 20 --temperature 0 --log "$work/gen.log" --json
  expect_status 0 "infer batch 1" "$bin" infer --model "$aidreams" --input "$work/prompts.jsonl" \
    --output "$work/gen_b1.jsonl" --batch-size 1 --max-new-tokens 20 --temperature 0 --log "$work/gen.log" --json
  [ "$(wc -l <"$work/gen_b2.jsonl")" -eq 3 ] && ok || bad "gen_b2.jsonl line count"
  cmp -s "$work/gen_b1.jsonl" "$work/gen_b2.jsonl" && ok || bad "batched responses differ from unbatched"
  python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; assert [x['id'] for x in r]==['a','b','c'] and all(x['response'] for x in r)" \
    "$work/gen_b2.jsonl" && ok || bad "output records lack copied ids or responses"
  [ "$(grep -c 'response (' "$work/gen.log")" -eq 6 ] && ok || bad "log has not 6 responses appended"
  # --json: every output carries its generated ids.
  [ "$(json_get 'all(len(r["ids"]) == r["generated_tokens"] > 0 for r in j["results"]) and len(j["results"]) == 3')" = "True" ] &&
    ok || bad "batch results lack ids: $(last_json)"

  expect_status 1 "infer without prompt" "$bin" infer --model "$aidreams" --json
  contains "missing prompt message" "$err" "needs --prompt"
fi
