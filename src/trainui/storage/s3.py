"""The ``s3`` store: a bucket on AWS S3 or any S3-compatible server (IBM COS, Ceph, MinIO), through
botocore.

botocore signs every request, finds the credentials (the manifest's keys, or its standard chain:
environment, shared credentials and config files and their profiles, SSO, container and instance
roles), retries, and follows a bucket to its region. Listing, checks and uploads are botocore
calls: ``put_object``, or files over ``MULTIPART_THRESHOLD`` in parts sent in parallel, retried
part by part, the upload aborted on failure once no part is under way (as ``aws s3 cp`` does).
Payloads are not hashed for the signature (``UNSIGNED-PAYLOAD``, as boto3 does over HTTPS) and
no extra checksums are computed where S3 does not require them. Downloads are GETs signed by
botocore's signer for the URL and region botocore resolved, their bytes moved by ``stream``
(resumed after a cut, checked against size and MD5): botocore's own ``get_object`` cost 1.6x
the time on 2 cores (README, bench/storage.py). botocore is imported when the store is first used,
or ahead by ``prepare`` (the spare learner does, while it waits for a run); its S3 model is read
once per process.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.parse
from collections.abc import Iterator, Mapping

from trainui.core.urls import masked_url
from trainui.storage import (
    ObjectInfo,
    ObjectStore,
    Progress,
    StoreError,
    attempts,
    stream,
    transfer_threads,
)

TIMEOUT = 60.0  # seconds without a byte before a connection counts as dead
BACKOFF, MAX_BACKOFF = 0.25, 4.0  # seconds before a cut download is resumed, doubling
MULTIPART_THRESHOLD = 64 << 20  # files larger than this are uploaded in parts, in parallel
PART_SIZE = 16 << 20
CHUNK = 1 << 20
WRITE_CHECK_KEY = ".trainui-write-check"
ADDRESSING_STYLES = ("path", "virtual", "auto")


def md5_of(etag: str) -> str | None:
    """The MD5 an ETag stands for, or None (a multipart ETag is not one)."""
    etag = etag.strip('"').lower()
    return etag if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) else None


class S3Store(ObjectStore):
    """Bucket ``bucket`` at the connection's ``endpoint_url``, or on AWS without one.

    Every connection key is optional: without keys, botocore's standard chain finds the
    credentials and region on this machine (``profile`` picks a profile of the shared files).
    """

    def __init__(self, bucket: str, connection: Mapping[str, str]) -> None:
        self.bucket = bucket
        endpoint = (connection.get("endpoint_url") or "").strip().rstrip("/")
        if endpoint:
            parts = urllib.parse.urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise StoreError(f"{masked_url(endpoint)!r} is not an http(s) URL")
        # S3 takes no credentials in a URL: any there (a run recorded before the manifest
        # refused them) are never shown, and never sent
        self.endpoint_url = masked_url(endpoint) if endpoint else ""
        self._keys = {
            name: connection.get(name) or None
            for name in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
        }
        self.key_id = self._keys["aws_access_key_id"] or ""
        given = [name for name, value in self._keys.items() if value]
        if given and not (self.key_id and self._keys["aws_secret_access_key"]):
            missing = "aws_secret_access_key" if self.key_id else "aws_access_key_id"
            raise StoreError(
                f"the s3 connection of bucket '{bucket}' has {given[0]} but no {missing}"
            )
        self.region = connection.get("region") or None
        self.profile = connection.get("profile") or None
        self.addressing_style = connection.get("addressing_style") or (
            "path" if endpoint else "auto"
        )
        if self.addressing_style not in ADDRESSING_STYLES:
            raise StoreError(
                f"the s3 connection of bucket '{bucket}' has addressing_style"
                f" '{self.addressing_style}': expected one of {', '.join(ADDRESSING_STYLES)}"
            )
        self.where = self.endpoint_url or "AWS S3"
        self.description = f"S3 bucket '{bucket}' at {self.where}"
        self.cache_id = f"s3 {self.endpoint_url or 'aws'} {bucket}"
        self._lock = threading.Lock()
        self._client = None
        self._credentials = None  # botocore's, refreshed by botocore where they expire
        self._signed_getter: _Getter | None = None
        self._signed_region: str | None = None  # of botocore's last request: where it went
        self._credential_source = ""  # how botocore found the credentials, without keys
        self._parts = None  # the thread pool for parts of large files
        self._unaborted: list[tuple[str, str]] = []  # (key, upload ID) whose abort failed

    def __repr__(self) -> str:  # never the secret
        return f"S3Store({self.bucket!r}, {self.where!r})"

    # ---------------------------------------------------------------------------- client

    def client(self):
        """The botocore client, made on first use (one per store, shared by its threads)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self):
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        threads = transfer_threads()
        timeout = self.timeout or TIMEOUT
        config = Config(
            s3={"addressing_style": self.addressing_style, "payload_signing_enabled": False},
            retries={"total_max_attempts": self.attempts or attempts(), "mode": "standard"},
            max_pool_connections=max(10, 2 * threads),  # parts of two files at once
            connect_timeout=timeout,
            read_timeout=timeout,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            signature_version="s3v4",
        )
        try:
            session = _session(self.profile)
            if self.key_id:
                from botocore.credentials import Credentials

                self._credentials = Credentials(*self._keys.values())
            else:
                self._credentials = session.get_credentials()
                if self._credentials is None:
                    raise StoreError(self._no_credentials())
                self.key_id = self._credentials.access_key
                self._credential_source = self._credentials.method
            client = _create_client(
                session,
                region_name=self.region,
                endpoint_url=self.endpoint_url or None,
                config=config,
                **self._keys,
            )
        except BotoCoreError as exc:
            raise StoreError(
                f"cannot use {self.description}: {_said(exc, self.endpoint_url)}"
            ) from None
        client.meta.events.register("before-sign.s3", self._note_region)
        return client

    def _note_region(self, request=None, region_name=None, signing_type="standard", **_) -> None:
        """The region botocore signs for (after a redirect, the bucket's): a botocore event."""
        signing = getattr(request, "context", {}).get("signing") or {}
        if signing_type == "standard" and (signing.get("region") or region_name):
            self._signed_region = signing.get("region") or region_name

    def _no_credentials(self) -> str:
        # the chain runs in the trainui service (and its learners), whose environment is not
        # the shell of whoever submits: said, with the way to pass that shell's keys
        where = f"profile '{self.profile}'" if self.profile else "the environment"
        return (
            f"no credentials for {self.description}: the manifest gives no aws_access_key_id,"
            f" and botocore found none in {where} of the trainui service (process"
            f" {os.getpid()}), the AWS config files or an instance role (your shell's"
            " AWS_ACCESS_KEY_ID or AWS_PROFILE reaches a run written in its manifest:"
            " aws_access_key_id: ${AWS_ACCESS_KEY_ID}, or profile: ${AWS_PROFILE})"
        )

    def _call(self, operation: str, action: str, **params):
        """``operation`` on the bucket, botocore's retries included; StoreError on failure."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()
        try:
            return getattr(client, operation)(Bucket=self.bucket, **params)
        except ClientError as exc:
            raise StoreError(self._refusal(exc, action)) from None
        except BotoCoreError as exc:
            tries = self.attempts or attempts()
            raise StoreError(
                f"cannot {action} {self.description}: {_said(exc, self.endpoint_url)} (after"
                f" {tries} tries)"
            ) from None

    # --------------------------------------------------------------------------- reading

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        params = {"MaxKeys": 1000}  # botocore asks for url-encoded keys and decodes them
        if prefix:
            params["Prefix"] = prefix
        while True:
            page = self._call("list_objects_v2", "list", **params)
            for item in page.get("Contents", ()):
                yield ObjectInfo(item["Key"], item.get("Size", 0), item.get("ETag", "").strip('"'))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token

    def download(
        self, key: str, dest: str, info: ObjectInfo | None = None, progress: Progress | None = None
    ) -> int:
        etag = info.etag if info is not None else ""
        getter = self._getter()
        return stream.fetch(
            lambda offset: self._get(getter, key, offset, etag, listed=info is not None),
            getter.endpoint,
            dest,
            f"object {key!r} of {self.description}",
            size=info.size if info is not None else None,
            md5=stream.md5_of(etag),
            progress=progress,
        )

    def _getter(self) -> _Getter:
        with self._lock:
            getter = self._signed_getter
        if getter is None:
            client = self.client()
            getter = _Getter(client, self.bucket, self._credentials, self._signed_region)
            with self._lock:
                self._signed_getter = getter
        return getter

    def _get(self, getter: _Getter, key: str, offset: int, etag: str, listed: bool):
        """The response to a GET of ``key`` from ``offset`` that botocore signed."""
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if etag:
                headers["If-Match"] = f'"{etag}"'
        response = getter.get(key, headers)
        if response.status in (200, 206):
            return response
        stream.error_body(response, getter.endpoint)
        if response.status >= 500 or response.status in (408, 429):
            raise stream.Transient(f"the server answered HTTP {response.status}")
        # a refusal, or a region to follow: botocore asks again, says why in its words (and
        # follows the bucket to its region); if it then succeeds, the next try is signed anew
        body, _start, _total = self._open(key, offset, etag, listed)
        body.close()
        with self._lock:
            self._signed_getter = None
        raise stream.Transient(f"the server answered HTTP {response.status}")

    def _open(self, key: str, offset: int, etag: str, listed: bool):
        """``(body, start, total)``: the body of ``key`` from ``offset`` (or from ``start``, 0,
        when the server sent it whole), and the object's size if known."""
        from botocore.exceptions import BotoCoreError, ClientError

        params = {"Key": key}
        if offset:
            params["Range"] = f"bytes={offset}-"
            if etag:
                params["IfMatch"] = f'"{etag}"'
        try:
            response = self.client().get_object(Bucket=self.bucket, **params)
        except BotoCoreError as exc:
            raise StoreError(
                f"object {key!r} of {self.description} could not be downloaded after"
                f" {self.attempts or attempts()} tries: {_said(exc, self.endpoint_url)}"
            ) from None
        except ClientError as exc:
            code, status = _code(exc)
            if status == 404 and code != "NoSuchBucket":
                if listed:
                    raise StoreError(
                        f"object {key!r} no longer exists in {self.description}:"
                        " it was deleted after the bucket was listed"
                    ) from None
                raise StoreError(f"object {key!r} does not exist in {self.description}") from None
            if status == 412:
                raise StoreError(
                    f"object {key!r} of {self.description} changed while it was being downloaded"
                ) from None
            raise StoreError(self._refusal(exc, "read")) from None
        content_range = response.get("ContentRange") or ""
        if not content_range:
            return response["Body"], 0, response.get("ContentLength")
        total = content_range.rpartition("/")[2]
        return response["Body"], offset, int(total) if total.isdigit() else None

    def check(self, write: bool = False) -> None:
        if not write:
            self._call("list_objects_v2", "list", MaxKeys=1)
            return
        self._call("put_object", "write to", Key=WRITE_CHECK_KEY, Body=b"")
        with contextlib.suppress(StoreError):  # may write but not delete: the probe stays
            self._call("delete_object", "write to", Key=WRITE_CHECK_KEY)

    # --------------------------------------------------------------------------- writing

    def delete(self, key: str) -> None:
        self._call("delete_object", "delete from", Key=key)  # S3 answers 204 for a key gone

    def upload(self, src: str, key: str, progress: Progress | None = None) -> None:
        size = os.path.getsize(src)
        if size <= MULTIPART_THRESHOLD:
            with _Region(src, 0, size, progress) as body:
                self._call("put_object", "write to", Key=key, Body=body, ContentLength=size)
            return
        upload_id = self._call("create_multipart_upload", "write to", Key=key)["UploadId"]
        parts = []
        try:
            pool = self._part_pool()
            for number, offset in enumerate(range(0, size, PART_SIZE), 1):
                count = min(PART_SIZE, size - offset)
                part = (src, offset, count, progress)
                parts.append(pool.submit(self._send_part, key, upload_id, number, part))
            etags = [part.result() for part in parts]
            self._call(
                "complete_multipart_upload",
                "write to",
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
                },
            )
        except BaseException:
            # Leave no parts the server would keep (and bill): the parts not started are
            # cancelled, those under way waited for, and only then is the upload aborted,
            # because S3 may keep a part that lands after the abort (s3transfer, behind
            # `aws s3 cp`, does the same).
            from concurrent.futures import wait

            for part in parts:
                part.cancel()
            wait(parts)
            self._abort(key, upload_id)
            raise

    def _send_part(self, key: str, upload_id: str, number: int, part: tuple) -> str:
        src, offset, count, progress = part
        with _Region(src, offset, count, progress) as body:
            answer = self._call(
                "upload_part",
                "write to",
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentLength=count,
            )
        return answer["ETag"]

    def _abort(self, key: str, upload_id: str, tries: int | None = None) -> bool:
        """Abort a multipart upload; False (and it is tried again at close) if it failed."""
        try:
            self._call("abort_multipart_upload", "write to", Key=key, UploadId=upload_id)
            return True
        except Exception:
            with self._lock:
                self._unaborted.append((key, upload_id))
            return False

    def _part_pool(self):
        """Threads that send the parts of large files (shared by this store's uploads)."""
        with self._lock:
            if self._parts is None:
                from concurrent.futures import ThreadPoolExecutor

                self._parts = ThreadPoolExecutor(
                    transfer_threads(), thread_name_prefix="trainui-s3-part"
                )
            return self._parts

    def close(self) -> None:
        with self._lock:
            parts, self._parts = self._parts, None
        if parts is not None:
            parts.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            unaborted, self._unaborted = self._unaborted, []
        for key, upload_id in unaborted:  # the server may be back since
            with contextlib.suppress(Exception):
                self._call("abort_multipart_upload", "write to", Key=key, UploadId=upload_id)
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # ---------------------------------------------------------------------------- errors

    def _refusal(self, exc, action: str) -> str:
        code, status = _code(exc)
        where = f"{self.where} refused to {action} bucket '{self.bucket}'"
        key = f"the access key ID '{self.key_id}'"
        if self._credential_source:
            key += f" (found by botocore: {self._credential_source})"
        if code == "NoSuchBucket":
            return f"bucket '{self.bucket}' does not exist at {self.where}"
        if status == 404 and code in ("", "404"):  # S3 says NoSuchBucket: this is not S3
            return (
                f"{self.where} answered HTTP 404 without an S3 error to {action} bucket"
                f" '{self.bucket}': is endpoint_url the address of an S3 server?"
            )
        if code in ("InvalidAccessKeyId", "InvalidClientTokenId"):
            return f"{where}: it does not know {key}"
        if code == "SignatureDoesNotMatch":
            return f"{where}: the secret access key is not the one of {key}"
        if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
            return f"{where}: the session token of {key} is expired or not valid ({code})"
        if code in ("AccessDenied", "AllAccessDisabled") or status in (401, 403):
            return f"{where}: access denied to {key}"
        detail = " ".join(p for p in dict.fromkeys((str(status or ""), code)) if p)
        return f"{where}: {detail or 'unknown error'}"


class _Getter:
    """GETs of one bucket's objects signed by botocore's SigV4 signer and sent on plain
    per-thread connections (``stream``): botocore's own ``get_object`` costs several times the
    CPU per object (bench/storage.py). Where the bucket is (endpoint, addressing, region) is
    botocore's, read from one URL it presigned."""

    def __init__(self, client, bucket: str, credentials, region: str | None) -> None:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        from botocore.utils import percent_encode

        probe = "trainui-probe"
        url = client.generate_presigned_url("get_object", {"Bucket": bucket, "Key": probe})
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        region = region or query["X-Amz-Credential"][0].split("/")[2]
        self._base = f"{parts.scheme}://{parts.netloc}{parts.path[: -len(probe)]}"
        self._prefix = parts.path[: -len(probe)]
        self._region = region
        self._auth_type = S3SigV4Auth
        # Keys that never change (the manifest's, the environment's) sign every GET through
        # one signer; those botocore refreshes (roles, SSO) are frozen for each GET, as
        # botocore's own requests do, so that a refresh never mixes two key pairs.
        fixed = type(credentials) is Credentials
        self._auth = S3SigV4Auth(credentials, "s3", region) if fixed else None
        self._request, self._quote = AWSRequest, percent_encode
        self._credentials = credentials
        self.endpoint = stream.Endpoint(f"{parts.scheme}://{parts.netloc}")

    def get(self, key: str, headers: dict[str, str]):
        path = self._quote(key, safe="/~")
        request = self._request("GET", self._base + path, headers=headers)
        auth = self._auth or self._auth_type(
            self._credentials.get_frozen_credentials(), "s3", self._region
        )
        auth.add_auth(request)
        return self.endpoint.request("GET", self._prefix + path, dict(request.headers.items()))


class _Region:
    """``count`` bytes of the file ``path`` from ``offset``, as a request body botocore reads
    (and rewinds to send again); ``progress`` is told of the bytes as they go, and of those
    taken back when a try is undone."""

    def __init__(self, path: str, offset: int, count: int, progress: Progress | None) -> None:
        self.name = path
        self._f = open(path, "rb")  # noqa: SIM115 (closed by __exit__)
        self._start, self._count, self._pos = offset, count, 0
        self._progress = progress
        self._f.seek(offset)

    def __enter__(self) -> _Region:
        return self

    def __exit__(self, kind, *_exc) -> None:
        self._f.close()
        if kind is not None:
            self._undo()

    def __len__(self) -> int:
        return self._count

    def read(self, amount: int = -1) -> bytes:
        left = self._count - self._pos
        if amount is None or amount < 0 or amount > left:
            amount = left
        data = self._f.read(amount)
        if len(data) < amount:
            raise StoreError(
                f"{self.name} changed while it was being sent: it ended"
                f" {self._count - self._pos - len(data)} bytes early"
            )
        self._pos += len(data)
        if self._progress is not None and data:
            self._progress(len(data))
        return data

    def seek(self, position: int, whence: int = 0) -> int:
        if whence == 1:
            position += self._pos
        elif whence == 2:
            position += self._count
        if position < self._pos:
            self._undo(self._pos - position)
        self._pos = max(0, min(position, self._count))
        self._f.seek(self._start + self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _undo(self, n: int | None = None) -> None:
        n = self._pos if n is None else n
        if self._progress is not None and n:
            self._progress(-n)  # what was counted will be sent again, or not at all
        if n == self._pos:
            self._pos = 0


_LOADER_LOCK = threading.Lock()
_LOADER = []  # botocore's data loader, shared by this process's sessions once made


def _session(profile: str | None = None):
    """A botocore session (for ``profile``) whose service models come from one loader per
    process: the S3 model and endpoint rules are read from disk once, not per store."""
    import botocore.session

    session = botocore.session.Session(profile=profile)
    with _LOADER_LOCK:
        if _LOADER:
            session.register_component("data_loader", _LOADER[0])
        else:
            _LOADER.append(session.get_component("data_loader"))
    return session


def _create_client(session, **kwargs):
    """``session``'s S3 client, whose responses keep their timestamps as text: trainui reads
    none of them, and parsing one per listed object was most of a listing's CPU (the AWS CLI
    sets the same parser default). Other clients of the session keep botocore's parser."""
    from botocore.parsers import ResponseParserFactory

    factory = ResponseParserFactory()
    factory.set_parser_defaults(timestamp_parser=str)
    default = session.get_component("response_parser_factory")
    session.register_component("response_parser_factory", factory)
    try:
        return session.create_client("s3", **kwargs)
    finally:
        session.register_component("response_parser_factory", default)


def prepare() -> None:
    """Do now what the first S3 store of this process would: import botocore and read the
    S3 model and endpoint rules (an S3 client for a made-up endpoint, which sends nothing).
    The spare learner calls it while it waits for a run."""
    from botocore.config import Config

    client = _create_client(
        _session(),
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="prepare",
        aws_secret_access_key="prepare",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    try:  # botocore's signer, as a store's first download uses it
        client.generate_presigned_url("get_object", {"Bucket": "prepare", "Key": "prepare"})
    finally:
        client.close()


def _code(exc) -> tuple[str, int]:
    """A ClientError's S3 error code and HTTP status."""
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return str(response.get("Error", {}).get("Code") or ""), int(status)


def _network(exc: OSError) -> bool:
    """Whether an OSError raised while reading a body is the network's, not the disk's."""
    import errno

    return isinstance(exc, ConnectionError | TimeoutError) or exc.errno in (
        errno.ECONNRESET,
        errno.ETIMEDOUT,
        errno.EPIPE,
    )


def _said(exc: BaseException, endpoint: str = "") -> str:
    """What went wrong with the network, in a few words (the innermost cause botocore saw);
    ``endpoint``: the manifest's, whose host a virtual-hosted bucket's is under."""
    for error in _causes(exc):
        if isinstance(error, ConnectionRefusedError) or "Connection refused" in str(error):
            return "connection refused"
        if isinstance(error, TimeoutError) or type(error).__name__.endswith("TimeoutError"):
            return "timed out"
        if "Name or service not known" in str(error) or "nodename nor servname" in str(error):
            host = next(
                (
                    urllib.parse.urlsplit(e.kwargs["endpoint_url"]).hostname
                    for e in _causes(exc)
                    if (getattr(e, "kwargs", None) or {}).get("endpoint_url")
                ),
                None,
            )  # the host botocore tried to reach
            parent = urllib.parse.urlsplit(endpoint).hostname if endpoint else None
            if host and parent and host.endswith("." + parent):
                return (
                    f"the host name {host} does not resolve (addressing_style: virtual puts the "
                    "bucket's name in the host's; addressing_style: path does not)"
                )
            return (
                f"the host name {host} does not resolve"
                if host
                else ("the host name does not resolve")
            )
    return str(exc) or type(exc).__name__


def _causes(exc: BaseException):
    """``exc`` and what caused it, each once: botocore's wrapped ``error``, ``__cause__``,
    ``__context__``."""
    seen = set()
    stack = [exc]
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        kwargs = getattr(error, "kwargs", None) or {}
        stack.extend((kwargs.get("error"), error.__cause__, error.__context__))
