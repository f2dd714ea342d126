"""Instructions per call of read workloads: upstream's reader on our datasets against its own
output, counted by valgrind's callgrind, which counts what the CPU executes, whatever else the
machine is doing (the same run repeated agreed to 0.2 %).

usage: read_instructions.py REFERENCE.slaf NAME=DATASET.slaf [NAME=DATASET.slaf ...]
                            [--workload W]... [--calls N] [--jobs N] [--json OUT.json]

Why: on two busy cores the read benchmark's median wall-time ratios (read_bench.py) cannot
resolve 5 %: a copy of the reference, timed against it, measured 0.90-1.05. Instruction counts
can, so they say which layout choice costs what; they are not time (cache misses and waits on
disk or threads do not count), so the timed ratios stay the targets.

Each dataset runs in two processes under callgrind: one opens it, waits for the reader's
metadata, runs the workload once to warm it and once more; the other runs it N more times.
The difference of the two totals over N is one call's instructions, without the imports,
the open and the warm-up. Workloads and their cells and genes are read_bench.py's.
Needs valgrind (Debian's package); a dataset takes 2-4 minutes a workload on the 100k file.
"""
import argparse
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import read_bench  # noqa: E402

DEFAULT_WORKLOADS = ("full pass", "SQL sum per gene")


def child(spec):
    """Under callgrind: warm-up and `calls` calls of one workload on one dataset."""
    spec = json.loads(spec)
    f = read_bench.workloads(spec["choice"])[spec["workload"]]
    side = read_bench.side(spec["path"])
    side["sa"].wait_for_metadata()
    for _ in range(1 + spec["calls"]):
        f(side)
        read_bench.gc.collect()


def count(spec):
    """Instructions callgrind counted in a child process run with `spec`."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True, text=True)
    found = re.findall(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        sys.exit(f"callgrind on {spec['path']} ({spec['workload']}) failed "
                 f"(exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(found[-1])


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    p = argparse.ArgumentParser()
    p.add_argument("reference")
    p.add_argument("datasets", nargs="+", help="NAME=PATH")
    p.add_argument("--workload", action="append", help="repeatable; default: "
                   + ", ".join(DEFAULT_WORKLOADS))
    p.add_argument("--calls", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2, help="callgrind processes at once")
    p.add_argument("--json")
    args = p.parse_args()
    datasets = {"reference": args.reference}
    datasets.update(d.split("=", 1) for d in args.datasets)
    choice = read_bench.choose(args.reference)
    jobs = [(w, name, calls) for w in (args.workload or DEFAULT_WORKLOADS)
            for name in datasets for calls in (1, 1 + args.calls)]
    with ThreadPoolExecutor(args.jobs) as pool:
        totals = dict(zip(jobs, pool.map(lambda j: count(
            {"choice": choice, "workload": j[0], "path": datasets[j[1]], "calls": j[2]}), jobs)))
    report = {}
    for w in args.workload or DEFAULT_WORKLOADS:
        per_call = {n: (totals[(w, n, 1 + args.calls)] - totals[(w, n, 1)]) / args.calls
                    for n in datasets}
        report[w] = {n: {"instructions": round(c), "ratio": c / per_call["reference"]}
                     for n, c in per_call.items()}
        for n, r in report[w].items():
            print(f"{w}: {n}: {r['instructions'] / 1e9:.3f} G instructions a call, "
                  f"{r['ratio']:.3f} of the reference's", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
