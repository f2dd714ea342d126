"""`slaf-convert compact`: fewer fragments as configured, the same rows in the same order,
no cell split, indices still answering, upstream's reader returning the same matrices, and
`validate` passing after; old versions kept unless asked."""
import json
import os
import shutil
import subprocess

import lance
import numpy as np
import pytest

from test_workflow import three_files

BIN = os.environ.get("SLAF_CONVERT_BIN")


def frame(x):
    """A query result as pandas (slafdb returns polars frames)."""
    return x.to_pandas() if hasattr(x, "to_pandas") else x


def fragments(ds_dir, table="expression"):
    return len(lance.dataset(str(ds_dir / f"{table}.lance")).get_fragments())


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("compact")
    return three_files(d, n=(120,))[0][0]


def convert(source, out, *extra):
    subprocess.run([BIN, "convert", source, out, "--chunk-size", "10", *extra], check=True, capture_output=True)


def test_compact_joins_whole_fragments(source, tmp_path):
    out = tmp_path / "a.slaf"
    convert(source, out)
    before_ds = lance.dataset(str(out / "expression.lance"))
    before, before_version = before_ds.to_table(), before_ds.version
    rows_per_fragment = [f.count_rows() for f in lance.dataset(str(out / "expression.lance")).get_fragments()]
    assert len(rows_per_fragment) == 12
    target = sum(rows_per_fragment[:4])  # about 4 fragments' worth
    proc = subprocess.run([BIN, "compact", out, "--target-rows", str(target)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    n = fragments(out)
    assert 3 <= n <= 4, proc.stdout
    assert f"expression.lance: 12 -> {n} fragments" in proc.stdout
    after = lance.dataset(str(out / "expression.lance")).to_table()
    assert after.equals(before)
    for f in lance.dataset(str(out / "expression.lance")).get_fragments():
        assert f.count_rows() <= target
    check = subprocess.run([BIN, "validate", out], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # The version before stays (time travel) without --remove-old-versions.
    old = lance.dataset(str(out / "expression.lance"), version=before_version)
    assert len(old.get_fragments()) == 12 and old.to_table().equals(before)

    from slaf import SLAFArray
    ref = tmp_path / "ref.slaf"
    convert(source, ref)
    a, b = SLAFArray(str(out)), SLAFArray(str(ref))
    names = lance.dataset(str(ref / "cells.lance")).to_table().column("cell_id").to_pylist()
    cells = [names[i] for i in [0, 9, 10, 57, 119]]
    x, y = frame(a.get_cell_expression(cells)), frame(b.get_cell_expression(cells))
    assert x.equals(y) and len(x) > 0

    # Again: nothing left to join; the marker still matches.
    proc = subprocess.run([BIN, "compact", out, "--target-rows", str(target)], capture_output=True, text=True)
    assert proc.returncode == 0 and fragments(out) == n
    assert subprocess.run([BIN, "validate", out], capture_output=True).returncode == 0


def test_compact_keeps_indices_and_removes_old_versions_when_asked(source, tmp_path):
    out = tmp_path / "i.slaf"
    convert(source, out, "--create-indices")
    from slaf import SLAFArray
    gene = lance.dataset(str(out / "genes.lance")).to_table().column("gene_id").to_pylist()[3]
    want = SLAFArray(str(out)).get_gene_expression([gene])
    proc = subprocess.run([BIN, "compact", out, "--remove-old-versions"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert fragments(out) == 1
    ds = lance.dataset(str(out / "expression.lance"))
    assert len(ds.versions()) == 1
    assert ds.describe_indices(), "the indices went"
    got = SLAFArray(str(out)).get_gene_expression([gene])
    assert frame(got).equals(frame(want)) and len(frame(got)) > 0
    check = subprocess.run([BIN, "validate", out], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    marker = json.loads((out / "_SLAF_COMPLETE.json").read_text())
    assert marker["tables"]["expression.lance"] == ds.version


def test_compact_refuses_an_unfinished_dataset(source, tmp_path):
    out = tmp_path / "u.slaf"
    convert(source, out)
    (out / "_SLAF_COMPLETE.json").unlink()
    proc = subprocess.run([BIN, "compact", out], capture_output=True, text=True)
    assert proc.returncode == 65 and "not marked complete" in proc.stderr
    assert fragments(out) == 12
