"""`slaf-convert validate`: passes on what convert and the workflow write, and flags each
kind of damage (made with pylance on a copy of a good dataset) and upstream's multi-file
defect (B2, from upstream's own converter), with exit code 65 and every violation listed."""
import json
import os
import shutil
import subprocess

import lance
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from test_workflow import three_files

BIN = os.environ.get("SLAF_CONVERT_BIN")


def validate(path):
    proc = subprocess.run([BIN, "validate", str(path), "--json"], capture_output=True, text=True)
    report = json.loads(proc.stdout)
    assert report["ok"] == (proc.returncode == 0), proc.stderr
    if proc.returncode != 0:
        assert proc.returncode == 65, proc.stderr
        assert proc.stderr.strip().endswith("kinds of violation (listed above)"), proc.stderr
    return report


def codes(report):
    return {v["code"] for v in report["violations"]}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Three inputs through one manifest, 3 expression fragments per input."""
    d = tmp_path_factory.mktemp("validate")
    files = three_files(d)
    (d / "m.yaml").write_text(
        "output: out.slaf\ninputs:\n" + "".join(f"  - path: {p.name}\n" for p, _ in files)
        + "options:\n  chunk_size: 30\n")
    subprocess.run([BIN, "convert", "--manifest", d / "m.yaml"], check=True, capture_output=True)
    return d / "out.slaf"


@pytest.fixture
def damaged(good, tmp_path):
    out = tmp_path / "copy.slaf"
    shutil.copytree(good, out)
    return out


def test_valid_outputs_pass(good, tmp_path):
    assert validate(good) == {"dataset": str(good), "ok": True, "violations": [], "warnings": []}
    single = tmp_path / "single.slaf"
    src = three_files(tmp_path, n=(25,))[0][0]
    subprocess.run([BIN, "convert", src, single], check=True, capture_output=True)
    proc = subprocess.run([BIN, "validate", single], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == f"{single}: valid\n", proc.stderr


def test_duplicate_names_are_warnings(tmp_path):
    """A 10x directory repeating a gene symbol (as Cell Ranger's do) converts with the
    repeat, as upstream's does: valid, with a warning naming it."""
    from tenx_fixtures import write_mtx
    write_mtx(tmp_path / "mtx", gz=False)
    out = tmp_path / "t.slaf"
    subprocess.run([BIN, "convert", tmp_path / "mtx", out], check=True, capture_output=True)
    report = validate(out)
    assert report["ok"] and report["violations"] == []
    [w] = report["warnings"]
    assert w["code"] == "genes.duplicate_id" and w["examples"] == ['Some("GENE2") at row 3']
    proc = subprocess.run([BIN, "validate", out], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == f"{out}: valid"
    assert "warning: genes.lance: genes.duplicate_id" in proc.stdout


def test_broken_start_index(damaged):
    cells = lance.dataset(str(damaged / "cells.lance"))
    t = cells.to_table()
    starts = t.column("cell_start_index").to_pylist()
    starts[7] += 3
    t = t.set_column(t.schema.get_field_index("cell_start_index"), "cell_start_index",
                     pa.array(starts, pa.int64()))
    lance.write_dataset(t, str(damaged / "cells.lance"), mode="overwrite")
    report = validate(damaged)
    [v] = [v for v in report["violations"] if v["code"] == "cells.start_index"]
    assert v["count"] == 1 and v["examples"] == [f"cell 7: {starts[7]}, expected {starts[7] - 3}"]
    # The marker names the old cells version: that is reported too.
    assert codes(report) == {"cells.start_index", "marker.tables"}


def test_missing_table(damaged):
    shutil.rmtree(damaged / "genes.lance")
    report = validate(damaged)
    assert "table.missing" in codes(report)
    [v] = [v for v in report["violations"] if v["code"] == "table.missing"]
    assert v["place"] == "genes.lance"


def test_config_count_off_by_one(damaged):
    config = json.loads((damaged / "config.json").read_text())
    config["metadata"]["expression_count"] += 1
    (damaged / "config.json").write_text(json.dumps(config))
    report = validate(damaged)
    assert codes(report) == {"config.count"}
    [v] = report["violations"]
    n = config["metadata"]["expression_count"]
    assert v["message"] == f"metadata.expression_count is {n}, the data has {n - 1}"


def test_shuffled_expression_fragment(damaged):
    """The expression table's fragments committed in another order: rows no longer grouped
    by cell in id order, so cell_start_index points at other cells' rows."""
    ds = lance.dataset(str(damaged / "expression.lance"))
    frags = ds.get_fragments()
    assert len(frags) >= 3
    order = [frags[1], frags[0], *frags[2:]]
    op = lance.LanceOperation.Overwrite(ds.schema, [f.metadata for f in order])
    lance.LanceDataset.commit(str(damaged / "expression.lance"), op, read_version=ds.version)
    report = validate(damaged)
    assert {"entries.cell_order", "cells.start_index"} <= codes(report)


def test_every_violation_is_listed(damaged):
    """Several kinds of damage at once: each is reported, not just the first."""
    shutil.rmtree(damaged / "genes.lance")
    config = json.loads((damaged / "config.json").read_text())
    config["array_shape"][0] += 1
    (damaged / "config.json").write_text(json.dumps(config))
    (damaged / "_SLAF_COMPLETE.json").unlink()
    report = validate(damaged)
    assert {"table.missing", "config.count", "marker.missing"} <= codes(report)
    proc = subprocess.run([BIN, "validate", damaged], capture_output=True, text=True)
    assert proc.returncode == 65
    assert len(proc.stdout.splitlines()) == len(report["violations"])


def test_upstream_multi_file_conversion_is_flagged(tmp_path):
    """Upstream's converter on a directory of h5ad files restarts cell_start_index at 0 for
    every file (defect B2): validate says so; and writes no marker."""
    from slaf.data import SLAFConverter
    src = tmp_path / "inputs"
    src.mkdir()
    three_files(src, n=(20, 15))
    out = tmp_path / "upstream.slaf"
    SLAFConverter(chunk_size=10, enable_checkpointing=False).convert(str(src), str(out))
    report = validate(out)
    assert {"cells.start_index_per_file", "cells.start_index", "marker.missing"} <= codes(report)


def test_missing_dataset_is_an_error(tmp_path):
    proc = subprocess.run([BIN, "validate", tmp_path / "none.slaf"], capture_output=True, text=True)
    assert proc.returncode == 66, proc.stderr
    assert "none.slaf" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
