"""Object store servers on 127.0.0.1 for the tests, each with the environment that points
slaf-convert (and pylance) at it and a small client: moto's S3 server, Azurite's Blob
server, and a TCP proxy that makes a store go away mid-transfer."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

SECRET = "slafTESTsecret/KEY+0123456789abcdefgh"
KEY_ID = "AKIASLAFCONVERTTEST"


def wait_for_port(proc, port, log):
    """Return once the server `proc` accepts connections on `port` (within 60 s); fail with
    its `log` if it exits or never does."""
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
    raise AssertionError(f"the server on port {port} did not start: {log.read_text()}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """A moto S3 server on 127.0.0.1, and the environment that points clients at it."""

    scheme = "s3"

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
        wait_for_port(self.proc, self.port, self.log)

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

    def create_bucket(self, bucket):
        self.client().create_bucket(Bucket=bucket)

    def put(self, bucket, key, data):
        self.client().put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, bucket, key):
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def delete(self, bucket, key):
        self.client().delete_object(Bucket=bucket, Key=key)


AZURITE = Path(os.environ.get("SLAF_CONVERT_AZURITE",
                              Path.home() / ".cache/slaf-convert/azurite/node_modules/.bin/azurite-blob"))
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")  # the emulator's published well-known key


class Azurite:
    """An Azurite Blob server on 127.0.0.1, with the same interface as Moto."""

    scheme = "az"

    def __init__(self, tmp):
        assert AZURITE.exists(), f"{AZURITE} missing: run ./scripts/setup.sh --python"
        self.port = free_port()
        self.dir = tmp / f"azurite-{self.port}"
        self.dir.mkdir()
        self.proc = subprocess.Popen(
            [str(AZURITE), "--disableTelemetry", "--skipApiVersionCheck", "--silent",
             "--location", str(self.dir), "--blobHost", "127.0.0.1", "--blobPort", str(self.port)],
            stdout=open(self.dir / "log", "ab"), stderr=subprocess.STDOUT)
        wait_for_port(self.proc, self.port, self.dir / "log")

    def env(self):
        env = dict(os.environ)
        env.update({
            "AZURE_STORAGE_USE_EMULATOR": "true",
            "AZURITE_BLOB_STORAGE_URL": f"http://127.0.0.1:{self.port}",
            "AZURE_STORAGE_ACCOUNT_NAME": "devstoreaccount1",
            "SLAF_CONVERT_STORE_RETRY_SECONDS": "3",
        })
        return env

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def service(self):
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient.from_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;")

    def create_bucket(self, bucket):
        self.service().create_container(bucket)

    def put(self, bucket, key, data):
        self.service().get_blob_client(bucket, key).upload_blob(data, overwrite=True)

    def get(self, bucket, key):
        return self.service().get_blob_client(bucket, key).download_blob().readall()

    def delete(self, bucket, key):
        self.service().get_blob_client(bucket, key).delete_blob()

    def objects(self, bucket, prefix=""):
        return {b.name for b in self.service().get_container_client(bucket)
                .list_blobs(name_starts_with=prefix)}

    def storage_options(self):
        return {"account_name": "devstoreaccount1", "azure_storage_use_emulator": "true"}


class CuttingProxy:
    """A TCP proxy to a store that goes away (connections cut, new ones refused) once the
    client has sent `limit` bytes, and comes back on the same port when revived."""

    def __init__(self, upstream_port, limit):
        import threading
        self.upstream = upstream_port
        self.limit = limit
        self.sent = 0
        self.lock = threading.Lock()
        self.conns = []
        self.port = free_port()
        self.listener = None
        self.revive()

    def revive(self, limit=None):
        import threading
        if limit is not None:
            self.limit, self.sent = limit, 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener):
        import threading
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src, dst, counted):
        try:
            while data := src.recv(65536):
                if counted:
                    with self.lock:
                        self.sent += len(data)
                        over = self.sent > self.limit
                    if over:
                        self.cut()
                        return
                dst.sendall(data)
        except OSError:
            pass

    def cut(self):
        with self.lock:
            conns, self.conns = self.conns, []
            listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
