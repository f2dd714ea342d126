"""Object stores in and out, against real protocol servers on 127.0.0.1 started and stopped
here: S3 (moto in server mode) and Azure Blob (Azurite). For each: convert (h5ad and 10x MTX
inputs in the bucket, output in the bucket), plan + staged shards + commit --dataset URI, and
plan + shards writing into the bucket + commit there give, read back through pylance over the store (and upstream's SLAFArray over S3, the one
object store its reader opens as lance does), exactly the local conversion's tables. Failures
(missing bucket, server down, wrong credentials, a prefix holding other objects) exit with
the documented code and leave no marker; the secret key never appears in any output or
object. GCS is covered by unit tests only (src/store.rs): no local server speaks its XML
listing API."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import fixtures
import tenx_fixtures
from store_servers import KEY_ID, SECRET, Azurite, CuttingProxy, Moto

BIN = os.environ.get("SLAF_CONVERT_BIN")
TABLES = ["expression", "cells", "genes"]


def _start(kind, tmp):
    server = Moto(tmp) if kind == "s3" else Azurite(tmp)
    for bucket in ["inputs", "out"]:
        server.create_bucket(bucket)
    return server


@pytest.fixture(scope="module", params=["s3", "az"])
def store(request, tmp_path_factory):
    server = _start(request.param, tmp_path_factory.mktemp(request.param))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = _start("s3", tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


LOG_SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" /
                         "log-event.schema.json").read_text())


def run(*args, env, check=True):
    import jsonschema
    proc = subprocess.run([BIN, *map(str, args), "--log-format", "json"], capture_output=True,
                          text=True, env=env)
    assert SECRET not in proc.stdout + proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
        # Every log line, the fetch and upload events among them, is in the schema.
        for line in proc.stderr.splitlines():
            jsonschema.validate(json.loads(line), LOG_SCHEMA)
    return proc


def local_tables(root):
    import lance
    out = {t: lance.dataset(str(root / f"{t}.lance")).to_table().to_pandas() for t in TABLES}
    out["config"] = json.loads((root / "config.json").read_text())
    return out


def split(uri):
    """(bucket, key) of a store URI."""
    return uri.split("://", 1)[1].split("/", 1)


def store_tables(server, uri):
    import lance
    # Lance's Azure emulator client takes Azurite's address from the environment only.
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in server.env().items() if k.startswith("AZURITE")})
    try:
        out = {t: lance.dataset(f"{uri}/{t}.lance", storage_options=server.storage_options())
               .to_table().to_pandas() for t in TABLES}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    bucket, key = split(uri)
    out["config"] = json.loads(server.get(bucket, f"{key}/config.json"))
    return out


def assert_same(a, b):
    for t in TABLES:
        pd.testing.assert_frame_equal(a[t], b[t])
    ca, cb = dict(a["config"]), dict(b["config"])
    ca.pop("created_at"), cb.pop("created_at")
    assert ca == cb


def marker(server, uri):
    bucket, key = split(uri)
    return json.loads(server.get(bucket, f"{key}/_SLAF_COMPLETE.json"))


def assert_no_secret_in_bucket(server, bucket):
    for key in server.objects(bucket):
        assert SECRET.encode() not in server.get(bucket, key), key


def test_convert_h5ad_from_the_store_to_the_store_equals_local(store, tmp_path):
    src = tmp_path / "pbmc.h5ad"
    fixtures.write("csr_int_counts", src)
    store.put("inputs", "h5ad/pbmc.h5ad", src.read_bytes())
    run("convert", src, tmp_path / "local.slaf", env=store.env())
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    s = store.scheme
    out = run("convert", f"{s}://inputs/h5ad/pbmc.h5ad", f"{s}://out/pbmc.slaf",
              "--temp-dir", scratch, env=store.env())
    assert f"{s}://out/pbmc.slaf" in out.stdout
    assert_same(store_tables(store, f"{s}://out/pbmc.slaf"), local_tables(tmp_path / "local.slaf"))
    m = marker(store, f"{s}://out/pbmc.slaf")
    assert [i["path"] for i in m["inputs"]] == [f"{s}://inputs/h5ad/pbmc.h5ad"]
    # inspect reads it in the store through Lance: the same as the local dataset's.
    there = run("inspect", f"{s}://out/pbmc.slaf", env=store.env()).stdout.splitlines()
    here = run("inspect", tmp_path / "local.slaf", env=store.env()).stdout.splitlines()
    assert there[0].startswith(f"{s}://out/pbmc.slaf: SLAF format")
    assert there[1:] == here[1:] and len(here) > 20
    keys = store.objects("out", "pbmc.slaf/")
    assert "pbmc.slaf/_slaf_convert_upload.json" not in keys
    assert not any(k.endswith("_slaf_commit.lock") for k in keys)
    assert list(scratch.iterdir()) == []  # the temporary directory is gone
    # A complete dataset is not replaced without --overwrite; with it, it is.
    again = run("convert", src, f"{s}://out/pbmc.slaf", env=store.env(), check=False)
    assert again.returncode == 73, again.stderr
    run("convert", src, f"{s}://out/pbmc.slaf", "--overwrite", env=store.env())
    assert_same(store_tables(store, f"{s}://out/pbmc.slaf"), local_tables(tmp_path / "local.slaf"))
    assert [i["path"] for i in marker(store, f"{s}://out/pbmc.slaf")["inputs"]] == [str(src)]
    # An input fetched to a local output: the marker names the URI, not the temporary copy.
    run("convert", f"{s}://inputs/h5ad/pbmc.h5ad", tmp_path / "fetched.slaf", env=store.env())
    assert_same(local_tables(tmp_path / "fetched.slaf"), local_tables(tmp_path / "local.slaf"))
    m = json.loads((tmp_path / "fetched.slaf" / "_SLAF_COMPLETE.json").read_text())
    assert [i["path"] for i in m["inputs"]] == [f"{s}://inputs/h5ad/pbmc.h5ad"]


def test_upstream_reader_opens_the_s3_dataset(s3, tmp_path):
    src = tmp_path / "pbmc.h5ad"
    fixtures.write("csr_int_counts", src)
    run("convert", src, tmp_path / "local.slaf", env=s3.env())
    run("convert", src, "s3://out/upstream.slaf", env=s3.env())
    # config.json through smart_open, the tables through lance, both from the environment.
    code = (
        "import sys\n"
        "from slaf import SLAFArray\n"
        "a = SLAFArray('s3://out/upstream.slaf')\n"
        "b = SLAFArray(sys.argv[1])\n"
        "assert a.shape == b.shape, (a.shape, b.shape)\n"
        "cells = ['cell_00000', 'cell_00007', 'cell_00123']\n"
        "x = a.get_cell_expression(cells).sort(['cell_id', 'gene_id'])\n"
        "y = b.get_cell_expression(cells).sort(['cell_id', 'gene_id'])\n"
        "assert x.height > 0 and x.equals(y)\n"
        "print('ok', a.shape)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "local.slaf")],
                          capture_output=True, text=True, env=s3.env())
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
    assert_no_secret_in_bucket(s3, "out")


def test_convert_10x_directory_from_the_store(store, tmp_path):
    mtx = tmp_path / "filtered"
    tenx_fixtures.write_mtx(mtx, version=3, gz=True)
    for f in sorted(mtx.iterdir()):
        store.put("inputs", f"tenx/filtered_feature_bc_matrix/{f.name}", f.read_bytes())
    if store.scheme == "s3":
        # The console's "folder" object: the prefix itself, not a file of the directory.
        store.put("inputs", "tenx/filtered_feature_bc_matrix/", b"")
    run("convert", mtx, tmp_path / "local.slaf", env=store.env())
    s = store.scheme
    out = run("convert", f"{s}://inputs/tenx/filtered_feature_bc_matrix", f"{s}://out/tenx.slaf",
              env=store.env())
    # The matrix is streamed from the store, not fetched; the TSVs beside it are fetched.
    events = [json.loads(line) for line in out.stderr.splitlines()]
    streamed = [e["input"] for e in events if e.get("event") == "input.streaming"]
    assert streamed == [f"{s}://inputs/tenx/filtered_feature_bc_matrix/matrix.mtx.gz"], streamed
    fetched = [e for e in events if e.get("event") == "input.fetched"]
    assert fetched and fetched[0]["bytes"] < (mtx / "matrix.mtx.gz").stat().st_size + 20_000
    # A plan and its shards (each streaming the matrix again) give the same dataset.
    (tmp_path / "m.yaml").write_text(
        f"output: {s}://out/tenx-sharded.slaf\ninputs:\n"
        f"  - path: {s}://inputs/tenx/filtered_feature_bc_matrix\n"
        "options:\n  chunk_size: 5\nsharding:\n  cells_per_shard: 10\n")
    run("plan", tmp_path / "m.yaml", "--output", tmp_path / "plan.json", env=store.env())
    n = len(json.loads((tmp_path / "plan.json").read_text())["shards"])
    assert n > 1
    for i in range(n):
        run("shard", tmp_path / "plan.json", "--index", i, "--shared-target", env=store.env())
    run("commit", tmp_path / "plan.json", env=store.env())
    run("convert", mtx, tmp_path / "local5.slaf", "--chunk-size", "5", env=store.env())
    assert_same(store_tables(store, f"{s}://out/tenx-sharded.slaf"),
                local_tables(tmp_path / "local5.slaf"))
    # The directory above it holds no files of its own: the error says what is there.
    proc = run("convert", f"{s}://inputs/tenx", tmp_path / "x.slaf", env=store.env(),
               check=False)
    assert proc.returncode == 66, proc.stderr
    assert "only prefixes under it (filtered_feature_bc_matrix)" in proc.stderr, proc.stderr
    assert_same(store_tables(store, f"{s}://out/tenx.slaf"), local_tables(tmp_path / "local.slaf"))


def test_convert_soma_experiment_from_the_store(store, tmp_path):
    """A TileDB-SOMA experiment is a tree of objects: every one is fetched at its path (a
    "folder" marker among them names no file), and the conversion, in one process or as a
    plan and shards, equals the local one."""
    import soma_fixtures
    _, exp = soma_fixtures.write(soma_fixtures.float_values(), tmp_path / "soma")
    exp = Path(exp)
    for f in sorted(p for p in exp.rglob("*") if p.is_file()):
        store.put("inputs", f"soma/experiment/{f.relative_to(exp)}", f.read_bytes())
    if store.scheme == "s3":
        store.put("inputs", "soma/experiment/ms/", b"")
    env = {**store.env(), "SLAF_CONVERT_LIBTILEDB": soma_fixtures.libtiledb()}
    run("convert", exp, tmp_path / "local.slaf", "--chunk-size", "16", env=env)
    s = store.scheme
    run("convert", f"{s}://inputs/soma/experiment", f"{s}://out/soma.slaf", "--chunk-size", "16",
        env=env)
    assert_same(store_tables(store, f"{s}://out/soma.slaf"), local_tables(tmp_path / "local.slaf"))
    (tmp_path / "m.yaml").write_text(
        f"output: {tmp_path / 'sharded.slaf'}\ninputs:\n  - path: {s}://inputs/soma/experiment\n"
        "options:\n  chunk_size: 16\nsharding:\n  cells_per_shard: 32\n")
    run("plan", tmp_path / "m.yaml", "--output", tmp_path / "plan.json", env=env)
    n = len(json.loads((tmp_path / "plan.json").read_text())["shards"])
    assert n == 2
    for i in range(n):
        run("shard", tmp_path / "plan.json", "--index", i, "-o", tmp_path / f"s{i}", env=env)
    run("commit", tmp_path / "plan.json", *[tmp_path / f"s{i}" for i in range(n)], env=env)
    assert_same(local_tables(tmp_path / "sharded.slaf"), local_tables(tmp_path / "local.slaf"))


def test_plan_staged_shards_commit_to_the_store(store, tmp_path):
    d = tmp_path / "wf"
    d.mkdir()
    fixtures.write("csr_int_counts", d / "a.h5ad")
    (d / "m.yaml").write_text("output: placeholder.slaf\ninputs:\n  - path: a.h5ad\n"
                              "options:\n  chunk_size: 20\nsharding:\n  cells_per_shard: 40\n")
    run("plan", d / "m.yaml", "--output", d / "plan.json", env=store.env())
    n = len(json.loads((d / "plan.json").read_text())["shards"])
    assert n > 1
    shards = []
    for i in reversed(range(n)):
        out = d / f"shard{i}"
        run("shard", d / "plan.json", "--index", i, "--output", out, env=store.env())
        shards.append(out)
    uri = f"{store.scheme}://out/workflow/a.slaf"
    run("commit", d / "plan.json", *shards, "--dataset", uri, env=store.env())
    run("convert", d / "a.h5ad", tmp_path / "local.slaf", "--chunk-size", "20", env=store.env())
    assert_same(store_tables(store, uri), local_tables(tmp_path / "local.slaf"))
    first = marker(store, uri)
    again = run("commit", d / "plan.json", *shards, "--dataset", uri, env=store.env())
    assert "nothing to do" in again.stderr
    assert marker(store, uri) == first
    # A partial upload (killed after its claim, before its marker) with a stale object of an
    # earlier attempt: the re-run completes it and removes what the build does not hold.
    store.delete("out", "workflow/a.slaf/_SLAF_COMPLETE.json")
    store.put("out", "workflow/a.slaf/_slaf_convert_upload.json", b"{}")
    # (A name object_store would percent-encode if re-built from the listing: deleted as
    # listed.)
    stale = "workflow/a.slaf/expression.lance/_versions/stale*{1}.manifest"
    store.put("out", stale, b"not a manifest")
    run("commit", d / "plan.json", *shards, "--dataset", uri, env=store.env())
    keys = store.objects("out", "workflow/a.slaf/")
    assert stale not in keys and "workflow/a.slaf/_SLAF_COMPLETE.json" in keys
    assert "workflow/a.slaf/_slaf_convert_upload.json" not in keys
    assert_same(store_tables(store, uri), local_tables(tmp_path / "local.slaf"))
    # Without shards, commit --dataset URI commits the receipts in the store: there are none.
    other = f"{store.scheme}://out/other.slaf"
    proc = run("commit", d / "plan.json", "--dataset", other, env=store.env(), check=False)
    assert proc.returncode == 68 and "missing receipts for shards" in proc.stderr, proc.stderr
    assert not store.objects("out", "other.slaf/_SLAF_COMPLETE.json")


def workflow_dir(tmp_path, output):
    d = tmp_path / "wf"
    d.mkdir()
    fixtures.write("csr_int_counts", d / "a.h5ad")
    (d / "m.yaml").write_text(f"output: {output}\ninputs:\n  - path: a.h5ad\n"
                              "options:\n  chunk_size: 20\nsharding:\n  cells_per_shard: 40\n")
    return d


def test_shards_write_into_the_store_and_commit_there(store, tmp_path, monkeypatch):
    """The manifest's output is a URI: shards (shared target, reverse order, one retried)
    write their fragments and receipts into the store with Lance, and commit commits there;
    nothing of the dataset passes through local disk."""
    uri = f"{store.scheme}://out/native/a.slaf"
    d = workflow_dir(tmp_path, uri)
    monkeypatch.chdir(d)  # where a URI taken for a path would become directories
    run("plan", d / "m.yaml", "--output", d / "plan.json", env=store.env())
    plan = json.loads((d / "plan.json").read_text())
    n = len(plan["shards"])
    assert n > 1 and plan["output"] == uri
    for i in reversed(range(n)):
        run("shard", d / "plan.json", "--index", i, "--shared-target", env=store.env())
    run("shard", d / "plan.json", "--index", 0, "--shared-target", env=store.env())  # a retry
    keys = store.objects("out", "native/a.slaf/")
    receipts = [k for k in keys if "/_slaf_receipts/" in k and k.endswith(".json")]
    assert len(receipts) == n, keys
    assert not [k for k in keys if k.endswith(".running")]
    assert "native/a.slaf/_SLAF_COMPLETE.json" not in keys
    out = run("commit", d / "plan.json", env=store.env())
    assert uri in out.stdout
    run("convert", d / "a.h5ad", tmp_path / "local.slaf", "--chunk-size", "20", env=store.env())
    local = local_tables(tmp_path / "local.slaf")
    assert_same(store_tables(store, uri), local)
    assert sorted(p.name for p in d.iterdir()) == ["a.h5ad", "m.yaml", "plan.json"]
    # The retried shard's first files were never committed: cleanup removed them.
    keys = store.objects("out", "native/a.slaf/")
    data = [k for k in keys if k.startswith("native/a.slaf/expression.lance/data/")]
    assert len(data) == len(list((tmp_path / "local.slaf" / "expression.lance" / "data")
                                 .iterdir())), data
    assert "native/a.slaf/_slaf_convert_upload.json" not in keys
    first = marker(store, uri)
    assert first["n_cells"] == len(local["cells"])
    again = run("commit", d / "plan.json", env=store.env())
    assert "nothing to do" in again.stderr and marker(store, uri) == first
    # A commit killed after its claim, before the marker: the re-run completes it.
    store.delete("out", "native/a.slaf/_SLAF_COMPLETE.json")
    store.delete("out", "native/a.slaf/config.json")
    store.put("out", "native/a.slaf/_slaf_convert_upload.json", b"{}")
    run("commit", d / "plan.json", env=store.env())
    assert_same(store_tables(store, uri), local)
    assert "native/a.slaf/_slaf_convert_upload.json" not in store.objects("out", "native/")
    assert_no_secret_in_bucket(store, "out")


def test_shards_into_the_store_with_local_receipts_and_a_server_lost_mid_shard(store,
                                                                              tmp_path):
    """What a workflow engine does: plan --dataset URI, each shard's receipt a task output
    (--receipt), commit given the receipt files. The store goes away mid-shard: exit 75, no
    receipt; the retried shard and the commit complete the dataset."""
    s = store.scheme
    d = workflow_dir(tmp_path, "placeholder.slaf")
    uri = f"{s}://out/engine/a.slaf"
    run("plan", d / "m.yaml", "--output", d / "plan.json", "--dataset", uri, env=store.env())
    n = len(json.loads((d / "plan.json").read_text())["shards"])
    # A shard of this fixture sends about 17 kB, a third of it before its first data file.
    proxy = CuttingProxy(store.port, limit=8_000)
    env = store.env()
    env["AWS_ENDPOINT_URL" if s == "s3" else "AZURITE_BLOB_STORAGE_URL"] = \
        f"http://127.0.0.1:{proxy.port}"
    try:
        proc = run("shard", d / "plan.json", "--index", 0, "--shared-target",
                   "--receipt", d / "r0.json", env=env, check=False)
        assert proc.returncode == 75, proc.stderr
        assert uri in proc.stderr and not (d / "r0.json").exists()
        keys = store.objects("out", "engine/")
        assert any("/data/" in k for k in keys), keys
        # As a shard that failed with the store still up leaves it: its running mark gone,
        # only its data files and the mark that it started. The retry must find it ours.
        for k in keys:
            if k.endswith(".running"):
                store.delete("out", k)
        proc = run("commit", d / "plan.json", env=store.env(), check=False)
        assert proc.returncode == 68, proc.stderr
        proxy.revive(limit=10**12)
        for i in range(n):
            run("shard", d / "plan.json", "--index", i, "--shared-target",
                "--receipt", d / f"r{i}.json", env=env)
    finally:
        proxy.cut()
    # The receipts are in the store too (a retried shard finds the prefix ours by them).
    jsons = [k for k in store.objects("out", "engine/") if k.endswith(".json")]
    assert len(jsons) == n, sorted(k.rsplit("/", 1)[1] for k in jsons)
    run("commit", d / "plan.json", *[d / f"r{i}.json" for i in range(n)], env=store.env())
    run("convert", d / "a.h5ad", tmp_path / "local.slaf", "--chunk-size", "20", env=store.env())
    assert_same(store_tables(store, uri), local_tables(tmp_path / "local.slaf"))
    assert marker(store, uri)["plan_hash"] == json.loads((d / "plan.json").read_text())["plan_hash"]


def test_foreign_prefix_and_missing_bucket_are_refused(store, tmp_path):
    src = tmp_path / "a.h5ad"
    fixtures.write("csr_int_counts", src)
    s = store.scheme
    store.put("out", "users/notes.txt", b"keep me")
    proc = run("convert", src, f"{s}://out/users", env=store.env(), check=False)
    assert proc.returncode == 73, proc.stderr
    assert f"{s}://out/users" in proc.stderr and "not a dataset of slaf-convert" in proc.stderr
    assert store.objects("out", "users/") == {"users/notes.txt"}
    proc = run("convert", src, f"{s}://out/a/../users", env=store.env(), check=False)
    assert proc.returncode == 2 and "'..' are not allowed" in proc.stderr, proc.stderr
    # An output prefix holding an input: publishing would delete it as stale.
    store.put("out", "users/a.h5ad", src.read_bytes())
    proc = run("convert", f"{s}://out/users/a.h5ad", f"{s}://out/users", "--overwrite",
               env=store.env(), check=False)
    assert proc.returncode == 73 and "holds the input" in proc.stderr, proc.stderr
    proc = run("convert", src, f"{s}://no-such-bucket/a.slaf", env=store.env(), check=False)
    assert proc.returncode == 74, proc.stderr
    assert f"{s}://no-such-bucket/a.slaf" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = run("convert", f"{s}://inputs/nothing-here.h5ad", tmp_path / "x.slaf",
               env=store.env(), check=False)
    assert proc.returncode == 66, proc.stderr
    assert f"{s}://inputs/nothing-here.h5ad" in proc.stderr
    assert not (tmp_path / "x.slaf").exists()


def test_server_down_exits_75_and_the_rerun_completes(tmp_path):
    server = Moto(tmp_path)
    try:
        server.create_bucket("out")
        src = tmp_path / "a.h5ad"
        fixtures.write("csr_int_counts", src)
        server.stop()
        proc = run("convert", src, "s3://out/a.slaf", env=server.env(), check=False)
        assert proc.returncode == 75, proc.stderr
        assert "s3://out/a.slaf" in proc.stderr
        server.start()  # moto keeps nothing across a restart: the bucket is made again
        server.create_bucket("out")
        run("convert", src, "s3://out/a.slaf", env=server.env())
        run("convert", src, tmp_path / "local.slaf", env=server.env())
        assert_same(store_tables(server, "s3://out/a.slaf"), local_tables(tmp_path / "local.slaf"))
    finally:
        server.stop()


def test_wrong_credentials_exit_74_without_the_secret(tmp_path):
    # moto checks signatures once its first actions (creating the user and key) are done.
    server = Moto(tmp_path, extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        import boto3
        iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        iam.create_user(UserName="slaf")
        allow_all = {"Version": "2012-10-17",
                     "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="slaf", PolicyName="all",
                            PolicyDocument=json.dumps(allow_all))
        key = iam.create_access_key(UserName="slaf")["AccessKey"]
        good = server.env(secret=key["SecretAccessKey"], key_id=key["AccessKeyId"])
        server.client(secret=key["SecretAccessKey"], key_id=key["AccessKeyId"]).create_bucket(
            Bucket="out")
        src = tmp_path / "a.h5ad"
        fixtures.write("csr_int_counts", src)
        # A wrong secret key, and a session token that S3's refusal would echo in its
        # canonical request: neither may appear, and the error is one line.
        bad = dict(good, AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN=SECRET + "TOKEN")
        proc = run("convert", src, "s3://out/a.slaf", env=bad, check=False)
        assert proc.returncode == 74, proc.stderr
        assert "s3://out/a.slaf" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        run("convert", src, "s3://out/a.slaf", env=good)
    finally:
        server.stop()


def test_uri_with_credentials_is_refused_without_echo(tmp_path):
    proc = subprocess.run([BIN, "convert", "in.h5ad", f"s3://{KEY_ID}:{SECRET}@out/a.slaf"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert SECRET not in proc.stderr and "credentials" in proc.stderr


def test_manifest_inputs_in_the_store(store, tmp_path):
    from test_workflow import three_files
    s = store.scheme
    parts = three_files(tmp_path)
    for p, _ in parts:
        store.put("inputs", f"atlas/{p.name}", p.read_bytes())

    def manifest(d, paths):
        d.mkdir()
        text = "output: placeholder.slaf\ninputs:\n" + "".join(f"  - path: {p}\n" for p in paths)
        text += "options:\n  chunk_size: 20\nsharding:\n  cells_per_shard: 40\n"
        (d / "m.yaml").write_text(text)
        return d / "m.yaml"

    local = manifest(tmp_path / "local", [p for p, _ in parts])
    remote = manifest(tmp_path / "remote", [f"{s}://inputs/atlas/{p.name}" for p, _ in parts])
    run("convert", "--manifest", local, env=store.env())
    want = local_tables(tmp_path / "local" / "placeholder.slaf")
    # plan fetches to scan, names the inputs by URI; each shard, run in a directory holding
    # nothing, fetches its own input; commit puts the dataset in the store.
    run("plan", remote, "--output", tmp_path / "plan.json", env=store.env())
    plan = json.loads((tmp_path / "plan.json").read_text())
    # Where the inputs were fetched to is not part of the plan: planned again with another
    # temporary directory (a retried task), the plan is the same.
    other_tmp = tmp_path / "other-tmp"
    other_tmp.mkdir()
    run("plan", remote, "--output", tmp_path / "plan2.json",
        env=dict(store.env(), TMPDIR=str(other_tmp)))
    assert json.loads((tmp_path / "plan2.json").read_text()) == plan
    assert [i["path"] for i in plan["inputs"]] == [f"{s}://inputs/atlas/{p.name}" for p, _ in parts]
    task = tmp_path / "task"
    task.mkdir()
    shards = []
    for i in reversed(range(len(plan["shards"]))):
        out = task / f"shard{i}"
        proc = subprocess.run([BIN, "shard", str(tmp_path / "plan.json"), "--index", str(i),
                               "--output", str(out)], capture_output=True, text=True,
                              env=store.env(), cwd=task)
        assert proc.returncode == 0, proc.stderr
        assert '"event":"input.fetched"' in proc.stderr
        shards.append(out)
    uri = f"{s}://out/atlas.slaf"
    run("commit", tmp_path / "plan.json", *shards, "--dataset", uri, env=store.env())
    got = store_tables(store, uri)
    uris = [f"{s}://inputs/atlas/{p.name}" for p, _ in parts]
    assert [f["file_path"] for f in got["config"]["multi_file"]["source_files"]] == uris
    for t in (got, want):
        for f in t["config"]["multi_file"]["source_files"]:
            f.pop("file_path")
    assert_same(got, want)
    assert [i["path"] for i in marker(store, uri)["inputs"]] == [i["path"] for i in plan["inputs"]]
    # convert --manifest fetches each input once and names them by URI in the marker.
    run("convert", "--manifest", remote, env=store.env())
    done = tmp_path / "remote" / "placeholder.slaf"
    got = local_tables(done)
    assert [f["file_path"] for f in got["config"]["multi_file"]["source_files"]] == uris
    for f in got["config"]["multi_file"]["source_files"]:
        f.pop("file_path")
    assert_same(got, want)
    m = json.loads((done / "_SLAF_COMPLETE.json").read_text())
    assert [i["path"] for i in m["inputs"]] == [i["path"] for i in plan["inputs"]]


def test_store_lost_mid_conversion_exits_75_and_the_rerun_completes(store, tmp_path):
    s = store.scheme
    src = tmp_path / "a.h5ad"
    fixtures.write("csr_int_counts", src)
    run("convert", src, tmp_path / "local.slaf", env=store.env())
    # The store goes away once the first data files are through.
    proxy = CuttingProxy(store.port, limit=20_000)
    env = store.env()
    key = "AWS_ENDPOINT_URL" if s == "s3" else "AZURITE_BLOB_STORAGE_URL"
    env[key] = f"http://127.0.0.1:{proxy.port}"
    uri = f"{s}://out/lost.slaf"
    proc = run("convert", src, uri, env=env, check=False)
    assert proc.returncode == 75, proc.stderr
    assert uri in proc.stderr
    keys = store.objects("out", "lost.slaf/")
    assert any("/data/" in k for k in keys)  # it died writing data files ...
    assert "lost.slaf/_SLAF_COMPLETE.json" not in keys  # ... and left no marker
    proxy.revive(limit=10**12)
    run("convert", src, uri, env=env)
    assert_same(store_tables(store, uri), local_tables(tmp_path / "local.slaf"))
    keys = store.objects("out", "lost.slaf/")
    assert "lost.slaf/_slaf_convert_upload.json" not in keys
    assert not [k for k in keys if k.endswith(".running")]
    proxy.cut()


def test_files_the_commit_dropped_are_deleted_from_the_store(store, tmp_path):
    """Lance writes the data files into the store as the conversion runs; here the last cell
    holds 2.5, past the plan's uint16 sample, so the shard restarts as float32 and its first
    attempt's files (in the store already) are not in the dataset: none may be left."""
    import anndata as ad
    import lance
    import numpy as np
    import scipy.sparse as sp
    rng = np.random.default_rng(7)
    x = rng.integers(1, 40, size=(600, 200)).astype(np.float32)
    x[-1, -1] = 2.5
    src = tmp_path / "late.h5ad"
    ad.AnnData(X=sp.csr_matrix(x)).write_h5ad(src)
    run("convert", src, tmp_path / "local.slaf", "--chunk-size", "20", env=store.env())
    uri = f"{store.scheme}://out/late.slaf"
    run("convert", src, uri, "--chunk-size", "20", env=store.env())
    assert_same(store_tables(store, uri), local_tables(tmp_path / "local.slaf"))
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in store.env().items() if k.startswith("AZURITE")})
    try:
        for table in TABLES:
            ds = lance.dataset(f"{uri}/{table}.lance", storage_options=store.storage_options())
            used = {f"late.slaf/{table}.lance/data/{d.path}"
                    for f in ds.get_fragments() for d in f.data_files()}
            stored = {k for k in store.objects("out", f"late.slaf/{table}.lance/data/")}
            assert stored == used, table
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_a_matrix_larger_than_its_stand_in_is_streamed(store, tmp_path):
    """The local stand-in of a streamed matrix holds only its first and last 64 KiB: a
    440 kB gzip matrix converts from the store to what it converts to locally only if its
    reader really reads the store's stream."""
    import gzip
    import numpy as np
    import scipy.io
    import scipy.sparse as sp
    d = tmp_path / "big"
    d.mkdir()
    rng = np.random.default_rng(1)
    x = sp.random(300, 4000, density=0.1, random_state=1, format="coo")
    x.data = rng.integers(1, 50, size=x.nnz).astype(float)
    x = x.tocsc().tocoo()
    with gzip.open(d / "matrix.mtx.gz", "wb") as f:
        scipy.io.mmwrite(f, x, field="integer")
    with gzip.open(d / "barcodes.tsv.gz", "wt") as f:
        f.writelines(f"C{i:05d}-1\n" for i in range(4000))
    with gzip.open(d / "features.tsv.gz", "wt") as f:
        f.writelines(f"G{i}\tgene{i}\tGene Expression\n" for i in range(300))
    assert (d / "matrix.mtx.gz").stat().st_size > 3 * 64 * 1024
    for p in d.iterdir():
        store.put("inputs", f"big/{p.name}", p.read_bytes())
    run("convert", d, tmp_path / "local.slaf", env=store.env())
    s = store.scheme
    out = run("convert", f"{s}://inputs/big", f"{s}://out/big.slaf", env=store.env())
    assert '"event":"input.streaming"' in out.stderr
    assert_same(store_tables(store, f"{s}://out/big.slaf"), local_tables(tmp_path / "local.slaf"))


def _gzip_h5ad(path, cells, genes=1500):
    """A gzip-chunked h5ad: its chunks and their index spread over the file."""
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp
    rng = np.random.default_rng(3)
    x = sp.random(cells, genes, density=0.15, random_state=3, format="csr", dtype=np.float32)
    x.data = rng.integers(1, 30, size=x.nnz).astype(np.float32)
    ad.AnnData(X=x).write_h5ad(path, compression="gzip")


def test_an_h5ad_in_the_store_is_read_in_place_and_a_shard_reads_its_own_cells(store, tmp_path):
    """An HDF5 input is not fetched: its reader reads the object at offsets (ranged GETs), so
    each of 4 shards of a 39 MB file fetches its quarter of the matrix and little more (a
    whole fetch would be the file each), and the dataset equals the local conversion's."""
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp
    s = store.scheme
    rng = np.random.default_rng(3)
    x = sp.random(16000, 2000, density=0.15, random_state=3, format="csr", dtype=np.float32)
    x.data = rng.integers(1, 30, size=x.nnz).astype(np.float32)
    src = tmp_path / "big.h5ad"
    ad.AnnData(X=x).write_h5ad(src)
    size = src.stat().st_size
    assert size > 35_000_000
    store.put("inputs", "inplace/big.h5ad", src.read_bytes())
    run("convert", src, tmp_path / "local.slaf", "--chunk-size", "500", env=store.env())
    (tmp_path / "m.yaml").write_text(
        f"output: {s}://out/inplace.slaf\ninputs:\n  - path: {s}://inputs/inplace/big.h5ad\n"
        "options:\n  chunk_size: 500\nsharding:\n  cells_per_shard: 4000\n")
    run("plan", tmp_path / "m.yaml", "--output", tmp_path / "plan.json", env=store.env())
    fetched = []
    for i in reversed(range(4)):
        out = run("shard", tmp_path / "plan.json", "--index", i, "--shared-target",
                  env=store.env())
        events = [json.loads(line) for line in out.stderr.splitlines()]
        assert [e for e in events if e.get("event") == "input.in_place"], out.stderr
        ranged = [e for e in events if e.get("event") == "input.ranged"]
        assert ranged and all(e["size"] == size for e in ranged)
        fetched.append(ranged[-1]["bytes"])
    assert all(b < 0.5 * size for b in fetched), (fetched, size)
    assert sum(fetched) < 2 * size, (fetched, size)
    run("commit", tmp_path / "plan.json", env=store.env())
    assert_same(store_tables(store, f"{s}://out/inplace.slaf"),
                local_tables(tmp_path / "local.slaf"))


def test_store_lost_while_a_shard_reads_an_h5ad_in_place_exits_75_and_the_rerun_completes(
        store, tmp_path):
    s = store.scheme
    src = tmp_path / "gz.h5ad"
    _gzip_h5ad(src, cells=12000)
    store.put("inputs", "lost-input/gz.h5ad", src.read_bytes())
    run("convert", src, tmp_path / "local.slaf", "--chunk-size", "1000", env=store.env())
    uri = f"{s}://inputs/lost-input/gz.h5ad"
    out = tmp_path / "out.slaf"
    (tmp_path / "m.yaml").write_text(
        f"output: {out}\ninputs:\n  - path: {uri}\n"
        "options:\n  chunk_size: 1000\nsharding:\n  cells_per_shard: 3000\n")
    run("plan", tmp_path / "m.yaml", "--output", tmp_path / "plan.json", env=store.env())
    assert len(json.loads((tmp_path / "plan.json").read_text())["shards"]) == 4
    # The store goes away after a few requests (Azure's are smaller than S3's signed ones):
    # while the shard reads the file.
    proxy = CuttingProxy(store.port, limit=8_000 if s == "s3" else 4_000)
    env = dict(store.env(), SLAF_CONVERT_STORE_RETRY_SECONDS="2")
    key = "AWS_ENDPOINT_URL" if s == "s3" else "AZURITE_BLOB_STORAGE_URL"
    env[key] = f"http://127.0.0.1:{proxy.port}"
    proc = run("shard", tmp_path / "plan.json", "--index", 0, "--shared-target", env=env,
               check=False)
    assert proc.returncode == 75, proc.stderr
    assert uri in proc.stderr.splitlines()[-1], proc.stderr
    assert not (out / "_SLAF_COMPLETE.json").exists()
    proxy.revive(limit=10**12)
    # The re-run, and the other shards in reverse order: each looks up its own chunks of the
    # gzip-chunked file; together they give the local conversion.
    for i in reversed(range(4)):
        run("shard", tmp_path / "plan.json", "--index", i, "--shared-target", env=env)
    run("commit", tmp_path / "plan.json", env=env)
    assert_same(local_tables(out), local_tables(tmp_path / "local.slaf"))
    proxy.cut()
