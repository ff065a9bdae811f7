"""Check, unpack and create model definitions (a user's ``.zip`` of training code).

A model definition comes from the user, so it is treated as hostile: every refusal is a
:class:`DefinitionError` whose message is one sentence that names the file and, where there
is one, the offending entry. Only the standard library is used so that the CLI, the service
and the learner can all share this module without pulling in UI or web code.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import os
import re
import stat
import zipfile
from collections.abc import Iterator, Mapping

# No dataclasses or typing here: both cost start-up time of every training run (the learner
# imports this module) and of `trainui validate`; see trainui.core.record.
from trainui.core.record import Record

__all__ = [
    "DefinitionError",
    "DefinitionInfo",
    "Limits",
    "check_zip",
    "detect_archive_kind",
    "skipped_warning",
    "unpack",
    "zip_directory",
    "zipped_name",
]

_ENV_MAX_BYTES = "TRAINUI_DEFINITION_MAX_BYTES"
_ENV_MAX_ENTRIES = "TRAINUI_DEFINITION_MAX_ENTRIES"

# Stream members in chunks this big so that a member is never held in memory whole.
_CHUNK = 1 << 20

# Enough of the file to see every magic number we know, including tar's at offset 257.
_HEAD_BYTES = 512

# Names the user meant as "Windows drive" paths: C:, C:/x, C:x.
_DRIVE_RE = re.compile(r"^[A-Za-z]:")

# Always left out of zip_directory: caches and VCS data are never part of a definition.
_SKIP_DIRS = frozenset({"__pycache__", ".git"})
_SKIP_FILE_PATTERNS = ("*.pyc",)
IGNORE_FILE = ".trainuiignore"


class DefinitionError(Exception):
    """A model definition was refused; ``str(exc)`` is one sentence meant for the user."""


class Limits(Record):
    """Upper bounds on what a definition may unpack to: ``max_bytes``, the total uncompressed
    bytes (declared AND actually written), and ``max_entries``; ``service``: the service's
    limits (a refusal says whose setting it is: a remote user cannot set the service's)."""

    __slots__ = ("max_bytes", "max_entries", "service")
    _defaults = {"max_bytes": 1 << 30, "max_entries": 20_000, "service": False}

    max_bytes: int
    max_entries: int
    service: bool

    def hint(self, variable: str) -> str:
        """How the limit is changed, for the refusal."""
        if self.service:
            return f"the service's {variable}: whoever runs the service can raise it"
        return f"set {variable} to change this"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], service: bool = False) -> Limits:
        """Build limits from ``TRAINUI_DEFINITION_MAX_BYTES`` / ``..._MAX_ENTRIES``.

        Unset or blank variables keep the defaults; anything but a positive whole number
        raises :class:`DefinitionError` naming the variable.
        """
        from trainui.config import ConfigError, Settings

        settings = environ if isinstance(environ, Settings) else Settings(environ)
        try:
            return cls(settings.definition_max_bytes, settings.definition_max_entries, service)
        except ConfigError as error:
            raise DefinitionError(str(error)) from None


# A module-level instance rather than a call in each signature (same meaning, no B008).
_DEFAULT_LIMITS = Limits()


class DefinitionInfo(Record):
    """What a checked (or freshly written) definition contains."""

    __slots__ = ("path", "entries", "total_bytes", "names", "skipped")
    _defaults = {"skipped": ()}

    path: str
    entries: int  # files, not directories
    total_bytes: int  # declared uncompressed size of the files
    names: tuple[str, ...]  # normalised '/'-separated file names, in archive order
    # zip_directory only: what it left out unasked, as (kind, relative path), kind one of
    # _SKIPPED_KINDS; see skipped_warning
    skipped: tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------- detection


def detect_archive_kind(head: bytes) -> str | None:
    """Name the non-zip archive format that ``head`` (the file's first bytes) starts with.

    Returns one of 'gzip', 'tar', 'bzip2', 'xz', '7z', 'rar', 'zstd', or None (which
    includes zip files and anything unrecognised).
    """
    head = bytes(head[:_HEAD_BYTES])
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    # 'BZh' is followed by the block size digit; requiring it avoids flagging text.
    if head.startswith(b"BZh") and len(head) > 3 and 0x31 <= head[3] <= 0x39:
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"Rar!\x1a\x07"):  # RAR 4 (…\x00) and RAR 5 (…\x01\x00)
        return "rar"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head[257:262] == b"ustar":  # POSIX and GNU tar both carry this magic
        return "tar"
    return None


# ------------------------------------------------------------------------- checking


class _Entry:
    __slots__ = ("info", "parts", "is_dir")

    def __init__(self, info: zipfile.ZipInfo, parts: tuple[str, ...], is_dir: bool) -> None:
        self.info = info
        self.parts = parts  # normalised path components
        self.is_dir = is_dir


def _label(path: str | os.PathLike[str]) -> str:
    # Messages name the file the way the user knows it, not by a long absolute path.
    fspath = os.fspath(path)
    return os.path.basename(fspath.rstrip("/\\")) or fspath


def _human(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"  # pragma: no cover - loop always returns


@contextlib.contextmanager
def _open_zip(
    path: str | os.PathLike[str], label: str | None = None
) -> Iterator[tuple[zipfile.ZipFile, str]]:
    """Open ``path`` as a zip after the cheap refusals, yielding (zipfile, label); ``label``
    names it in messages (default: its file name).

    The head is sniffed and the zip parsed from the same open file, so the file cannot be
    swapped between the two.
    """
    fspath = os.fspath(path)
    label = label or _label(fspath)
    try:
        st = os.stat(fspath)
    except FileNotFoundError:
        raise DefinitionError(f"{fspath} does not exist") from None
    except OSError as exc:
        raise DefinitionError(f"{label} cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DefinitionError(f"{label} is a folder, not a .zip file: zip it first")
    # Opening a FIFO or device would block or read forever.
    if not stat.S_ISREG(st.st_mode):
        raise DefinitionError(f"{label} is not a regular file")
    if st.st_size == 0:
        raise DefinitionError(f"{label} is empty (0 bytes), not a zip file")
    try:
        fh = open(fspath, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise DefinitionError(f"{label} cannot be read: {exc.strerror or exc}") from None
    try:
        with _zip_from(fh, label) as zf:
            yield zf, label
    finally:
        fh.close()


@contextlib.contextmanager
def _zip_from(fh: io.BufferedIOBase, label: str) -> Iterator[zipfile.ZipFile]:
    """The zip in the open file ``fh`` (at its start), after sniffing what else it may be."""
    try:
        head = fh.read(_HEAD_BYTES)
        fh.seek(0)
    except OSError as exc:
        raise DefinitionError(f"{label} cannot be read: {exc.strerror or exc}") from None
    looks_like_zip = head.startswith(b"PK")
    # A zip's own content could contain 'ustar' at 257, so only sniff non-zips.
    if not looks_like_zip:
        kind = detect_archive_kind(head)
        if kind is not None:
            raise DefinitionError(
                f"{label} is a {kind} archive: only .zip model definitions are accepted"
            )
    try:
        zf = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        if looks_like_zip:
            raise DefinitionError(f"{label} is a corrupt zip file ({exc})") from None
        raise DefinitionError(f"{label} is not a zip file") from None
    except (zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise DefinitionError(f"{label} is a corrupt zip file ({exc})") from None
    except OSError as exc:
        raise DefinitionError(f"{label} cannot be read: {exc.strerror or exc}") from None
    with zf:
        yield zf


def _supported_methods() -> frozenset[int]:
    # zipfile needs zlib/bz2/lzma for these; a missing module makes the method unusable.
    methods = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
    for module, method in (("bz2", zipfile.ZIP_BZIP2), ("lzma", zipfile.ZIP_LZMA)):
        try:
            __import__(module)
        except ImportError:  # pragma: no cover - depends on how Python was built
            continue
        methods.add(method)
    return frozenset(methods)


_SUPPORTED_METHODS = _supported_methods()


def _name_problem(raw: str) -> str | None:
    """Why the raw entry name could escape the target (or None when it is safe)."""
    if "\x00" in raw:
        return "contains a NUL character"
    if raw.startswith("\\"):
        return "starts with a backslash"
    name = raw.replace("\\", "/")
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE_RE.match(name):
        return "starts with a Windows drive letter"
    if ".." in name.split("/"):
        return "contains a '..' path component"
    return None


def _scan(zf: zipfile.ZipFile, label: str, limits: Limits) -> list[_Entry]:
    """Apply every central-directory refusal; return the entries to extract."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise DefinitionError(
            f"{label} has {len(infos)} entries; at most {limits.max_entries} are allowed"
            f" ({limits.hint(_ENV_MAX_ENTRIES)})"
        )
    entries: list[_Entry] = []
    files: set[str] = set()
    dirs: set[str] = set()
    total = 0
    for info in infos:
        # orig_filename keeps what zipfile's own clean-up (e.g. cutting at NUL) removes.
        raw = info.orig_filename
        problem = _name_problem(raw)
        if problem is not None:
            raise DefinitionError(f"{label} entry {raw!r} {problem}: it is not allowed")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DefinitionError(f"{label} entry {raw!r} is a symlink: symlinks are not allowed")
        name = raw.replace("\\", "/")
        is_dir = name.endswith("/")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if not parts:
            if is_dir:
                continue  # './' and the like name the target itself: nothing to do
            raise DefinitionError(f"{label} entry {raw!r} has an empty file name")
        norm = "/".join(parts)
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
        if is_dir:
            dirs.add(norm)
        else:
            if info.flag_bits & 0x1:
                raise DefinitionError(
                    f"{label} entry {raw!r} is encrypted: password-protected zips are not supported"
                )
            if info.compress_type not in _SUPPORTED_METHODS:
                raise DefinitionError(
                    f"{label} entry {raw!r} uses unsupported compression method"
                    f" {info.compress_type}: re-create the zip with standard (deflate)"
                    " compression"
                )
            if norm in files:
                raise DefinitionError(f"{label} contains {norm!r} more than once")
            files.add(norm)
            total += info.file_size
        entries.append(_Entry(info, parts, is_dir))
    # Checked after the loop: the clash can come in either order.
    clash = files & dirs
    if clash:
        name = sorted(clash)[0]
        raise DefinitionError(f"{label} has both a file and a folder named {name!r}")
    if not files:
        what = " (only folders)" if dirs else ""
        raise DefinitionError(f"{label} contains no files{what}")
    if total > limits.max_bytes:
        raise DefinitionError(
            f"{label} unpacks to {_human(total)}; at most {_human(limits.max_bytes)} is"
            f" allowed ({limits.hint(_ENV_MAX_BYTES)})"
        )
    return entries


def _info(path: str, entries: list[_Entry]) -> DefinitionInfo:
    files = [e for e in entries if not e.is_dir]
    return DefinitionInfo(
        path=path,
        entries=len(files),
        total_bytes=sum(e.info.file_size for e in files),
        names=tuple("/".join(e.parts) for e in files),
    )


def check_zip(
    path: str | os.PathLike[str], limits: Limits = _DEFAULT_LIMITS, label: str | None = None
) -> DefinitionInfo:
    """Check that ``path`` is an acceptable model definition without unpacking it; ``label``
    names it in messages (default: its file name; the service gives the uploaded file's).

    Reads only the zip's central directory, so it is fast even for large files. Raises
    :class:`DefinitionError` for anything :func:`unpack` would refuse up front.
    """
    fspath = os.fspath(path)
    with _open_zip(fspath, label) as (zf, label):
        return _info(fspath, _scan(zf, label, limits))


def check_zip_bytes(
    data: bytes, label: str = "model.zip", limits: Limits = _DEFAULT_LIMITS
) -> DefinitionInfo:
    """:func:`check_zip` for a model definition held in memory (a small upload)."""
    if not data:
        raise DefinitionError(f"{label} is empty (0 bytes), not a zip file")
    with _zip_from(io.BytesIO(data), label) as zf:
        return _info(label, _scan(zf, label, limits))


# ------------------------------------------------------------------------ unpacking


class _Extractor:
    """Writes entries under ``root``, remembering what it created so it can undo it."""

    def __init__(self, root: str, label: str, limits: Limits) -> None:
        self.root = root
        self.label = label
        self.limits = limits
        self.created: list[tuple[str, bool]] = []  # (path, is_dir) in creation order
        self.known_dirs: set[str] = {root}
        self.written = 0

    def ensure_dir(self, parts: tuple[str, ...], shown: str) -> str:
        current = self.root
        for part in parts:
            current = os.path.join(current, part)
            if current in self.known_dirs:
                continue
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                st = os.lstat(current)
                # Never write through a symlink that was already in the target.
                if stat.S_ISLNK(st.st_mode):
                    raise DefinitionError(
                        f"cannot unpack {self.label}: {self._rel(current)!r} in the target"
                        " folder is a symlink"
                    ) from None
                if not stat.S_ISDIR(st.st_mode):
                    raise DefinitionError(
                        f"cannot unpack {self.label}: {self._rel(current)!r} in the target"
                        f" folder is a file, but {shown!r} needs it to be a folder"
                    ) from None
            except OSError as exc:
                raise DefinitionError(
                    f"cannot unpack {self.label}: creating {self._rel(current)!r} failed"
                    f" ({exc.strerror or exc})"
                ) from None
            else:
                self.created.append((current, True))
                os.chmod(current, 0o755)  # 0755 whatever the umask
            self.known_dirs.add(current)
        return current

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    def write_file(self, zf: zipfile.ZipFile, entry: _Entry) -> None:
        info = entry.info
        shown = info.orig_filename
        parent = self.ensure_dir(entry.parts[:-1], shown)
        dest = os.path.join(parent, entry.parts[-1])
        # O_EXCL refuses anything already there (a symlink included), so nothing existing
        # is overwritten or followed and undoing this call never touches the user's files.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(dest, flags, 0o600)
        except FileExistsError:
            raise DefinitionError(
                f"cannot unpack {self.label}: {self._rel(dest)!r} already exists in the target"
                " folder"
            ) from None
        except OSError as exc:
            raise DefinitionError(
                f"cannot unpack {self.label}: creating {self._rel(dest)!r} failed"
                f" ({exc.strerror or exc})"
            ) from None
        self.created.append((dest, False))
        mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
        with os.fdopen(fd, "wb") as out:
            self._copy(zf, info, out)
            if hasattr(os, "fchmod"):
                os.fchmod(out.fileno(), mode)
        if not hasattr(os, "fchmod"):  # pragma: no cover - Windows
            os.chmod(dest, mode)

    def _copy(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: io.BufferedIOBase) -> None:
        shown = info.orig_filename
        member = 0
        # Decompressors fail in many ways (BadZipFile on a bad CRC, zlib.error, EOFError,
        # OSError from bz2, LZMAError, NotImplementedError...): all mean "bad entry".
        try:
            src = zf.open(info)
        except Exception as exc:
            raise DefinitionError(
                f"{self.label} entry {shown!r} cannot be unpacked: {exc}"
            ) from None
        with src:
            while True:
                try:
                    chunk = src.read(_CHUNK)
                except Exception as exc:
                    raise DefinitionError(
                        f"{self.label} entry {shown!r} does not match its header ({exc}):"
                        " the zip is corrupt or tampered with"
                    ) from None
                if not chunk:
                    break
                member += len(chunk)
                self.written += len(chunk)
                # Headers can lie about sizes (zip bombs), so count what really comes out.
                if self.written > self.limits.max_bytes:
                    raise DefinitionError(
                        f"{self.label} unpacks to more than {_human(self.limits.max_bytes)}"
                        f" (stopped in entry {shown!r}); refusing a possible zip bomb"
                    )
                if member > info.file_size:
                    raise DefinitionError(
                        f"{self.label} entry {shown!r} unpacks to more than the"
                        f" {info.file_size} bytes it declares; refusing a possible zip bomb"
                    )
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DefinitionError(
                        f"cannot unpack {self.label}: writing {shown!r} failed"
                        f" ({exc.strerror or exc})"
                    ) from None
        if member != info.file_size:
            raise DefinitionError(
                f"{self.label} entry {shown!r} is truncated ({member} of {info.file_size} bytes)"
            )

    def rollback(self) -> None:
        # Newest first, so files go before the folders that hold them.
        for path, is_dir in reversed(self.created):
            with contextlib.suppress(OSError):
                if is_dir:
                    os.rmdir(path)
                else:
                    os.unlink(path)
        self.created.clear()


def _make_target(target: str, label: str) -> list[str]:
    """Create ``target`` (and missing parents); return the folders created, outermost first."""
    missing: list[str] = []
    current = os.path.abspath(target)
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    if not missing and not os.path.isdir(target):
        raise DefinitionError(f"cannot unpack {label}: {target} exists and is not a folder")
    created: list[str] = []
    try:
        for folder in reversed(missing):
            os.mkdir(folder, 0o755)
            created.append(folder)
    except OSError as exc:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise DefinitionError(
            f"cannot unpack {label}: creating {target} failed ({exc.strerror or exc})"
        ) from None
    return created


def unpack(
    path: str | os.PathLike[str],
    target_dir: str | os.PathLike[str],
    limits: Limits = _DEFAULT_LIMITS,
) -> DefinitionInfo:
    """Check ``path`` and extract it into ``target_dir`` (created if missing).

    Nothing is written outside ``target_dir``, existing files there are never overwritten,
    and symlinks already there are never followed. Executable bits are kept (files become
    0644 or 0755, folders 0755). On any refusal everything this call wrote is removed again,
    ``target_dir`` included when this call created it.
    """
    fspath = os.fspath(path)
    target = os.fspath(target_dir)
    with _open_zip(fspath) as (zf, label):
        # The same open zip is checked and extracted: it cannot change in between.
        entries = _scan(zf, label, limits)
        made = _make_target(target, label)
        extractor = _Extractor(os.path.realpath(target), label, limits)
        extractor.created.extend((folder, True) for folder in made)
        try:
            for entry in entries:
                if entry.is_dir:
                    extractor.ensure_dir(entry.parts, entry.info.orig_filename)
                else:
                    extractor.write_file(zf, entry)
        except BaseException:
            extractor.rollback()
            raise
        return _info(fspath, entries)


# -------------------------------------------------------------------------- zipping


class _Pattern:
    __slots__ = ("glob", "dir_only", "anchored")

    def __init__(self, glob: str, dir_only: bool, anchored: bool) -> None:
        self.glob = glob
        self.dir_only = dir_only
        self.anchored = anchored  # a leading '/' ties it to src_dir itself, as in .gitignore


def _read_ignore(src: str) -> list[_Pattern]:
    path = os.path.join(src, IGNORE_FILE)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DefinitionError(f"{IGNORE_FILE} cannot be read: {exc.strerror or exc}") from None
    patterns = []
    for line in lines:
        text = line.strip()
        # Negation ('!') is not supported; skipping it is safer than ignoring too much.
        if not text or text.startswith(("#", "!")):
            continue
        dir_only = text.endswith("/")
        anchored = text.startswith("/")
        glob = text.strip("/")
        if glob:
            patterns.append(_Pattern(glob, dir_only, anchored))
    return patterns


def _ignored(rel: str, is_dir: bool, patterns: list[_Pattern]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        if pat.dir_only and not is_dir:
            continue
        if fnmatch.fnmatchcase(rel, pat.glob):
            return True
        # Folders are pruned while walking, so matching each component as it is reached
        # is the same as matching any component of the path.
        if not pat.anchored and fnmatch.fnmatchcase(name, pat.glob):
            return True
    return False


_SKIPPED_KINDS = ("symlink", "FIFO", "socket", "device")
_SKIPPED_SHOWN = 5


def _skipped_kind(path: str, st: os.stat_result) -> str:
    if os.path.islink(path):
        return "symlink"
    if stat.S_ISFIFO(st.st_mode):
        return "FIFO"
    if stat.S_ISSOCK(st.st_mode):
        return "socket"
    return "device"


def skipped_warning(info: DefinitionInfo, folder: str) -> str | None:
    """The warning line for what :func:`zip_directory` left out of ``folder`` unasked
    (links out of it, dangling or to folders; FIFOs, sockets, devices), or None."""
    if not info.skipped:
        return None
    counts = [(kind, sum(k == kind for k, _ in info.skipped)) for kind in _SKIPPED_KINDS]
    what = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts if n)
    names = ", ".join(rel for _, rel in info.skipped[:_SKIPPED_SHOWN])
    if len(info.skipped) > _SKIPPED_SHOWN:
        names += f", ... ({len(info.skipped) - _SKIPPED_SHOWN} more)"
    return (
        f"warning: skipped {what} in {folder} (only regular files, and symlinks to files "
        f"inside it, are zipped): {names}"
    )


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def zipped_name(src_dir: str | os.PathLike[str]) -> str:
    """The file name a folder is zipped to for upload: the folder's own name, which the
    service's messages then name it by (not a "model.zip" the user never made)."""
    return os.path.basename(os.path.abspath(os.fspath(src_dir))) or "model.zip"


def zip_directory(
    src_dir: str | os.PathLike[str], dest_zip: str | os.PathLike[str]
) -> DefinitionInfo:
    """Zip ``src_dir`` into ``dest_zip`` (deflated, written atomically).

    Skips ``__pycache__``, ``.git``, ``*.pyc`` and whatever ``src_dir/.trainuiignore`` lists
    (gitignore-like globs, one per line; ``#`` comments; a trailing ``/`` means folders only;
    a leading ``/`` anchors to ``src_dir``; ``!`` negation is not supported). Symlinked files
    are stored by content only when they resolve inside ``src_dir``; symlinked folders and
    empty folders are left out, and so are FIFOs, sockets and devices: what was left out that
    no ignore rule asked for is in the result's ``skipped`` (see :func:`skipped_warning`).
    Raises :class:`DefinitionError` when no file is left.
    """
    src = os.fspath(src_dir)
    dest = os.path.abspath(os.fspath(dest_zip))
    label = _label(src)
    if not os.path.isdir(src):
        raise DefinitionError(f"{label} is not a folder")
    real_src = os.path.realpath(src)
    patterns = _read_ignore(src)
    dest_parent = os.path.dirname(dest)
    try:
        os.makedirs(dest_parent, exist_ok=True)
        import tempfile  # the client's, when it zips a folder: not on the learner's path

        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(dest)}.", suffix=".tmp", dir=dest_parent
        )
    except OSError as exc:
        raise DefinitionError(f"cannot write {_label(dest)}: {exc.strerror or exc}") from None
    os.close(fd)
    # The output (and its temp name) may live inside src_dir: never zip them into themselves.
    skip_real = {os.path.realpath(dest), os.path.realpath(tmp)}
    skipped: list[tuple[str, str]] = []
    try:
        with zipfile.ZipFile(
            tmp, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False
        ) as zf:
            for root, dirnames, filenames in os.walk(src, followlinks=False):
                rel_root = os.path.relpath(root, src)
                rel_root = "" if rel_root == "." else rel_root.replace(os.sep, "/") + "/"
                # Prune in place so os.walk neither descends nor lists them; sorted so
                # that the zip's order is reproducible.
                dirnames[:] = sorted(
                    d
                    for d in dirnames
                    if d not in _SKIP_DIRS and not _ignored(rel_root + d, True, patterns)
                )
                for d in [d for d in dirnames if os.path.islink(os.path.join(root, d))]:
                    dirnames.remove(d)  # a linked folder may leave src_dir or loop
                    skipped.append(("symlink", rel_root + d))
                for fname in sorted(filenames):
                    rel = rel_root + fname
                    full = os.path.join(root, fname)
                    if any(fnmatch.fnmatchcase(fname, p) for p in _SKIP_FILE_PATTERNS):
                        continue
                    if _ignored(rel, False, patterns):
                        continue
                    real = os.path.realpath(full)
                    if real in skip_real:
                        continue
                    if os.path.islink(full) and not _inside(real, real_src):
                        skipped.append(("symlink", rel))  # it would leak unrelated files
                        continue
                    try:
                        st = os.stat(full)
                    except OSError:
                        if os.path.islink(full):  # else gone since the walk listed it
                            skipped.append(("symlink", rel))
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        # sockets, FIFOs, devices: reading could block
                        skipped.append((_skipped_kind(full, st), rel))
                        continue
                    try:
                        zf.write(full, arcname=rel)
                    except OSError as exc:
                        raise DefinitionError(
                            f"cannot read {rel!r} in {label}: {exc.strerror or exc}"
                        ) from None
            infos = zf.infolist()
        if not infos:
            raise DefinitionError(f"{label} contains no files to zip (after ignores)")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a definition is not a secret
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return DefinitionInfo(
        path=dest,
        entries=len(infos),
        total_bytes=sum(i.file_size for i in infos),
        names=tuple(i.filename for i in infos),
        skipped=tuple(skipped),
    )
