#!/usr/bin/env bash
# The conversion benchmark: slaf-convert against upstream `slaf convert` (slafdb 0.5.2) and
# TileDB-SOMA's from_h5ad, and against its own read-only floor; then upstream's reader on our
# outputs against its own output (bench/read_bench.py). Not part of the test suite.
#
# usage: bench/run.sh [--rounds N] [--pairs N] [--skip-1m] [--skip-tiledb] [--skip-encodings]
#                     [--skip-reads] [--skip-instructions] [--reuse-writes] [--render]
#   BENCH_DIR   where inputs and outputs go (default ${TMPDIR:-/tmp}/slaf-convert-bench;
#               needs about 20 GB with the 1M-cell file, 3 GB without)
# Generates the seeded inputs once (bench/make_bench_h5ad.py), creates the reference venv
# ($HOME/.cache/slaf-convert/bench-venv, from bench/requirements.txt), builds slaf-convert in
# release mode (about 30 minutes cold on two cores), runs every tool in alternation and
# writes bench/RESULTS.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh"
"$root/scripts/setup.sh"
command -v /usr/bin/time >/dev/null || { [ "$(id -u)" -eq 0 ] && apt-get install -y -qq time >/dev/null; }
venv="${SLAF_CONVERT_BENCH_VENV:-$HOME/.cache/slaf-convert/bench-venv}"
req="$root/bench/requirements.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "bench: creating $venv (slafdb, tiledbsoma)" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$req"
  echo "$want" > "$venv/.requirements.sha256"
fi
(cd "$root" && cargo build --release --quiet --bin slaf-convert)
work="${BENCH_DIR:-${TMPDIR:-/tmp}/slaf-convert-bench}"
mkdir -p "$work"
exec "$venv/bin/python" "$root/bench/run.py" "$CARGO_TARGET_DIR/release/slaf-convert" "$work" \
  "$root/bench/RESULTS.md" "$@"
