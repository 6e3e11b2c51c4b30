#!/usr/bin/env bash
# The seq2seq demo (CPU, a few minutes): the synthetic instruction set (data/instruct-demo) as
# {source, target} pairs, full fine-tuning of the shipped tiny random T5 (data/models/t5-tiny), ROUGE
# of generated answers on the valid split at every evaluation, then eval and infer with the best model.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qlora=$("$here/scripts/build.sh")
out=$here/runs/demo_t5
cd "$here"
mkdir -p "$out"
echo "== prepare pairs (instruction + input -> output)" >&2
for split in train valid; do
  python3 -c 'import json,sys
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    print(json.dumps({"source": (r["instruction"] + " " + r["input"]).strip(), "target": r["output"]}))' \
    "data/instruct-demo/$split.jsonl" >"$out/${split}_src.jsonl"
  "$qlora" prepare pairs --input "$out/${split}_src.jsonl" --output "$out/${split}_pairs.jsonl" >/dev/null
done
echo "== train (full fine-tuning, ROUGE on valid)" >&2
rm -rf "$out/run"
"$qlora" train --config configs/demo_t5_tiny.yaml --json | tail -n 1 >"$out/train_summary.json"
best=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["best_checkpoint"])' "$out/train_summary.json")
echo "== eval: ROUGE and BLEU of $best (beam search 4)" >&2
"$qlora" eval --metric rouge --model "$best" --data "$out/valid_pairs.jsonl" --source-template "answer: {source}" \
  --num-beams 4 --max-new-tokens 24 --predictions-out "$out/valid_predictions.jsonl"
"$qlora" eval --metric bleu --predictions "$out/valid_predictions.jsonl" --field prediction --reference-field target
echo "== infer" >&2
"$qlora" infer --model "$best" --prompt "answer: How do you feel in a garden?" --num-beams 4 --max-new-tokens 24
