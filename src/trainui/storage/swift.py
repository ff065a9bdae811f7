"""The ``bluemix_objectstore`` store: a container of OpenStack Swift, via python-swiftclient.

Authentication is v1 (tempauth) when the ``auth_url`` ends in ``/auth/v1.0``, Keystone v3
otherwise (``domain_name``, ``project_id``, ``region``). Listing, checks and uploads go through
swiftclient, one connection per thread; files larger than a segment are uploaded as a Static
Large Object, segments in parallel. Downloads use swiftclient's token and are streamed by
``trainui.storage.stream`` (resumed, retried, checked).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping

from trainui.core.urls import masked_url, without_userinfo
from trainui.storage import ObjectInfo, ObjectStore, Progress, StoreError, stream

SEGMENT_BYTES = 256 << 20  # files larger than this are uploaded as an SLO of such segments
SEGMENT_THREADS = 4
LIST_PAGE = 10000
WRITE_CHECK_KEY = ".trainui-write-check"


def segment_bytes() -> int:
    """TRAINUI_SWIFT_SEGMENT_BYTES, default 256 MiB."""
    try:
        return max(1, int(os.environ.get("TRAINUI_SWIFT_SEGMENT_BYTES", SEGMENT_BYTES)))
    except ValueError:
        return SEGMENT_BYTES


class SwiftStore(ObjectStore):
    """Container ``container`` of the account the connection logs in to."""

    def __init__(self, container: str, connection: Mapping[str, str]) -> None:
        missing = [k for k in ("auth_url", "user_name", "password") if not connection.get(k)]
        if missing:
            raise StoreError(
                f"the bluemix_objectstore connection of container '{container}' has no {missing[0]}"
            )
        self.bucket = container
        # Swift takes no credentials in a URL: any there (a run recorded before the manifest
        # refused them) are never shown, and never sent
        self._auth_url = without_userinfo(connection["auth_url"])  # for the client libraries
        self.auth_url = masked_url(connection["auth_url"])  # for messages
        self.user = connection["user_name"]
        self._password = connection["password"]
        self.v1 = self.auth_url.rstrip("/").endswith("/auth/v1.0")
        self.options: dict[str, str] = {}
        if not self.v1:
            domain = connection.get("domain_name") or "Default"
            self.options = {"user_domain_name": domain, "project_domain_name": domain}
            if connection.get("project_id"):
                self.options["project_id"] = connection["project_id"]
        if connection.get("region"):
            self.options["region_name"] = connection["region"]
        self.description = f"Swift container '{container}' at {self.auth_url}"
        account = self.options.get("project_id") or self.user
        self.cache_id = (
            f"swift {self.auth_url} {account} {self.options.get('region_name', '')} {container}"
        )
        self._lock = threading.Lock()
        self._local = threading.local()
        self._token: tuple[str, str] | None = None  # storage URL, token
        self._session = None  # Keystone v3: a keystoneauth1 session
        self._endpoint: stream.Endpoint | None = None

    def __repr__(self) -> str:  # never the password
        return f"SwiftStore({self.bucket!r}, {self.auth_url!r})"

    # ------------------------------------------------------------------------ connections

    def _conn(self):
        """This thread's swiftclient connection (they are not thread-safe)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            url, token = self._auth()
            conn = self._local.conn = self._new_conn(url, token)
        return conn

    def _new_conn(self, url: str | None = None, token: str | None = None):
        from swiftclient.client import Connection

        _quiet_swiftclient()
        return Connection(
            session=self._session,  # made by _auth first, for Keystone v3
            authurl=self._auth_url,
            user=self.user,
            key=self._password,
            auth_version="1" if self.v1 else "3",
            os_options=dict(self.options),
            retries=max(0, (self.attempts or stream.attempts()) - 1),
            starting_backoff=stream.BACKOFF,
            max_backoff=stream.MAX_BACKOFF,
            timeout=self.timeout or stream.TIMEOUT,
            preauthurl=url,
            preauthtoken=token,
        )

    def _keystone(self):
        """A keystoneauth1 session for Keystone v3 (swiftclient alone would want the
        deprecated python-keystoneclient for it)."""
        with self._lock:
            if self._session is None:
                from keystoneauth1 import session
                from keystoneauth1.identity import v3

                options = self.options
                auth = v3.Password(
                    auth_url=self._auth_url,
                    username=self.user,
                    password=self._password,
                    user_domain_name=options["user_domain_name"],
                    project_id=options.get("project_id"),
                    project_domain_name=options["project_domain_name"],
                )
                self._session = session.Session(auth=auth, timeout=self.timeout or stream.TIMEOUT)
            return self._session

    def _auth(self, renew: bool = False) -> tuple[str, str]:
        if renew and self._session is not None:
            self._session.invalidate()
        if not self.v1:
            self._keystone()
        with self._lock:
            if self._token is None or renew:
                conn = self._new_conn()
                try:
                    self._token = conn.get_auth()
                except Exception as exc:
                    raise self._error(exc, "log in to") from None
                finally:
                    conn.close()
                self._endpoint = None
            if self._endpoint is None:
                self._endpoint = stream.Endpoint(self._token[0])
            return self._token

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._endpoint is not None:
            self._endpoint.discard()

    # --------------------------------------------------------------------------- reading

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        marker = ""
        while True:
            try:
                _headers, items = self._conn().get_container(
                    self.bucket, marker=marker, limit=LIST_PAGE, prefix=prefix or None
                )
            except Exception as exc:
                raise self._error(exc, "list") from None
            if not items:
                return
            for item in items:
                if "name" not in item:
                    continue
                # An SLO's listed hash is the MD5 of its manifest; its ETag (slo_etag) still
                # tells versions apart, for the cache, and is not checked as an MD5 (the
                # answer says it is an SLO).
                etag = (item.get("slo_etag") or item.get("hash") or "").strip('"')
                yield ObjectInfo(item["name"], int(item.get("bytes", 0)), etag)
            marker = items[-1].get("name", "")
            if len(items) < LIST_PAGE:
                return

    def download(
        self, key: str, dest: str, info: ObjectInfo | None = None, progress: Progress | None = None
    ) -> int:
        self._auth()
        endpoint = self._endpoint
        assert endpoint is not None
        what = f"object {key!r} of {self.description}"
        etag = info.etag if info is not None else ""
        return stream.fetch(
            lambda offset: self._open(key, offset, etag, info is not None),
            endpoint,
            dest,
            what,
            size=info.size if info is not None else None,
            md5=stream.md5_of(etag),
            progress=progress,
        )

    def _open(self, key: str, offset: int, etag: str, listed: bool):
        url, token = self._auth()
        endpoint = self._endpoint
        assert endpoint is not None
        path = urllib.parse.urlsplit(url).path.rstrip("/")
        target = f"{path}/{_quote(self.bucket)}/{_quote(key)}"
        headers = {"X-Auth-Token": token}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if etag:
                headers["If-Match"] = etag
        response = endpoint.request("GET", target, headers)
        if response.status in (200, 206):
            return response
        stream.error_body(response, endpoint)
        status = response.status
        if status == 401:
            self._auth(renew=True)  # the token expired: a new one, then try again
            raise stream.Transient("the token was refused")
        if status == 404:
            if listed:
                raise StoreError(
                    f"object {key!r} no longer exists in {self.description}:"
                    " it was deleted after the container was listed"
                )
            raise StoreError(f"object {key!r} does not exist in {self.description}")
        if status == 412:
            raise StoreError(
                f"object {key!r} of {self.description} changed while it was being downloaded"
            )
        if status >= 500 or status in (408, 429, 498):
            raise stream.Transient(f"the server answered HTTP {status}")
        raise StoreError(self._refusal(status, "read"))

    # --------------------------------------------------------------------------- writing

    def upload(self, src: str, key: str, progress: Progress | None = None) -> None:
        size = os.path.getsize(src)
        try:
            if size > segment_bytes():
                self._upload_segmented(src, key, size, progress)
                return
            with open(src, "rb") as f:
                body = _Counted(f, progress)
                etag = self._conn().put_object(self.bucket, key, body, content_length=size)
            self._check_etag(key, etag, body)
        except (StoreError, OSError):
            raise
        except Exception as exc:
            raise self._error(exc, "write to") from None

    def _upload_segmented(self, src: str, key: str, size: int, progress: Progress | None) -> None:
        """A Static Large Object: segments in ``<container>_segments``, then the manifest."""
        segment = segment_bytes()
        segments_container = f"{self.bucket}_segments"
        self._conn().put_container(segments_container)
        stamp = f"{time.time():.6f}"
        count = (size + segment - 1) // segment
        names = [f"{key}/slo/{stamp}/{size}/{segment}/{i:08d}" for i in range(count)]
        etags: list[str | None] = [None] * count
        errors: list[BaseException] = []
        next_index = iter(range(count))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    i = None if errors else next(next_index, None)
                if i is None:
                    return
                length = min(segment, size - i * segment)
                try:
                    with open(src, "rb") as f:
                        f.seek(i * segment)
                        body = _Counted(_Window(f, length), progress)
                        etags[i] = self._conn().put_object(
                            segments_container, names[i], body, content_length=length
                        )
                    self._check_etag(f"{key} (segment {i + 1} of {count})", etags[i], body)
                except BaseException as exc:
                    with lock:
                        errors.append(exc)
                    return
                finally:
                    self.close_thread()

        threads = [threading.Thread(target=work) for _ in range(min(SEGMENT_THREADS, count))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        manifest = [
            {
                "path": f"/{segments_container}/{name}",
                "etag": etag,
                "size_bytes": min(segment, size - i * segment),
            }
            for i, (name, etag) in enumerate(zip(names, etags, strict=True))
        ]
        self._conn().put_object(
            self.bucket, key, json.dumps(manifest), query_string="multipart-manifest=put"
        )

    def _check_etag(self, key: str, etag: str | None, body: _Counted) -> None:
        sent = body.md5.hexdigest()
        if etag and stream.md5_of(etag) and stream.md5_of(etag) != sent:
            raise StoreError(
                f"object {key!r} arrived corrupted in {self.description}: the server stored"
                f" MD5 {stream.md5_of(etag)}, trainui sent {sent}"
            )

    def close_thread(self) -> None:
        """Close the calling thread's connection (a thread that ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def check(self, write: bool = False) -> None:
        if not write:
            try:
                self._conn().get_container(self.bucket, limit=1)
            except Exception as exc:
                raise self._error(exc, "list") from None
            return
        try:
            self._conn().put_object(self.bucket, WRITE_CHECK_KEY, b"")
        except Exception as exc:
            raise self._error(exc, "write to") from None
        with contextlib.suppress(Exception):
            self._conn().delete_object(self.bucket, WRITE_CHECK_KEY)

    # ---------------------------------------------------------------------------- errors

    def _error(self, exc: BaseException, action: str) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        status = getattr(exc, "http_status", None) or getattr(exc, "http_code", None) or 0
        if action == "log in to" and status in (401, 403):
            return StoreError(
                f"{self.auth_url} refused to log in user '{self.user}' to reach container"
                f" '{self.bucket}': wrong user name or password"
            )
        if action == "log in to" and status:
            return StoreError(
                f"logging in to {self.auth_url} as user '{self.user}' to reach container"
                f" '{self.bucket}' failed with HTTP {status}: is auth_url right?"
            )
        if status:
            return StoreError(self._refusal(int(status), action))
        reason = _unreachable_reason(exc)
        return StoreError(
            f"cannot {action} {self.description}: the server cannot be reached ({reason})"
        )

    def _refusal(self, status: int, action: str) -> str:
        if status == 404:
            return f"container '{self.bucket}' does not exist at {self.auth_url}"
        where = f"{self.auth_url} refused to {action} container '{self.bucket}'"
        if status in (401, 403):
            return f"{where}: access denied to user '{self.user}'"
        return f"{where}: HTTP {status}"


class _Window:
    """``length`` bytes of an open file from its current position (one SLO segment)."""

    def __init__(self, f, length: int) -> None:
        self._f = f
        self._start = f.tell()
        self._left = length
        self._length = length

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def tell(self) -> int:
        return self._length - self._left

    def seek(self, pos: int, whence: int = 0) -> None:
        self._f.seek(self._start + pos)
        self._left = self._length - pos


class _Counted:
    """A file-like object that reports what is read from it (negative when a retry rewinds)
    and the MD5 of it, to check against the ETag the server answers."""

    def __init__(self, f, progress: Progress | None) -> None:
        self._f = f
        self._progress = progress
        self._done = 0
        self.md5 = hashlib.md5()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if data:
            self.md5.update(data)
            self._done += len(data)
            if self._progress is not None:
                self._progress(len(data))
        return data

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, pos: int, whence: int = 0) -> None:
        self._f.seek(pos, whence)
        if self._progress is not None and self._done:
            self._progress(-self._done)
        self._done = 0
        self.md5 = hashlib.md5()


def _quote(name: str) -> str:
    return urllib.parse.quote(name.encode("utf-8"), safe="/")


def _unreachable_reason(exc: BaseException) -> str:
    text = str(exc)
    for reason in ("Connection refused", "timed out", "Name or service not known"):
        if reason.lower() in text.lower():
            return reason.lower()
    return text.splitlines()[0] if text else type(exc).__name__


def _quiet_swiftclient() -> None:
    # swiftclient logs every failed request with a traceback; the learner reports them itself
    import logging

    logging.getLogger("swiftclient").setLevel(logging.CRITICAL)
