#!/usr/bin/env bash
# Sort a target's findings by where they happen: fuzz/triage.sh TARGET [DIR]
# (DIR: findings to triage, default every finding of TARGET so far)
# Runs each crash-*/oom-*/timeout-* input once and prints the first frame outside libc and
# libFuzzer (crashes: where the signal hit; hangs and runaway allocations: where the process
# is after five seconds): inside libhdf5 (the library's own defect; a crash becomes exit 65
# through the binary's crash handler) or in slaf_convert (ours: make it a test case).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../scripts/env.sh"
target="$1"
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$target"
first_frame() {
  grep -E '^#[0-9]+ ' \
    | grep -vE 'libc\.so|__memcpy|__memset|__memmove|fuzzer::|libFuzzer|raise|abort|__GI_|malloc|alarm|futex|__lll|pthread|clone|start_thread|std::|core::' \
    | head -1 \
    | sed -E 's/^#[0-9]+ +(0x[0-9a-f]+ in )?//; s/ \(.*\) from .*\/([^/]+)$/ [\1]/; s/ \(.*//'
}
dir="${2:-$HOME/.cache/slaf-convert/fuzz/artifacts/$target}"
for f in "$dir"/*; do
  kind=$(basename "$f" | cut -d- -f1)
  if [[ "$kind" == crash ]]; then
    frame=$(timeout 60 gdb -batch -ex run -ex bt --args "$bin" "$f" 2>/dev/null | first_frame)
  else
    "$bin" -timeout=0 -rss_limit_mb=0 -malloc_limit_mb=0 "$f" >/dev/null 2>&1 &
    pid=$!
    sleep 5
    if kill -0 "$pid" 2>/dev/null; then
      frame=$(gdb -batch -p "$pid" -ex "thread apply all bt" 2>/dev/null | first_frame)
      kill -9 "$pid" 2>/dev/null
    else
      frame=""
    fi
    wait "$pid" 2>/dev/null
  fi
  echo "$kind ${frame:-(does not reproduce alone)}"
done | sort | uniq -c | sort -rn
