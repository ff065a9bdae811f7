"""The ``s3`` store: a bucket on any S3-compatible server (IBM COS, Ceph, MinIO, AWS).

Path-style addressing, which every non-AWS server takes. Every request is signed here (AWS
Signature Version 4 with an unsigned payload, as boto3 signs over HTTPS) and sent on
``trainui.storage.stream``'s connections: listing, checks, downloads (streamed into files,
resumed after a cut) and uploads (a file's bytes go from the page cache to the socket with
``sendfile``; files over ``MULTIPART_THRESHOLD`` in parts, in parallel, retried part by part,
the upload aborted on failure once no part is under way, as ``aws s3 cp`` does). boto3 costs
about 0.3 s to import and set up, several times more CPU per request than the transfer itself,
and over plain HTTP it hashes every byte it sends (SHA-256 of the payload): on 2 cores storing
a 1 GiB folder was no faster than ``aws s3 sync``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping

from trainui.core.urls import masked_url
from trainui.storage import (
    ObjectInfo,
    ObjectStore,
    Progress,
    StoreError,
    stream,
    transfer_threads,
)

DEFAULT_REGION = "us-east-1"
MULTIPART_THRESHOLD = 64 << 20  # files larger than this are uploaded in parts, in parallel
PART_SIZE = 16 << 20
WRITE_CHECK_KEY = ".trainui-write-check"

_XML_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_UNRESERVED = "-_.~"


class S3Store(ObjectStore):
    """Bucket ``bucket`` at the connection's ``endpoint_url``."""

    def __init__(self, bucket: str, connection: Mapping[str, str]) -> None:
        missing = [
            k
            for k in ("endpoint_url", "aws_access_key_id", "aws_secret_access_key")
            if not connection.get(k)
        ]
        if missing:
            raise StoreError(f"the s3 connection of bucket '{bucket}' has no {missing[0]}")
        self.bucket = bucket
        # S3 takes no credentials in a URL: any there (a run recorded before the manifest
        # refused them) are never shown, and never sent
        self.endpoint_url = masked_url(connection["endpoint_url"].rstrip("/"))
        self.key_id = connection["aws_access_key_id"]
        self._secret = connection["aws_secret_access_key"]
        self.region = connection.get("region") or DEFAULT_REGION
        self.endpoint = stream.Endpoint(self.endpoint_url)  # StoreError unless http(s)://host
        self.description = f"S3 bucket '{bucket}' at {self.endpoint_url}"
        self.cache_id = f"s3 {self.endpoint_url} {bucket}"
        parts = urllib.parse.urlsplit(self.endpoint_url)
        self._base_path = parts.path.rstrip("/")
        self._host = self.endpoint.host_header
        self._signing_keys: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._parts = None  # the thread pool for parts of large files
        self._unaborted: list[tuple[str, str]] = []  # (key, upload ID) whose abort failed

    def __repr__(self) -> str:  # never the secret
        return f"S3Store({self.bucket!r}, {self.endpoint_url!r})"

    # --------------------------------------------------------------------------- signing

    def _sign(
        self, method: str, key: str | None, query: Mapping[str, str] = (), headers=()
    ) -> tuple[str, dict[str, str]]:
        """The request target and headers of a request signed with AWS Signature Version 4
        (header auth, unsigned payload: as boto3 signs over HTTPS)."""
        path = f"{self._base_path}/{self.bucket}"
        if key is not None:
            path += "/" + key
        uri = urllib.parse.quote(path.encode("utf-8"), safe="/" + _UNRESERVED)
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = amz_date[:8]
        scope = f"{day}/{self.region}/s3/aws4_request"
        canonical_query = "&".join(
            f"{_quote(k)}={_quote(v)}" for k, v in sorted(dict(query).items())
        )
        signed = (
            f"host:{self._host}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{amz_date}\n"
        )
        names = "host;x-amz-content-sha256;x-amz-date"
        canonical = "\n".join((method, uri, canonical_query, signed, names, "UNSIGNED-PAYLOAD"))
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256)
        out = dict(headers)
        out.update(
            {
                "X-Amz-Date": amz_date,
                "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD",
                "Authorization": f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope},"
                f" SignedHeaders={names}, Signature={signature.hexdigest()}",
            }
        )
        return f"{uri}?{canonical_query}" if canonical_query else uri, out

    def _signing_key(self, day: str) -> bytes:
        key = self._signing_keys.get(day)
        if key is None:
            key = ("AWS4" + self._secret).encode("utf-8")
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
            self._signing_keys = {day: key}
        return key

    def _request(
        self,
        method: str,
        key: str | None,
        query=(),
        headers=(),
        action="read",
        body: bytes | None = None,
        upload: tuple[str, int, int, Progress | None] | None = None,
        tries: int | None = None,
    ):
        """A signed request with retries; the response (2xx) or StoreError. The body is
        ``body``, or with ``upload`` (path, offset, count, progress) that part of a file, sent
        from the page cache with ``sendfile`` (each try opens the file again)."""
        tries = tries or self.attempts or stream.attempts()
        if self.timeout:
            self.endpoint.timeout = self.timeout
        headers = dict(headers)
        if body is not None:
            headers["Content-Length"] = str(len(body))
        for attempt in range(1, tries + 1):
            try:
                if upload is None:
                    target, signed = self._sign(method, key, query, headers)
                    response = self.endpoint.request(method, target, signed, body)
                else:
                    path, offset, count, progress = upload
                    with open(path, "rb") as f:
                        headers["Content-Length"] = str(count)
                        target, signed = self._sign(method, key, query, headers)
                        region = stream.FileRegion(f, offset, count, progress)
                        response = self.endpoint.request(method, target, signed, region)
                if response.status < 300:
                    return response
                answer = stream.error_body(response, self.endpoint)
                match = _XML_CODE.search(answer)
                code = match.group(1).decode("utf-8", "replace") if match else ""
                if response.status >= 500 or response.status in (408, 429):
                    raise stream.Transient(f"the server answered HTTP {response.status} {code}")
                raise StoreError(self._refusal(response.status, code, action))
            except stream.Transient as exc:
                if attempt == tries:
                    raise StoreError(
                        f"cannot {action} {self.description}: {exc} (after {tries} tries)"
                    ) from None
                time.sleep(stream.backoff(attempt))
        raise AssertionError("unreachable")

    # --------------------------------------------------------------------------- reading

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        from xml.etree import ElementTree

        query = {"list-type": "2", "encoding-type": "url", "max-keys": "1000"}
        if prefix:
            query["prefix"] = prefix
        while True:
            response = self._request("GET", None, query, action="list")
            body = response.read()
            try:
                root = ElementTree.fromstring(body)
            except ElementTree.ParseError as exc:
                raise StoreError(
                    f"{self.endpoint_url} answered the listing of bucket '{self.bucket}'"
                    f" with something that is not S3 XML ({exc})"
                ) from None
            ns = _NS if root.tag.startswith(_NS) else ""
            encoded = (root.findtext(f"{ns}EncodingType") or "").lower() == "url"
            for item in root.iter(f"{ns}Contents"):
                key = item.findtext(f"{ns}Key") or ""
                if encoded:
                    key = urllib.parse.unquote_plus(key)
                size = int(item.findtext(f"{ns}Size") or 0)
                yield ObjectInfo(key, size, (item.findtext(f"{ns}ETag") or "").strip('"'))
            token = root.findtext(f"{ns}NextContinuationToken")
            if (root.findtext(f"{ns}IsTruncated") or "").lower() != "true" or not token:
                return
            query["continuation-token"] = token

    def download(
        self, key: str, dest: str, info: ObjectInfo | None = None, progress: Progress | None = None
    ) -> int:
        etag = info.etag if info is not None else ""
        return stream.fetch(
            lambda offset: self._open(key, offset, etag, listed=info is not None),
            self.endpoint,
            dest,
            f"object {key!r} of {self.description}",
            size=info.size if info is not None else None,
            md5=stream.md5_of(etag),
            progress=progress,
        )

    def _open(self, key: str, offset: int, etag: str, listed: bool):
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if etag:
                headers["If-Match"] = f'"{etag}"'
        response = self.endpoint.request("GET", *self._sign("GET", key, (), headers))
        if response.status in (200, 206):
            return response
        body = stream.error_body(response, self.endpoint)
        match = _XML_CODE.search(body)
        code = match.group(1).decode("utf-8", "replace") if match else ""
        status = response.status
        if status == 404 and code != "NoSuchBucket":
            if listed:
                raise StoreError(
                    f"object {key!r} no longer exists in {self.description}:"
                    " it was deleted after the bucket was listed"
                )
            raise StoreError(f"object {key!r} does not exist in {self.description}")
        if status == 412:
            raise StoreError(
                f"object {key!r} of {self.description} changed while it was being downloaded"
            )
        if status >= 500 or status in (408, 429):
            raise stream.Transient(f"the server answered HTTP {status} {code}".rstrip())
        raise StoreError(self._refusal(status, code, "read"))

    def check(self, write: bool = False) -> None:
        if not write:
            self._request("GET", None, {"list-type": "2", "max-keys": "1"}, action="list").read()
            return
        response = self._request(
            "PUT", WRITE_CHECK_KEY, headers={"Content-Length": "0"}, action="write to"
        )
        response.read()
        with contextlib.suppress(StoreError):  # may write but not delete: the probe stays
            self._request("DELETE", WRITE_CHECK_KEY, action="write to").read()

    # --------------------------------------------------------------------------- writing

    def upload(self, src: str, key: str, progress: Progress | None = None) -> None:
        size = os.path.getsize(src)
        if size <= MULTIPART_THRESHOLD:
            upload = (src, 0, size, progress)
            self._request("PUT", key, action="write to", upload=upload).read()
            return
        upload_id = self._start_multipart(key)
        parts = []
        try:
            pool = self._part_pool()
            for number, offset in enumerate(range(0, size, PART_SIZE), 1):
                part = (src, offset, min(PART_SIZE, size - offset), progress)
                parts.append(pool.submit(self._send_part, key, upload_id, number, part))
            etags = [part.result() for part in parts]
            self._complete_multipart(key, upload_id, etags)
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

    def _abort(self, key: str, upload_id: str) -> bool:
        """Abort a multipart upload; False (and it is tried again at close) if it failed."""
        try:
            query = {"uploadId": upload_id}
            self._request("DELETE", key, query, action="write to").read()
            return True
        except Exception:
            with self._lock:
                self._unaborted.append((key, upload_id))
            return False

    def _start_multipart(self, key: str) -> str:
        answer = self._request("POST", key, {"uploads": ""}, action="write to").read()
        match = re.search(rb"<UploadId>([^<]+)</UploadId>", answer)
        if not match:
            raise StoreError(
                f"{self.endpoint_url} did not start a multipart upload of {key!r} to bucket"
                f" '{self.bucket}' (no UploadId in its answer)"
            )
        return match.group(1).decode()

    def _send_part(self, key: str, upload_id: str, number: int, part: tuple) -> str:
        query = {"partNumber": str(number), "uploadId": upload_id}
        response = self._request("PUT", key, query, action="write to", upload=part)
        response.read()
        etag = response.getheader("ETag")
        if not etag:
            raise StoreError(f"{self.endpoint_url} gave part {number} of {key!r} no ETag")
        return etag

    def _complete_multipart(self, key: str, upload_id: str, etags: list[str]) -> None:
        from xml.sax.saxutils import escape

        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
            for n, etag in enumerate(etags, 1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        query = {"uploadId": upload_id}
        answer = self._request("POST", key, query, action="write to", body=body).read()
        if b"<Error>" in answer:  # S3 may answer 200 and fail the completion in the body
            match = _XML_CODE.search(answer)
            code = match.group(1).decode("utf-8", "replace") if match else "unknown error"
            raise StoreError(f"{self.endpoint_url} did not complete the upload of {key!r}: {code}")

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
        for key, upload_id in unaborted:  # the server may be back since (one try each)
            with contextlib.suppress(Exception):
                self._request("DELETE", key, {"uploadId": upload_id}, tries=1).read()
        self.endpoint.discard()

    # ---------------------------------------------------------------------------- errors

    def _refusal(self, status: int, code: str, action: str) -> str:
        where = f"{self.endpoint_url} refused to {action} bucket '{self.bucket}'"
        key = f"the access key ID '{self.key_id}'"
        if code == "NoSuchBucket":
            return f"bucket '{self.bucket}' does not exist at {self.endpoint_url}"
        if status == 404 and not code:  # S3 servers say NoSuchBucket: this is something else
            return (
                f"{self.endpoint_url} answered HTTP 404 without an S3 error to {action} bucket"
                f" '{self.bucket}': is endpoint_url the address of an S3 server?"
            )
        if code in ("InvalidAccessKeyId", "InvalidClientTokenId"):
            return f"{where}: it does not know {key}"
        if code == "SignatureDoesNotMatch":
            return f"{where}: the secret access key is not the one of {key}"
        if code in ("AccessDenied", "AllAccessDisabled") or status in (401, 403):
            return f"{where}: access denied to {key}"
        detail = " ".join(p for p in (str(status or ""), code) if p)
        return f"{where}: {detail or 'unknown error'}"


def _quote(text: str) -> str:
    return urllib.parse.quote(text.encode("utf-8"), safe=_UNRESERVED)
