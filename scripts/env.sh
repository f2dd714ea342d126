# Sourced by the scripts: where cargo builds (outside the clone, reused across runs) and
# where the interop venv lives.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/slaf-convert/target}"
export SLAF_CONVERT_VENV="${SLAF_CONVERT_VENV:-$HOME/.cache/slaf-convert/venv}"
# The bundled HDF5 builds with CMake >= 3.26: scripts/setup.sh installs one here when the
# system's is older (the cmake crate takes the CMAKE variable).
if [ -z "${CMAKE:-}" ] && [ -x "$HOME/.cache/slaf-convert/cmake/bin/cmake" ]; then
  export CMAKE="$HOME/.cache/slaf-convert/cmake/bin/cmake"
fi
