#!/usr/bin/env bash
# Build the slaf-convert image from containers/Dockerfile, and optionally export it as a
# docker-archive that Apptainer builds a SIF from without a Docker daemon:
#
#   containers/build-image.sh                        # compiles inside the image (release)
#   containers/build-image.sh --binary target/release/slaf-convert   # a binary built here
#   containers/build-image.sh --binary ... --libtiledb PATH   # with libtiledb, for TileDB-SOMA
#                                    # inputs (e.g. site-packages/tiledbsoma.libs/libtiledb-*.so.2.30)
#   containers/build-image.sh --debian-base ...      # base from Debian's packages, no registry
#                                                    # (built once; --refresh-base rebuilds it)
#   containers/build-image.sh --archive slaf-convert-0.1.0.tar
#   apptainer build slaf-convert_0.1.0.sif docker-archive://slaf-convert-0.1.0.tar
#
# Engine: buildah (daemonless; run as root, or rootless with subuids) when installed, else
# docker. With buildah the build runs with --isolation chroot and the storage driver in
# $STORAGE_DRIVER (default vfs): they work in containers and on machines without overlayfs
# (podman run --storage-driver vfs then runs the image).
# Prints the image's reference and size on the last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
tag="ghcr.io/slaf-convert/slaf-convert:$version"
binary="" libtiledb="" archive="" debian_base=0 refresh_base=0 engine=""
usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --libtiledb) libtiledb="$2"; shift 2 ;;
    --archive) archive="$2"; shift 2 ;;
    --debian-base) debian_base=1; shift ;;
    --refresh-base) debian_base=1; refresh_base=1; shift ;;
    --engine) engine="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "build-image.sh: unknown argument $1" >&2; usage 2 >&2 ;;
  esac
done
if [ -z "$engine" ]; then
  if command -v buildah >/dev/null 2>&1; then engine=buildah
  elif command -v docker >/dev/null 2>&1; then engine=docker
  else echo "build-image.sh: neither buildah nor docker is installed" >&2; exit 2; fi
fi
buildah=(buildah --storage-driver "${STORAGE_DRIVER:-vfs}")
build() { # build ARGS... CONTEXT
  if [ "$engine" = buildah ]; then "${buildah[@]}" bud --isolation chroot --layers=false -q "$@" >/dev/null
  else docker build -q "$@" >/dev/null; fi
}
image_exists() {
  if [ "$engine" = buildah ]; then "${buildah[@]}" inspect --type image "$1" >/dev/null 2>&1
  else docker image inspect "$1" >/dev/null 2>&1; fi
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
args=(--build-arg "VERSION=$version")

if [ "$debian_base" = 1 ]; then
  # The runtime base from Debian's packages: minbase bookworm with debian:bookworm-slim's
  # path exclusions (docs, man pages, locales), so no registry is needed.
  # Built once and reused; --refresh-base builds it again (for Debian's security updates).
  base="localhost/slaf-convert-base:bookworm"
  command -v mmdebstrap >/dev/null || { echo "build-image.sh: --debian-base needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 2; }
fi
if [ "$debian_base" = 1 ] && { [ "$refresh_base" = 1 ] || ! image_exists "$base"; }; then
  mkdir "$work/base"
  echo "build-image.sh: building the base from Debian's packages (mmdebstrap, about a minute)" >&2
  mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    bookworm "$work/base/rootfs.tar" >"$work/base/mmdebstrap.log" 2>&1 \
    || { cat "$work/base/mmdebstrap.log" >&2; echo "build-image.sh: mmdebstrap failed" >&2; exit 1; }
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' > "$work/base/Dockerfile"
  build -t "$base" -f "$work/base/Dockerfile" "$work/base"
fi
[ "$debian_base" = 0 ] || args+=(--build-arg "BASE_IMAGE=$base")

if [ -n "$libtiledb" ] && [ -z "$binary" ]; then
  echo "build-image.sh: --libtiledb needs --binary (the library goes in with a prebuilt binary)" >&2; exit 2
fi
if [ -n "$binary" ]; then
  # A context with only what the prebuilt path copies: the stripped binary, libtiledb if
  # given, and the example.
  context="$work/context"
  mkdir -p "$context/prebuilt/bin" "$context/prebuilt/lib" "$context/examples"
  # Stripped: debug info is most of a binary built for tests. (Not an ELF file, e.g. a
  # wrapper script: copied as it is.)
  strip -o "$context/prebuilt/bin/slaf-convert" "$binary" 2>/dev/null \
    || cp "$binary" "$context/prebuilt/bin/slaf-convert"
  if [ -n "$libtiledb" ]; then
    [ -f "$libtiledb" ] || { echo "build-image.sh: --libtiledb $libtiledb: no such file" >&2; exit 2; }
    cp "$libtiledb" "$context/prebuilt/lib/libtiledb.so"
  fi
  cp "$root/examples/pbmc-like.h5ad" "$context/examples/"
  args+=(--build-arg BINARY_FROM=prebuilt)
else
  context="$root"
fi
build "${args[@]}" -t "$tag" -f "$root/containers/Dockerfile" "$context"

if [ "$engine" = buildah ]; then
  # The unpacked size, as `docker images` reports it ("296 MB").
  size="$("${buildah[@]}" images --json "$tag" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["size"])')"
  if [ -n "$archive" ]; then rm -f "$archive"; "${buildah[@]}" push -q "$tag" "docker-archive:$archive:$tag"; fi
else
  size="$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1 / 1e6}')"
  if [ -n "$archive" ]; then docker save -o "$archive" "$tag"; fi
fi
echo "$tag ${size:-?}${archive:+, archive $archive}"
