# Paths in the demo configs are relative to the repository root; the tests override them absolutely.
# Decoder SFT and T5 seq2seq training through the binary on the shipped tiny models (data/models), then
# infer with the adapter, export, eval with a model. Sourced by run_cli_tests.sh (its helpers, $work,
# $root, $bin). Short runs: they prove the paths work end to end and the loss falls, not model quality.

# --- SFT: LoRA on aidreams260K (the demo's compact template), 3 epochs of 48 samples ---
sft_template=$'### Instruction:\n{instruction}\n{input}\n### Response:\n'  # as configs/demo_sft_aidreams.yaml
expect_status 0 "sft train" "$bin" train --config "$root/configs/demo_sft_aidreams.yaml" --set model.path="$root/data/models/aidreams260K" \
  --set data.train_file="$root/data/instruct-demo/train.jsonl" --set data.valid_file="$root/data/instruct-demo/valid.jsonl" \
  --set data.max_samples=48 --set train.epochs=3 --set train.output_dir="$work/sft" --json
[ "$(json_get 'j["global_step"]')" = "9" ] && ok || bad "sft steps: $(last_json)"
[ "$(json_get 'j["model"]["trainable_parameters"] > 0 and j["model"]["train_samples"] == 48')" = "True" ] && ok ||
  bad "sft model summary: $(last_json)"
python3 - "$work/sft/metrics.jsonl" <<'PY' && ok || bad "sft valid loss did not fall"
import json, sys
evals = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' in l]
assert len(evals) == 3 and evals[-1]["loss"] < evals[0]["loss"], evals
PY
sft_ckpt=$(json_get 'j["final_checkpoint"]')
sft_summary=$(last_json)

# Packing: samples share rows (segment ids keep attention and positions per sample).
expect_status 0 "sft train packed" "$bin" train --config "$root/configs/demo_sft_aidreams.yaml" --set model.path="$root/data/models/aidreams260K" \
  --set data.train_file="$root/data/instruct-demo/train.jsonl" --set data.valid_file= \
  --set data.max_samples=48 --set data.packing=true --set train.epochs=1 --set train.output_dir="$work/sft_packed" --json
[ "$(json_get 'j["model"]["train_rows"] < j["model"]["train_samples"] == 48')" = "True" ] && ok || bad "packing: $(last_json)"
out=$sft_summary
[ -f "$sft_ckpt/adapter_model.safetensors" ] && [ -f "$sft_ckpt/adapter_config.json" ] && ok || bad "no PEFT adapter in $sft_ckpt"
contains "adapter task type" "$(cat "$sft_ckpt/adapter_config.json")" '"task_type": "CAUSAL_LM"'

expect_status 0 "infer with adapter" "$bin" infer --model "$root/data/models/aidreams260K" --adapter "$sft_ckpt" \
  --template "$sft_template" --prompt "How do you feel in a garden?" --max-new-tokens 12 --temperature 0 --json
adapter_ids=$(json_get 'j["ids"]')
expect_status 0 "infer with merged adapter" "$bin" infer --model "$root/data/models/aidreams260K" --adapter "$sft_ckpt" \
  --merge --template "$sft_template" --prompt "How do you feel in a garden?" --max-new-tokens 12 --temperature 0 --json
[ "$(json_get 'j["ids"]')" = "$adapter_ids" ] && ok || bad "merged adapter generates differently: $(last_json)"

expect_status 0 "export merged" "$bin" export --model "$root/data/models/aidreams260K" --adapter "$sft_ckpt" \
  --out "$work/merged" --json
expect_status 0 "infer merged export" "$bin" infer --model "$work/merged" --template "$sft_template" \
  --prompt "How do you feel in a garden?" --max-new-tokens 12 --temperature 0 --json
[ "$(json_get 'j["ids"]')" = "$adapter_ids" ] && ok || bad "exported model generates differently: $(last_json)"
expect_status 1 "export refuses existing" "$bin" export --model "$root/data/models/aidreams260K" --adapter "$sft_ckpt" \
  --out "$work/merged"
contains "export existing message" "$err" "already exists"

printf '{"instruction": "x"}\n{"instruction": \n' >"$work/bad_sft.jsonl"
expect_status 1 "sft bad jsonl" "$bin" train --config "$root/configs/demo_sft_aidreams.yaml" --set model.path="$root/data/models/aidreams260K" \
  --set data.train_file="$work/bad_sft.jsonl" --set data.valid_file= --set train.output_dir="$work/sft_bad"
contains "sft bad jsonl names file:line" "$err" "bad_sft.jsonl:"

# --- seq2seq: full fine-tune of the tiny T5, ROUGE on valid ---
python3 -c 'import json,sys
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    print(json.dumps({"source": (r["instruction"] + " " + r["input"]).strip(), "target": r["output"]}))' \
  "$root/data/instruct-demo/valid.jsonl" >"$work/t5_pairs.jsonl"
expect_status 0 "seq2seq train" "$bin" train --config "$root/configs/demo_t5_tiny.yaml" --set model.path="$root/data/models/t5-tiny" \
  --set data.train_file="$work/t5_pairs.jsonl" --set data.valid_file="$work/t5_pairs.jsonl" --set train.epochs=2 \
  --set train.eval_steps=0 --set train.save_steps=0 --set train.output_dir="$work/t5" --json
[ "$(json_get '"rougeL" == j["best_metric_name"]')" = "True" ] && ok || bad "seq2seq best metric: $(last_json)"
t5_ckpt=$(json_get 'j["final_checkpoint"]')
expect_status 0 "eval rouge with a T5 model" "$bin" eval --metric rouge --model "$t5_ckpt" --data "$work/t5_pairs.jsonl" \
  --source-template "answer: {source}" --num-beams 2 --max-new-tokens 8 --json
[ "$(json_get 'j["examples"] == 24 and 0 <= j["rougeL"] <= 100')" = "True" ] && ok || bad "eval rouge model: $(last_json)"
expect_status 0 "infer T5" "$bin" infer --model "$t5_ckpt" --prompt "answer: How do you feel in a garden?" \
  --max-new-tokens 8 --json
[ "$(json_get '"text" in j')" = "True" ] && ok || bad "infer T5: $(last_json)"

# --- quantized bases for inference (NF4 + double quant, int8) with the adapter on top ---
for q in --load-in-4bit --load-in-8bit; do
  expect_status 0 "infer $q" "$bin" infer --model "$root/data/models/aidreams260K" --adapter "$sft_ckpt" $q \
    --template "$sft_template" --prompt "How do you feel in a garden?" --max-new-tokens 12 --temperature 0 --json
  [ "$(json_get 'j["generated_tokens"] > 0')" = "True" ] && ok || bad "infer $q: $(last_json)"
  contains "infer $q logs the quantization" "$err" "quantized 28 linear layers"
  q_ids=$(json_get 'j["ids"]')
  # The same quantized base saved as a bitsandbytes checkpoint (export --quantize) and loaded back.
  kind=$([ "$q" = --load-in-4bit ] && echo nf4 || echo int8)
  expect_status 0 "export --quantize $kind" "$bin" export --model "$root/data/models/aidreams260K" --out "$work/base_$kind" \
    --quantize "$kind" --json
  [ "$(json_get 'j["quantized_modules"] == 28')" = "True" ] && ok || bad "export --quantize $kind: $(last_json)"
  contains "quantization_config in the $kind export" "$(cat "$work/base_$kind/config.json")" '"quant_method": "bitsandbytes"'
  expect_status 0 "infer from the $kind checkpoint" "$bin" infer --model "$work/base_$kind" --adapter "$sft_ckpt" \
    --template "$sft_template" --prompt "How do you feel in a garden?" --max-new-tokens 12 --temperature 0 --json
  [ "$(json_get 'j["ids"]')" = "$q_ids" ] && ok || bad "pre-quantized $kind generates differently: $(last_json) vs $q_ids"
done
expect_status 1 "full fine-tuning of a quantized checkpoint" "$bin" train --config "$root/configs/demo_sft_aidreams.yaml" \
  --set model.path="$work/base_nf4" --set adapter.type=full --set data.train_file="$root/data/instruct-demo/train.jsonl" \
  --set data.valid_file= --set train.output_dir="$work/full_q"
contains "quantized checkpoint message" "$err" "full fine-tuning needs dense weights"
expect_status 0 "export merge + requantize" "$bin" export --model "$work/base_nf4" --adapter "$sft_ckpt" \
  --out "$work/merged_nf4" --quantize nf4 --json
contains "requantize warns" "$err" "requantizing merged weights"
expect_status 0 "export T5" "$bin" export --model "$t5_ckpt" --out "$work/t5_export" --dtype bf16 --json
[ "$(json_get 'j["dtype"] == "bfloat16" and j["tensors"] > 0')" = "True" ] && ok || bad "export T5: $(last_json)"

# --- interactive chat: two turns on stdin, history kept, /exit ends the session ---
printf 'Hello there.\nHow do you feel in a garden?\n/exit\n' >"$work/chat_in.txt"
expect_status 0 "infer --chat" bash -c '"$0" infer --model "$1" --template llama-2 --chat --max-new-tokens 8 \
  --temperature 0 --json <"$2"' "$bin" "$root/data/models/aidreams260K" "$work/chat_in.txt"
[ "$(json_get 'j["task"] == "chat" and j["turns"] == 2')" = "True" ] && ok || bad "chat turns: $(last_json)"
expect_status 1 "chat needs a chat template" "$bin" infer --model "$root/data/models/aidreams260K" --template alpaca --chat
contains "chat template message" "$err" "--chat needs --template chatml or --template llama-2"
