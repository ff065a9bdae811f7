"""Where an ``s3`` store's credentials, region and addressing come from, as a user of boto3 and
the AWS CLI expects: the manifest's keys (a session token too), a profile of the shared files,
the environment, botocore's region redirect, virtual-hosted addressing.

Signatures are checked by the Swift server's S3 API (moto accepts any); virtual-hosted requests
are answered by moto, reached through an HTTP proxy (no resolver here knows bucket host names).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.parse

import pytest

from trainui.storage import StoreError, check_access, open_store
from trainui.storage.cache import Cache
from trainui.storage.staging import stage

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture
def aws_home(tmp_path, monkeypatch):
    """A HOME of its own, no AWS variables, and no instance metadata service to ask."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


def s3_port(swift_server) -> int:
    return urllib.parse.urlsplit(swift_server.s3_endpoint).port


def test_a_session_token_is_signed_and_sent(swift_server, fault_proxy, aws_home, tmp_path):
    bucket = swift_server.container({"train.csv": "a,b\n"})
    proxy = fault_proxy(s3_port(swift_server))
    connection = swift_server.s3_connection(
        endpoint_url=proxy.endpoint, aws_session_token="FQoGZXIvYXdzEXAMPLETOKEN"
    )
    store = open_store("s3", bucket, connection, "/nowhere")
    stage(store, list(store.list_objects()), str(tmp_path / "data"))
    assert (tmp_path / "data" / "train.csv").read_text() == "a,b\n"
    heads = [head.lower() for head in proxy.requests]
    assert heads and all("x-amz-security-token: fqogzxivyxdzexampletoken" in h for h in heads)
    assert all("x-amz-security-token" in h.split("signedheaders=")[1] for h in heads)
    assert "EXAMPLETOKEN" not in repr(store)


def test_a_profile_of_the_shared_credentials_file_is_used(swift_server, aws_home, tmp_path):
    (aws_home / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = nobody:none\naws_secret_access_key = wrong\n\n"
        f"[team]\naws_access_key_id = {swift_server.server.user}\n"
        f"aws_secret_access_key = {swift_server.server.key}\n"
    )
    bucket = swift_server.container({"x.txt": "x"})
    connection = {"endpoint_url": swift_server.s3_endpoint, "profile": "team"}
    check_access("s3", bucket, connection, "/nowhere", write=True)  # the submit-time check
    store = open_store("s3", bucket, connection, "/nowhere")
    assert [o.key for o in store.list_objects()] == ["x.txt"]
    # the default profile's keys are refused, said with where botocore found them
    with pytest.raises(StoreError) as caught:
        check_access("s3", bucket, {"endpoint_url": swift_server.s3_endpoint}, "/x", write=False)
    assert str(caught.value) == (
        f"{swift_server.s3_endpoint} refused to list bucket '{bucket}': the secret access key is"
        " not the one of the access key ID 'nobody:none' (found by botocore:"
        " shared-credentials-file)"
    )


def test_a_credentials_file_named_by_the_environment_and_a_profile_from_it(
    swift_server, aws_home, tmp_path, monkeypatch
):
    credentials = tmp_path / "elsewhere.ini"
    credentials.write_text(
        f"[ci]\naws_access_key_id = {swift_server.server.user}\n"
        f"aws_secret_access_key = {swift_server.server.key}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "ci")
    bucket = swift_server.container({"y.txt": "y"})
    store = open_store("s3", bucket, {"endpoint_url": swift_server.s3_endpoint}, "/nowhere")
    assert [o.key for o in store.list_objects()] == ["y.txt"]


def test_a_missing_profile_is_one_sentence(swift_server, aws_home):
    connection = {"endpoint_url": swift_server.s3_endpoint, "profile": "nope"}
    with pytest.raises(StoreError) as caught:
        check_access("s3", "data", connection, "/nowhere", write=False)
    assert "profile (nope) could not be found" in str(caught.value)
    assert str(caught.value).startswith("cannot use S3 bucket 'data' at ")


def test_a_manifest_without_keys_uses_the_environments(
    swift_server, aws_home, monkeypatch, tmp_path, learner_run
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", swift_server.server.user)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", swift_server.server.key)
    bucket = swift_server.container({"train.csv": "1,2\n"})
    connection = {"endpoint_url": swift_server.s3_endpoint}
    check_access("s3", bucket, connection, "/nowhere", write=False)
    # the learner, a process of its own, finds them in its environment too
    results = swift_server.container()
    run = learner_run(
        {"type": "s3", "bucket": bucket, "connection": connection},
        {"type": "s3", "bucket": results, "connection": connection},
        command="cat $DATA_DIR/train.csv > $RESULT_DIR/out.txt",
    )
    status = run.run()
    assert status["status"] == "completed", run.log()
    assert swift_server.objects(results)[f"{run.model_id}/out.txt"] == b"1,2\n"


def test_no_credentials_anywhere_is_one_sentence(swift_server, aws_home):
    with pytest.raises(StoreError) as caught:
        check_access("s3", "data", {"endpoint_url": swift_server.s3_endpoint}, "/x", write=False)
    # the environment is the service's, not the submitting shell's: said, with the way round
    assert str(caught.value) == (
        f"no credentials for S3 bucket 'data' at {swift_server.s3_endpoint}: the manifest gives"
        " no aws_access_key_id, and botocore found none in the environment of the trainui"
        f" service (process {os.getpid()}), the AWS config files or an instance role (your"
        " shell's AWS_ACCESS_KEY_ID or AWS_PROFILE reaches a run written in its manifest:"
        " aws_access_key_id: ${AWS_ACCESS_KEY_ID}, or profile: ${AWS_PROFILE})"
    )


def test_a_wrong_region_is_followed(swift_server, aws_home, tmp_path, fault_proxy):
    """The server is in us-east-1; signed for eu-west-1, it says so and botocore follows."""
    bucket = swift_server.container({"a.txt": "a"})
    proxy = fault_proxy(s3_port(swift_server))
    connection = swift_server.s3_connection(endpoint_url=proxy.endpoint, region="eu-west-1")
    store = open_store("s3", bucket, connection, "/nowhere")
    stage(store, list(store.list_objects()), str(tmp_path / "data"))
    assert (tmp_path / "data" / "a.txt").read_text() == "a"
    scopes = [h.split("Credential=")[1].split(",")[0] for h in proxy.requests]
    assert "/eu-west-1/s3/" in scopes[0] and "/us-east-1/s3/" in scopes[-1]


# --------------------------------------------------------------------- virtual addressing


class RewritingProxy:
    """An HTTP forward proxy that sends every request to one server, whatever its host, and
    records each request's Host header and target. Requests arrive in absolute form."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.seen: list[tuple[str, str]] = []  # (Host header, origin-form target)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = src.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ")
                parts = urllib.parse.urlsplit(target)
                origin = parts.path + (f"?{parts.query}" if parts.query else "")
                headers = dict(line.split(": ", 1) for line in lines[1:])
                host = next(v for k, v in headers.items() if k.lower() == "host")
                self.seen.append((host, origin))
                length = int(
                    next((v for k, v in headers.items() if k.lower() == "content-length"), 0)
                )
                while len(buffer) < length:
                    buffer += src.recv(65536)
                lines[0] = f"{method} {origin} {version}"
                dst.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
        _close(src, dst)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        _close(src, dst)

    def close(self) -> None:
        self.listener.close()


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.close()


def test_virtual_hosted_addressing_puts_the_bucket_in_the_host_name(
    s3_server, monkeypatch, tmp_path
):
    proxy = RewritingProxy(s3_server.port)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    bucket = s3_server.bucket({"train.csv": "v,h\n"})
    endpoint = "http://s3.trainui.test:9000"  # never resolved: the proxy takes every request
    connection = s3_server.connection(endpoint=endpoint, addressing_style="virtual")
    try:
        store = open_store("s3", bucket, connection, "/nowhere")
        counters = stage(
            store, list(store.list_objects()), str(tmp_path / "data"), Cache(str(tmp_path / "c"))
        )
        (tmp_path / "model.bin").write_bytes(b"m" * 1000)
        store.upload(str(tmp_path / "model.bin"), "run/model.bin")
        store.close()
    finally:
        proxy.close()
    assert counters.objects_done == 1
    assert (tmp_path / "data" / "train.csv").read_text() == "v,h\n"
    assert s3_server.objects(bucket)["run/model.bin"] == b"m" * 1000
    hosts = {host for host, _target in proxy.seen}
    assert hosts == {f"{bucket}.s3.trainui.test:9000"}
    assert all(not target.startswith(f"/{bucket}") for _host, target in proxy.seen)
    assert "/train.csv" in {target for _host, target in proxy.seen}
    assert os.path.exists(tmp_path / "c")


def test_a_virtual_hosted_bucket_whose_host_does_not_resolve_says_to_use_path(s3_server):
    """`addressing_style: virtual` on an endpoint like localhost: the bucket's host name
    (BUCKET.localhost) does not resolve; said with the host and the way out."""
    bucket = s3_server.bucket({"x": "1"})
    port = s3_server.port
    connection = s3_server.connection(
        endpoint=f"http://trainui.invalid:{port}", addressing_style="virtual"
    )
    store = open_store("s3", bucket, connection, "/nowhere")
    store.attempts = 1
    try:
        with pytest.raises(StoreError) as raised:
            list(store.list_objects())
    finally:
        store.close()
    said = str(raised.value)
    assert (
        f"the host name {bucket}.trainui.invalid does not resolve (addressing_style: virtual"
        in (said)
    ), said
    assert "addressing_style: path does not" in said
