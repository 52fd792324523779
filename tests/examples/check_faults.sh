#!/usr/bin/env bash
# train_gpt when writing fails, at 1, 2 and 4 ranks in data-, tensor- and pipeline-parallel
# layouts:
#  1. TRIDENT_FAULT_INJECT (include/trident/io/fault_injection.hpp) fails the second save of a
#     --save-every run (a full disk, a short write, a failed rename, on one rank or all): every
#     rank exits promptly with status 2 and one message naming the checkpoint and the cause;
#     'latest' still names the first checkpoint, no temporary is left, and --resume continues
#     from it with the losses of a run that never stopped.
#  2. A real full disk (a small tmpfs; needs root, skipped otherwise): the same, for a save and
#     for --log-json filling up mid-run.
#  3. SIGKILL of a rank while it saves a larger checkpoint (every rank stopped first, to be sure
#     the save is under way): the previous checkpoint loads, the killed save's temporary goes.
#  4. Outputs that cannot be written, in every layout: refused before the first step, once.
#   check_faults.sh TRAIN_GPT MPIEXEC DIR MODEL_FLAGS...  (a model with 4 heads and 4 layers)
set -uo pipefail
exe="$1"; mpiexec="$2"; dir="$3"; shift 3
rm -rf "$dir"; mkdir -p "$dir"
source "$(dirname "$0")/common.sh"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
mounts=()
cleanup() { for m in "${mounts[@]}"; do umount "$m" 2> /dev/null; done; }
trap cleanup EXIT
# launch RANKS flags...: the job, killed after 120 s (a hang is a failure, not a stuck test).
launch() { local ranks="$1"; shift; timeout -k 10 120 "$mpiexec" -n "$ranks" --oversubscribe --mca mpi_yield_when_idle 1 "$exe" "$@"; }
# one_error LOG: the log's one "train_gpt: error" line (empty, and a failure, unless exactly one).
one_error() {
  local n; n=$(grep -c "train_gpt: error" "$1")
  [ "$n" -eq 1 ] || { fail "$1 has $n error lines, not 1"; return; }
  grep "train_gpt: error" "$1"
}

run 1 "$@" --steps 4 --log-json "$dir/reference.jsonl" > "$dir/reference.log" || fail "the reference run"
grep '"step":[34],' "$dir/reference.jsonl" > "$dir/reference_tail.jsonl"

# --- 1. Injected faults in the second save (step 4 of a --save-every 2 run).
#       ranks layout                        fault            what the message says
cases=("1  |                              |enospc@2         |no space left on device"
       "2  |--dp 2 --zero 1               |short_write:1@2  |stored"
       "2  |--tp 2                        |rename@2         |renaming"
       "2  |--pp 2                        |enospc:1@2       |no space left on device"
       "4  |--dp 4 --zero 3               |short_write:3@2  |stored"
       "4  |--tp 4 --sequence-parallel    |enospc:2@2       |no space left on device"
       "4  |--pp 4 --schedule zb          |rename@2         |renaming")
n=0
for entry in "${cases[@]}"; do
  IFS='|' read -r ranks layout fault cause <<< "$entry"
  ranks=$(echo $ranks); fault=$(echo $fault); cause=$(echo "$cause" | sed 's/ *$//')
  n=$((n + 1)); case_dir="$dir/fault$n"; ck="$case_dir/ck"; mkdir -p "$case_dir"
  what="$ranks rank(s) $(echo $layout) with $fault"
  start=$SECONDS
  # shellcheck disable=SC2086
  TRIDENT_FAULT_INJECT="$fault" launch "$ranks" "$@" $layout --steps 6 --save-every 2 --checkpoint-dir "$ck" \
    > "$case_dir/failed.log" 2>&1
  status=$?
  [ $status -eq 2 ] || { fail "$what: exit status $status, not 2"; cat "$case_dir/failed.log"; continue; }
  message=$(one_error "$case_dir/failed.log")
  echo "$message" | grep -q "'$ck/step-4.safetensors'" || fail "$what: the error names no $ck/step-4.safetensors: $message"
  echo "$message" | grep -qi "$cause.*(injected fault)" || fail "$what: the error does not say '$cause': $message"
  [ "$(cat "$ck/latest")" = step-2.safetensors ] || fail "$what: latest is '$(cat "$ck/latest")', not step-2.safetensors"
  leftovers=$(ls "$ck" | grep -v '^latest$\|^step-2.safetensors$')
  [ -z "$leftovers" ] || fail "$what: left in $ck: $leftovers"
  # shellcheck disable=SC2086
  launch "$ranks" "$@" $layout --steps 4 --resume "$ck" --log-json "$case_dir/resumed.jsonl" > "$case_dir/resumed.log" 2>&1 ||
    { fail "$what: --resume failed"; cat "$case_dir/resumed.log"; continue; }
  grep -q "resumed from $ck/step-2.safetensors at step 2" "$case_dir/resumed.log" || fail "$what: not resumed at step 2"
  compare "$dir/reference_tail.jsonl" "$case_dir/resumed.jsonl" > /dev/null || fail "$what: resumed losses differ"
  echo "ok: $what: failed in $((SECONDS - start)) s, once: ${message:0:160}...; resumed from step 2"
done
checkpoint_bytes=$(stat -c %s "$dir/fault1/ck/step-2.safetensors")

# --- 2. A real full disk: a tmpfs that holds one checkpoint and a half.
full="$dir/full"; mkdir -p "$full"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=$((checkpoint_bytes * 3 / 2 / 1024 + 4))k tmpfs "$full" 2> /dev/null; then
  mounts+=("$full")
  launch 2 "$@" --dp 2 --steps 6 --save-every 2 --checkpoint-dir "$full/ck" > "$dir/full.log" 2>&1
  status=$?
  message=$(one_error "$dir/full.log")
  [ $status -eq 2 ] || fail "full disk: exit status $status, not 2"
  echo "$message" | grep -q "'$full/ck/step-4.safetensors' was not written" || fail "full disk: $message"
  [ "$(cat "$full/ck/latest")" = step-2.safetensors ] || fail "full disk: latest is '$(cat "$full/ck/latest")'"
  launch 2 "$@" --tp 2 --steps 4 --resume "$full/ck" --log-json "$dir/full_resumed.jsonl" > "$dir/full_resumed.log" 2>&1 ||
    fail "full disk: --resume failed"
  compare "$dir/reference_tail.jsonl" "$dir/full_resumed.jsonl" > /dev/null || fail "full disk: resumed losses differ"
  echo "ok: a full disk at the second save: ${message:0:200}...; resumed from step 2"
  # --log-json filling a 4 KiB file system mid-run: every rank stops together, once.
  tiny="$dir/tiny"; mkdir -p "$tiny"
  if mount -t tmpfs -o size=4k tmpfs "$tiny"; then
    mounts+=("$tiny")
    launch 2 "$@" --dp 2 --steps 200 --log-json "$tiny/log.jsonl" > "$dir/tiny.log" 2>&1
    status=$?
    message=$(one_error "$dir/tiny.log")
    [ $status -eq 2 ] || fail "--log-json on a full disk: exit status $status, not 2"
    echo "$message" | grep -q -- "--log-json '$tiny/log.jsonl': writing step [0-9]* failed: No space left on device" ||
      fail "--log-json on a full disk: $message"
    echo "ok: --log-json on a full disk: $message"
  fi
else
  echo "skip: cannot mount a tmpfs here (not root, or not allowed): no real full-disk test"
fi

# --- 3. SIGKILL during a save of a larger checkpoint (about 40 MB).
big=(--layers 2 --heads 4 --hidden 384 --seq 16 --vocab 61 --batch 4 --micro-batch 2 --peak-gflops 100 --warmup 2)
ck="$dir/kill/ck"
launch 2 "${big[@]}" --dp 2 --zero 1 --steps 400 --save-every 2 --checkpoint-dir "$ck" > "$dir/kill.log" 2>&1 &
job=$!
killed="" expected="" pids=()
deadline=$((SECONDS + 90))
while [ -z "$killed" ] && [ $SECONDS -lt $deadline ] && kill -0 $job 2> /dev/null; do
  if [ -f "$ck/latest" ] && temporary=$(compgen -G "$ck/step-*.safetensors.tmp.*" | head -1) && [ -n "$temporary" ]; then
    mapfile -t pids < <(pgrep -f "^$exe .*$ck")
    [ ${#pids[@]} -eq 2 ] || continue
    kill -STOP "${pids[@]}"
    if [ -e "$temporary" ]; then  # every rank stopped with the save under way
      expected=$(cat "$ck/latest")
      kill -9 "${pids[1]}"
      kill -CONT "${pids[0]}"
      killed="$temporary"
    else
      kill -CONT "${pids[@]}"
    fi
  fi
  sleep 0.002
done
wait $job 2> /dev/null
status=$?
# mpiexec may return before its last rank is gone; a live writer's temporary is not stale.
for pid in "${pids[@]}"; do for _ in $(seq 300); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done; done
if [ -z "$killed" ]; then
  fail "no save caught under way to kill (status $status)"; tail -5 "$dir/kill.log"
else
  [ $status -ne 0 ] || fail "the job survived a killed rank"
  echo "killed rank pid ${pids[1]} while $killed was being written; latest was $expected"
  [ "$(cat "$ck/latest")" = "$expected" ] || fail "kill: latest changed to '$(cat "$ck/latest")' from '$expected'"
  step=$(echo "$expected" | sed -E 's/step-([0-9]+)\.safetensors/\1/')
  launch 2 "${big[@]}" --dp 2 --zero 1 --steps $((step + 2)) --resume "$ck" --save-every 2 > "$dir/kill_resumed.log" 2>&1 ||
    { fail "kill: --resume failed"; cat "$dir/kill_resumed.log"; }
  grep -q "resumed from $ck/$expected at step $step" "$dir/kill_resumed.log" || fail "kill: not resumed from $expected"
  [ -z "$(compgen -G "$ck/*.tmp.*")" ] || fail "kill: temporaries left: $(compgen -G "$ck/*.tmp.*")"
  grep -q "stale temporary" "$dir/kill_resumed.log" || [ ! -e "$killed" ] || fail "kill: the stale temporary was not reported"
  echo "ok: killed during a save; resumed from $expected; $(grep -h "stale temporary" "$dir/kill_resumed.log")"
fi

# --- 4. Outputs that cannot be written, in every layout: refused before the first step, once.
mkdir -p "$dir/a_directory"; : > "$dir/a_file"
readonly_dir="$dir/readonly"; mkdir -p "$readonly_dir"
if [ "$(id -u)" -eq 0 ]; then
  mount -t tmpfs -o size=64k,ro tmpfs "$readonly_dir" 2> /dev/null && mounts+=("$readonly_dir") || readonly_dir=""
else
  chmod 555 "$readonly_dir"
fi
outputs=("--save $dir/a_directory|--save '$dir/a_directory' is an existing directory"
         "--log-json $dir/a_file/log.jsonl|--log-json '$dir/a_file/log.jsonl': cannot create the directory"
         "--save-every 2 --checkpoint-dir $dir/a_file/ck|--checkpoint-dir '$dir/a_file/ck': cannot create the directory"
         "--save $dir/a_file/sub/final.safetensors|--save '$dir/a_file/sub/final.safetensors': cannot create")
[ -n "$readonly_dir" ] && outputs+=("--log-json $readonly_dir/log.jsonl|--log-json '$readonly_dir/log.jsonl': cannot create files in")
for layout in "1:" "2:--dp 2" "2:--tp 2" "2:--pp 2" "4:--dp 2 --pp 2"; do
  ranks="${layout%%:*}"; flags="${layout#*:}"
  cases=("${outputs[@]}")
  [ "$ranks" -gt 1 ] && [[ "$flags" == *--pp* ]] && cases+=("--trace $dir/a_directory|--trace '$dir/a_directory' is an existing directory")
  for entry in "${cases[@]}"; do
    output="${entry%%|*}"; text="${entry#*|}"
    # shellcheck disable=SC2086
    launch "$ranks" "$@" $flags --steps 2 $output > "$dir/output.log" 2>&1
    status=$?
    message=$(one_error "$dir/output.log")
    if [ $status -ne 2 ] || ! echo "$message" | grep -qF -- "$text" || grep -q "^step " "$dir/output.log"; then
      fail "[$ranks: $flags] $output: status $status: $message"; cat "$dir/output.log"
    fi
  done
  echo "ok: unwritable outputs refused at $ranks rank(s) $flags (${#cases[@]} cases)"
done

echo "$failures failure(s)"
[ $failures -eq 0 ]
