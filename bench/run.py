"""Run the conversion benchmark and write bench/RESULTS.md (called by bench/run.sh).

usage: run.py BIN WORKDIR RESULTS_MD [--rounds N] [--skip-1m] [--skip-tiledb] [--skip-encodings]
                                      [--skip-reads] [--skip-instructions] [--pairs N]

Per file, the tools run one after the other and the whole set is repeated --rounds times in
alternation (A B C D, A B C D, ...), so a slow patch of the machine hits every tool alike;
each figure is the median over the rounds. Every run is timed by /usr/bin/time (wall, user +
system CPU, peak RSS of the process tree's largest process); the output size is the sum of
the output's file sizes. Nothing is cached between runs but the page cache, which holds the
input for every tool alike.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_timed(name, argv, out_dir=None, env=None):
    """Run argv under /usr/bin/time; return wall, cpu, rss and output size."""
    if out_dir is not None and Path(out_dir).exists():
        shutil.rmtree(out_dir)
    tfile = Path(os.environ.get("TMPDIR", "/tmp")) / f"slaf-bench-time-{os.getpid()}.txt"
    cmd = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(tfile), *argv]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"bench: {name} failed (exit {proc.returncode}): {' '.join(argv)}")
    wall, user, system, rss_kb = tfile.read_text().split()[-4:]
    size = dir_size(out_dir) if out_dir else None
    # /usr/bin/time reports KiB: rss_mb is MiB. Output sizes are MB (10^6 bytes).
    result = {"wall": float(wall), "cpu": float(user) + float(system),
              "rss_mb": int(rss_kb) / 1024, "size_mb": size}
    print(f"  {name}: {result['wall']:.2f} s wall, {result['cpu']:.2f} s CPU, "
          f"{result['rss_mb']:.0f} MiB peak" + (f", {size:.1f} MB out" if size else ""),
          flush=True)
    return result


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total / 1e6


def median_of(runs):
    keys = runs[0].keys()
    return {k: (statistics.median(r[k] for r in runs) if runs[0][k] is not None else None)
            for k in keys}


def tools_for(bin_path, venv_bin, work, h5ad, tag, skip_tiledb):
    out = work / "out"
    tools = {
        "slaf-convert convert": (
            [bin_path, "-q", "convert", str(h5ad), str(out / f"{tag}-ours.slaf")],
            out / f"{tag}-ours.slaf"),
        "slaf-convert read-only floor": (
            [bin_path, "-q", "convert", "--read-only", str(h5ad)], None),
        "upstream slaf convert": (
            [str(venv_bin / "slaf"), "convert", str(h5ad), str(out / f"{tag}-upstream.slaf")],
            out / f"{tag}-upstream.slaf"),
    }
    if not skip_tiledb:
        soma = out / f"{tag}-soma"
        tools["TileDB-SOMA from_h5ad"] = (
            [str(venv_bin / "python"), "-c",
             "import sys, tiledbsoma.io; "
             "tiledbsoma.io.from_h5ad(sys.argv[1], sys.argv[2], measurement_name='RNA')",
             str(soma), str(h5ad)],
            soma)
    return tools


def bench_file(label, tools, rounds):
    print(f"{label}:", flush=True)
    runs = {name: [] for name in tools}
    for r in range(rounds):
        for name, (argv, out_dir) in tools.items():
            runs[name].append(run_timed(f"[{r + 1}/{rounds}] {name}", argv, out_dir))
    medians = {name: median_of(rs) for name, rs in runs.items()}
    # Each round runs the tools back to back: the median of the per-round ratios cancels a
    # slow patch of the machine that the ratio of the medians keeps (a round whose floor ran
    # on one core's worth of CPU).
    ours = runs["slaf-convert convert"]
    for name, rs in runs.items():
        medians[name]["paired_wall_ratio"] = statistics.median(
            r["wall"] / o["wall"] for r, o in zip(rs, ours))
    return medians


def bench_split(bin_path, work, h5ad, shards):
    """plan + N shared-target shards (one after the other) + commit, each timed."""
    out = work / "out" / "split.slaf"
    if out.exists():
        shutil.rmtree(out)
    manifest = work / "split.manifest.yaml"
    manifest.write_text(f"output: {out}\ninputs:\n  - path: {h5ad}\n")
    plan = work / "split.plan.json"
    steps = [("plan", [bin_path, "-q", "plan", str(manifest), "-o", str(plan),
                       "--shards", str(shards)])]
    steps += [(f"shard {i}", [bin_path, "-q", "shard", str(plan), "--index", str(i),
                              "--shared-target"]) for i in range(shards)]
    steps.append(("commit", [bin_path, "-q", "commit", str(plan)]))
    print(f"split into {shards} shards:", flush=True)
    results = {name: run_timed(name, argv) for name, argv in steps}
    total = {"wall": sum(r["wall"] for r in results.values()),
             "cpu": sum(r["cpu"] for r in results.values()),
             "rss_mb": max(r["rss_mb"] for r in results.values()),
             "size_mb": dir_size(out)}
    return {"steps": results, "total": total}


def bench_encodings(bin_path, venv_bin, work, h5ad, rounds):
    """Each --compression on the 100k gzip file: write cost and size, beside upstream's."""
    print("compression choices:", flush=True)
    rows = {}
    outputs = {}
    for r in range(rounds):
        for c in ("none", "lz4", "zstd"):
            out = work / "out" / f"enc-{c}.slaf"
            res = run_timed(f"[{r + 1}/{rounds}] --compression {c}",
                            [bin_path, "-q", "convert", str(h5ad), str(out), "--compression", c],
                            out)
            rows.setdefault(c, []).append(res)
            outputs[c] = out
    up = work / "out" / "enc-upstream.slaf"
    run_timed("upstream (for its query times)", [str(venv_bin / "slaf"), "convert", str(h5ad),
                                                  str(up)], None)
    outputs["upstream"] = up
    result = {c: median_of(rs) for c, rs in rows.items()}
    result["upstream"] = {"size_mb": dir_size(up)}
    return result


def bench_reads(bin_path, venv_bin, work, h5ad, pairs, instructions_workloads=()):
    """Upstream's reader on our outputs (default, --create-indices, --compression lz4) and on
    upstream's own output of the same file (bench/read_bench.py): median ratios of calls
    timed in alternating pairs. Also the index build's cost, and the instructions a call of
    `instructions_workloads` (bench/read_instructions.py)."""
    print("reads:", flush=True)
    out = work / "out"
    # Names as the table shows them: `indexed` is --create-indices, `lz4` --compression lz4.
    # `one page` and `upstream layout` are the default's two layout choices undone one at a
    # time: one page a fragment column, then upstream's uint32/uint16 ids too (upstream's own
    # layout, whose gene ids upstream's get_gene_expression cannot query).
    ours = {"default": [], "indexed": ["--create-indices"], "lz4": ["--compression", "lz4"],
            "one page": ["--pages", "one-per-fragment"],
            "upstream layout": ["--id-types", "compact", "--pages", "one-per-fragment"]}
    paths, writes = {}, {}
    for name, extra in ours.items():
        paths[name] = out / f"reads-{len(paths)}.slaf"
        writes[name] = run_timed(f"convert {name}", [bin_path, "-q", "convert", str(h5ad),
                                                     str(paths[name]), *extra], paths[name])
    upstream = out / "reads-upstream.slaf"
    fallback = out / "reads-upstream-int32.slaf"
    writes["upstream"] = run_timed("upstream slaf convert", [
        str(venv_bin / "slaf"), "convert", str(h5ad), str(upstream)], upstream)
    run_timed("upstream slaf convert --no-optimized-dtypes", [
        str(venv_bin / "slaf"), "convert", str(h5ad), str(fallback), "--no-optimized-dtypes"],
        fallback)
    # The noise floor: upstream's own output under another name, timed like ours.
    control = out / "reads-upstream-copy.slaf"
    shutil.rmtree(control, ignore_errors=True)
    shutil.copytree(upstream, control)
    paths["control"] = control
    report = work / "reads.json"
    subprocess.run([str(venv_bin / "python"), str(HERE / "read_bench.py"), str(upstream),
                    *(f"{name}={p}" for name, p in paths.items()), "--fallback", str(fallback),
                    "--pairs", str(pairs), "--json", str(report)], check=True)
    instructions = None
    if instructions_workloads and shutil.which("valgrind"):
        counted = work / "instructions.json"
        subprocess.run([str(venv_bin / "python"), str(HERE / "read_instructions.py"),
                        str(upstream), *(f"{n}={paths[n]}" for n in INSTRUCTION_DATASETS),
                        *(a for w in instructions_workloads for a in ("--workload", w)),
                        "--json", str(counted)], check=True)
        instructions = json.loads(counted.read_text())
    elif instructions_workloads:
        print("reads: valgrind not found, instruction counts skipped", flush=True)
    shutil.rmtree(control, ignore_errors=True)
    return {"writes": writes, "reads": json.loads(report.read_text()),
            "instructions": instructions}


# What read_instructions.py counts: these workloads on these of bench_reads' datasets.
INSTRUCTION_WORKLOADS = ("full pass",)
INSTRUCTION_DATASETS = ("default", "one page", "upstream layout", "control")


def instructions_table(counted):
    """One row per workload: instructions a call on upstream's output, and each dataset's
    count as a ratio to that."""
    names = list(next(iter(counted.values())))[1:]
    lines = ["| workload | upstream G | " + " | ".join(f"{n} ÷ upstream" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for w, per in counted.items():
        lines.append(f"| {w} | {per['reference']['instructions'] / 1e9:.3f} | "
                     + " | ".join(f"{per[n]['ratio']:.3f}" for n in names) + " |")
    return "\n".join(lines)


def reads_table(r):
    """One row per workload: upstream's seconds and each output's median ratio to it."""
    names = list(r["reads"]["datasets"])
    first = r["reads"]["datasets"][names[0]]
    lines = ["| workload | upstream s | " + " | ".join(f"{n} ÷ upstream" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for w, cell in first.items():
        ref = "" if cell["reference"] == "upstream" else " †"
        # A dataset the workload could not run on (the control on gene queries): —.
        ratios = [r["reads"]["datasets"][n].get(w, {}).get("ratio") for n in names]
        lines.append(f"| {w}{ref} | {cell['reference_seconds']:.4f} | " + " | ".join(
            "—" if x is None else f"{x:.2f}" for x in ratios) + " |")
    up = r["writes"]["upstream"]
    # The control is upstream's output itself: no write of its own.
    writes = [r["writes"].get(n, {"size_mb": up["size_mb"], "wall": None, "rss_mb": None})
              for n in names]
    sizes = " | ".join(f"{w['size_mb'] / up['size_mb']:.5f}" for w in writes)
    lines.append(f"| output size (MB ÷ upstream's) | {fmt(up['size_mb'])} | {sizes} |")
    lines.append(f"| write wall s (upstream's: {fmt(up['wall'])}) | | " +
                 " | ".join(fmt(w["wall"]) for w in writes) + " |")
    lines.append(f"| write peak RSS MiB | {fmt(up['rss_mb'])} | " +
                 " | ".join(fmt(w["rss_mb"]) for w in writes) + " |")
    full = first.get("full pass")
    if full:
        lines += ["", f"Full pass: {full['rows_per_second'] / 1e6:.1f} M rows/s on our default "
                      f"output, {full['reference_rows_per_second'] / 1e6:.1f} M rows/s on "
                      "upstream's."]
    return "\n".join(lines)


def encodings_table(enc):
    lines = ["| output | write wall s | write CPU s | size MB |", "|---|---|---|---|"]
    for name, r in enc.items():
        label = "upstream slaf convert" if name == "upstream" else f"--compression {name}"
        lines.append(f"| {label} | {fmt(r.get('wall'))} | {fmt(r.get('cpu'))} | "
                     f"{fmt(r['size_mb'])} |")
    return "\n".join(lines)


def versions(bin_path, venv_bin):
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    py = str(venv_bin / "python")
    pkgs = out([py, "-c", "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' "
                "for p in ['slafdb', 'pylance', 'tiledbsoma', 'anndata', 'h5py']))"])
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return {
        "slaf-convert": out([bin_path, "--version"]),
        "rustc": out(["rustc", "--version"]),
        "python": platform.python_version(),
        "packages": pkgs,
        "machine": f"{os.cpu_count()} cores ({cpu}), {mem / 1024 / 1024:.1f} GiB memory, "
                   f"{platform.system()} {platform.release()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def fmt(v, unit=""):
    return "—" if v is None else f"{v:,.2f}{unit}" if v < 100 else f"{v:,.0f}{unit}"


def table(rows, ours="slaf-convert convert"):
    """Markdown table of one file's medians with ratios to slaf-convert convert."""
    base = rows[ours]
    lines = ["| tool | wall s | CPU s | peak RSS MiB | output MB | wall ÷ ours | CPU ÷ ours |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {fmt(r['wall'])} | {fmt(r['cpu'])} | {fmt(r['rss_mb'])} | "
                     f"{fmt(r['size_mb'])} | {r['wall'] / base['wall']:.2f} | "
                     f"{r['cpu'] / base['cpu']:.2f} |")
    return "\n".join(lines)


def floor_ratio(rows):
    """Our wall time over the read-only floor's: the median of the rounds' ratios (results
    of runs before those were kept: the ratio of the medians)."""
    floor = rows["slaf-convert read-only floor"]
    if "paired_wall_ratio" in floor:
        return 1 / floor["paired_wall_ratio"]
    return rows["slaf-convert convert"]["wall"] / floor["wall"]


def targets(results, reads=None):
    """Each target of the performance issues, with the measured ratio and a verdict."""
    out = []

    def check(what, value, limit, higher_is_better, digits=2):
        ok = value >= limit if higher_is_better else value <= limit
        op = "≥" if higher_is_better else "≤"
        out.append(f"| {what} | {value:.{digits}f} | {op} {limit:g} | "
                   f"{'met' if ok else 'MISSED'} |")

    g = results.get("100k gzip")
    if g:
        ours = g["slaf-convert convert"]
        check("gzip: upstream wall ÷ ours", g["upstream slaf convert"]["wall"] / ours["wall"], 3, True)
        if "TileDB-SOMA from_h5ad" in g:
            check("gzip: TileDB-SOMA wall ÷ ours",
                  g["TileDB-SOMA from_h5ad"]["wall"] / ours["wall"], 30, True)
        check("gzip: ours wall ÷ read-only floor (median of the rounds' ratios)",
              floor_ratio(g), 1.3, False)
        check("gzip: peak RSS MiB (100k)", ours["rss_mb"], 256, False)
        check("gzip: output ÷ upstream output",
              ours["size_mb"] / g["upstream slaf convert"]["size_mb"], 1.0, False, digits=5)
    u = results.get("100k uncompressed")
    if u:
        ours = u["slaf-convert convert"]
        check("uncompressed: upstream wall ÷ ours",
              u["upstream slaf convert"]["wall"] / ours["wall"], 1.5, True)
        check("uncompressed: ours wall ÷ read-only floor (median of the rounds' ratios)",
              floor_ratio(u), 1.3, False)
    m = results.get("1M gzip")
    if m:
        check("1M gzip: peak RSS MiB", m["slaf-convert convert"]["rss_mb"], 256, False)
        s = results.get("1M split")
        if s:
            check("1M: plan + 8 shards + commit CPU ÷ convert CPU",
                  s["total"]["cpu"] / m["slaf-convert convert"]["cpu"], 1.15, False)
            check("1M: commit wall ÷ convert wall",
                  s["steps"]["commit"]["wall"] / m["slaf-convert convert"]["wall"], 0.05, False)
    if reads:
        data = reads["reads"]["datasets"]
        for w, cell in data["default"].items():
            check(f"reads: {w}, default output ÷ upstream's", cell["ratio"], 1.0, False)
        check("reads: default output size ÷ upstream's",
              reads["writes"]["default"]["size_mb"] / reads["writes"]["upstream"]["size_mb"],
              1.0, False, digits=5)
        indexed = data["indexed"]
        for w in ("gene common", "gene medium", "gene rare"):
            check(f"reads: {w}, upstream's ÷ indexed output", 1 / indexed[w]["ratio"], 3, True)
        check("reads: 20 cells, indexed output ÷ upstream's", indexed["20 cells"]["ratio"],
              1.0, False)
    return ["| target | measured | limit | |", "|---|---|---|---|", *out]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("work", type=Path)
    ap.add_argument("results", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-1m", action="store_true")
    ap.add_argument("--skip-tiledb", action="store_true")
    ap.add_argument("--skip-encodings", action="store_true")
    ap.add_argument("--skip-reads", action="store_true")
    ap.add_argument("--pairs", type=int, default=7, help="alternating pairs per read workload")
    ap.add_argument("--skip-instructions", action="store_true",
                    help="leave out the read workloads' instruction counts (callgrind, about "
                         "20 minutes)")
    ap.add_argument("--render", action="store_true",
                    help="write RESULTS.md again from the last run's results.json, running nothing")
    ap.add_argument("--reuse-writes", action="store_true",
                    help="take the conversions' figures from the last run's "
                         "results.partial.json and run the read benchmark only")
    args = ap.parse_args()
    venv_bin = Path(sys.executable).parent
    work = args.work
    (work / "out").mkdir(parents=True, exist_ok=True)
    gen = HERE / "make_bench_h5ad.py"
    files = {"100k gzip": (work / "x_100k_gzip.h5ad", ["100000"]),
             "100k uncompressed": (work / "x_100k_raw.h5ad", ["100000", "--uncompressed"])}
    if not args.skip_1m:
        files["1M gzip"] = (work / "x_1m_gzip.h5ad", ["1000000"])
    for path, gen_args in files.values():
        if not path.exists():
            print(f"generating {path} ...", flush=True)
            subprocess.run([sys.executable, str(gen), str(path), *gen_args], check=True)

    if args.render:
        saved = json.loads((work / "results.json").read_text())
        write_results(args, venv_bin, work, saved["results"], saved["encodings"],
                      saved["reads"], saved["versions"])
        return
    partial = work / "results.partial.json"
    if args.reuse_writes:
        saved = json.loads(partial.read_text())
        results, encodings = saved["results"], saved["encodings"]
    else:
        results, encodings = bench_writes(args, venv_bin, work, files)
        partial.write_text(json.dumps({"results": results, "encodings": encodings}, indent=2))

    reads = None
    if not args.skip_reads:
        (work / "out").mkdir(exist_ok=True)
        reads = bench_reads(args.bin, venv_bin, work, files["100k gzip"][0], args.pairs,
                            () if args.skip_instructions else INSTRUCTION_WORKLOADS)
        shutil.rmtree(work / "out", ignore_errors=True)
    write_results(args, venv_bin, work, results, encodings, reads)


def bench_writes(args, venv_bin, work, files):
    """The conversions: every tool on every file, the 1M split, the encodings."""
    results = {}
    for label, (path, _) in files.items():
        big = label.startswith("1M")
        tools = tools_for(args.bin, venv_bin, work, path, label.replace(" ", "-"),
                          args.skip_tiledb or label != "100k gzip")
        # One round of the 1M file: it is there for memory flatness and the split, not speed.
        results[label] = bench_file(label, tools, 1 if big else args.rounds)
        shutil.rmtree(work / "out", ignore_errors=True)
        (work / "out").mkdir()
    if not args.skip_1m:
        results["1M split"] = bench_split(args.bin, work, files["1M gzip"][0], 8)
        shutil.rmtree(work / "out", ignore_errors=True)
    encodings = None
    if not args.skip_encodings:
        (work / "out").mkdir(exist_ok=True)
        encodings = bench_encodings(args.bin, venv_bin, work, files["100k gzip"][0], args.rounds)
        shutil.rmtree(work / "out", ignore_errors=True)
    return results, encodings


def write_results(args, venv_bin, work, results, encodings, reads, info=None):
    info = info or versions(args.bin, venv_bin)
    (work / "results.json").write_text(json.dumps(
        {"versions": info, "results": results, "encodings": encodings, "reads": reads},
        indent=2))
    md = ["# Benchmark results", "",
          "Written by `bench/run.sh`; the figures are the medians of "
          f"{args.rounds} alternating rounds (one round for the 1M-cell file).", "",
          f"- Machine: {info['machine']}",
          f"- slaf-convert: {info['slaf-convert']} (release build, {info['rustc']})",
          f"- Reference tools: Python {info['python']}, {info['packages']}",
          f"- Run: {info['date']}", "",
          "Inputs: seeded by `bench/make_bench_h5ad.py`, 20,000 genes, integer counts stored as "
          "float32, 5.98 % dense, CSR as anndata writes it (gzip level 4 with h5py's chunking, "
          "or uncompressed).", ""]
    for label, rows in results.items():
        if label.endswith("split"):
            continue
        md += [f"## {label}", "", table(rows), ""]
    if "1M split" in results:
        s = results["1M split"]
        md += ["## 1M gzip, as a workflow: plan + 8 shards + commit", "",
               "| step | wall s | CPU s | peak RSS MiB |", "|---|---|---|---|"]
        for name, r in s["steps"].items():
            md.append(f"| {name} | {fmt(r['wall'])} | {fmt(r['cpu'])} | {fmt(r['rss_mb'])} |")
        t = s["total"]
        md += [f"| **total** | {fmt(t['wall'])} | {fmt(t['cpu'])} | {fmt(t['rss_mb'])} (max) |",
               ""]
    if encodings:
        md += ["## Compression of gene ids and values (100k gzip)", "",
               "Write cost and size of each `--compression` (what each costs the reader: "
               "below).", "", encodings_table(encodings), ""]
    if reads:
        md += ["## Reading (100k gzip): upstream's reader on our outputs and on upstream's", "",
               "`bench/read_bench.py`: slafdb 0.5.2's `SLAFArray`/`LazyAnnData` and "
               "`slaf.distributed.LanceDataSource` (the dataloaders' path) on each output and on "
               "upstream's `slaf convert` output of the same file, calls timed in "
               f"{reads['reads']['pairs']} alternating pairs; each figure is the median of the "
               "per-pair ratios (below 1: faster than on upstream's output). † upstream's reader "
               "fails on its own default output there (uint32/uint16 ids: \"Substrait is only "
               "capable of representing unsafe casts\"), so the reference is upstream's "
               "`--no-optimized-dtypes` output (int32 ids, float32 values). `control` is a copy "
               "of upstream's output timed against upstream's output: the noise of this machine "
               "(1.00 on a quiet one; — where upstream's reader fails on its own output).", "",
               reads_table(reads), ""]
        if reads.get("instructions"):
            md += ["Instructions a call (`bench/read_instructions.py`: valgrind's callgrind, "
                   "the same workloads in the same reader; a count does not vary with the "
                   "machine's load, so it resolves what the timed pairs cannot, but it is not "
                   "time). `one page` is `--pages one-per-fragment`; `upstream layout` adds "
                   "`--id-types compact`, which makes it upstream's own layout.", "",
                   instructions_table(reads["instructions"]), ""]
    md += ["## Targets", "", *targets(results, reads), ""]
    args.results.write_text("\n".join(md))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
