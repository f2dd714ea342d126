#!/usr/bin/env bash
# Convert the bundled example (examples/pbmc-like.h5ad: 400 cells x 250 genes, written by
# anndata) and show what was written. Installs the system packages the build needs first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh"
"$root/scripts/setup.sh"
source "$root/scripts/env.sh" # again: setup may have installed CMake
cd "$root"
echo "building slaf-convert (the first build compiles lance: about 30 minutes on 2 cores)..." >&2
# --all-targets: the same features as the test build (scripts/test.sh), so it reuses this one.
cargo build --quiet --all-targets
bin="$CARGO_TARGET_DIR/debug/slaf-convert"
out="${1:-${TMPDIR:-/tmp}/slaf-convert-example/pbmc-like.slaf}"
mkdir -p "$(dirname "$out")"
"$bin" --log-format human convert examples/pbmc-like.h5ad "$out" --overwrite
echo
echo "== files =="
(cd "$out" && find . -maxdepth 2 | sort)
echo
echo "== config.json =="
cat "$out/config.json"
echo
echo "== tables =="
"$bin" inspect "$out" --rows 3
