#!/usr/bin/env bash
# The embedded default job, end to end on data shipped in the repo (CPU, a minute or two):
#   1. prepare: SQuAD-format Vietnamese QA (data/nanibot-vi-sample) -> validated MRC JSONL,
#      reporting the answers whose answer_start is wrong in the source data;
#   2. split: group-aware, seeded train/valid split;
#   3. train --dry-run: resolve and validate the demo training config.
# Training, evaluation and inference steps join this script as their issues land.
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
echo "== train --dry-run (the resolved demo config)" >&2
"$qlora" train --config configs/demo_xlmr_tiny.yaml \
  --set data.train_file="$out/train.jsonl" --set data.valid_file="$out/valid.jsonl" --dry-run --json |
  tail -n 1 > "$out/config.json"
echo "demo: outputs in $out (all.jsonl, train.jsonl, valid.jsonl, config.json)" >&2
