"""The container image, built and run: containers/build-image.sh builds containers/Dockerfile
with buildah over a base made from Debian's packages (no registry is reachable here) and the
binary under test, and podman runs it as a non-root UID with a read-only root filesystem; the
README example converted inside equals the same conversion outside, and so does a TileDB-SOMA
experiment, read with the libtiledb the image is built with. The docker-archive the
script exports for Apptainer is loaded back and run too. scripts/setup.sh installs the tools
(buildah, podman, runc, mmdebstrap); a machine without them fails here rather than skip."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import soma_fixtures
from test_workflow import assert_same, tables

BIN = os.environ.get("SLAF_CONVERT_BIN")
ROOT = Path(__file__).resolve().parents[2]
TAG = "localhost/slaf-convert:test"
EXAMPLE = "/opt/slaf-convert/examples/pbmc-like.h5ad"
# What the image may weigh besides the binary (measured: 93 MB; bookworm-slim alone is 75).
RUNTIME_LIMIT_MB = 100


def podman(*args, **kw):
    # runc with cgroupfs: crun refuses this machine's hybrid cgroups; rlimits no higher than
    # the caller's, as a process without CAP_SYS_RESOURCE may not raise them (podman's
    # defaults for root would).
    return subprocess.run(["podman", "--storage-driver", "vfs", "--runtime", "runc",
                           "--cgroup-manager", "cgroupfs", *args], **kw)


def run_in(image, out_dir, *command):
    """`command` in `image` as UID 12345, root filesystem read-only, /tmp a tmpfs, no
    network, `out_dir` at /out: how a workflow engine runs a task, minus the engine."""
    return podman("run", "--rm", "--user", "12345:12345", "--read-only", "--tmpfs", "/tmp",
                  "--network", "none", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
                  "-v", f"{out_dir}:/out", image, *command, capture_output=True, text=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    missing = [t for t in ["buildah", "podman", "runc", "mmdebstrap"] if shutil.which(t) is None]
    assert not missing, f"{missing} not installed: scripts/setup.sh --python installs them"
    d = tmp_path_factory.mktemp("image")
    archive = d / "slaf-convert.tar"
    proc = subprocess.run([ROOT / "containers" / "build-image.sh", "--debian-base", "--binary", BIN,
                           "--libtiledb", soma_fixtures.libtiledb(),
                           "--tag", TAG, "--archive", archive], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(TAG), proc.stdout
    yield TAG, archive
    podman("rmi", "-f", TAG, capture_output=True)


def test_image_converts_as_non_root_on_a_read_only_root(image, tmp_path):
    tag, _ = image
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the container's UID owns nothing here
    version = run_in(tag, out, "slaf-convert", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("slaf-convert ")
    # Nothing but /tmp and /out is writable: a write to the root fails.
    assert run_in(tag, out, "touch", "/opt/x").returncode != 0
    conv = run_in(tag, out, "slaf-convert", "convert", EXAMPLE, "/out/pbmc.slaf")
    assert conv.returncode == 0, conv.stderr
    marker = json.loads((out / "pbmc.slaf" / "_SLAF_COMPLETE.json").read_text())
    assert marker["n_cells"] > 0
    host = tmp_path / "host.slaf"
    subprocess.run([BIN, "convert", ROOT / "examples" / "pbmc-like.h5ad", host], check=True, capture_output=True)
    assert_same(tables(out / "pbmc.slaf"), tables(host))
    from slaf import SLAFArray
    assert SLAFArray(str(out / "pbmc.slaf")).shape == SLAFArray(str(host)).shape


def test_image_reads_soma_with_its_libtiledb(image, tmp_path):
    """The library is found where the image puts it, with no variable set."""
    tag, _ = image
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    adata = soma_fixtures.float_values()
    _, exp = soma_fixtures.write(adata, out / "in")
    conv = run_in(tag, out, "slaf-convert", "convert", "/out/in/experiment", "/out/soma.slaf",
                  "--chunk-size", "16")
    assert conv.returncode == 0, conv.stderr
    host = tmp_path / "host.slaf"
    subprocess.run([BIN, "convert", exp, host, "--chunk-size", "16"], check=True, capture_output=True,
                   env={**os.environ, "SLAF_CONVERT_LIBTILEDB": soma_fixtures.libtiledb()})
    assert_same(tables(out / "soma.slaf"), tables(host))


def test_image_size_and_labels(image, tmp_path):
    """The image is the runtime (Debian slim's weight, procps, ca-certificates, the example)
    plus the stripped binary and libtiledb: the runtime part is held to its budget here; the
    whole image is reported (its size with a release binary is in the README)."""
    tag, _ = image
    info = json.loads(podman("image", "inspect", tag, capture_output=True, text=True, check=True).stdout)[0]
    size_mb = info["Size"] / 1e6
    stat = run_in(tag, tmp_path, "stat", "-c", "%s", "/usr/local/bin/slaf-convert",
                  "/usr/local/lib/libtiledb.so")
    assert stat.returncode == 0, stat.stderr
    binary_mb, library_mb = (int(v) / 1e6 for v in stat.stdout.split())
    print(f"image {tag}: {size_mb:.1f} MB, of which the stripped binary under test {binary_mb:.1f} MB"
          f" and libtiledb {library_mb:.1f} MB")
    runtime = size_mb - binary_mb - library_mb
    assert runtime < RUNTIME_LIMIT_MB, f"the image without its binary and libtiledb is {runtime:.1f} MB"
    labels = info["Labels"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert info["Config"].get("Entrypoint") in (None, [])


def test_exported_archive_is_a_runnable_image(image, tmp_path):
    """The docker-archive Apptainer builds from (`apptainer build x.sif docker-archive://x.tar`)
    holds the image: loaded back under another name, it runs."""
    _, archive = image
    loaded = podman("load", "-i", str(archive), capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    ref = loaded.stdout.strip().split()[-1]
    assert ref.endswith(TAG.split("/", 1)[1]), loaded.stdout
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    version = run_in(ref, out, "slaf-convert", "--version")
    assert version.returncode == 0 and version.stdout.startswith("slaf-convert "), version.stderr


def test_recipes_follow_the_conventions():
    text = (ROOT / "containers" / "Dockerfile").read_text()
    stages = text.split("\nFROM ")[1:]
    runtime = stages[-1]
    # Users' builds take a digest-pinned bookworm-slim; the test substitutes its own base.
    assert "ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim@sha256:" in text
    assert runtime.startswith("${BASE_IMAGE}")
    assert "ENTRYPOINT" not in text.replace("No ENTRYPOINT", "")
    for pkg in ["procps", "ca-certificates"]:
        assert pkg in runtime
    # HDF5 is linked into the binary: the runtime stage needs no libhdf5.
    assert "libhdf5" not in runtime
    assert "org.opencontainers.image.version" in text
    for name in ["slaf-convert.def", "slaf-convert-archive.def"]:
        definition = (ROOT / "containers" / name).read_text()
        for part in ["%labels", "%runscript", "%test", '"$@"', "TMPDIR"]:
            assert part in definition, (name, part)
    # The daemon-free variant builds from the archive build-image.sh exports.
    assert "Bootstrap: docker-archive" in (ROOT / "containers" / "slaf-convert-archive.def").read_text()
