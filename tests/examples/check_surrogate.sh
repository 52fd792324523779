#!/usr/bin/env bash
# examples/surrogate at a small size: on 4 ranks as dp 2 x tp 2 and on 2 ranks as tp 2, the
# printout shows the layout, the training losses are one rank's (1e-4 relative: the data does
# not depend on the number of ranks), and the surrogate's error falls well below that of
# predicting no change (1.0). Bad flags are refused.
set -euo pipefail
exe="$1"; mpiexec="$2"; dir="$3"; shift 3
rm -rf "$dir"; mkdir -p "$dir"
source "$(dirname "$0")/common.sh"
small=(--grid 32 --width 64 --steps 200 --batch 64 --eval-every 100 --eval-points 256)
run 1 "${small[@]}" > "$dir/one.log"
run 4 "${small[@]}" --dp 2 --tp 2 > "$dir/dp2_tp2.log"
run 2 "${small[@]}" --tp 2 > "$dir/tp2.log"
training() { awk '/training loss/ { print $2, $6 }' "$1"; }
for log in dp2_tp2 tp2; do
  join <(training "$dir/one.log") <(training "$dir/$log.log") | awk -v name="$log" '
    { d = $2 - $3; if (d < 0) d = -d; if (d > 1e-4 * $2) { print name " step " $1 ": " $2 " vs " $3; bad = 1 }; n++ }
    END { if (bad || n < 5) { print "FAIL: " name " (" n " steps)"; exit 1 }; print "ok: " name " losses = one rank (" n " steps)" }'
done
cat "$dir/dp2_tp2.log"
grep -q "training mesh dp=2 x tp=2" "$dir/dp2_tp2.log"
grep -q "0:(0,0) 1:(0,1) 2:(1,0) 3:(1,1)" "$dir/dp2_tp2.log"
for log in "$dir/dp2_tp2.log" "$dir/tp2.log"; do
  awk '/final surrogate error/ { found = 1; if ($4 + 0 > 0.5) { print "error " $4 " too large"; exit 1 } }
       END { if (!found) { print "no final error"; exit 1 } }' "$log"
done
# Bad input: one clear error, non-zero exit, no hang.
if run 2 "${small[@]}" --dp 2 --tp 2 > "$dir/bad.log" 2>&1; then echo "dp 2 x tp 2 ran on 2 ranks"; exit 1; fi
grep -q "dp x tp = 2 x 2 must equal the 2 ranks" "$dir/bad.log"
for bad in "--eval-every 0" "--restart-every 0" "--batch 0" "--eval-points 0" "--grid 2" "--lr -1"; do
  # shellcheck disable=SC2086
  if run 1 "${small[@]}" $bad > "$dir/bad_flag.log" 2>&1; then echo "FAIL: surrogate ran with $bad"; exit 1; fi
  grep -q "surrogate: error" "$dir/bad_flag.log" || { cat "$dir/bad_flag.log"; exit 1; }
done
# Flags parsed by CLI11: an error names the flag, one line, printed once (rank 0), status 2.
for bad in "--lr|--lr needs a value, but the command line ends after it" "--grid ten|--grid: expects an integer, got 'ten'" \
           "--lr 0|--lr: must be > 0, got 0" "--zero 5|--zero: must be in [0, 3], got 5" "--widht 8|unknown flag --widht"; do
  # shellcheck disable=SC2086
  if run 2 "${small[@]}" --dp 2 ${bad%%|*} > "$dir/bad_cli.log" 2>&1; then echo "FAIL: surrogate ran with ${bad%%|*}"; exit 1; fi
  [ "$(grep -c "surrogate: error" "$dir/bad_cli.log")" -eq 1 ] && grep -qF -- "surrogate: error: ${bad#*|}" "$dir/bad_cli.log" ||
    { echo "FAIL: ${bad%%|*}:"; cat "$dir/bad_cli.log"; exit 1; }
done
echo "ok: surrogate"
