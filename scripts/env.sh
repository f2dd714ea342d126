# Sourced by the scripts: where cargo builds (outside the clone, reused across runs) and
# where the interop venv lives.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/slaf-convert/target}"
export SLAF_CONVERT_VENV="${SLAF_CONVERT_VENV:-$HOME/.cache/slaf-convert/venv}"
