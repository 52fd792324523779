#!/usr/bin/env bash
# --dtype bf16 and fp16 (16-bit activations, float parameters, gradients, AdamW and
# checkpoints) in train_gpt and examples/own_model:
#   - every layout (1 rank, dp 2, tp 2, pp 2, dp 2 x tp 2) tracks the float run of one rank
#     over 20 steps: each step's loss within the gap below;
#   - checkpoints pass between precisions and layouts: a bf16 run's step-10 checkpoint (pp 2)
#     continues as float at dp 2, a float one as bf16 at tp 2, both tracking the float run; an
#     fp16 run (its loss scale saved with it) resumed in its own layout repeats its steps.
# The gaps, about twice the largest measured over the layouts (bf16 keeps 8 significant bits,
# fp16 11; the products read the weights rounded to them, the master weights and AdamW stay
# float): GPT-2 (lr 1e-3 after 2 warmup steps, loss from ln 61 = 4.1) within 3.3e-4 (bf16) and
# 6.9e-5 (fp16); the own MLP within 0.41% and 0.042% of its loss; the own transformer, whose
# AdamW at lr 1e-2 takes sign-like first steps that a rounding can flip, within 0.037 and 0.017
# of its loss (3.45 down to 2.66).
set -euo pipefail
train_gpt="$1"; own_model="$2"; mpiexec="$3"; dir="$4"; shift 4
rm -rf "$dir"; mkdir -p "$dir"
declare -A gap=([gpt_bf16]=0.0006 [gpt_fp16]=0.00016 [mlp_bf16]=0.008 [mlp_fp16]=0.0009
                [transformer_bf16]=0.08 [transformer_fp16]=0.04)
steps=20
launch() { local exe="$1" ranks="$2"; shift 2; "$mpiexec" -n "$ranks" --oversubscribe --mca mpi_yield_when_idle 1 "$exe" "$@"; }
gpt() { local ranks="$1"; shift; launch "$train_gpt" "$ranks" --warmup 2 "${GPT_FLAGS[@]}" "$@"; }
GPT_FLAGS=("$@")
# "step loss" pairs of a --log-json file or of own_model's "step N loss X" lines.
json_losses() { sed -E 's/.*"step":([0-9]+),"loss":([^,]+),.*/\1 \2/' "$1"; }
text_losses() { awk '$1 == "step" && $3 == "loss" { print $2, $4 }' "$1"; }
# near KIND A B GAP [RELATIVE]: every step of B is in A with a loss within GAP (absolute, or
# relative to A's with RELATIVE=1).
near() {
  join <("${1}_losses" "$2" | sort -k1,1) <("${1}_losses" "$3" | sort -k1,1) |
    awk -v a="$2" -v b="$3" -v gap="$4" -v rel="${5:-0}" 'BEGIN { worst = 0 }
    { d = $2 - $3; if (d < 0) d = -d; s = rel ? ($2 < 0 ? -$2 : $2) : 1; n++; if (d / s > worst) worst = d / s
      if (d > gap * s) { print "step " $1 ": " $2 " (" a ") vs " $3 " (" b ")"; bad = 1 } }
    END { if (n == 0) { print "no common steps: " a " " b; bad = 1 }; if (bad) exit 1
          print "ok: " b " ~ " a " (" n " steps, at most " worst " apart, within " gap (rel ? " relative" : "") ")" }'
}
declare -A layout=([one]="1" [dp2]="2 --dp 2" [tp2]="2 --tp 2" [pp2]="2 --pp 2" [dp2_tp2]="4 --dp 2 --tp 2")

# ---- train_gpt: GPT-2 ----
gpt 1 --steps "$steps" --log-json "$dir/gpt_fp32.json" > "$dir/gpt_fp32.log"
for dtype in bf16 fp16; do
  for name in one dp2 tp2 pp2 dp2_tp2; do
    read -r ranks flags <<< "${layout[$name]}"
    # shellcheck disable=SC2086
    gpt "$ranks" $flags --steps "$steps" --dtype "$dtype" --log-json "$dir/gpt_${dtype}_$name.json" > "$dir/gpt_${dtype}_$name.log"
    near json "$dir/gpt_fp32.json" "$dir/gpt_${dtype}_$name.json" "${gap[gpt_$dtype]}"
  done
done
grep -q "bf16 activations, float parameters" "$dir/gpt_bf16_one.log"
# bf16 at pp 2 -> float at dp 2; float at 1 rank -> bf16 at tp 2 (checkpoints of step 10 of
# 20-step runs, so that the learning-rate schedule is the one of the run compared with).
gpt 2 --pp 2 --dtype bf16 --steps "$steps" --save-every 10 --checkpoint-dir "$dir/bf16" > /dev/null
gpt 2 --dp 2 --steps "$steps" --load "$dir/bf16/step-10.safetensors" --log-json "$dir/gpt_bf16_to_fp32.json" > /dev/null
[ "$(head -1 "$dir/gpt_bf16_to_fp32.json" | sed -E 's/.*"step":([0-9]+),.*/\1/')" = 11 ]
near json "$dir/gpt_fp32.json" "$dir/gpt_bf16_to_fp32.json" "${gap[gpt_bf16]}"
gpt 1 --steps "$steps" --save-every 10 --checkpoint-dir "$dir/fp32" > /dev/null
gpt 2 --tp 2 --steps "$steps" --dtype bf16 --load "$dir/fp32/step-10.safetensors" --log-json "$dir/gpt_fp32_to_bf16.json" > /dev/null
near json "$dir/gpt_fp32.json" "$dir/gpt_fp32_to_bf16.json" "${gap[gpt_bf16]}"
# fp16 resumed in its own layout repeats its steps: weights, moments and loss scale restored.
gpt 2 --dp 2 --dtype fp16 --steps "$steps" --save-every 10 --checkpoint-dir "$dir/fp16" > /dev/null
gpt 2 --dp 2 --steps "$steps" --dtype fp16 --load "$dir/fp16/step-10.safetensors" --log-json "$dir/gpt_fp16_resumed.json" > /dev/null
near json "$dir/gpt_fp16_dp2.json" "$dir/gpt_fp16_resumed.json" 1e-12 1
grep -aq '"loss_scale"' "$dir/fp16/step-10.safetensors"

# ---- examples/own_model: a regression MLP (gaps relative to its loss, which falls to 1e-2) and a transformer ----
for model in mlp transformer; do
  launch "$own_model" 1 --model "$model" --steps "$steps" > "$dir/own_${model}_fp32.log"
  for dtype in bf16 fp16; do
    for name in one dp2 tp2 pp2 dp2_tp2; do
      read -r ranks flags <<< "${layout[$name]}"
      # shellcheck disable=SC2086
      launch "$own_model" "$ranks" --model "$model" --steps "$steps" --dtype "$dtype" $flags \
        > "$dir/own_${model}_${dtype}_$name.log"
      near text "$dir/own_${model}_fp32.log" "$dir/own_${model}_${dtype}_$name.log" "${gap[${model}_$dtype]}" \
        "$([ "$model" = mlp ] && echo 1 || echo 0)"
    done
  done
  launch "$own_model" 2 --model "$model" --steps 10 --dtype bf16 --pp 2 --save "$dir/own_${model}.safetensors" > /dev/null
  launch "$own_model" 2 --model "$model" --steps "$steps" --dp 2 --load "$dir/own_${model}.safetensors" \
    > "$dir/own_${model}_bf16_to_fp32.log"
  grep -q "^step 11 loss" "$dir/own_${model}_bf16_to_fp32.log"
  near text "$dir/own_${model}_fp32.log" "$dir/own_${model}_bf16_to_fp32.log" "${gap[${model}_bf16]}" \
    "$([ "$model" = mlp ] && echo 1 || echo 0)"
done
echo "ok: mixed precision"
