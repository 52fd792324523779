#!/usr/bin/env bash
# GPT-2 124M (L 12, C 768, H 12, T 1024, V 50257) trained on one GPU by train_gpt, in fp32 and
# in bf16 (each attention kernel), and, when LLMC names a built llm.c CUDA trainer
# (train_gpt2cu), by that trainer on the same token file, batch and steps, in the same run.
# For each: the median step time after the warm-up steps, tokens/s, and MFU against the device's
# dense peak for the dtype (the same model FLOPs per token for every trainer: train_gpt's count).
# Prints one JSON line per run and keeps them in OUTPUT_DIR/bench_gpu.jsonl.
# Usage: bench/gpu/run.sh [BUILD_DIR (default build)] [OUTPUT_DIR (default $TMPDIR or /tmp)]
# Environment: LLMC (path of train_gpt2cu), BATCH (16), STEPS (30), WARMUP (5),
#   PEAK_BF16_TFLOPS (989.4) and PEAK_FP32_TFLOPS (66.9): H100/H200 SXM dense peaks.
set -euo pipefail
build=${1:-build}
output_dir=${2:-${TMPDIR:-/tmp}}
batch=${BATCH:-16}
steps=${STEPS:-30}
warmup=${WARMUP:-5}
peak_bf16=${PEAK_BF16_TFLOPS:-989.4}
peak_fp32=${PEAK_FP32_TFLOPS:-66.9}
seq=1024
vocab=50257
train_gpt="$build/examples/train_gpt/train_gpt"
[ -x "$train_gpt" ] || { echo "no $train_gpt: build it first (cmake --build $build --target train_gpt)" >&2; exit 1; }
mkdir -p "$output_dir"
out="$output_dir/bench_gpu.jsonl"
: > "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# Random tokens in llm.c's token-file format (header: magic 20240520, version 1, count; then
# uint16 tokens), enough for every step: both trainers read the same file.
tokens="$output_dir/gpu_tokens.bin"
python3 - "$tokens" $(((steps + 2) * batch * seq + 1)) $vocab <<'EOF'
import array, random, sys
path, count, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
header = array.array("i", [20240520, 1, count] + [0] * 253)
rng = random.Random(1)
body = array.array("H", (rng.randrange(vocab) for _ in range(count)))
with open(path, "wb") as f:
    header.tofile(f)
    body.tofile(f)
EOF

# median_ms FILE: the median of the step times (ms) after the warm-up steps, from lines that
# carry "| <number> ms |".
median_ms() {
  grep -E '^step ' "$1" | sed -E 's/.*\| *([0-9.]+) ms \|.*/\1/' | tail -n +$((warmup + 1)) | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# report NAME DTYPE LOG: one JSON line from a run's log.
flops_per_token=""
report() {
  local name=$1 dtype=$2 log=$3 ms peak
  ms=$(median_ms "$log") || { echo "{\"bench\":\"gpu_step\",\"trainer\":\"$name\",\"dtype\":\"$dtype\",\"error\":\"no steps\"}" | tee -a "$out"; return; }
  peak=$([ "$dtype" = fp32 ] && echo "$peak_fp32" || echo "$peak_bf16")
  awk -v name="$name" -v dtype="$dtype" -v ms="$ms" -v b="$batch" -v t="$seq" -v f="$flops_per_token" -v peak="$peak" \
    -v steps="$steps" -v warmup="$warmup" 'BEGIN {
      tps = b * t / (ms / 1000)
      printf "{\"bench\":\"gpu_step\",\"trainer\":\"%s\",\"dtype\":\"%s\",\"batch\":%d,\"seq\":%d,\"steps\":%d,\"warmup\":%d,", name, dtype, b, t, steps, warmup
      printf "\"median_step_ms\":%.3f,\"tokens_per_s\":%.0f,\"flops_per_token\":%.6g,\"peak_tflops\":%.1f,\"mfu\":%.4f}\n", ms, tps, f, peak, tps * f / (peak * 1e12)
    }' | tee -a "$out"
}

model=(--layers 12 --hidden 768 --heads 12 --seq $seq --vocab $vocab)
for run in "fp32 blocked" "bf16 blocked" "bf16 flash"; do
  set -- $run
  log="$output_dir/gpu_train_gpt_$1_$2.log"
  peak=$([ "$1" = fp32 ] && echo "$peak_fp32" || echo "$peak_bf16")
  mpiexec -n 1 "$train_gpt" "${model[@]}" --batch "$batch" --micro-batch "$batch" --steps "$steps" --dtype "$1" \
    --attention "$2" --data "$tokens" --peak-gflops "$(awk -v p="$peak" 'BEGIN { print p * 1000 }')" > "$log" 2>&1 ||
    { tail -5 "$log" >&2; }
  flops_per_token=$(sed -nE 's/.*model FLOPs per token: ([0-9.e+]+).*/\1/p' "$log" | head -1)
  report "trident-$2" "$1" "$log"
done

if [ -n "${LLMC:-}" ]; then
  # llm.c in bf16 (its build's precision), its own attention (no cuDNN); validation once, at the
  # end, on one batch; no sampling.
  log="$output_dir/gpu_llmc.log"
  (cd "$output_dir" && "$LLMC" -i "$tokens" -j "$tokens" -e d12 -b "$batch" -t $seq -x "$steps" -v 100000 -m 1 \
    -s 0 -h 0 -l 3e-4) > "$log" 2>&1 || { tail -5 "$log" >&2; }
  report llm.c bf16 "$log"
fi
