"""The read benchmark: upstream's reader (slafdb 0.5.2) on datasets written by slaf-convert
against the same reader on upstream's own output of the same input.

usage: read_bench.py REFERENCE.slaf NAME=DATASET.slaf [NAME=DATASET.slaf ...]
                     [--fallback FALLBACK.slaf] [--pairs N] [--only WORKLOAD]...
                     [--json OUT.json]

REFERENCE is upstream's default output. Its reader fails some workloads on that output (gene
queries on uint32/uint16 ids: "Substrait is only capable of representing unsafe casts"); those
are timed against FALLBACK instead (upstream's `--no-optimized-dtypes` output, int32 ids), and
the report says which reference each figure used.

Every workload is timed in alternating pairs (dataset, reference; then reference, dataset;
...), and the figure is the median of the per-pair ratios dataset ÷ reference: on two busy
cores a slow patch of the machine then hits both sides of a pair alike, where best-of-N per
side is too noisy to resolve 5 %. A sample is as many calls in a row (at most 10) as last
half a second (open and the 20-cell query are milliseconds each). Those two run each pair in a new
process (FRESH_PROCESS_WORKLOADS), at least 11 pairs. Passing a copy of REFERENCE as one
of the datasets measures the noise floor: its ratio would be 1.00 on a quiet machine. The
workloads are what users and the dataloaders do first:

- open: `SLAFArray(path)` until its metadata is loaded (`wait_for_metadata`): the reader
  loads obs and var on a background thread, which, left running, would bleed into the next
  timed calls (it took the 20-cell figure from 1.00 to 1.14 in one run); every query waits
  for it, so it is part of what opening costs
- cells: `get_cell_expression` of 20 random cells
- gene common / medium / rare: `get_gene_expression` of the gene with the most, the median
  and the fewest stored values
- SQL: `SLAFArray.query` summing every value per gene
- row slice: `LazyAnnData[a:a+2000]` to scipy; column slice: `LazyAnnData[:, b:b+100]`
- full pass: every fragment of expression.lance in 16,384-row batches through
  `slaf.distributed.LanceDataSource` (the dataloaders' access path), as rows per second

Prints one JSON object: per dataset and workload, the median seconds of each side and the
median ratio. Cell and gene choices are seeded and the same for every dataset.
"""
import argparse
import gc
import json
import math
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

BATCH_ROWS = 16_384
MIN_SAMPLE_SECONDS = 0.5
MAX_CALLS_PER_SAMPLE = 10
# Workloads of milliseconds a call, most of them the reader's own Python (the 20-cell query:
# a dict of every cell id built per call, then numpy and polars joins; Lance's take is a tenth
# of it). Their speed follows the state of the process's heap: in one process the same calls
# measured 50 to 80 ms, and either side could come out 10-20 % ahead for the life of the
# process, whichever dataset it was. Each pair of these runs in a new process, so that state is
# drawn afresh per pair and the median over pairs compares the datasets.
FRESH_PROCESS_WORKLOADS = ("open", "20 cells")
FRESH_PROCESS_PAIRS = 11
CHILD_RESULT = "pair-child result: "


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("reference")
    p.add_argument("datasets", nargs="+", help="NAME=PATH")
    p.add_argument("--fallback")
    p.add_argument("--pairs", type=int, default=7)
    p.add_argument("--only", action="append", help="time only this workload (repeatable)")
    p.add_argument("--json")
    return p.parse_args()


def choose(reference):
    """The cells, genes and slices every dataset is asked for (the same ids everywhere)."""
    import lance
    import pyarrow.compute as pc
    from slaf import SLAFArray

    sa = SLAFArray(reference)
    rng = np.random.default_rng(17)
    n_cells, n_genes = sa.shape
    cell_ids = sa.obs["cell_id"].to_list()
    gene_ids = sa.var["gene_id"].to_list()
    genes = lance.dataset(f"{reference}/expression.lance").to_table(
        columns=["gene_integer_id"]).column("gene_integer_id")
    counts = pc.value_counts(genes).to_pylist()
    counts.sort(key=lambda c: (c["counts"], c["values"]))
    by_count = [c["values"] for c in counts]
    return {
        "cells": [cell_ids[i] for i in rng.choice(n_cells, 20, replace=False)],
        "gene common": gene_ids[by_count[-1]],
        "gene medium": gene_ids[by_count[len(by_count) // 2]],
        "gene rare": gene_ids[by_count[0]],
        "rows": int(rng.integers(0, max(1, n_cells - 2000))),
        "cols": int(rng.integers(0, max(1, n_genes - 100))),
    }


def workloads(choice):
    """name -> function(side) running the workload once; side holds path, SLAFArray, lazy."""
    from slaf import SLAFArray

    def full_pass(side):
        from slaf.distributed.data_source import LanceDataSource
        source = LanceDataSource(f"{side['path']}/expression.lance")
        rows = 0
        for i in range(source.get_partition_count()):
            for frame in source.create_reader(i, BATCH_ROWS):
                rows += frame.height
        return rows

    def open_ready(side):
        sa = SLAFArray(side["path"])
        sa.wait_for_metadata()
        return sa

    def to_scipy(m):
        return m.compute() if hasattr(m, "compute") else m

    r, c = choice["rows"], choice["cols"]
    return {
        "open": open_ready,
        "20 cells": lambda s: s["sa"].get_cell_expression(choice["cells"]),
        "gene common": lambda s: s["sa"].get_gene_expression([choice["gene common"]]),
        "gene medium": lambda s: s["sa"].get_gene_expression([choice["gene medium"]]),
        "gene rare": lambda s: s["sa"].get_gene_expression([choice["gene rare"]]),
        "SQL sum per gene": lambda s: s["sa"].query(
            "SELECT gene_integer_id, SUM(value) AS total FROM expression "
            "GROUP BY gene_integer_id"),
        "row slice 2000 cells": lambda s: to_scipy(s["lazy"][r:r + 2000].X),
        "column slice 100 genes": lambda s: to_scipy(s["lazy"][:, c:c + 100].X),
        "full pass": full_pass,
    }


def side(path):
    from slaf import SLAFArray
    from slaf.integrations.anndata import LazyAnnData
    sa = SLAFArray(path)
    return {"path": path, "sa": sa, "lazy": LazyAnnData(sa)}


def timed(f, s, reps=1):
    """Seconds per call of `reps` calls in a row, and the last call's result. What the calls
    left behind is collected after the clock stops (SLAFArray objects hold reference cycles,
    and every open of an indexed dataset caches its indices: hundreds of opens uncollected
    took 24 GB)."""
    before = set(threading.enumerate())
    t = time.perf_counter()
    for _ in range(reps):
        result = f(s)
    elapsed = time.perf_counter() - t
    # Nothing a sample started may run on into the next one (the reader's metadata loader);
    # threads that were there before it (pools, monitors) are left alone.
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=60)
    gc.collect()
    return elapsed / reps, result


def repetitions(f, a, b):
    """Calls per timed sample: enough that a sample lasts MIN_SAMPLE_SECONDS on the faster
    side, so that calls of a few milliseconds (open, 20 cells) are not timed at the
    resolution of the machine's hiccups."""
    fastest = min(timed(f, a)[0], timed(f, b)[0])
    return min(MAX_CALLS_PER_SAMPLE, max(1, math.ceil(MIN_SAMPLE_SECONDS / max(fastest, 1e-6))))


def pair(f, ours, ref, reps, i):
    """One timed pair, ours first on even i: (ours s, reference s, the reference's result)."""
    if i % 2 == 0:
        a, _ = timed(f, ours, reps)
        b, result = timed(f, ref, reps)
    else:
        b, result = timed(f, ref, reps)
        a, _ = timed(f, ours, reps)
    return a, b, result


def fresh_process_pairs(wname, choice, ours_path, ref_path, n):
    """Time `wname` in n pairs, each in a new Python process (see FRESH_PROCESS_WORKLOADS):
    (calls per sample, [(ours s, reference s, None)])."""
    pairs, reps = [], []
    for i in range(n):
        proc = subprocess.run(
            [sys.executable, __file__, "--pair-child", json.dumps(
                {"workload": wname, "choice": choice, "ours": ours_path, "ref": ref_path,
                 "i": i})],
            capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith(CHILD_RESULT)]
        if proc.returncode != 0 or not lines:
            sys.exit(f"{wname}: pair {i} in a fresh process failed (exit {proc.returncode}):\n"
                     f"{proc.stderr[-2000:]}")
        child = json.loads(lines[-1][len(CHILD_RESULT):])
        reps.append(child["reps"])
        pairs.append((child["ours"], child["ref"], None))
    return statistics.median(reps), pairs


def pair_child(spec):
    """The child of fresh_process_pairs: open both sides, warm them, time one pair."""
    spec = json.loads(spec)
    f = workloads(spec["choice"])[spec["workload"]]
    ours, ref = side(spec["ours"]), side(spec["ref"])
    f(ours)
    f(ref)
    reps = repetitions(f, ours, ref)
    a, b, _ = pair(f, ours, ref, reps, spec["i"])
    print(CHILD_RESULT + json.dumps({"reps": reps, "ours": a, "ref": b}))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--pair-child":
        return pair_child(sys.argv[2])
    args = parse_args()
    choice = choose(args.reference)
    primary = side(args.reference)
    fallback = side(args.fallback) if args.fallback else None
    report = {"pairs": args.pairs, "choice": {k: v for k, v in choice.items() if k != "cells"},
              "datasets": {}}
    for spec in args.datasets:
        name, path = spec.split("=", 1)
        ours = side(path)
        results = {}
        for wname, f in workloads(choice).items():
            if args.only and wname not in args.only:
                continue
            try:
                f(ours)  # warm both: first calls pay imports and caches
            except Exception as e:  # noqa: BLE001 - the control is upstream's own output
                print(f"{name}: {wname}: upstream's reader fails here ({str(e)[:80]}): skipped",
                      flush=True)
                continue
            ref, ref_name = primary, "upstream"
            try:
                f(ref)
            except Exception as e:  # noqa: BLE001 - upstream's reader on its own output
                if fallback is None:
                    raise
                print(f"{wname}: upstream's reader fails on its default output "
                      f"({str(e)[:80]}); timing against the fallback", flush=True)
                ref, ref_name = fallback, "upstream --no-optimized-dtypes"
                f(ref)
            if wname in FRESH_PROCESS_WORKLOADS:
                reps, pairs = fresh_process_pairs(wname, choice, ours["path"], ref["path"],
                                                  max(args.pairs, FRESH_PROCESS_PAIRS))
                rows = None
            else:
                reps = repetitions(f, ours, ref)
                pairs = [pair(f, ours, ref, reps, i) for i in range(args.pairs)]
                rows = pairs[-1][2]
            t_ours = [a for a, _, _ in pairs]
            t_ref = [b for _, b, _ in pairs]
            ratios = [a / b for a, b, _ in pairs]
            results[wname] = {"reference": ref_name,
                              "seconds": statistics.median(t_ours),
                              "reference_seconds": statistics.median(t_ref),
                              "ratio": statistics.median(ratios),
                              "calls_per_sample": reps,
                              "pairs": len(pairs)}
            if wname == "full pass":
                results[wname]["rows"] = rows
                results[wname]["rows_per_second"] = rows / statistics.median(t_ours)
                results[wname]["reference_rows_per_second"] = rows / statistics.median(t_ref)
            print(f"{name}: {wname}: {results[wname]['ratio']:.3f} "
                  f"({results[wname]['seconds']:.4f} s vs {results[wname]['reference_seconds']:.4f} s)",
                  flush=True)
        report["datasets"][name] = results
    text = json.dumps(report, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
