#!/usr/bin/env bash
# train_gpt: every bad flag, bad data file, model too large for memory and unusable output
# exits with status 2 and one line naming the problem (the flag, the file), before any step; on
# 2 ranks that line is printed once, by rank 0, and nothing hangs.
#   check_errors.sh TRAIN_GPT MPIEXEC DIR [COMM_BACKENDS]   (the build's backends, a ;-list)
set -uo pipefail
exe="$1"; mpiexec="$2"; dir="$3"; backends="${4:-mpi}"
rm -rf "$dir"; mkdir -p "$dir"
failures=0
limit_memory=""
small=(--layers 2 --heads 2 --hidden 32 --seq 16 --vocab 61 --batch 4 --micro-batch 2 --peak-gflops 100 --steps 1)

# expect_error RANKS "<text the error must contain>" flags...: status 2, the text in exactly one
# line of stderr, that line the only "train_gpt: error" line, and no training step.
expect_error() {
  local ranks="$1" text="$2"; shift 2
  local launch=("$exe")
  [ "$ranks" -gt 1 ] && launch=("$mpiexec" -n "$ranks" --oversubscribe --mca mpi_yield_when_idle 1 "$exe")
  ${limit_memory:+bash -c 'ulimit -v 33554432 && exec "$@"' limited} \
    timeout -k 5 120 "${launch[@]}" "${small[@]}" "$@" > "$dir/out" 2> "$dir/err"
  local status=$? problem=""
  local errors; errors=$(grep -c "train_gpt: error" "$dir/err")
  if [ $status -ne 2 ]; then problem="exit status $status, not 2"
  elif [ "$errors" -ne 1 ]; then problem="$errors error lines, not 1"
  elif ! grep "train_gpt: error" "$dir/err" | grep -qF -- "$text"; then problem="the error does not say '$text'"
  elif grep -q "^step " "$dir/out"; then problem="it trained before failing"
  fi
  if [ -n "$problem" ]; then
    echo "FAIL: [$ranks rank(s)] $*: $problem"; cat "$dir/err"; failures=$((failures + 1)); return
  fi
  echo "ok: [$ranks] $* -> $(grep "train_gpt: error" "$dir/err")"
}

# --- Flags: parsed by CLI11, each error naming the flag.
expect_error 1 "unknown flag --layer (did you mean --layers?)" --layer 2
expect_error 1 "--steps: expects an integer, got 'ten'" --steps ten
expect_error 1 "--steps: expects an integer, got '1.5'" --steps 1.5
expect_error 1 "--steps: 99999999999999999999 is out of range" --steps 99999999999999999999
expect_error 1 "--hidden: 4294967296 is out of range" --hidden 4294967296
expect_error 1 "--resume needs a value, but the command line ends after it" --resume
expect_error 1 "--save needs a value, but the next argument is the flag --steps" --save --steps 1
expect_error 1 "--data needs a value, got ''" --data ""
expect_error 1 "--data needs a value, got '--data='" --data=
expect_error 1 "--recompute is a switch and takes no value, got 'no'" --recompute no
expect_error 1 "--recompute is a switch and takes no value, got '--recompute=no'" --recompute=no
expect_error 1 "--sequence-parallel is a switch and takes no value, got '1'" --sequence-parallel 1
expect_error 1 "unexpected argument 'extra'" extra
expect_error 1 "--lr: must be > 0, got 0" --lr 0
expect_error 1 "--lr: must be > 0, got -1e-3" --lr -1e-3
expect_error 1 "--lr: expects a finite number, got 'nan'" --lr nan
expect_error 1 "--lr: expects a number, got '1e-3x'" --lr 1e-3x
expect_error 1 "--beta1: must be in [0, 1), got 1" --beta1 1
expect_error 1 "--beta2: must be in [0, 1), got -0.1" --beta2 -0.1
expect_error 1 "--warmup: must be >= 0, got -1" --warmup -1
expect_error 1 "--steps: must be >= 0, got -1" --steps -1
expect_error 1 "--grad-clip: must be >= 0, got -1" --grad-clip -1
expect_error 1 "--weight-decay: must be >= 0, got -0.5" --weight-decay -0.5
for size in layers heads hidden seq vocab batch micro-batch dp tp pp virtual-stages keep; do
  expect_error 1 "--$size: must be >= 1, got 0" "--$size" 0
done
expect_error 1 "--successors: must be >= 2, got 1" --successors 1
expect_error 1 "--zero: must be in [0, 3], got 4" --zero 4
expect_error 1 "--bucket-mb: must be > 0, got 0" --bucket-mb 0
expect_error 1 "--save-every: must be >= 0, got -2" --save-every -2
expect_error 1 "--seed: expects a non-negative integer, got '-1'" --seed -1
expect_error 1 "--schedule: must be gpipe, 1f1b, interleaved or zb, got 'pipedream'" --schedule pipedream
expect_error 1 "--on-nonfinite: must be stop or skip, got 'ignore'" --on-nonfinite ignore
expect_error 1 "--data-format: must be auto, text or tokens, got 'csv'" --data-format csv
expect_error 1 "--comm-backend: must be mpi or nccl, got 'gloo'" --comm-backend gloo
case ";$backends;" in
  *";nccl;"*) ;;
  *) expect_error 2 "--comm-backend nccl: this build has no NCCL" --comm-backend nccl ;;
esac
# ... and together.
expect_error 1 "--hidden 30 is not a multiple of --heads 4" --hidden 30 --heads 4
expect_error 1 "not a whole number of micro-batches of 3" --batch 8 --micro-batch 3
expect_error 1 "started on 1 rank(s) but --dp 2 x --tp 1 = 2" --dp 2
expect_error 1 "--sequence-parallel needs --tp > 1" --sequence-parallel
expect_error 1 "--virtual-stages 2 needs --schedule interleaved" --virtual-stages 2
expect_error 1 "--successors 100 must be at most --vocab 61" --successors 100
expect_error 1 "--resume and --load both name a checkpoint" --resume "$dir" --load "$dir/x.safetensors"
expect_error 1 "--save-every needs --checkpoint-dir" --save-every 2
expect_error 1 "--reseed only applies to a run that resumes" --reseed --seed 3
expect_error 1 "--reseed needs --seed" --reseed --load "$dir/x.safetensors"

# --- Data files: each error names the file, the format expected and what was found.
le32() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))\\x$(printf %02x $((($1 >> 16) & 255)))\\x$(printf %02x $((($1 >> 24) & 255)))"; }
le16() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))"; }
token_file() {  # token_file PATH MAGIC VERSION ANNOUNCED TOKENS (0, 1, 2, ... modulo 50)
  { le32 "$2"; le32 "$3"; le32 "$4"; for ((i = 3; i < 256; i++)); do le32 0; done
    for ((i = 0; i < $5; i++)); do le16 $((i % 50)); done; } > "$1"
}
for i in $(seq 1 40); do echo "the quick brown fox jumps over the lazy dog $i"; done > "$dir/text.txt"
: > "$dir/empty.txt"
printf 'hi' > "$dir/short.txt"
token_file "$dir/good.bin" 20240520 1 100 100
token_file "$dir/version2.bin" 20240520 2 100 100
token_file "$dir/truncated.bin" 20240520 1 100 60
token_file "$dir/magic.bin" 20240521 1 100 100
mkdir -p "$dir/corpus"
expect_error 1 "--data '$dir/does-not-exist.txt': no such file; expected a text file or an llm.c token file" \
  --data "$dir/does-not-exist.txt"
expect_error 1 "--data '$dir/corpus' is a directory; expected a text file or an llm.c token file" --data "$dir/corpus"
expect_error 1 "--data '$dir/corpus' (file 2 of 2) is a directory; expected an llm.c token file" \
  --data "$dir/good.bin,$dir/corpus"
expect_error 1 "--data '$dir/good.bin,': file 2 of 2 is an empty name" --data "$dir/good.bin,"
# A text file with --vocab < 256: not "read as bytes" alone; it says it is no token file either.
expect_error 1 "--data '$dir/text.txt' is no llm.c token file (found magic number 543516788 (the file starts \"the quick brown \"...), not the magic number 20240520), and read as text, one token per byte, it needs --vocab >= 256 (got 61)" \
  --data "$dir/text.txt"
expect_error 1 "--data '$dir/text.txt': expected an llm.c token file (the int32 magic number 20240520 first" \
  --data "$dir/text.txt" --data-format tokens --vocab 256
expect_error 1 "(--data-format tokens) but found magic number 20240521" --data "$dir/magic.bin" --data-format tokens
expect_error 1 "--data '$dir/empty.txt': expected an llm.c token file" --data "$dir/empty.txt" --data-format tokens
expect_error 1 "but found an empty file" --data "$dir/empty.txt" --data-format tokens
expect_error 1 "but found a file of 2 byte(s) (\"hi\")" --data "$dir/short.txt" --data-format tokens
expect_error 1 "--data '$dir/text.txt' (file 2 of 2): expected an llm.c token file" --data "$dir/good.bin,$dir/text.txt"
expect_error 1 "--data '$dir/text.txt': --data-format text reads one token per byte, which needs --vocab >= 256 (got 61)" \
  --data "$dir/text.txt" --data-format text
expect_error 1 "--data-format text reads one file, but --data names 2" --data "$dir/text.txt,$dir/text.txt" \
  --data-format text --vocab 256
expect_error 1 "'$dir/version2.bin': unsupported version 2 (expected 1)" --data "$dir/version2.bin"
expect_error 1 "'$dir/truncated.bin': the header announces 100 tokens" --data "$dir/truncated.bin"
expect_error 1 "of '$dir/good.bin' is outside the vocabulary [0, 20) (is --vocab 20 too small?)" \
  --data "$dir/good.bin" --vocab 20 --successors 2
expect_error 1 "--data '$dir/good.bin' holds 100 tokens, fewer than the --batch 8 x --seq 16 + 1 = 129" \
  --data "$dir/good.bin" --batch 8
expect_error 1 "--data '$dir/empty.txt' holds 0 tokens" --data "$dir/empty.txt" --vocab 256
if [ "$(id -u)" -ne 0 ]; then  # root reads any file
  cp "$dir/text.txt" "$dir/secret.txt"; chmod 000 "$dir/secret.txt"
  expect_error 1 "--data '$dir/secret.txt': cannot open it (Permission denied)" --data "$dir/secret.txt" --vocab 256
fi

# --- Memory: estimated before anything is allocated, against MemAvailable.
expect_error 1 "most of it is the model's parameters, gradients and AdamW moments: shrink the model (--hidden 32768" \
  --hidden 32768 --heads 32 --layers 64
expect_error 1 "most of it is activations: lower --micro-batch (4096) or --seq (8192)" \
  --batch 4096 --micro-batch 4096 --seq 8192
expect_error 1 "most of it is the token stream: lower --batch (100000000)" --batch 100000000 --micro-batch 1 --seq 1024
grep -q "MemAvailable in /proc/meminfo" "$dir/err" || { echo "FAIL: the memory error names no MemAvailable"; failures=$((failures + 1)); }
# Past the estimate (--skip-memory-check), an allocation that fails is still one clear error,
# not a bare std::bad_alloc (the address space capped at 32 GiB, so nothing is ever touched).
limit_memory=1 expect_error 1 "out of memory (" --skip-memory-check --hidden 32768 --heads 32 --layers 64
limit_memory=1 expect_error 2 "out of memory (" --skip-memory-check --dp 2 --hidden 32768 --heads 32 --layers 64

# --- Checkpoints to start from.
printf 'not a checkpoint' > "$dir/bad.safetensors"
expect_error 1 "bad.safetensors" --load "$dir/bad.safetensors"
expect_error 1 "--resume '$dir/nothing': no checkpoint there (no such directory)" --resume "$dir/nothing"
expect_error 1 "--resume '$dir/corpus': no checkpoint there (no step-<n>.safetensors in it)" --resume "$dir/corpus"
expect_error 1 "--resume '$dir/bad.safetensors' is a file" --resume "$dir/bad.safetensors"

# --- Outputs, checked before the first step.
expect_error 1 "--save '$dir/corpus' is an existing directory" --save "$dir/corpus"
expect_error 1 "--save '$dir/text.txt/ck.safetensors': cannot create the directory '$dir/text.txt': '$dir/text.txt' exists and is not a directory" \
  --save "$dir/text.txt/ck.safetensors"
expect_error 1 "--log-json '$dir/text.txt/sub/log.jsonl': cannot create the directory" --log-json "$dir/text.txt/sub/log.jsonl"
expect_error 1 "--checkpoint-dir '$dir/text.txt': cannot create the directory" --save-every 1 --checkpoint-dir "$dir/text.txt"
expect_error 1 "--log-json '$dir/corpus' is an existing directory" --log-json "$dir/corpus"
# What can be created is: a missing directory for --save.
if ! "$exe" "${small[@]}" --save "$dir/new/sub/ck.safetensors" > "$dir/out" 2>&1 || [ ! -f "$dir/new/sub/ck.safetensors" ]; then
  echo "FAIL: --save into missing directories"; cat "$dir/out"; failures=$((failures + 1))
fi

# --- On 2 ranks: one line, printed once, by rank 0, and no hang.
expect_error 2 "--lr: must be > 0, got 0" --dp 2 --lr 0
expect_error 2 "--resume needs a value" --dp 2 --resume
expect_error 2 "--data '$dir/corpus' is a directory" --dp 2 --data "$dir/corpus"
expect_error 2 "is no llm.c token file" --tp 2 --data "$dir/text.txt"
expect_error 2 "the run needs about" --pp 2 --hidden 32768 --heads 32 --layers 64
expect_error 2 "--save '$dir/corpus' is an existing directory" --dp 2 --save "$dir/corpus"
expect_error 2 "--log-json '$dir/text.txt/log.jsonl': cannot create the directory" --dp 2 --log-json "$dir/text.txt/log.jsonl"

echo "$failures failure(s)"
[ $failures -eq 0 ]
