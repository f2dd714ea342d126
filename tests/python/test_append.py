"""Appending to a published dataset (`convert --append`, manifest `mode: append`): convert A,
append B, append C equals converting [A, B, C] in one manifest, table for table and config
for config, in one process and as workflow shards; union mode adds genes; readers see the
dataset as it was until the append commits, and kills at seeded points during shards and
commit leave it exactly as it was, the re-run completing it; values the stored type cannot
hold, an input appended twice and a dataset that moved are refused."""
import json
import os
import random
import shutil

import lance
import numpy as np
import pytest

from test_resilience import kill_at, timed
from test_workflow import (assert_same, dense_from_dataset, expected_dense, gene_files, manifest,
                           run, tables, three_files, GENES)

MARKER = "_SLAF_COMPLETE.json"
KILL_POINTS = int(os.environ.get("SLAF_KILL_POINTS", "12"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A, B and C converted in one manifest (chunks of 20, shards of 40)."""
    d = tmp_path_factory.mktemp("append-ref")
    files = three_files(d)
    run("convert", "--manifest", manifest(d, files))
    return d, files, tables(d / "out.slaf")


def append_manifest(d, names, out="out.slaf", per_shard=40, extra=""):
    text = f"output: {out}\nmode: append\ninputs:\n" + "".join(f"  - path: {n}\n" for n in names)
    text += f"options:\n  chunk_size: 20\n{extra}sharding:\n  cells_per_shard: {per_shard}\n"
    path = d / f"append-{'-'.join(n.split('.')[0] for n in names)}.yaml"
    path.write_text(text)
    return path


def tree(root):
    """Every file under `root` with its size and modification time: what 'left exactly as it
    was' compares."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def cell_rows_via_upstream(root, adata, cells):
    """get_cell_expression through upstream's reader, against the AnnData's own rows."""
    from slaf import SLAFArray
    sa = SLAFArray(str(root))
    x = adata.X.toarray()
    for i in cells:
        df = sa.get_cell_expression(adata.obs_names[i])
        df = df.to_pandas() if hasattr(df, "to_pandas") else df
        got = {g: float(v) for g, v in zip(df["gene_id"], df["value"])}
        want = {adata.var_names[j]: float(x[i, j]) for j in np.nonzero(x[i])[0]}
        assert got == want, (adata.obs_names[i], got, want)


def test_convert_then_append_twice_equals_one_manifest(tmp_path, reference):
    _, _, ref = reference
    files = three_files(tmp_path)
    out = tmp_path / "out.slaf"
    run("convert", files[0][0], out, "--chunk-size", 20)
    before = tree(out)
    run("convert", files[1][0], out, "--append", "--chunk-size", 20)
    assert not (tmp_path / "out.slaf.slaf-convert-append").exists()
    proc = run("convert", files[2][0], out, "--append", "--chunk-size", 20)
    assert "out.slaf: 205 cells x 30 genes" in proc.stdout
    assert_same(tables(out), ref)
    assert tree(out) != before
    marker = json.loads((out / MARKER).read_text())
    assert [os.path.basename(i["path"]) for i in marker["inputs"]] == [
        "part0.h5ad", "part1.h5ad", "part2.h5ad"]
    assert marker["n_cells"] == 205 and marker["expression_rows"] == len(ref["expression"])
    # Cells of C through upstream's reader: global ids, right rows (B2, B18).
    c = files[2][1]
    cell_rows_via_upstream(out, c, [0, 1, 44, c.n_obs - 1])
    # The same command again: C is in the dataset, nothing to do, nothing changed.
    after = tree(out)
    proc = run("convert", files[2][0], out, "--append", "--chunk-size", 20)
    assert "nothing to do" in proc.stderr and tree(out) == after


def test_append_as_workflow_shards_equals_one_manifest(tmp_path, reference):
    _, _, ref = reference
    files = three_files(tmp_path)
    out = tmp_path / "out.slaf"
    run("convert", "--manifest", manifest(tmp_path, files[:1]))
    # B, then C: staged shards in any order, one retried.
    for names in [["part1.h5ad"], ["part2.h5ad"]]:
        m = append_manifest(tmp_path, names, per_shard=20)
        plan = tmp_path / "plan.json"
        n = int(run("plan", m, "-o", plan, "--print-shards").stdout)
        assert n >= 3
        order = list(range(n))
        random.Random(n).shuffle(order)
        before, before_files = tables(out), tree(out)
        # Shards into the dataset itself would change it before the commit: refused.
        proc = run("shard", plan, "--index", 0, "--shared-target", check=False)
        assert proc.returncode == 2 and "staged" in proc.stderr
        for i in order + [order[0]]:
            run("shard", plan, "--index", i, "-o", tmp_path / f"s{i}")
        # Until the commit, readers see the dataset as it was, file for file.
        assert_same(tables(out), before)
        assert tree(out) == before_files
        shards = [tmp_path / f"s{i}" for i in range(n)]
        run("commit", plan, *shards)
        run("commit", plan, *shards)  # again: already appended, nothing to do
        for i in range(n):
            shutil.rmtree(tmp_path / f"s{i}", ignore_errors=True)
    assert_same(tables(out), ref)


def test_two_commits_of_one_append_at_once(tmp_path, reference):
    """Two commits of the same append started together (an engine's duplicate task): one
    appends, the other waits on the dataset's lock, which the swap replaces, then finds the
    work done; both succeed and the dataset holds the append once."""
    files = three_files(tmp_path)
    out = tmp_path / "out.slaf"
    run("convert", "--manifest", manifest(tmp_path, files[:1]))
    m = append_manifest(tmp_path, ["part1.h5ad", "part2.h5ad"], per_shard=20)
    plan = tmp_path / "plan.json"
    n = int(run("plan", m, "-o", plan, "--print-shards").stdout)
    for i in range(n):
        run("shard", plan, "--index", i, "-o", tmp_path / f"s{i}")
    import subprocess
    args = [os.environ["SLAF_CONVERT_BIN"], "commit", str(plan), *[str(tmp_path / f"s{i}") for i in range(n)]]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert_same(tables(out), reference[2])
    assert not (tmp_path / "out.slaf.slaf-convert-append").exists()


def test_append_union_adds_genes_at_the_end(tmp_path):
    second = GENES[3:] + ["NEW0", "NEW1", "NEW2"]
    random.Random(3).shuffle(second)
    files = gene_files(tmp_path, [GENES, second])
    # The reference: both in one manifest, genes: union.
    ref_m = manifest(tmp_path, files, out="ref.slaf", chunk=10, per_shard=20)
    ref_m.write_text(ref_m.read_text().replace("options:\n", "options:\n  genes: union\n"))
    run("convert", "--manifest", ref_m)
    out = tmp_path / "out.slaf"
    run("convert", files[0][0], out, "--chunk-size", 10)
    # exact (the default) refuses the new genes, naming the file; nothing changes.
    before = tree(out)
    m = append_manifest(tmp_path, ["part1.h5ad"])
    m.write_text(m.read_text().replace("chunk_size: 20", "chunk_size: 10"))
    proc = run("convert", "--manifest", m, check=False)
    assert proc.returncode == 67 and "part1.h5ad" in proc.stderr and "different genes" in proc.stderr
    assert tree(out) == before
    m.write_text(m.read_text().replace("options:\n", "options:\n  genes: union\n"))
    run("convert", "--manifest", m)
    assert_same(tables(out), tables(tmp_path / "ref.slaf"))
    genes = lance.dataset(str(out / "genes.lance")).to_table().to_pandas()
    want_genes = GENES + [g for g in second if g.startswith("NEW")]
    assert list(genes["gene_id"]) == want_genes
    assert list(genes["gene_symbol"]) == [f"SYM_{g}" for g in want_genes]
    n = sum(a.n_obs for _, a in files)
    assert np.array_equal(dense_from_dataset(out, n, len(want_genes)), expected_dense(files, want_genes))
    cell_rows_via_upstream(out, files[1][1], [0, 24])


def test_refusals_leave_the_dataset_as_it_was(tmp_path):
    import anndata as ad
    files = three_files(tmp_path, n=(30, 20, 25))
    out = tmp_path / "out.slaf"
    run("convert", files[0][0], out, "--chunk-size", 20)
    before = tree(out)
    # A fractional value into a uint16 dataset: refused before anything is written.
    a = ad.read_h5ad(files[1][0])
    a.X = a.X.astype(np.float32)
    a.X.data[3] = 0.5
    frac = tmp_path / "frac.h5ad"
    a.write_h5ad(frac)
    proc = run("convert", frac, out, "--append", check=False)
    assert proc.returncode == 67, proc.stderr
    assert "frac.h5ad" in proc.stderr and "uint16" in proc.stderr
    # An input the dataset already holds.
    proc = run("convert", files[0][0], out, "--append", check=False)
    assert proc.returncode == 67 and "already in" in proc.stderr
    # genes: intersection would drop genes from stored expression: refused, in a manifest
    # (64) and when --append turns a manifest into an append (2).
    m = append_manifest(tmp_path, ["part1.h5ad"], extra="  genes: intersection\n")
    assert run("convert", "--manifest", m, check=False).returncode == 64
    m.write_text(m.read_text().replace("mode: append\n", ""))
    proc = run("convert", "--manifest", m, "--append", check=False)
    assert proc.returncode == 2 and "intersection" in proc.stderr
    # No dataset, or one without a marker.
    proc = run("convert", files[1][0], tmp_path / "none.slaf", "--append", check=False)
    assert proc.returncode == 66, proc.stderr
    assert tree(out) == before
    assert not (tmp_path / "out.slaf.slaf-convert-append").exists()
    # A dataset that moved between plan and commit: exit 75, nothing changed; re-planned,
    # the append goes through.
    plan = tmp_path / "plan.json"
    run("plan", append_manifest(tmp_path, ["part1.h5ad"]), "-o", plan)
    run("shard", plan, "--index", 0, "-o", tmp_path / "s0")
    run("convert", files[2][0], out, "--append", "--chunk-size", 20)
    moved = tree(out)
    proc = run("commit", plan, tmp_path / "s0", check=False)
    assert proc.returncode == 75, proc.stderr
    assert "changed since the append was planned" in proc.stderr and "plan the append again" in proc.stderr
    assert tree(out) == moved
    shutil.rmtree(tmp_path / "s0")
    run("plan", append_manifest(tmp_path, ["part1.h5ad"]), "-o", plan)
    run("shard", plan, "--index", 0, "-o", tmp_path / "s0")
    run("commit", plan, tmp_path / "s0")
    cells = lance.dataset(str(out / "cells.lance")).to_table().to_pandas()
    assert list(cells["source_file"].unique()) == ["part0.h5ad", "part2.h5ad", "part1.h5ad"]
    assert list(cells["cell_integer_id"]) == list(range(75))


def test_append_through_a_link_keeps_the_link(tmp_path):
    """A dataset named through a symbolic link: the directory it names is appended to, and
    the link stays a link."""
    files = three_files(tmp_path, n=(30, 20))
    real = tmp_path / "real.slaf"
    run("convert", files[0][0], real, "--chunk-size", 20)
    link = tmp_path / "link.slaf"
    link.symlink_to(real)
    run("convert", files[1][0], link, "--append", "--chunk-size", 20)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert json.loads((real / MARKER).read_text())["n_cells"] == 50
    assert not (tmp_path / "real.slaf.slaf-convert-append").exists()


def test_widen_stored_values_rewrites_to_float32(tmp_path):
    """With the explicit option, a fractional input turns a uint16 dataset into float32:
    the same as converting both at once."""
    import anndata as ad
    files = three_files(tmp_path, n=(30, 20))
    a = ad.read_h5ad(files[1][0])
    a.X = a.X.astype(np.float32)
    a.X.data[3] = 0.5
    a.write_h5ad(tmp_path / "frac.h5ad")
    (tmp_path / "both.yaml").write_text(
        "output: ref.slaf\ninputs:\n  - path: part0.h5ad\n  - path: frac.h5ad\n"
        "options:\n  chunk_size: 20\n")
    run("convert", "--manifest", tmp_path / "both.yaml")
    out = tmp_path / "out.slaf"
    run("convert", files[0][0], out, "--chunk-size", 20)
    assert lance.dataset(str(out / "expression.lance")).schema.field("value").type == "uint16"
    proc = run("convert", tmp_path / "frac.h5ad", out, "--append", "--chunk-size", 20,
               "--widen-stored-values")
    assert "float32" in proc.stderr
    assert lance.dataset(str(out / "expression.lance")).schema.field("value").type == "float"
    assert_same(tables(out), tables(tmp_path / "ref.slaf"))
    marker = json.loads((out / MARKER).read_text())
    assert marker["dataset"]["profile"]["value_type"] == "Float32"


# ---- kills ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kill_inputs(tmp_path_factory):
    """A (1000 cells) converted, B (3000 cells) to append, and A+B in one manifest."""
    d = tmp_path_factory.mktemp("append-kill")
    files = three_files(d, n=(1000, 3000), m=200)
    m = manifest(d, files, chunk=100, per_shard=500)
    run("convert", "--manifest", m)
    return d, files, tables(d / "out.slaf")


def test_kill_append_anywhere_then_rerun_converges(tmp_path, kill_inputs):
    src, files, ref = kill_inputs

    def fresh(d):
        d.mkdir()
        for p, _ in files:
            shutil.copy(p, d / p.name)
        run("convert", d / "part0.h5ad", d / "out.slaf", "--chunk-size", 100)
        m = append_manifest(d, ["part1.h5ad"], per_shard=500)
        m.write_text(m.read_text().replace("chunk_size: 20", "chunk_size: 100"))
        return m, tables(d / "out.slaf"), tree(d / "out.slaf")

    probe = tmp_path / "probe"
    m, _, _ = fresh(probe)
    durations = {"convert": timed(["convert", "--manifest", m], probe)}
    shutil.rmtree(probe)
    m, _, _ = fresh(probe)
    timed(["plan", m, "-o", probe / "plan.json"], probe)
    n = len(json.loads((probe / "plan.json").read_text())["shards"])
    durations["shard"] = timed(["shard", probe / "plan.json", "--index", 0, "-o", probe / "s0"], probe)
    for i in range(1, n):
        timed(["shard", probe / "plan.json", "--index", i, "-o", probe / f"s{i}"], probe)
    durations["commit"] = timed(["commit", probe / "plan.json", *[probe / f"s{i}" for i in range(n)]], probe)
    durations = {k: v * 1.1 for k, v in durations.items()}
    shutil.rmtree(probe)

    rng = random.Random(20261201)
    kinds = ["convert", "shard", "commit"]
    landed = swapped = 0
    for point in range(KILL_POINTS):
        kind = kinds[point % len(kinds)]
        d = tmp_path / f"k{point:03d}"
        m, before, before_files = fresh(d)
        out = d / "out.slaf"
        print(f"kill point {point}: {kind}")
        if kind == "convert":
            args = ["convert", "--manifest", m]
            hit = kill_at(args, d, rng.uniform(0, durations["convert"]))
            rerun = [args]
        else:
            plan = d / "plan.json"
            timed(["plan", m, "-o", plan], d)
            commit = ["commit", plan, *[d / f"s{i}" for i in range(n)]]
            victim = rng.randrange(n)
            hit = False
            for i in range(n):
                args = ["shard", plan, "--index", i, "-o", d / f"s{i}"]
                if kind == "shard" and i == victim:
                    hit = kill_at(args, d, rng.uniform(0, durations["shard"]))
                    # Killed during shards: the dataset is exactly as it was.
                    assert tree(out) == before_files
                timed(args, d)
            if kind == "commit":
                hit = kill_at(commit, d, rng.uniform(0, durations["commit"]))
            rerun = [commit]
        landed += hit
        # Right after the kill: the dataset as it was, or (killed after the swap) complete.
        now = tables(out)
        try:
            assert_same(now, before)
            assert tree(out) == before_files
        except AssertionError:
            assert_same(now, ref)
            swapped += 1
        for args in rerun:
            timed(args, d)
        assert_same(tables(out), ref)
        assert not (d / "out.slaf.slaf-convert-append").exists()
        shutil.rmtree(d)
    print(f"append kill harness: {KILL_POINTS} points, {landed} killed mid-run "
          f"({swapped} after the swap), all converged")
    assert landed >= KILL_POINTS // 2
