#!/usr/bin/env bash
# Fuzz one target for SECONDS: fuzz/run.sh TARGET SECONDS [--no-build]
# Targets: mtx, manifest_plan, hdf5_inputs. Seeds come from make_seeds.py (generated, never
# committed); the growing corpus and any findings stay under ~/.cache/slaf-convert/fuzz/.
#
# libFuzzer runs in rounds of at most five minutes until SECONDS have passed: a finding ends
# a round (saved under artifacts/TARGET/ as crash-*, oom-* or timeout-*) and the next round
# goes on from the corpus. Rounds rather than libFuzzer's fork mode, because the HDF5 library
# can hang a process where no timeout of libFuzzer's reaches it; the round's limit does.
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
end=$(( $(date +%s) + seconds ))
round=0
while (( $(date +%s) < end )); do
  left=$(( end - $(date +%s) )); round=$(( round + 1 ))
  budget=$(( left < 300 ? left : 300 ))
  echo "== round $round: ${budget}s"
  # -rss_limit_mb/-malloc_limit_mb: an allocation sized by a lying header is a finding.
  timeout -s KILL $(( budget + 30 )) "$bin" "$work/corpus/$target" "$work/seeds/$target" \
    -max_total_time="$budget" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -max_len=262144 -artifact_prefix="$work/artifacts/$target/" -print_final_stats=1 \
    || echo "== round $round ended with status $?"
done
