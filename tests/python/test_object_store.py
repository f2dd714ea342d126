"""Object stores in and out, against a real S3 protocol server: moto in server mode on
127.0.0.1, started and stopped here. convert (h5ad and 10x MTX inputs in the bucket, output in
the bucket) and plan + staged shards + commit --dataset s3://... give, read back through
pylance and upstream's SLAFArray over S3, exactly the local conversion's tables. Failures
(missing bucket, server down, wrong credentials) exit with the documented code and leave no
marker; the secret key never appears in any output or object."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import fixtures
import tenx_fixtures

BIN = os.environ.get("SLAF_CONVERT_BIN")
SECRET = "slafTESTsecret/KEY+0123456789abcdefgh"
KEY_ID = "AKIASLAFCONVERTTEST"
TABLES = ["expression", "cells", "genes"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """A moto S3 server on 127.0.0.1, and the environment that points clients at it."""

    def __init__(self, tmp, extra_env=None):
        self.port = free_port()
        self.log = tmp / f"moto-{self.port}.log"
        self.extra_env = extra_env or {}
        self.proc = None
        self.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self, secret=SECRET, key_id=KEY_ID):
        env = dict(os.environ)
        env.update({
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "SLAF_CONVERT_STORE_RETRY_SECONDS": "3",
        })
        return env

    def start(self):
        env = dict(os.environ, **self.extra_env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.1)
        raise AssertionError(f"moto did not start: {self.log.read_text()}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def client(self, secret=SECRET, key_id=KEY_ID):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=key_id,
                            aws_secret_access_key=secret, region_name="us-east-1")

    def storage_options(self):
        return {"aws_endpoint": self.endpoint, "aws_access_key_id": KEY_ID,
                "aws_secret_access_key": SECRET, "aws_region": "us-east-1",
                "allow_http": "true"}

    def objects(self, bucket, prefix=""):
        listed = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return {o["Key"] for o in listed.get("Contents", [])}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = Moto(tmp_path_factory.mktemp("moto"))
    for bucket in ["inputs", "out"]:
        server.client().create_bucket(Bucket=bucket)
    yield server
    server.stop()


def run(*args, env, check=True):
    proc = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, env=env)
    assert SECRET not in proc.stdout + proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def local_tables(root):
    import lance
    out = {t: lance.dataset(str(root / f"{t}.lance")).to_table().to_pandas() for t in TABLES}
    out["config"] = json.loads((root / "config.json").read_text())
    return out


def s3_tables(s3, uri):
    import lance
    out = {t: lance.dataset(f"{uri}/{t}.lance", storage_options=s3.storage_options())
           .to_table().to_pandas() for t in TABLES}
    bucket, key = uri[len("s3://"):].split("/", 1)
    body = s3.client().get_object(Bucket=bucket, Key=f"{key}/config.json")["Body"].read()
    out["config"] = json.loads(body)
    return out


def assert_same(a, b):
    for t in TABLES:
        pd.testing.assert_frame_equal(a[t], b[t])
    ca, cb = dict(a["config"]), dict(b["config"])
    ca.pop("created_at"), cb.pop("created_at")
    assert ca == cb


def marker(s3, uri):
    bucket, key = uri[len("s3://"):].split("/", 1)
    body = s3.client().get_object(Bucket=bucket, Key=f"{key}/_SLAF_COMPLETE.json")["Body"].read()
    return json.loads(body)


def assert_no_secret_in_bucket(s3, bucket):
    c = s3.client()
    for key in s3.objects(bucket):
        assert SECRET.encode() not in c.get_object(Bucket=bucket, Key=key)["Body"].read(), key


def test_convert_h5ad_from_s3_to_s3_equals_local(s3, tmp_path):
    src = tmp_path / "pbmc.h5ad"
    fixtures.write("csr_int_counts", src)
    s3.client().upload_file(str(src), "inputs", "h5ad/pbmc.h5ad")
    run("convert", src, tmp_path / "local.slaf", env=s3.env())
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = run("convert", "s3://inputs/h5ad/pbmc.h5ad", "s3://out/pbmc.slaf",
              "--temp-dir", scratch, env=s3.env())
    assert "s3://out/pbmc.slaf" in out.stdout
    assert_same(s3_tables(s3, "s3://out/pbmc.slaf"), local_tables(tmp_path / "local.slaf"))
    m = marker(s3, "s3://out/pbmc.slaf")
    assert [i["path"] for i in m["inputs"]] == ["s3://inputs/h5ad/pbmc.h5ad"]
    keys = s3.objects("out", "pbmc.slaf/")
    assert "pbmc.slaf/_slaf_convert_upload.json" not in keys
    assert not any(k.endswith("_slaf_commit.lock") for k in keys)
    assert list(scratch.iterdir()) == []  # the temporary directory is gone
    # Upstream's reader opens it over S3 (config.json through smart_open, tables via lance).
    code = (
        "import sys, numpy as np\n"
        "from slaf import SLAFArray\n"
        "a = SLAFArray('s3://out/pbmc.slaf')\n"
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
    # A complete dataset is not replaced without --overwrite.
    again = run("convert", src, "s3://out/pbmc.slaf", env=s3.env(), check=False)
    assert again.returncode == 73, again.stderr
    assert_no_secret_in_bucket(s3, "out")


def test_convert_10x_directory_from_s3(s3, tmp_path):
    mtx = tmp_path / "filtered"
    tenx_fixtures.write_mtx(mtx, version=3, gz=True)
    for f in sorted(mtx.iterdir()):
        s3.client().upload_file(str(f), "inputs", f"tenx/filtered_feature_bc_matrix/{f.name}")
    run("convert", mtx, tmp_path / "local.slaf", env=s3.env())
    run("convert", "s3://inputs/tenx/filtered_feature_bc_matrix", "s3://out/tenx.slaf",
        env=s3.env())
    assert_same(s3_tables(s3, "s3://out/tenx.slaf"), local_tables(tmp_path / "local.slaf"))


def test_plan_staged_shards_commit_to_s3(s3, tmp_path):
    d = tmp_path / "wf"
    d.mkdir()
    fixtures.write("csr_int_counts", d / "a.h5ad")
    (d / "m.yaml").write_text("output: placeholder.slaf\ninputs:\n  - path: a.h5ad\n"
                              "options:\n  chunk_size: 20\nsharding:\n  cells_per_shard: 40\n")
    run("plan", d / "m.yaml", "--output", d / "plan.json", env=s3.env())
    n = len(json.loads((d / "plan.json").read_text())["shards"])
    assert n > 1
    shards = []
    for i in reversed(range(n)):
        out = d / f"shard{i}"
        run("shard", d / "plan.json", "--index", i, "--output", out, env=s3.env())
        shards.append(out)
    uri = "s3://out/workflow/a.slaf"
    run("commit", d / "plan.json", *shards, "--dataset", uri, env=s3.env())
    run("convert", d / "a.h5ad", tmp_path / "local.slaf", "--chunk-size", "20", env=s3.env())
    assert_same(s3_tables(s3, uri), local_tables(tmp_path / "local.slaf"))
    first = marker(s3, uri)
    again = run("commit", d / "plan.json", *shards, "--dataset", uri, env=s3.env())
    assert "nothing to do" in again.stderr
    assert marker(s3, uri) == first
    # A partial upload (killed after its claim, before its marker) with a stale object of an
    # earlier attempt: the re-run completes it and removes what the build does not hold.
    c = s3.client()
    c.delete_object(Bucket="out", Key="workflow/a.slaf/_SLAF_COMPLETE.json")
    c.put_object(Bucket="out", Key="workflow/a.slaf/_slaf_convert_upload.json", Body=b"{}")
    stale = "workflow/a.slaf/expression.lance/_versions/stale.manifest"
    c.put_object(Bucket="out", Key=stale, Body=b"not a manifest")
    run("commit", d / "plan.json", *shards, "--dataset", uri, env=s3.env())
    keys = s3.objects("out", "workflow/a.slaf/")
    assert stale not in keys and "workflow/a.slaf/_SLAF_COMPLETE.json" in keys
    assert_same(s3_tables(s3, uri), local_tables(tmp_path / "local.slaf"))
    # commit --dataset URI wants staged shards.
    proc = run("commit", d / "plan.json", "--dataset", "s3://out/other.slaf", env=s3.env(),
               check=False)
    assert proc.returncode == 2 and "staged shards" in proc.stderr


def test_foreign_prefix_and_missing_bucket_are_refused(s3, tmp_path):
    src = tmp_path / "a.h5ad"
    fixtures.write("csr_int_counts", src)
    s3.client().put_object(Bucket="out", Key="users/notes.txt", Body=b"keep me")
    proc = run("convert", src, "s3://out/users", env=s3.env(), check=False)
    assert proc.returncode == 73, proc.stderr
    assert "s3://out/users" in proc.stderr and "not a dataset of slaf-convert" in proc.stderr
    assert s3.objects("out", "users/") == {"users/notes.txt"}
    proc = run("convert", src, "s3://no-such-bucket/a.slaf", env=s3.env(), check=False)
    assert proc.returncode == 74, proc.stderr
    assert "s3://no-such-bucket/a.slaf" in proc.stderr
    proc = run("convert", "s3://inputs/nothing-here.h5ad", tmp_path / "x.slaf", env=s3.env(),
               check=False)
    assert proc.returncode == 66, proc.stderr
    assert "s3://inputs/nothing-here.h5ad" in proc.stderr
    assert not (tmp_path / "x.slaf").exists()


def test_server_down_exits_75_and_the_rerun_completes(tmp_path):
    server = Moto(tmp_path)
    try:
        server.client().create_bucket(Bucket="out")
        src = tmp_path / "a.h5ad"
        fixtures.write("csr_int_counts", src)
        server.stop()
        proc = run("convert", src, "s3://out/a.slaf", env=server.env(), check=False)
        assert proc.returncode == 75, proc.stderr
        assert "s3://out/a.slaf" in proc.stderr
        server.start()  # moto keeps nothing across a restart: the bucket is made again
        server.client().create_bucket(Bucket="out")
        run("convert", src, "s3://out/a.slaf", env=server.env())
        run("convert", src, tmp_path / "local.slaf", env=server.env())
        assert_same(s3_tables(server, "s3://out/a.slaf"), local_tables(tmp_path / "local.slaf"))
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
        bad = dict(good, AWS_SECRET_ACCESS_KEY=SECRET)
        proc = run("convert", src, "s3://out/a.slaf", env=bad, check=False)
        assert proc.returncode == 74, proc.stderr
        assert "s3://out/a.slaf" in proc.stderr
        run("convert", src, "s3://out/a.slaf", env=good)
    finally:
        server.stop()


def test_uri_with_credentials_is_refused_without_echo(tmp_path):
    proc = subprocess.run([BIN, "convert", "in.h5ad", f"s3://{KEY_ID}:{SECRET}@out/a.slaf"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert SECRET not in proc.stderr and "credentials" in proc.stderr
