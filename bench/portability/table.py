#!/usr/bin/env python3
"""Puts portability benchmark results side by side: one column per backend and thread count.

Usage: python3 bench/portability/table.py RESULTS.jsonl [MORE.jsonl ...]
Each cell is the fraction of the SGEMM rate measured in the same run (GEMM-bound rows) or the
milliseconds of forward + backward (memory-bound rows), so builds on different backends compare
by ratio, not by absolute speed alone."""
import json
import sys


def load(paths):
    columns = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                row = json.loads(line)
                key = "%s x%d" % (row["backend"], row["concurrency"])
                columns.setdefault(key, {})
                bench = row["bench"]
                if bench == "train_step" and row.get("dtype", "fp32") == "fp32":
                    columns[key]["train step: fraction of SGEMM"] = "%.3f" % row["fraction_of_sgemm"]
                    columns[key]["train step: tokens/s"] = "%.0f" % row["tokens_per_s"]
                    columns[key]["SGEMM GFLOP/s (model shapes)"] = "%.1f" % row["sgemm_gflops"]
                elif bench == "op":
                    if row["gflop"] > 0:
                        columns[key]["%s: fraction of SGEMM" % row["op"]] = "%.3f" % row["fraction_of_sgemm"]
                    else:
                        columns[key]["%s: fwd+bwd ms" % row["op"]] = "%.2f" % (row["fwd_ms"] + row["bwd_ms"])
    return columns


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    columns = load(sys.argv[1:])
    names = list(columns)
    rows = []
    for column in columns.values():
        for row in column:
            if row not in rows:
                rows.append(row)
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in rows:
        print("| " + row + " | " + " | ".join(columns[n].get(row, "") for n in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
