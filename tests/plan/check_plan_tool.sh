#!/usr/bin/env bash
# trident-plan without running anything: Megatron-LM's published GPT scaling table reproduced
# (for every row the published layout's predicted throughput within 20% of the published one,
# and the planner's choice the published layout or one it predicts faster), a GPT-3-sized plan
# for 1,024 ranks, an MLP on a calibrated machine's file, GPT-2 with either attention kernel on
# it, and clear errors.
set -euo pipefail
tool="$1"; tools_dir="$2"; dir="$3"
rm -rf "$dir"; mkdir -p "$dir"
cluster="$tools_dir/clusters/selene-a100.json"
"$tool" --cluster "$cluster" --megatron-table "$tools_dir/megatron_table1.json" --json > "$dir/table.md" 2> "$dir/table.jsonl"
grep -q "^| 1008.0B | 3072 | 8, 64, 6 | 163 |" "$dir/table.md"
python3 - "$dir/table.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) == 10, f"{len(rows)} rows, not 10"
for r in rows:
    error = r["predicted_tflops"] / r["published_tflops"] - 1
    assert abs(error) <= 0.20, f"{r['billions']}B: predicted {r['predicted_tflops']:.1f} TFLOP/s against {r['published_tflops']}"
    assert r["choice_step_s"] <= r["published_step_s"] * (1 + 1e-9), f"{r['billions']}B: the choice is slower than the published layout"
print("ok: Megatron table, worst error %+.1f%%" % (100 * max((abs(r["predicted_tflops"] / r["published_tflops"] - 1) for r in rows))))
PY
"$tool" --cluster "$cluster" --ranks 1024 --layers 96 --hidden 12288 --heads 96 --seq 2048 --vocab 51200 \
  --batch 1536 --top 3 > "$dir/gpt3.txt"
grep -qE "^Selene .*: 1024 ranks, GPT-2, batch 1536: [0-9]+ layouts in [0-9.]+ s" "$dir/gpt3.txt"
grep -qE "^  1\. dp [0-9]+ x tp [0-9]+ x pp [0-9]+" "$dir/gpt3.txt"
grep -qE "^the first (saves|pays)" "$dir/gpt3.txt"
# A machine file as a run's calibration writes it: measured GEMMs, no peak.
cat > "$dir/machine.json" <<'JSON'
{"name": "two cores", "devices_per_node": 2, "cores": 2, "memory_bytes_per_s": 2e10,
 "gemms": [[64, 256, 16, "NN", 1e-5]],
 "intra_node": {"latency_s": 2e-5, "bytes_per_s": 4e9}, "inter_node": {"latency_s": 2e-5, "bytes_per_s": 4e9}}
JSON
"$tool" --cluster "$dir/machine.json" --ranks 2 --mlp 16,256,256,1 --batch 64 --top 2 > "$dir/mlp.txt"
grep -qE "^two cores: 2 ranks, MLP 16,256,256,1, batch 64: [0-9]+ layouts" "$dir/mlp.txt"
# The flash attention kernel keeps a number per row instead of the probabilities: at T = 1024
# under a tight cap fewer layouts are too large, and the same first layout needs less memory.
for kernel in blocked flash; do
  "$tool" --cluster "$dir/machine.json" --ranks 2 --layers 4 --hidden 128 --heads 8 --seq 1024 --vocab 256 \
    --batch 16 --memory-gb 0.5 --top 1 --attention "$kernel" > "$dir/attention_$kernel.txt"
done
python3 - "$dir/attention_blocked.txt" "$dir/attention_flash.txt" <<'PY'
import re, sys
def read(path):
    text = open(path).read()
    too_large = int(re.search(r"(\d+) over the memory cap", text).group(1))
    first = re.search(r"  1\. (.*?) +step .* memory/rank +([0-9.]+) GB", text)
    return too_large, first.group(1), float(first.group(2))
blocked, flash = read(sys.argv[1]), read(sys.argv[2])
assert flash[0] < blocked[0], f"flash: {flash[0]} layouts over the cap, blocked {blocked[0]}"
assert flash[1] != blocked[1] or flash[2] < blocked[2], f"{flash[1]}: flash {flash[2]} GB, blocked {blocked[2]} GB"
print(f"ok: flash attention: {flash[0]} layouts over the cap against {blocked[0]}")
PY
# Errors name the problem and exit with 2.
expect_error() {
  local pattern="$1"; shift
  if "$tool" "$@" > "$dir/error.txt" 2>&1; then echo "accepted: $*"; exit 1; fi
  grep -q -- "$pattern" "$dir/error.txt" || { echo "no '$pattern' in:"; cat "$dir/error.txt"; exit 1; }
}
expect_error "--cluster is required" --ranks 4
expect_error "cannot open" --cluster "$dir/none.json"
echo '{"name": "x", "peak_flops": 1e12}' > "$dir/bad.json"
expect_error "needs intra_node and inter_node" --cluster "$dir/bad.json"
expect_error "no layout of 4 ranks fits" --cluster "$cluster" --ranks 4 --layers 96 --hidden 12288 --heads 96 \
  --seq 2048 --vocab 51200 --batch 64
echo "ok: trident-plan"
