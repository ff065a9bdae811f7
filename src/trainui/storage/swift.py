"""The ``bluemix_objectstore`` store: a container of OpenStack Swift, via python-swiftclient.

Authentication is v1 (tempauth) when the ``auth_url`` ends in ``/auth/v1.0``, Keystone v3
otherwise (``domain_name``, ``project_id``, ``region``). Every request goes through a
swiftclient ``Connection``, one per thread, with its retries and backoff; the connections of a
store share one login, and a token the server refuses (it expired during a long run) is renewed
once for all of them. A download cut short is resumed where it stopped (swiftclient asks for
the rest with a ``Range``); a file larger than ``TRAINUI_SWIFT_SEGMENT_BYTES`` is uploaded by
swiftclient's ``SwiftService`` as a Static Large Object, segments in parallel and checked.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping

from trainui.core.urls import masked_url, without_userinfo
from trainui.storage import ObjectInfo, ObjectStore, Progress, StoreError, setting

SEGMENT_THREADS = 4  # segments of one large object uploaded at once
LIST_PAGE = 10000
CHUNK = 1 << 20  # bytes read from a download at a time
BACKOFF, MAX_BACKOFF = 0.25, 4.0  # seconds before the 2nd try of a request, doubled up to this
TIMEOUT = 60.0  # seconds without a byte before a connection counts as dead
WRITE_CHECK_KEY = ".trainui-write-check"
_MD5 = re.compile(r"^[0-9a-f]{32}$")


def _md5_of(etag: str | None) -> str | None:
    """The MD5 an ETag stands for, or None (a large object's ETag is not one)."""
    etag = (etag or "").strip('"').lower()
    return etag if _MD5.match(etag) else None


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
        self._conns: list = []  # every connection made, to close them all
        self._token: tuple[str, str] | None = None  # storage URL, token: shared by all
        self._token_at = 0.0  # when it was had (time.time(), as swiftclient's times)
        self._session = None  # Keystone v3: a keystoneauth1 session
        self.logins = 0  # how many times the store logged in (the first, then renewals)

    def __repr__(self) -> str:  # never the password
        return f"SwiftStore({self.bucket!r}, {self.auth_url!r})"

    # ------------------------------------------------------------------------ connections

    def _attempts(self) -> int:
        return self.attempts or setting("store_attempts")

    def _conn(self):
        """This thread's swiftclient connection (they are not thread-safe)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._new_conn()
            with self._lock:
                self._conns.append(conn)
        return conn

    def _new_conn(self):
        """A connection that logs in through the store (for this store's threads and for
        SwiftService's)."""
        _quiet_swiftclient()
        if not self.v1:
            self._keystone()
        conn = _connection_class()(
            session=self._session,
            authurl=self._auth_url,
            user=self.user,
            key=self._password,
            auth_version="1" if self.v1 else "3",
            os_options=dict(self.options),
            retries=self._attempts() - 1,
            starting_backoff=BACKOFF,
            max_backoff=MAX_BACKOFF,
            timeout=self.timeout or TIMEOUT,
        )
        conn.store = self
        return conn

    def _keystone(self) -> None:
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
                self._session = session.Session(auth=auth, timeout=self.timeout or TIMEOUT)

    def _login(self, since: float) -> tuple[str, str]:
        """The storage URL and token: the store's, or a new one when there is none yet or the
        store's was had before ``since``, when the server refused a token (it had expired)."""
        from requests import RequestException
        from swiftclient.client import ClientException, get_auth

        with self._lock:
            if self._token is None or self._token_at < since:
                try:
                    self._token = get_auth(
                        self._auth_url,
                        self.user,
                        self._password,
                        session=self._session,
                        auth_version="1" if self.v1 else "3",
                        os_options=dict(self.options),
                        timeout=self.timeout or TIMEOUT,
                    )
                except (ClientException, RequestException, OSError) as exc:
                    status = getattr(exc, "http_status", None) or 0
                    if status and status < 500:  # refused: no use trying again
                        raise self._error(exc, "log in to") from None
                    raise  # swiftclient tries again
                except Exception as exc:  # keystoneauth's
                    raise self._error(exc, "log in to") from None
                self._token_at = time.time()
                self.logins += 1
            return self._token

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()

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
            for item in items:
                if "name" not in item:
                    continue
                # An SLO's listed hash is the MD5 of its manifest; its ETag (slo_etag) still
                # tells versions apart, for the cache, and is not checked as an MD5 (the
                # answer says it is an SLO).
                etag = (item.get("slo_etag") or item.get("hash") or "").strip('"')
                yield ObjectInfo(item["name"], int(item.get("bytes", 0)), etag)
            if len(items) < LIST_PAGE:
                return
            marker = items[-1].get("name", "")

    def download(
        self, key: str, dest: str, info: ObjectInfo | None = None, progress: Progress | None = None
    ) -> int:
        what = f"object {key!r} of {self.description}"
        parent = os.path.dirname(dest)
        if parent:
            os.makedirs(parent, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        done = 0
        try:
            try:
                # a body cut short is resumed by swiftclient: a Range (and If-Match) request
                headers, body = self._conn().get_object(self.bucket, key, resp_chunk_size=CHUNK)
            except Exception as exc:
                raise self._download_error(exc, key, what, info is not None) from None
            large = headers.get("x-static-large-object", "").lower() == "true"
            dynamic = bool(headers.get("x-object-manifest"))  # listed with its manifest's size
            size = int(headers.get("content-length", -1))
            etag = headers.get("etag", "").strip('"')
            md5 = None if large or dynamic else _md5_of(etag)
            changed = info is not None and (
                info.size != size or (md5 and _md5_of(info.etag) not in (None, md5))
            )
            if changed and not dynamic and size >= 0:
                raise StoreError(
                    f"{what} changed after the bucket was listed: it is now {size} bytes"
                    f" with ETag {etag}, listed as {info.size} bytes with ETag {info.etag}"
                )
            digest = hashlib.md5() if md5 else None
            while True:
                try:
                    chunk = body.read(CHUNK)
                except Exception as exc:
                    raise self._download_error(exc, key, what, info is not None) from None
                if not chunk:
                    break
                if digest is not None:
                    digest.update(chunk)
                written = 0
                while written < len(chunk):
                    written += os.write(fd, chunk[written:])
                done += len(chunk)
                if progress is not None:
                    progress(len(chunk))
            if size >= 0 and done != size:
                raise StoreError(
                    f"{what} could not be downloaded after {self._attempts()} tries: the"
                    f" connection closed after {done} of {size} bytes"
                )
            if digest is not None and digest.hexdigest() != md5:
                raise StoreError(
                    f"{what} arrived corrupted: its MD5 is {digest.hexdigest()},"
                    f" its ETag says {md5}"
                )
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(dest)
            if progress is not None and done:
                with contextlib.suppress(Exception):
                    progress(-done)  # what was counted for the removed file
            raise
        os.close(fd)
        return done

    def _download_error(self, exc: BaseException, key: str, what: str, listed: bool) -> StoreError:
        status = getattr(exc, "http_status", None) or 0
        if status == 404:
            if listed:
                return StoreError(
                    f"object {key!r} no longer exists in {self.description}:"
                    " it was deleted after the container was listed"
                )
            return StoreError(f"object {key!r} does not exist in {self.description}")
        if status == 412:
            return StoreError(f"{what} changed while it was being downloaded")
        if status and not (status >= 500 or status in (408, 429, 498)):
            return self._error(exc, "read")
        reason = f"HTTP {status}" if status else _unreachable_reason(exc)
        tries = self._attempts()
        return StoreError(f"{what} could not be downloaded after {tries} tries: {reason}")

    # --------------------------------------------------------------------------- writing

    def delete(self, key: str) -> None:
        conn = self._conn()
        try:
            headers = conn.head_object(self.bucket, key)
            large = str(headers.get("x-static-large-object", "")).lower() == "true"
            # a large object's segments go with its manifest
            query = "multipart-manifest=delete" if large else None
            conn.delete_object(self.bucket, key, query_string=query)
        except Exception as exc:
            if getattr(exc, "http_status", None) == 404:  # gone already
                return
            raise self._error(exc, "delete from") from None

    def upload(self, src: str, key: str, progress: Progress | None = None) -> None:
        size = os.path.getsize(src)
        segment = setting("swift_segment_bytes")
        try:
            if size > segment:
                self._upload_slo(src, key, segment, progress)
                return
            from swiftclient.utils import LengthWrapper

            with open(src, "rb") as f:
                body = LengthWrapper(f, size, md5=True)  # rewound (md5 too) for a retry
                told = _Reported(body, progress) if progress is not None else body
                etag = self._conn().put_object(self.bucket, key, told, content_length=size)
        except Exception as exc:
            if isinstance(exc, OSError) and exc.filename is not None:
                raise  # the local file's (requests' errors are OSErrors too, with no file)
            raise self._error(exc, "write to") from None
        sent = body.get_md5sum()
        if _md5_of(etag) not in (None, sent):
            raise StoreError(
                f"object {key!r} arrived corrupted in {self.description}: the server stored"
                f" MD5 {_md5_of(etag)}, trainui sent {sent}"
            )

    def _upload_slo(self, src: str, key: str, segment: int, progress: Progress | None) -> None:
        """A Static Large Object by SwiftService: segments in ``<container>_segments``, each
        checked against its MD5, then the manifest; an older version's segments go."""
        from swiftclient.multithreading import MultiThreadingManager
        from swiftclient.service import SwiftService, SwiftUploadObject

        self._conn().put_container(f"{self.bucket}_segments")
        options = {
            "segment_size": segment,
            "use_slo": True,
            "checksum": True,
            "leave_segments": False,
            "skip_container_put": True,
            "segment_threads": SEGMENT_THREADS,
        }
        service = SwiftService(options)
        made: list = []  # its connections are the store's: one login, renewed once for all

        def connect():
            made.append(self._new_conn())
            made[-1].progress = progress  # the segments' bytes, as they go
            return made[-1]

        service.thread_manager = MultiThreadingManager(
            connect,
            segment_threads=SEGMENT_THREADS,
            object_dd_threads=SEGMENT_THREADS,
            object_uu_threads=1,
            container_threads=1,
        )
        try:
            with service:
                upload = [SwiftUploadObject(src, object_name=key)]
                for result in service.upload(self.bucket, upload):
                    if not result["success"]:
                        error = result.get("error")
                        if isinstance(error, Exception) and (
                            getattr(error, "http_status", None) or isinstance(error, OSError)
                        ):
                            raise error
                        raise StoreError(
                            f"object {key!r} could not be stored in {self.description}: {error}"
                        )
        finally:
            for conn in made:
                conn.close()

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


class _Reported:
    """A swiftclient ``LengthWrapper`` that tells ``progress`` of the bytes read from it
    (negative when a retry rewinds it)."""

    def __init__(self, body, progress: Progress) -> None:
        self._body, self._progress, self._done = body, progress, 0

    def __len__(self) -> int:
        return len(self._body)

    def read(self, n: int = -1) -> bytes:
        data = self._body.read(n)
        if data:
            self._done += len(data)
            self._progress(len(data))
        return data

    def reset(self) -> None:
        self._body.reset()
        if self._done:
            self._progress(-self._done)
        self._done = 0


@functools.cache
def _connection_class():
    """swiftclient's Connection, logging in through its store (imported when first used)."""
    from swiftclient.client import Connection

    class SharedLogin(Connection):
        """Every request carries the store's newest token; one that the server refused (it
        expired) is renewed through the store, once for all its connections."""

        store: SwiftStore
        _refused = True  # no token yet, or the server refused it (swiftclient sets None)
        _asked = False  # has it asked the store for a token before
        progress: Progress | None = None  # set for SwiftService's: told of segments' bytes

        @property
        def token(self) -> str | None:
            token = self.store._token
            return None if self._refused or token is None else token[1]

        @token.setter
        def token(self, value: str | None) -> None:
            self._refused = value is None

        def put_object(self, container, obj, contents, *args, **kwargs):
            if self.progress is not None and hasattr(contents, "reset"):  # a segment
                contents = _Reported(contents, self.progress)
            return super().put_object(container, obj, contents, *args, **kwargs)

        def get_auth(self):  # swiftclient calls it first, and again after a 401
            # a token the server refused is not used again: a login since then, or a new one
            since, self._asked = (time.time() if self._asked else 0.0), True
            self.url, self.token = self.store._login(since)
            return self.url, self.token

    return SharedLogin


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
