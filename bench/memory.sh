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
# CASE=x (default): 200,000 x 20,000, ~1,000 counts per cell; CASE=layers: 100,000 cells, two layers.
case "${CASE:-x}" in
  x) input="$work/csr_200k_20k.h5ad"; gen=(200000 20000 1000 0) ;;
  layers) input="$work/csr_100k_20k_2layers.h5ad"; gen=(100000 20000 1000 2) ;;
  *) echo "CASE must be x or layers" >&2; exit 2 ;;
esac
[ -f "$input" ] || "$SLAF_CONVERT_VENV/bin/python" "$root/bench/make_large_csr.py" "$input" "${gen[@]}"
profile="${PROFILE:-debug}"
(cd "$root" && cargo build --quiet --bin slaf-convert $( [ "$profile" = release ] && echo --release ))
bin="$CARGO_TARGET_DIR/$profile/slaf-convert"
/usr/bin/time -v "$bin" -q convert "$input" "$work/out.slaf" --overwrite 2> "$work/time.txt"
grep -E 'Maximum resident|Elapsed' "$work/time.txt"
