# train / eval / infer through the binary on the tiny shipped XLM-R. Sourced by run_cli_tests.sh
# after prepare_split_cases.sh (uses $work/t1.jsonl and $work/v1.jsonl).
model="$root/data/models/xlmr-tiny"
small="--set data.max_seq_length=128 --set data.doc_stride=32 --set train.micro_batch_size=4 --set train.logging_steps=1"
head -n 24 "$work/t1.jsonl" >"$work/t_small.jsonl"

# shellcheck disable=SC2086
expect_status 0 "train qa lora" "$bin" train --config "$root/configs/demo_xlmr_tiny.yaml" $small \
  --set model.path="$model" --set data.train_file="$work/t_small.jsonl" --set data.valid_file="$work/v1.jsonl" \
  --set train.max_steps=4 --set train.save_steps=2 --set train.output_dir="$work/run" --json
[ "$(json_get 'j["global_step"]')" = "4" ] && ok || bad "train steps: $(last_json)"
[ -f "$work/run/checkpoint-4/adapter_model.safetensors" ] && [ -f "$work/run/checkpoint-4/adapter_config.json" ] && ok ||
  bad "no PEFT adapter in checkpoint-4"
[ "$(grep -c '"split":"train"' "$work/run/metrics.jsonl")" -eq 4 ] && ok || bad "metrics.jsonl lacks 4 train records"
ls "$work/run"/events.out.tfevents.* >/dev/null 2>&1 && ok || bad "no TensorBoard event file"
contains "progress/loss shown" "$err" "trainable params:"

expect_status 0 "eval --model" "$bin" eval --metric em_f1 --model "$model" --adapter "$work/run/checkpoint-4" \
  --data "$work/v1.jsonl" --max-seq-length 128 --doc-stride 32 --json
python3 -c "import json,sys; j=json.loads(sys.argv[1]); sys.exit(0 if 0 <= j['f1'] <= 100 and 'exact' in j else 1)" "$(last_json)" \
  && ok || bad "eval --model result: $(last_json)"

expect_status 0 "infer qa" "$bin" infer --task qa --model "$model" --adapter "$work/run/checkpoint-4" \
  --question "Ai?" --context "Hà Nội là thủ đô." --max-seq-length 64 --json
[ "$(json_get 'len(j["answers"])')" = "1" ] && ok || bad "infer answers: $(last_json)"

# Resume: a copy of the run's checkpoint-2, resumed to step 4, ends with the same adapter bytes
# as the uninterrupted run's checkpoint-4.
mkdir -p "$work/resumed" && cp -r "$work/run/checkpoint-2" "$work/resumed/"
# shellcheck disable=SC2086
expect_status 0 "train --resume latest" "$bin" train --config "$root/configs/demo_xlmr_tiny.yaml" $small \
  --set model.path="$model" --set data.train_file="$work/t_small.jsonl" --set data.valid_file="$work/v1.jsonl" \
  --set train.max_steps=4 --set train.save_steps=2 --set train.output_dir="$work/resumed" --resume latest --json
contains "resume logged" "$err" "resumed from"
cmp -s "$work/resumed/checkpoint-4/adapter_model.safetensors" "$work/run/checkpoint-4/adapter_model.safetensors" &&
  ok || bad "resumed adapter differs from the uninterrupted one"

# kill -9 while checkpoints are written at every step: the newest complete one must load.
# shellcheck disable=SC2086
"$bin" train --config "$root/configs/demo_xlmr_tiny.yaml" $small --set model.path="$model" \
  --set data.train_file="$work/t_small.jsonl" --set data.valid_file= --set train.max_steps=400 \
  --set train.save_steps=1 --set train.save_total_limit=2 --set train.output_dir="$work/killed" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -d "$work/killed/checkpoint-3" ] && break; sleep 0.1; done
sleep 0.$((RANDOM % 9 + 1))
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
last=$(ls -d "$work/killed"/checkpoint-* | sed 's/.*checkpoint-//' | sort -n | tail -n 1)
# shellcheck disable=SC2086
expect_status 0 "resume after kill -9" "$bin" train --config "$root/configs/demo_xlmr_tiny.yaml" $small \
  --set model.path="$model" --set data.train_file="$work/t_small.jsonl" --set data.valid_file= \
  --set train.max_steps=$((last + 1)) --set train.save_steps=1 --set train.save_total_limit=2 \
  --set train.output_dir="$work/killed" --resume latest --json
contains "resumed after kill" "$err" "resumed from"
# The killed run's records after the checkpoint are cut: every train step appears once, in order.
python3 -c "
import json, sys
steps = [r['step'] for r in map(json.loads, open(sys.argv[1])) if r['split'] == 'train']
sys.exit(0 if steps == list(range(1, int(sys.argv[2]) + 2)) else 1)" "$work/killed/metrics.jsonl" "$last" &&
  ok || bad "metrics.jsonl after resume: $(grep -o '"step":[0-9]*' "$work/killed/metrics.jsonl" | tr '\n' ' ')"

# train.device: CUDA asked for on a machine (or build) without it is one clear error, not a CPU run;
# nothing is written. auto and cpu train on the CPU.
if ! "$bin" train --help >/dev/null 2>&1 || [ -z "${QLORA_TEST_HAS_GPU:-}" ]; then
  # shellcheck disable=SC2086
  expect_status 1 "train.device=cuda without a GPU" "$bin" train --config "$root/configs/demo_xlmr_tiny.yaml" $small \
    --set model.path="$model" --set data.train_file="$work/t_small.jsonl" --set data.valid_file= \
    --set train.max_steps=1 --set train.device=cuda --set train.output_dir="$work/cuda_run"
  contains "cuda error names the key" "$err" "config key 'train.device' cuda"
  [ ! -e "$work/cuda_run" ] && ok || bad "a refused device left $work/cuda_run behind"
fi
# shellcheck disable=SC2086
expect_status 1 "train.device typo" "$bin" train --config "$root/configs/demo_xlmr_tiny.yaml" $small \
  --set model.path="$model" --set data.train_file="$work/t_small.jsonl" --set train.device=gpu \
  --set train.output_dir="$work/gpu_typo"
contains "device typo lists the choices" "$err" "auto, cpu, cuda, cuda:N"

# Full fine-tuning: the checkpoint is a complete HF model folder that loads on its own.
# shellcheck disable=SC2086
expect_status 0 "train full" "$bin" train --config "$root/configs/demo_xlmr_tiny.yaml" $small \
  --set model.path="$model" --set data.train_file="$work/t_small.jsonl" --set data.valid_file= \
  --set adapter.type=full --set train.max_steps=2 --set train.learning_rate=1e-4 --set train.output_dir="$work/full" --json
[ "$(json_get 'j["model"]["trainable_percent"]')" = "100.0" ] && ok || bad "full: $(last_json)"
for f in model.safetensors config.json sentencepiece.bpe.model tokenizer_config.json; do
  [ -f "$work/full/checkpoint-2/$f" ] && ok || bad "full checkpoint lacks $f"
done
expect_status 0 "eval full checkpoint" "$bin" eval --metric em_f1 --model "$work/full/checkpoint-2" \
  --data "$work/v1.jsonl" --max-seq-length 128 --doc-stride 32 --json

# Bad inputs: a malformed training file names the file and line; nothing is trained.
printf '{"id": "a", "context": "x", "question": "q", "answers": [], "is_impossible": true}\n{"id": \n' >"$work/bad_train.jsonl"
# shellcheck disable=SC2086
expect_status 1 "malformed train file" "$bin" train --config "$root/configs/demo_xlmr_tiny.yaml" $small \
  --set model.path="$model" --set data.train_file="$work/bad_train.jsonl" --set train.output_dir="$work/bad"
contains "malformed train file names file:line" "$err" "bad_train.jsonl:2"
[ ! -d "$work/bad/checkpoint-1" ] && ok || bad "a checkpoint was written from bad data"
expect_status 1 "missing model" "$bin" train --config "$root/configs/demo_xlmr_tiny.yaml" --set model.path="$work/nope"
contains "missing model named" "$err" "$work/nope"
