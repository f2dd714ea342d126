#!/usr/bin/env bash
# Peak RSS and wall time of converting a generated 200,000-cell x 20,000-gene CSR file.
# usage: bench/memory.sh [WORKDIR]   (needs ~5 GB free; uses the interop venv to generate)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh"
"$root/scripts/setup.sh" --python
command -v /usr/bin/time >/dev/null || { [ "$(id -u)" -eq 0 ] && apt-get install -y -qq time >/dev/null; }
work="${1:-${TMPDIR:-/tmp}/slaf-convert-bench}"
mkdir -p "$work"
# CASE=x (default): 200,000 x 20,000, ~1,000 counts per cell; CASE=layers: 100,000 cells, two
# layers; CASE=mtx: 10x MTX, 500,000 cells, ~100 counts per cell, also read by scanpy.
case "${CASE:-x}" in
  x) input="$work/csr_200k_20k.h5ad"; gen=(200000 20000 1000 0) ;;
  layers) input="$work/csr_100k_20k_2layers.h5ad"; gen=(100000 20000 1000 2) ;;
  mtx) input="$work/mtx_500k_gz" ;;
  *) echo "CASE must be x, layers or mtx" >&2; exit 2 ;;
esac
if [ "${CASE:-x}" = mtx ]; then
  if [ ! -f "$input/matrix.mtx.gz" ]; then
    "$SLAF_CONVERT_VENV/bin/python" "$root/bench/make_large_mtx.py" "$input"
    gzip -1 "$input/matrix.mtx"
  fi
  echo "scanpy.read_10x_mtx (read only, into memory):"
  /usr/bin/time -v "$SLAF_CONVERT_VENV/bin/python" -c "import scanpy as sc; sc.read_10x_mtx('$input', gex_only=False, make_unique=False)" 2> "$work/time-scanpy.txt"
  grep -E 'Maximum resident|Elapsed' "$work/time-scanpy.txt"
  echo "slaf-convert convert:"
fi
[ -e "$input" ] || "$SLAF_CONVERT_VENV/bin/python" "$root/bench/make_large_csr.py" "$input" "${gen[@]}"
profile="${PROFILE:-debug}"
(cd "$root" && cargo build --quiet --bin slaf-convert $( [ "$profile" = release ] && echo --release ))
bin="$CARGO_TARGET_DIR/$profile/slaf-convert"
/usr/bin/time -v "$bin" -q convert "$input" "$work/out.slaf" --overwrite 2> "$work/time.txt"
grep -E 'Maximum resident|Elapsed' "$work/time.txt"
