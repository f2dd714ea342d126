#!/usr/bin/env bash
# Fuzz one target for SECONDS: fuzz/run.sh TARGET SECONDS [--no-build]
# Targets: mtx, manifest_plan, hdf5_inputs. Seeds come from make_seeds.py (generated, never
# committed); the growing corpus and any crash artifacts stay under
# ~/.cache/slaf-convert/fuzz/. libFuzzer runs in fork mode so that one finding does not end
# the run: every crash, timeout and out-of-memory input is saved under artifacts/TARGET/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="$1"; seconds="$2"
source "$here/../scripts/env.sh"
work="$HOME/.cache/slaf-convert/fuzz"
mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
if [[ ! -d "$work/seeds/$target" ]]; then
  "$SLAF_CONVERT_VENV/bin/python" "$here/make_seeds.py" "$work/seeds" \
    "$CARGO_TARGET_DIR/debug/slaf-convert"
fi
if [[ "${3:-}" != "--no-build" ]]; then
  (cd "$here" && cargo fuzz build --sanitizer none -O --debug-assertions "$target")
fi
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$target"
# -rss_limit_mb/-malloc_limit_mb: an allocation sized by a lying header is a finding.
exec "$bin" "$work/corpus/$target" "$work/seeds/$target" \
  -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
  -max_len=262144 -artifact_prefix="$work/artifacts/$target/" -print_final_stats=1
