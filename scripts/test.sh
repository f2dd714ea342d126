#!/usr/bin/env bash
# The whole test suite: formatting and clippy, Rust unit, integration and doc tests, then the
# interop suite that reads our output with upstream's Python reader (slafdb 0.5.2). Installs
# what it needs first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh"
"$root/scripts/setup.sh" --python
source "$root/scripts/env.sh" # again: setup may have installed CMake
cd "$root"
cargo fmt --check
# --all-targets here and in example.sh: dev-dependencies add features to shared crates, so a
# build without the test targets and one with them would compile the lance stack twice.
cargo build --all-targets
# Clippy checks the dependencies once more in check mode (about 10 minutes cold, seconds after).
cargo clippy --all-targets --quiet -- -D warnings
# The library without its Lance side is what fuzz/ builds: keep it compiling and clean, and
# the fuzz targets themselves compiling (a plain check; fuzz/run.sh builds them instrumented).
cargo clippy --no-default-features --lib --quiet -- -D warnings
cargo check --quiet --manifest-path fuzz/Cargo.toml --bins
cargo test --all-targets
cargo test --doc
echo
echo "== interop suite (upstream reader: slafdb 0.5.2) =="
SLAF_CONVERT_BIN="$CARGO_TARGET_DIR/debug/slaf-convert" \
  "$SLAF_CONVERT_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python
