#!/usr/bin/env python3
"""Loss curves of train_gpt runs in several layouts, and each one's relative difference from
the first (the one-rank run): parallel equals serial up to fp32 reassociation.

usage: plot_losses.py OUT.png LABEL=FILE.jsonl [LABEL=FILE.jsonl ...]   (needs matplotlib)"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def losses(path):
    steps, values = [], []
    for line in open(path):
        row = json.loads(line)
        steps.append(row["step"])
        values.append(row["loss"])
    return steps, values


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    runs = [(arg.split("=", 1)[0], losses(arg.split("=", 1)[1])) for arg in sys.argv[2:]]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, height_ratios=[2, 1])
    reference = dict(zip(*runs[0][1]))
    for index, (label, (steps, values)) in enumerate(runs):
        color = "C%d" % index  # the same colour in both panels
        top.plot(steps, values, label=label, linewidth=1.2, color=color)
        if index > 0:
            diff = [abs(v - reference[s]) / abs(reference[s]) for s, v in zip(steps, values)]
            bottom.semilogy(steps, [max(d, 1e-12) for d in diff], linewidth=1, color=color)
    top.set_ylabel("training loss")
    top.legend(fontsize=8)
    top.set_title("GPT-2 in different layouts: the same loss curve")
    bottom.axhline(1e-4, color="grey", linestyle="--", linewidth=0.8)
    bottom.set_ylabel("relative difference\nfrom one rank")
    bottom.set_xlabel("step")
    figure.tight_layout()
    figure.savefig(sys.argv[1], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
