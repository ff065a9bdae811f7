"""What the learner's parts share: its failure, sizes and counts in words, errors said."""

from __future__ import annotations

from trainui.core.runs import (
    disk_full_message,
    is_disk_full,
)
from trainui.storage import StoreError

PROGRESS_INTERVAL = 0.25  # seconds between progress writes of status.json


class _Failed(Exception):
    """The run failed: ``code`` is its SPEC error code, ``message`` the sentence for the user."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _size(n: int) -> str:
    """Bytes the way the log shows them: ``512 bytes``, ``38.2 kB``, ``1.5 GB``."""
    if n < 1000:
        return "1 byte" if n == 1 else f"{n} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            break
    return f"{n:.1f} {unit}"


def _transfer_error(exc: BaseException) -> str:
    if isinstance(exc, StoreError):
        return str(exc)
    if is_disk_full(exc):
        return disk_full_message(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return _learner_error(exc)


def _learner_error(exc: BaseException) -> str:
    return f"learner error: {type(exc).__name__}: {exc}"
