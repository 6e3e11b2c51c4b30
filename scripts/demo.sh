#!/usr/bin/env bash
# The embedded default job, end to end on data shipped in the repo (CPU, a minute or two):
#   1. prepare: SQuAD-format Vietnamese QA (data/nanibot-vi-sample) -> validated MRC JSONL,
#      reporting the answers whose answer_start is wrong in the source data;
#   2. split: group-aware, seeded train/valid split;
#   3. train: LoRA on a tiny random XLM-R (data/models/xlmr-tiny) for 6 epochs, with progress,
#      metrics.jsonl and TensorBoard events in runs/demo/xlmr; the training loss falls, but a model
#      this small and random learns little: real runs use xlm-roberta-base (configs/xlmr_vi_qa.yaml);
#   4. eval: EM/F1 of the best checkpoint on the valid split;
#   5. infer: answer one Vietnamese question.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qlora=$("$here/scripts/build.sh")
out=${QLORA_DEMO_DIR:-$here/runs/demo}
mkdir -p "$out"
cd "$here"

echo "== prepare squad_to_mrc (fixing misplaced answer offsets)" >&2
"$qlora" prepare squad_to_mrc --input data/nanibot-vi-sample/train_wiki_sample.json --output "$out/all.jsonl" --fix-offsets
echo "== split 90/10, grouped by context, seed 42" >&2
"$qlora" split --input "$out/all.jsonl" --train "$out/train.jsonl" --valid "$out/valid.jsonl" \
  --valid-ratio 0.1 --seed 42
echo "== train (LoRA, tiny random XLM-R, 6 epochs)" >&2
rm -rf "$out/xlmr"
"$qlora" train --config configs/demo_xlmr_tiny.yaml --set data.train_file="$out/train.jsonl" \
  --set data.valid_file="$out/valid.jsonl" --set train.output_dir="$out/xlmr" --json | tail -n 1 >"$out/train_summary.json"
best=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["best_checkpoint"])' "$out/train_summary.json")
echo "== eval: EM/F1 of $best" >&2
"$qlora" eval --metric em_f1 --model data/models/xlmr-tiny --adapter "$best" --data "$out/valid.jsonl" \
  --max-seq-length 256 --doc-stride 64 --predictions-out "$out/valid_predictions.jsonl"
echo "== infer" >&2
"$qlora" infer --task qa --model data/models/xlmr-tiny --adapter "$best" --max-seq-length 256 \
  --question "Thủ đô của Việt Nam là thành phố nào?" \
  --context "Hà Nội là thủ đô của Việt Nam, còn Thành phố Hồ Chí Minh là thành phố lớn nhất."
echo "demo: outputs in $out (train/valid JSONL, xlmr/ run folder with metrics.jsonl and TensorBoard events)" >&2
