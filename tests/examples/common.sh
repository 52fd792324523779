# Sourced by the train_gpt checks: launching ranks and comparing --log-json losses.
# Needs $mpiexec set by the caller.
run() { local ranks="$1"; shift; "$mpiexec" -n "$ranks" --oversubscribe --mca mpi_yield_when_idle 1 "$exe" "$@"; }
losses() { sed -E 's/.*"step":([0-9]+),"loss":([^,]+),.*/\1 \2/' "$1"; }
# compare A B: the same steps, every loss of B within 1e-4 relative of A's.
compare() {
  paste <(losses "$1") <(losses "$2") | awk -v a="$1" -v b="$2" '
    { if ($1 != $3) { print "step mismatch " $1 " vs " $3; bad = 1 }
      d = $2 - $4; if (d < 0) d = -d; s = ($2 < 0 ? -$2 : $2);
      if (d > 1e-4 * s) { print "step " $1 ": " $2 " vs " $4; bad = 1 }; n++ }
    END { if (n == 0) { print "no steps"; bad = 1 }; if (bad) exit 1; print "ok: " b " ~ " a " (" n " steps)" }'
}
