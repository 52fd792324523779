#!/usr/bin/python3
"""Draws the timeline of a pipeline step from Chrome trace JSON as a PNG.

One row per rank (rank 0 on top), one box per complete ("X") event, coloured by its
category: forward, backward, backward_input, backward_weight, and transfers in greys. The
micro-batch number from the event's name ("F3" -> 3, "W12c1" -> 12) is written in the box;
later model chunks ("c1", "c2", ...) are drawn lighter.

    /usr/bin/python3 plot_timeline.py trace.json -o timeline.png
    /usr/bin/python3 plot_timeline.py rank0.json rank1.json rank2.json -o timeline.png

The rank of an event is its "pid". When several files each describe one rank under the same
pid, the position of the file on the command line gives the rank instead.
"""

import argparse
import json
import re
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {
    "forward": "#4c72b0",
    "backward": "#dd8452",
    "backward_input": "#c44e52",
    "backward_weight": "#55a868",
}
TRANSFER_COLOURS = {"forward": "#b5b5b5", "backward": "#7a7a7a"}  # activations lighter than gradients
OTHER_COLOUR = "#8172b3"
NAME_PATTERN = re.compile(r"^[A-Za-z]*?(\d+)(?:c(\d+))?")


def load_events(paths):
    """The complete events of all files, each with a 'rank' key."""
    per_file = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        events = data["traceEvents"] if isinstance(data, dict) else data
        per_file.append([e for e in events if e.get("ph") == "X"])
    pids_per_file = [{e.get("pid", 0) for e in events} for events in per_file]
    one_pid_each = all(len(pids) == 1 for pids in pids_per_file)
    pids_collide = len(set().union(*pids_per_file)) < len(paths) if paths else False
    use_file_order = len(paths) > 1 and one_pid_each and pids_collide
    result = []
    for index, events in enumerate(per_file):
        for e in events:
            rank = index if use_file_order else int(e.get("pid", 0))
            result.append(dict(e, rank=rank))
    return result


def colour_of(category):
    if category in COLOURS:
        return COLOURS[category]
    if category.startswith(("send", "recv")):
        return TRANSFER_COLOURS["forward" if category.endswith("forward") else "backward"]
    return OTHER_COLOUR


def lighten(colour, amount):
    """Mixes a hex colour with white; amount 0 keeps it, 1 gives white."""
    rgb = matplotlib.colors.to_rgb(colour)
    return tuple(c + (1.0 - c) * amount for c in rgb)


def draw(events, output, title):
    if not events:
        raise SystemExit("plot_timeline.py: no complete ('X') events in the input")
    ranks = sorted({e["rank"] for e in events})
    row_of = {rank: row for row, rank in enumerate(ranks)}
    start = min(e["ts"] for e in events)
    end = max(e["ts"] + e["dur"] for e in events)
    span_ms = max((end - start) / 1000.0, 1e-9)
    busiest_row = max(sum(1 for e in events if e["rank"] == r) for r in ranks)
    font_size = max(4.0, min(10.0, 360.0 / busiest_row))

    figure, axes = plt.subplots(figsize=(max(8.0, min(24.0, busiest_row * 0.35)), 0.6 * len(ranks) + 1.4))
    for e in events:
        left = (e["ts"] - start) / 1000.0
        width = e["dur"] / 1000.0
        category = e.get("cat", "")
        match = NAME_PATTERN.match(e.get("name", ""))
        chunk = int(match.group(2)) if match and match.group(2) else 0
        colour = lighten(colour_of(category), min(0.6, 0.3 * chunk))
        row = row_of[e["rank"]]
        axes.broken_barh([(left, width)], (row - 0.4, 0.8), facecolors=colour, edgecolor="black", linewidth=0.4)
        if match and width > 0.012 * span_ms:
            axes.text(left + width / 2, row, match.group(1), ha="center", va="center", fontsize=font_size,
                      color="white" if not category.startswith(("send", "recv")) else "black")

    axes.set_yticks(range(len(ranks)))
    axes.set_yticklabels([f"rank {r}" for r in ranks])
    axes.set_ylim(len(ranks) - 0.5, -0.5)  # rank 0 on top
    axes.set_xlim(0, span_ms)
    axes.set_xlabel("time (ms)")
    axes.set_title(title)
    categories = sorted({e.get("cat", "") for e in events})
    axes.legend(handles=[mpatches.Patch(color=colour_of(c), label=c or "(none)") for c in categories],
                loc="upper center", bbox_to_anchor=(0.5, -0.18 - 0.1 / max(1, len(ranks))), ncol=len(categories),
                fontsize=8, frameon=False)
    figure.tight_layout()
    figure.savefig(output, dpi=150)
    plt.close(figure)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="+", help="Chrome trace JSON file(s)")
    parser.add_argument("-o", "--output", default="timeline.png", help="the PNG to write")
    parser.add_argument("--title", default=None, help="the plot title (default: the input file names)")
    args = parser.parse_args(argv)
    draw(load_events(args.traces), args.output, args.title or ", ".join(args.traces))
    print(args.output)


if __name__ == "__main__":
    main(sys.argv[1:])
