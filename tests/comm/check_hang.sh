#!/usr/bin/env bash
# Hang detection: a rank stuck in a collective, a receive or a request aborts the job after the
# wait timeout with a message naming the operation, the communicator and the collective's
# number (or the peer and tag); slow ranks within the timeout are not reported.
set -uo pipefail
probe="$1"; mpiexec="$2"; shift 2
flags=(--oversubscribe --mca mpi_yield_when_idle 1)
run() { timeout 60 "$mpiexec" -n 2 "${flags[@]}" "$probe" "$@"; }
expect_hang() {
  local mode="$1" pattern="$2" start=$SECONDS
  if run "$mode" 1 > /tmp/trident_hang_$$.log 2>&1; then
    echo "$mode: the job did not fail"; cat /tmp/trident_hang_$$.log; exit 1
  fi
  if ! grep -q "$pattern" /tmp/trident_hang_$$.log; then
    echo "$mode: no message matching '$pattern'"; cat /tmp/trident_hang_$$.log; exit 1
  fi
  if (( SECONDS - start > 30 )); then echo "$mode: took $((SECONDS - start)) s"; exit 1; fi
  grep "trident::comm:" /tmp/trident_hang_$$.log
}
expect_hang collective "world rank 0 waited .* in trident::comm::allreduce on communicator 'dp' (its rank 0, collective #2)"
expect_hang receive "in trident::comm::recv on communicator 'dp' (its rank 0, peer 1, tag 7)"
expect_hang request "in trident::comm::recv on communicator 'dp' (its rank 0, peer 1, tag 9)"
if ! run none 1 > /tmp/trident_hang_$$.log 2>&1; then
  echo "none: a slow but live job was aborted"; cat /tmp/trident_hang_$$.log; exit 1
fi
grep -c "no hang reported" /tmp/trident_hang_$$.log | grep -q 2
rm -f /tmp/trident_hang_$$.log
echo "ok: hangs detected and named; slow ranks left alone"
