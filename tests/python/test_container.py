"""The container image: built with docker (or daemonless buildah), `--version` and the README
example run inside it as a non-root UID with a read-only root filesystem. Skipped, saying why,
where no container engine runs (this project's CI machines have only the docker client)."""
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def engine():
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    if shutil.which("podman") and subprocess.run(["podman", "info"], capture_output=True).returncode == 0:
        return "podman"
    return None


def test_recipes_follow_the_conventions():
    text = (ROOT / "containers" / "Dockerfile").read_text()
    assert text.count("FROM ") == 2 and "bookworm" in text.split("FROM ")[1] and "bookworm" in text.split("FROM ")[2]
    assert "ENTRYPOINT" not in text.replace("No ENTRYPOINT", "")
    runtime = text.split("FROM ")[2]
    for pkg in ["procps", "ca-certificates"]:
        assert pkg in runtime
    # HDF5 is linked into the binary: the runtime stage needs no libhdf5.
    assert "libhdf5" not in runtime
    assert "org.opencontainers.image.version" in text
    definition = (ROOT / "containers" / "slaf-convert.def").read_text()
    for part in ["%labels", "%runscript", "%test", '"$@"', "TMPDIR"]:
        assert part in definition


def test_image_runs_as_non_root_read_only():
    tool = engine()
    if tool is None:
        pytest.skip("no container engine running here (docker info / podman info failed)")
    tag = "slaf-convert:test"
    subprocess.run([tool, "build", "-f", "containers/Dockerfile", "-t", tag, "."], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = [tool, "run", "--rm", "--user", "12345:12345", "--read-only",
                "--tmpfs", "/tmp", "-v", f"{tmp}:/out", tag]
        version = subprocess.run(base + ["slaf-convert", "--version"], capture_output=True, text=True, check=True)
        assert version.stdout.startswith("slaf-convert ")
        subprocess.run(base + ["slaf-convert", "convert", "/opt/slaf-convert/examples/pbmc-like.h5ad", "/tmp/x.slaf"],
                       check=True)
