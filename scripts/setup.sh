#!/usr/bin/env bash
# Install what building and testing slaf-convert needs on Debian/Ubuntu:
#   system packages: protobuf-compiler (lance's build), make + pkg-config (the bundled HDF5
#                    and zlib builds), python3-venv (the venvs below);
#   CMake >= 3.26:   the bundled HDF5's build needs it; where the system's is older (Debian
#                    12 has 3.25), PyPI's cmake in ~/.cache/slaf-convert/cmake (scripts/env.sh
#                    points the build at it);
#   with --python:   the interop venv ($SLAF_CONVERT_VENV, default ~/.cache/slaf-convert/venv)
#                    with upstream's reader (slafdb 0.5.2) and anndata, from tests/python/requirements.txt;
#                    and Azurite, the Azure Blob emulator the object-store tests start, from npm
#                    into ~/.cache/slaf-convert/azurite (Node.js and npm from Debian if missing);
#                    and what the image test builds and runs the container with: buildah,
#                    podman, runc and mmdebstrap (the base image from Debian's packages).
# Safe to rerun: skips what is already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v make >/dev/null 2>&1 || need+=(make)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${1:-}" = "--python" ]; then
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  for tool in buildah podman runc mmdebstrap; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
  done
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

cmake_ok() { # is "$1" a CMake of version 3.26 or later?
  "$1" --version 2>/dev/null | awk 'NR==1 { split($3, v, "."); exit !(v[1] > 3 || (v[1] == 3 && v[2] >= 26)) }'
}
cmake_venv="$HOME/.cache/slaf-convert/cmake"
if ! cmake_ok cmake && ! cmake_ok "$cmake_venv/bin/cmake"; then
  echo "setup: installing CMake >= 3.26 from PyPI into $cmake_venv (the bundled HDF5 needs it)" >&2
  python3 -m venv "$cmake_venv"
  "$cmake_venv/bin/python" -m pip install -q "cmake>=3.26,<5"
fi

if [ "${1:-}" = "--python" ]; then
  venv="${SLAF_CONVERT_VENV:-$HOME/.cache/slaf-convert/venv}"
  req="$here/tests/python/requirements.txt"
  stamp="$venv/.requirements.sha256"
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: creating Python venv $venv (slafdb, anndata, pylance; a few minutes the first time)" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -r "$req"
    echo "$want" > "$stamp"
  fi
  azurite="$HOME/.cache/slaf-convert/azurite"
  if [ ! -x "$azurite/node_modules/.bin/azurite-blob" ]; then
    echo "setup: installing Azurite 3.35.0 (npm) into $azurite" >&2
    mkdir -p "$azurite"
    npm install --silent --no-audit --no-fund --prefix "$azurite" azurite@3.35.0 >/dev/null
  fi
fi
