#!/usr/bin/env python3
"""Compile cost of trident programs: wall time and peak memory of compiling one translation
unit with the build's own command (compile_commands.json), best of N runs, as JSON lines.

usage: measure.py BUILD_DIR [REPEATS]
"""
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

# (name, source file relative to the repository, a target whose command compiles it)
UNITS = [
    ("train_gpt (linking trident::train_float)", "examples/train_gpt/train_gpt.cpp", "train_gpt"),
    ("own_model (header-only)", "examples/own_model/own_model.cpp", "own_model"),
    ("own_model (linking trident::train_float)", "examples/own_model/own_model.cpp", "own_model_instantiated"),
    ("own_model's flags (CLI11, its own unit)", "examples/own_model/options.cpp", "own_model"),
    ("trident::train_float itself (once)", "src/trainer_float.cpp", "trident_train_float"),
]


def run(command):
    """Wall seconds and peak resident MB of one compiler run (its own process tree)."""
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - start
    error = process.stderr.read().decode()
    process.stderr.close()
    if status != 0:
        sys.exit("compile failed: " + " ".join(command) + "\n" + error)
    # ru_maxrss is of the largest descendant (cc1plus), in KiB on Linux.
    return seconds, usage.ru_maxrss / 1024.0


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    build = os.path.abspath(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with open(os.path.join(build, "compile_commands.json")) as f:
        entries = json.load(f)
    for name, source, target in UNITS:
        # The build's own source tree (it may be another checkout than this script's), and the
        # object the command writes, which names its target.
        entry = next((e for e in entries if os.path.abspath(e["file"]).endswith("/" + source) and
                      (target + ".dir/") in e.get("output", e.get("command", " ".join(e.get("arguments", []))))),
                     None)
        if entry is None:
            print(json.dumps({"unit": name, "error": "no compile command (target %s not configured)" % target}))
            continue
        command = shlex.split(entry["command"]) if "command" in entry else entry["arguments"]
        with tempfile.TemporaryDirectory() as scratch:
            out = command.index("-o")
            command[out + 1] = os.path.join(scratch, "unit.o")
            command = [c for c in command if c not in ("-MD",)]
            for flag in ("-MT", "-MF"):
                while flag in command:
                    i = command.index(flag)
                    del command[i:i + 2]
            os.chdir(entry["directory"])
            results = [run(command) for _ in range(repeats)]
        seconds = min(r[0] for r in results)
        memory = max(r[1] for r in results)
        print(json.dumps({"unit": name, "source": source, "seconds": round(seconds, 2),
                          "peak_mb": round(memory, 1), "runs": repeats}), flush=True)


if __name__ == "__main__":
    main()
