#!/usr/bin/env bash
# The embedded default job for decoder LLMs (CPU, a few minutes): LoRA instruction tuning of the shipped
# 240K-parameter LLaMA-architecture model aidreams260K (data/models/aidreams260K, MIT) on a tiny synthetic
# instruction set (data/instruct-demo), then the same questions answered before and after:
#   1. infer with the base model (the config's instruction template, greedy): it has never seen instructions;
#   2. train: LoRA r 16 on every linear layer, 8 epochs, loss and valid perplexity in runs/demo_sft
#      (metrics.jsonl + TensorBoard events);
#   3. infer again with the best adapter: the answers follow the taught pattern;
#   4. export: merge the adapter into a standalone Hugging Face checkpoint.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qlora=$("$here/scripts/build.sh")
out=${QLORA_DEMO_DIR:-$here/runs/demo_sft}
model=data/models/aidreams260K
cd "$here"
template=$'### Instruction:\n{instruction}\n{input}\n### Response:\n'  # as configs/demo_sft_aidreams.yaml
questions=("Describe a dream about the moon." "How do you feel in a garden?" "Name the color of this dream.")
inputs=("" "" "A violet dream of a river.")

ask() {  # ask [--adapter DIR]: greedy answers to the three questions
  for i in "${!questions[@]}"; do
    answer=$("$qlora" infer --model "$model" "$@" --template "$template" --prompt "${questions[$i]}" \
      --input-text "${inputs[$i]}" --max-new-tokens 24 --temperature 0 --json 2>/dev/null | tail -n 1 |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["text"].strip())')
    printf '  Q: %s %s\n  A: %s\n' "${questions[$i]}" "${inputs[$i]}" "$answer" >&2
  done
}

echo "== before fine-tuning (base model, greedy)" >&2
ask
echo "== train (LoRA on all linear layers, 8 epochs)" >&2
rm -rf "$out"
mkdir -p "$out"
"$qlora" train --config configs/demo_sft_aidreams.yaml --set train.output_dir="$out" --json | tail -n 1 >"$out/train_summary.json"
best=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["best_checkpoint"])' "$out/train_summary.json")
echo "== after fine-tuning ($best)" >&2
ask --adapter "$best"
echo "== export a merged checkpoint" >&2
"$qlora" export --model "$model" --adapter "$best" --out "$out/merged" --overwrite
echo "demo: run folder $out (metrics.jsonl, TensorBoard events, checkpoints), merged model $out/merged" >&2
