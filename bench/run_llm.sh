#!/usr/bin/env bash
# Decoder LLM (LLaMA-shaped) and T5 benchmarks, qlora vs transformers + peft, same machine, one
# invocation; see docs/BENCHMARKS.md.
#
#   bench/run_llm.sh [--warmup 1] [--steps 3] [--threads $(nproc)] [--only "llama-train llama-generate t5-train t5-beam"]
#
# Builds bench_causal_lm and bench_seq2seq in $QLORA_BENCH_BUILD (default build-bench), writes the
# random models into /tmp/qlora-bench/ when absent, then runs every benchmark on each side in its own
# process, one after the other: LLaMA LoRA training (B 4, T 256; reference eager and sdpa), LLaMA greedy
# generation (256-token prompt, 64 new tokens; reference eager and sdpa), T5 LoRA training (B 8, source
# 256, target 64), T5 beam search (4 inputs of 128 tokens, 4 beams, 32 new tokens). Prints the tables
# with the ratios qlora / reference and keeps the JSON lines in $BUILD/bench-results/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${QLORA_PYTHON:-/root/.cache/qlora/venv/bin/python}
BUILD=${QLORA_BENCH_BUILD:-$ROOT/build-bench}
LLAMA=/tmp/qlora-bench/llama-small
T5=/tmp/qlora-bench/t5-small-gated
WARMUP=1
STEPS=3
THREADS=$(nproc)
ONLY="llama-train llama-generate t5-train t5-beam"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --warmup) WARMUP=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run_llm.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# The Python env's torch is the libtorch qlora links (cmake/QloraDeps.cmake): same ATen kernels.
mkdir -p "$BUILD"
if ! PATH="$(dirname "$PY"):$PATH" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DQLORA_BUILD_BENCH=ON \
    -DQLORA_BUILD_TESTS=OFF >"$BUILD/bench-configure.log" 2>&1; then
  cat "$BUILD/bench-configure.log" >&2
  exit 1
fi
ninja -C "$BUILD" -j1 bench_causal_lm bench_seq2seq >/dev/null

[[ -f "$LLAMA/model.safetensors" ]] || "$PY" "$ROOT/bench/make_llama_random.py" "$LLAMA"
[[ -f "$T5/model.safetensors" ]] || "$PY" "$ROOT/bench/make_t5_random.py" "$T5"

OUT="$BUILD/bench-results/$(date +%Y%m%d-%H%M%S)-llm"
mkdir -p "$OUT"
COMMON=(--warmup "$WARMUP" --steps "$STEPS" --threads "$THREADS")
busy() { echo "load average $(cut -d' ' -f1-3 /proc/loadavg); cpu pressure $(head -n 1 /proc/pressure/cpu 2>/dev/null)"; }
ours() { "$BUILD/bin/$1" "${@:2}" "${COMMON[@]}" | tail -n 1; }
ref() { "$PY" "$ROOT/bench/$1" "${@:2}" "${COMMON[@]}" 2>/dev/null | tail -n 1; }

echo "before: $(busy)" | tee "$OUT/loadavg.txt"
for what in $ONLY; do
  case "$what" in
    llama-train)
      ARGS=(--mode train --model "$LLAMA" --batch 4 --seq 256)
      ours bench_causal_lm "${ARGS[@]}" >"$OUT/llama-train-qlora.json"
      for attn in eager sdpa; do ref bench_causal_lm.py "${ARGS[@]}" --attn $attn >"$OUT/llama-train-ref-$attn.json"; done ;;
    llama-generate)
      ARGS=(--mode generate --model "$LLAMA" --prompt 256 --new 64)
      ours bench_causal_lm "${ARGS[@]}" >"$OUT/llama-generate-qlora.json"
      for attn in eager sdpa; do ref bench_causal_lm.py "${ARGS[@]}" --attn $attn >"$OUT/llama-generate-ref-$attn.json"; done ;;
    t5-train)
      ARGS=(--mode train --model "$T5" --batch 8 --source 256 --target 64)
      ours bench_seq2seq "${ARGS[@]}" >"$OUT/t5-train-qlora.json"
      ref bench_seq2seq.py "${ARGS[@]}" >"$OUT/t5-train-ref-eager.json" ;;
    t5-beam)
      ARGS=(--mode beam --model "$T5" --batch 4 --source 128 --beams 4 --new 32)
      ours bench_seq2seq "${ARGS[@]}" >"$OUT/t5-beam-qlora.json"
      ref bench_seq2seq.py "${ARGS[@]}" >"$OUT/t5-beam-ref-eager.json" ;;
    *) echo "run_llm.sh: unknown benchmark '$what'" >&2; exit 2 ;;
  esac
  echo "after $what: $(busy)" | tee -a "$OUT/loadavg.txt"
done

"$PY" - "$OUT" $ONLY <<'EOF'
import glob, json, os, sys
out, only = sys.argv[1], sys.argv[2:]
print(f"results in {out}")
def load(p): return json.load(open(p))
def ms(v): return ",".join(f"{x:.0f}" for x in v)
for what in only:
    q = load(os.path.join(out, f"{what}-qlora.json"))
    refs = [load(p) for p in sorted(glob.glob(os.path.join(out, f"{what}-ref-*.json")))]
    print(f"\n== {what}  threads={q['threads']} warmup={q['warmup']} timed={q['steps']}")
    for r in [q] + refs:
        mem = f"peak RSS {r['peak_rss_mib']:.0f}M"
        if what.endswith("train"):
            print(f"{r['impl']:<18} {r.get('attn', '-'):<6} tokens/s {r['tokens_per_s']:8.1f}  median step "
                  f"{r['median_ms']:7.0f} ms ({ms(r['step_ms'])})  {mem}  loss0 {r['first_loss']:.4f}")
        elif what == "llama-generate":
            print(f"{r['impl']:<18} {r['attn']:<6} prefill tok/s {r['prefill_tokens_per_s']:7.1f} "
                  f"({ms(r['prefill_ms'])} ms)  decode {r['decode_ms_per_token']:6.1f} ms/token = "
                  f"{r['decode_tokens_per_s']:6.1f} tok/s  generate {ms(r['generate_ms'])} ms  {mem}")
        else:
            print(f"{r['impl']:<18} s/batch {r['s_per_batch']:7.3f} ({ms(r['batch_ms'])} ms)  {mem}")
    for r in refs:
        tag = f"qlora / transformers+peft ({r.get('attn', 'eager')})"
        same_in = r["input_ids_sum"] == q["input_ids_sum"]
        warn = "" if same_in else "  [WARNING: inputs differ]"
        if what.endswith("train"):
            if r["trainable_params"] != q["trainable_params"]:
                warn += "  [WARNING: trainable parameter count differs]"
            print(f"{tag}: tokens/s x{q['tokens_per_s'] / r['tokens_per_s']:.2f}, "
                  f"peak RSS x{q['peak_rss_mib'] / r['peak_rss_mib']:.2f}{warn}")
        elif what == "llama-generate":
            same = q["ids"] == r["ids"]
            first = next((i for i, (a, b) in enumerate(zip(q["ids"], r["ids"])) if a != b), None)
            print(f"{tag}: prefill tok/s x{q['prefill_tokens_per_s'] / r['prefill_tokens_per_s']:.2f}, "
                  f"decode tok/s x{q['decode_tokens_per_s'] / r['decode_tokens_per_s']:.2f}, "
                  f"generate time x{q['generate_median_ms'] / r['generate_median_ms']:.2f}, "
                  f"same_ids {same}" + ("" if same else f" (first difference at token {first})") + warn)
        else:
            same = q["ids"] == r["ids"]
            print(f"{tag}: s/batch x{q['s_per_batch'] / r['s_per_batch']:.2f} (below 1 = qlora faster), "
                  f"same_ids {same}{warn}")
EOF
