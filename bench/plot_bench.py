#!/usr/bin/env python3
"""Plots the JSON lines of bench_train_step and bench_ops as one PNG: the training step's
time per region, and each operator's fraction of the SGEMM rate.

usage: plot_bench.py OUT.png FILE.jsonl [FILE.jsonl ...]   (needs matplotlib)"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

out, files = sys.argv[1], sys.argv[2:]
records = [json.loads(line) for path in files for line in open(path) if line.startswith("{")]
# The float step with the blocked attention kernel (lines without the fields come from older runs).
blocked = lambda r: r.get("attention", "blocked") == "blocked" and r.get("dtype", "fp32") == "fp32"
step = [r for r in records if r.get("bench") == "train_step" and blocked(r)]
regions = [r for r in records
           if r.get("bench") == "train_step_region" and blocked(r) and r["fraction_of_step"] >= 0.002]
ops = [r for r in records if r.get("bench") == "op" and r.get("fraction_of_sgemm", 0) > 0]

fig, axes = plt.subplots(1, 2, figsize=(13, 5))
if regions:
    regions.sort(key=lambda r: r["self_ms_per_step"])
    names = [r["region"].replace("trident::", "").replace("KokkosBlas::gemm[TPL_BLAS,float]", "GEMM (sgemm)")
             for r in regions]
    axes[0].barh(names, [r["self_ms_per_step"] for r in regions], color="tab:blue")
    axes[0].set_xlabel("self time per step (ms)")
    title = "where the training step's time goes"
    if step:
        s = step[-1]
        title += f"\n{s['step_ms']:.0f} ms/step, {s['fraction_of_sgemm']:.2f} of SGEMM ({s['backend']})"
    axes[0].set_title(title)
if ops:
    axes[1].bar([r["op"].replace("attention (flash)", "flash").split(" ")[0] for r in ops], [r["fraction_of_sgemm"] for r in ops], color="tab:green")
    axes[1].axhline(1.0, color="gray", linestyle="--", linewidth=1)
    axes[1].set_ylabel("forward+backward GFLOP/s / SGEMM GFLOP/s")
    axes[1].set_title("operators with GEMM work")
    axes[1].tick_params(axis="x", rotation=30)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"wrote {out}")
