#!/usr/bin/env bash
# One LoRA training step, qlora vs transformers + peft, same machine, one invocation; see docs/BENCHMARKS.md.
#
#   bench/run.sh [--batch 8] [--seq 384] [--warmup 1] [--steps 3] [--threads $(nproc)]
#                [--attn "eager sdpa"] [--model /tmp/qlora-bench/xlmr-base] [--vocab 250002]
#
# Builds bench_lora_step in build-bench (-DQLORA_BUILD_BENCH=ON), writes the random XLM-R-base model
# when it is absent, then runs qlora and the reference once per attention implementation, each in its
# own process (peak RSS is per process), one after the other. Prints a table with the ratios
# qlora / reference and keeps the JSON lines in $BUILD/bench-results/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${QLORA_PYTHON:-/root/.cache/qlora/venv/bin/python}
BUILD=${QLORA_BENCH_BUILD:-$ROOT/build-bench}
MODEL=/tmp/qlora-bench/xlmr-base
VOCAB=250002
BATCH=8
SEQ=384
WARMUP=1
STEPS=3
THREADS=$(nproc)
ATTNS="eager sdpa"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --batch) BATCH=$2; shift 2 ;;
    --seq) SEQ=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --attn) ATTNS=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --vocab) VOCAB=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# The Python env's torch is the libtorch qlora links (cmake/QloraDeps.cmake), so both sides run the
# same ATen kernels.
mkdir -p "$BUILD"
if ! PATH="$(dirname "$PY"):$PATH" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DQLORA_BUILD_BENCH=ON \
    -DQLORA_BUILD_TESTS=OFF >"$BUILD/bench-configure.log" 2>&1; then
  cat "$BUILD/bench-configure.log" >&2
  exit 1
fi
ninja -C "$BUILD" -j1 bench_lora_step >/dev/null

if [[ ! -f "$MODEL/model.safetensors" ]]; then
  "$PY" "$ROOT/bench/make_xlmr_base_random.py" "$MODEL" --vocab "$VOCAB"
fi

OUT="$BUILD/bench-results/$(date +%Y%m%d-%H%M%S)-B${BATCH}-T${SEQ}"
mkdir -p "$OUT"
COMMON=(--model "$MODEL" --batch "$BATCH" --seq "$SEQ" --warmup "$WARMUP" --steps "$STEPS" --threads "$THREADS")

# Other work on the machine skews the timings: record how busy it was around the runs.
busy() { echo "load average $(cut -d' ' -f1-3 /proc/loadavg); cpu pressure $(head -n 1 /proc/pressure/cpu 2>/dev/null)"; }
echo "before: $(busy)" | tee "$OUT/loadavg.txt"
"$BUILD/bin/bench_lora_step" "${COMMON[@]}" | tail -n 1 >"$OUT/qlora.json"
for attn in $ATTNS; do
  "$PY" "$ROOT/bench/bench_lora_step.py" "${COMMON[@]}" --attn "$attn" 2>/dev/null | tail -n 1 >"$OUT/ref-$attn.json"
done
echo "after:  $(busy)" | tee -a "$OUT/loadavg.txt"

"$PY" - "$OUT" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
q = json.load(open(os.path.join(out, "qlora.json")))
refs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "ref-*.json")))]
print(f"B={q['batch']} T={q['seq']} vocab={q['vocab']} threads={q['threads']} "
      f"warmup={q['warmup']} timed steps={q['steps']}  ({out})")
head = f"{'impl':<18} {'attn':<6} {'samples/s':>9} {'tokens/s':>9} {'median ms':>10} {'step ms (each)':<28} " \
       f"{'peak RSS':>9} {'train pk':>9} {'loss0':>7}"
print(head)
print("-" * len(head))
def row(r):
    steps = ",".join(f"{x:.0f}" for x in r["step_ms"])
    tp = r["train_peak_rss_mib"]
    print(f"{r['impl']:<18} {r['attn']:<6} {r['samples_per_s']:>9.3f} {r['tokens_per_s']:>9.1f} "
          f"{r['median_step_ms']:>10.0f} {steps:<28} {r['peak_rss_mib']:>8.0f}M "
          f"{(f'{tp:.0f}M' if tp is not None else '-'):>9} {r['first_loss']:>7.4f}")
for r in [q] + refs:
    row(r)
print()
for r in refs:
    same = r["input_ids_sum"] == q["input_ids_sum"] and r["trainable_params"] == q["trainable_params"]
    tq, tr = q["train_peak_rss_mib"], r["train_peak_rss_mib"]
    train_ratio = f"{tq / tr:.2f}" if tq and tr else "-"
    print(f"qlora / transformers+peft ({r['attn']}): samples/s x{q['samples_per_s'] / r['samples_per_s']:.2f}, "
          f"peak RSS x{q['peak_rss_mib'] / r['peak_rss_mib']:.2f} (train peak x{train_ratio})"
          + ("" if same else "  [WARNING: batch or trainable parameter count differs]"))
EOF
