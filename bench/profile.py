"""Where a conversion's CPU goes: `perf record` one run, then sum the self time by component.

usage: profile.py SLAF_CONVERT_BIN INPUT.h5ad [--read-only]

Prints a markdown table (component, share of the CPU samples). Needs `perf`. Used for
bench/RESULTS.md's profile of the write floor: what a conversion does beyond the read-only
floor (Lance's encoders, copies into pages, the kernel's file writes) against what both do.
"""
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

COMPONENTS = [
    ("gzip inflate (libdeflate)", r"deflate|build_decode_table|adler32|crc32"),
    ("HDF5 library (chunk index, metadata)", r"\bH5"),
    ("reading: chunk decode, gene checks, sort", r"slaf_convert::(readers|cells)"),
    ("batch building: value cast, ids, statistics", r"slaf_convert::(slaf|pipeline)|from_iter"),
    ("Lance encoding (RLE, statistics, bit-packing, pages)", r"lance|fsst|bitpack"),
    ("memcpy/memset", r"__mem(move|set|cpy)"),
    ("allocator", r"malloc|_int_|free|unlink_chunk|consolidate|realloc"),
]
KERNEL = "kernel (file writes, page faults, scheduling)"


def main():
    binary, h5ad, *rest = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        subprocess.run(["perf", "record", "-q", "-F", "999", "-o", str(data), binary, "-q",
                        "convert", *rest, h5ad, str(Path(tmp) / "out.slaf")],
                       check=True, stdout=subprocess.DEVNULL)
        report = subprocess.run(["perf", "report", "-i", str(data), "--no-children",
                                 "--sort", "symbol", "--stdio"],
                                capture_output=True, text=True, check=True).stdout
    shares = collections.Counter()
    for line in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\[.\])\s+(.*)", line)
        if not m:
            continue
        share, kind, symbol = float(m.group(1)), m.group(2), m.group(3)
        if kind == "[k]":
            shares[KERNEL] += share
            continue
        name = next((n for n, pattern in COMPONENTS if re.search(pattern, symbol)), "other")
        shares[name] += share
    print("| component | share of CPU |\n|---|---|")
    for name in [n for n, _ in COMPONENTS] + [KERNEL, "other"]:
        print(f"| {name} | {shares[name]:.1f} % |")


if __name__ == "__main__":
    main()
