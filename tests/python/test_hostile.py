"""Hostile input: every case of the malformed-input corpus (hostile_inputs.py) is refused
with a documented exit code and a one-line error naming the file, leaving no config.json and
no marker, or converted and read back equal to what anndata/scanpy read. Refusals run under a
4 GiB address-space limit, so an allocation sized by a lying header fails the test."""
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

import hostile_inputs as hi

BIN = os.environ.get("SLAF_CONVERT_BIN")
ADDRESS_SPACE = 4 * 1024**3


def limited():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run(case, out):
    if case.command == "plan":
        argv = [BIN, "plan", str(case.src), "-o", str(out / "plan.json"), *case.args]
    else:
        argv = [BIN, "convert", str(case.src), str(out / "out.slaf"), "--chunk-size", "3",
                *case.args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=case.timeout,
                          preexec_fn=limited)


def error_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("slaf-convert: error:")]


@pytest.mark.parametrize("build", hi.ALL, ids=[b.__name__ for b in hi.ALL])
def test_corpus(build, tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    case = build(inputs)
    proc = run(case, out)
    if case.check is None:
        assert proc.returncode in case.codes, (proc.returncode, proc.stderr[-3000:])
        errors = error_lines(proc.stderr)
        assert len(errors) == 1, proc.stderr[-3000:]
        assert (case.file or case.src.name) in errors[0], errors[0]
        for name in case.names:
            assert name.lower() in errors[0].lower(), (name, errors[0])
        assert "internal error" not in errors[0] and "panicked" not in proc.stderr
        assert not list(out.rglob("config.json")) and not list(out.rglob("_SLAF_COMPLETE.json"))
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
        for w in case.warns:
            assert w in proc.stderr, (w, proc.stderr[-3000:])
        case.check(out / "out.slaf", case.src)


def test_corpus_size():
    assert len(hi.ALL) >= 40


def test_input_changed_since_plan_is_an_input_error(tmp_path):
    """A change the fingerprint cannot see (same size, same first and last 64 KiB): a
    matrix.mtx sorted by cell when planned, no longer sorted when the shard reads it."""
    d = tmp_path / "mtx"
    d.mkdir()
    n_cells, per_cell = 4000, 12
    lines = [f"{g:05d} {c:05d} 1\n" for c in range(1, n_cells + 1) for g in range(1, per_cell + 1)]
    header = f"%%MatrixMarket matrix coordinate integer general\n{per_cell:05d} {n_cells:05d} {len(lines)}\n"
    (d / "barcodes.tsv").write_text("".join(f"C{i}-1\n" for i in range(n_cells)))
    (d / "features.tsv").write_text("".join(f"E{j}\tG{j}\tGene Expression\n" for j in range(per_cell)))
    (d / "matrix.mtx").write_text(header + "".join(lines))
    assert (d / "matrix.mtx").stat().st_size > 3 * 128 * 1024
    (tmp_path / "m.yaml").write_text("output: out.slaf\ninputs:\n  - path: mtx\n")
    plan = tmp_path / "plan.json"
    subprocess.run([BIN, "plan", str(tmp_path / "m.yaml"), "-o", str(plan)], check=True,
                   capture_output=True)
    middle = len(lines) // 2
    lines[middle], lines[middle + 5 * per_cell] = lines[middle + 5 * per_cell], lines[middle]
    (d / "matrix.mtx").write_text(header + "".join(lines))
    proc = subprocess.run([BIN, "shard", str(plan), "--index", "0", "-o", str(tmp_path / "s0")],
                          capture_output=True, text=True)
    assert proc.returncode == 65, proc.stderr
    errors = error_lines(proc.stderr)
    assert "matrix.mtx" in errors[0] and "changed since it was planned" in errors[0], errors


def test_incompatible_inputs_name_the_file(tmp_path):
    a = hi.h5ad(tmp_path, "first")
    b = hi.small(seed=3)
    b.obs["extra"] = 1.0
    b = hi.h5ad(tmp_path, "second", b)
    (tmp_path / "m.yaml").write_text(
        f"output: out.slaf\ninputs:\n  - path: {a.name}\n  - path: {b.name}\n")
    proc = subprocess.run([BIN, "plan", str(tmp_path / "m.yaml"), "-o", str(tmp_path / "p.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 67, proc.stderr
    # first.h5ad lacks the column second.h5ad has: the error is about first.h5ad.
    assert error_lines(proc.stderr)[0].startswith(f"slaf-convert: error: {a}: "), proc.stderr


def test_verbose_prints_the_causes(tmp_path):
    src = tmp_path / "t.h5ad"
    src.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    proc = subprocess.run([BIN, "--verbose", "convert", str(src), str(tmp_path / "o.slaf")],
                          capture_output=True, text=True)
    assert proc.returncode == 65
    assert len(error_lines(proc.stderr)) == 1
    assert "caused by:" in proc.stderr, proc.stderr


def test_non_finite_values_through_shards_and_commit(tmp_path):
    """NaN and ±Inf used to make receipts unreadable (null statistics) and fail the commit
    after every shard had finished."""
    import json
    case = hi.h5ad_nan_inf(tmp_path)
    (tmp_path / "m.yaml").write_text(
        f"output: out.slaf\ninputs:\n  - path: {case.src.name}\noptions:\n  chunk_size: 3\n"
        "sharding:\n  cells_per_shard: 3\n")
    plan = tmp_path / "plan.json"
    subprocess.run([BIN, "plan", str(tmp_path / "m.yaml"), "-o", str(plan)], check=True,
                   capture_output=True)
    n = len(json.loads(plan.read_text())["shards"])
    assert n >= 2
    dirs = []
    for i in range(n):
        d = tmp_path / f"s{i}"
        subprocess.run([BIN, "shard", str(plan), "--index", str(i), "-o", str(d)], check=True,
                       capture_output=True)
        dirs.append(str(d))
    proc = subprocess.run([BIN, "commit", str(plan), *dirs], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    case.check(tmp_path / "out.slaf", case.src)


def seed_files():
    """The fuzz seeds (fuzz/make_seeds.py) the crash recipes patch, by name."""
    import importlib.util
    seeds = Path(__file__).resolve().parents[2] / "fuzz" / "make_seeds.py"
    spec = importlib.util.spec_from_file_location("make_seeds", seeds)
    make_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_seeds)
    return make_seeds.hdf5_files()


def patched(files, seed, patches, path):
    data = bytearray(files[seed])
    for offset, byte in patches:
        data[offset] = byte
    path.write_bytes(bytes(data))
    return path


def test_former_hdf5_library_crashes_are_refused(tmp_path):
    """Files on which Debian's libhdf5 1.10.8 segfaulted (found by fuzz/): the linked HDF5
    reports them, and the run ends with one line naming the file and exit 65."""
    import hdf5_crash_recipes
    files = seed_files()
    for name, (seed, patches) in hdf5_crash_recipes.RECIPES.items():
        src = patched(files, seed, patches, tmp_path / f"{name}.h5ad")
        proc = subprocess.run([BIN, "convert", str(src), str(tmp_path / f"{name}.slaf")],
                              capture_output=True, text=True, timeout=120, preexec_fn=limited)
        assert proc.returncode == 65, (name, proc.returncode, proc.stderr[-2000:])
        errors = error_lines(proc.stderr)
        assert len(errors) == 1 and src.name in errors[0], proc.stderr[-2000:]
        assert not (tmp_path / f"{name}.slaf").exists()


def test_hdf5_library_hangs_end_with_exit_65(tmp_path):
    """Files on which the HDF5 library loops for ever inside one call (found by fuzz/): the
    watchdog ends the run after --hdf5-timeout with one line naming the file and exit 65."""
    import hdf5_crash_recipes
    files = seed_files()
    for name, (seed, patches) in hdf5_crash_recipes.HANGS.items():
        src = patched(files, seed, patches, tmp_path / f"{name}.h5ad")
        out = tmp_path / f"{name}.slaf"
        started = time.monotonic()
        proc = subprocess.run([BIN, "--hdf5-timeout", "2", "convert", str(src), str(out)],
                              capture_output=True, text=True, timeout=120, preexec_fn=limited)
        took = time.monotonic() - started
        assert proc.returncode == 65, (name, proc.returncode, proc.stderr[-2000:])
        errors = error_lines(proc.stderr)
        assert len(errors) == 1 and src.name in errors[0], proc.stderr[-2000:]
        assert "made no progress for 2 s" in errors[0], errors[0]
        assert 2 <= took < 30, took
        assert not (out / "_SLAF_COMPLETE.json").exists() and not (out / "config.json").exists()


def test_hdf5_library_runaway_allocation_under_a_memory_limit(tmp_path):
    """A file on which the HDF5 library allocates without bound (found by fuzz/): under the
    4 GiB address-space limit the allocation fails, and the run ends with one line naming the
    file and exit 65."""
    import hdf5_crash_recipes
    files = seed_files()
    for name, (seed, patches) in hdf5_crash_recipes.RUNAWAY.items():
        src = patched(files, seed, patches, tmp_path / f"{name}.h5ad")
        out = tmp_path / f"{name}.slaf"
        proc = subprocess.run([BIN, "convert", str(src), str(out)],
                              capture_output=True, text=True, timeout=120, preexec_fn=limited)
        assert proc.returncode == 65, (name, proc.returncode, proc.stderr[-2000:])
        errors = error_lines(proc.stderr)
        assert len(errors) == 1 and src.name in errors[0], proc.stderr[-2000:]
        assert "memory allocation failed" in errors[0], errors[0]
        assert not out.exists()


def test_a_crash_while_reading_hdf5_is_exit_65(tmp_path):
    """The crash handler: a fatal signal while an HDF5 input is open (here sent to a run the
    library holds in a loop, the watchdog off) is one line naming the file and exit 65, not
    death by the signal."""
    import hdf5_crash_recipes
    seed, patches = hdf5_crash_recipes.HANGS["global-heap-loop-attribute"]
    src = patched(seed_files(), seed, patches, tmp_path / "looping.h5ad")
    proc = subprocess.Popen([BIN, "--hdf5-timeout", "0", "convert", str(src),
                             str(tmp_path / "out.slaf")],
                            stderr=subprocess.PIPE, text=True, preexec_fn=limited)
    try:
        time.sleep(2)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGSEGV)
        stderr = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 65, (proc.returncode, stderr[-2000:])
    errors = error_lines(stderr)
    assert len(errors) == 1 and src.name in errors[0], stderr[-2000:]
    assert "the HDF5 library crashed" in errors[0], errors[0]


def test_fuzz_findings_in_our_code_are_refused(tmp_path):
    """Inputs on which fuzz/ found slaf-convert itself allocating without bound."""
    import hdf5_crash_recipes
    files = seed_files()
    for name, (seed, fmt, patches) in hdf5_crash_recipes.REFUSALS.items():
        src = patched(files, seed, patches, tmp_path / f"{name}.h5")
        proc = subprocess.run([BIN, "convert", str(src), str(tmp_path / f"{name}.slaf"),
                               "--format", fmt],
                              capture_output=True, text=True, timeout=120, preexec_fn=limited)
        assert proc.returncode == 65, (name, proc.returncode, proc.stderr[-2000:])
        errors = error_lines(proc.stderr)
        assert len(errors) == 1 and src.name in errors[0], proc.stderr[-2000:]
        assert "crashed" not in errors[0], errors[0]
