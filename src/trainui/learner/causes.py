"""Why a training command failed, when the cause is a known one (SPEC §11): the kernel's OOM
killer, the GPU out of memory, NCCL, a GPU lost. Said in the failed run's message with the
log line that shows it, so that a user can act without reading the whole log."""

from __future__ import annotations

import contextlib
import os
import re

TAIL_BYTES = 64 << 10  # the end of the log that is looked at

# (pattern of a log line, what it means); the last matching line of the tail is quoted
_KNOWN = (
    (
        re.compile(
            r"CUDA out of memory|CUDA error: out of memory|OutOfMemoryError|"
            r"CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|RESOURCE_EXHAUSTED: OOM"
        ),
        "the GPU ran out of memory (a smaller batch, or a larger resource, may fit)",
    ),
    (
        re.compile(
            r"NCCL (?:error|WARN)|ncclSystemError|ncclInternalError|ncclUnhandledCudaError|"
            r"Watchdog caught collective operation timeout|NCCL timeout"
        ),
        "NCCL, the GPUs' communication, failed or timed out",
    ),
    (
        re.compile(r"GPU has fallen off the bus|Xid \d+|CUDA error: unspecified launch failure"),
        "a GPU failed or was lost",
    ),
)


def oom_kills() -> tuple[int | None, int | None]:
    """The OOM killer's kills so far: in this process's memory cgroup (v2 ``memory.events``,
    v1 ``memory.oom_control``) and on the machine (``/proc/vmstat``: a command may limit itself
    in a cgroup of its own); None where unknown."""
    return _cgroup_kills(), _count("/proc/vmstat", "oom_kill")


def _cgroup_kills() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # cgroup v2
                count = _count(f"/sys/fs/cgroup{path}/memory.events", "oom_kill")
            elif "memory" in controllers.split(","):
                count = _count(f"/sys/fs/cgroup/memory{path}/memory.oom_control", "oom_kill")
            else:
                continue
            if count is not None:
                return count
    return None


def _count(path: str, name: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == name:
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


def cause(exit_code: int, log_path: str, kills_before: tuple) -> str | None:
    """The known cause of a failed command, in words, with the log line that shows it; None
    when it is none of them. ``kills_before``: ``oom_kills()`` when the command started."""
    if exit_code in (-9, 137):  # SIGKILL: the OOM killer's signal
        after = oom_kills()
        if any(
            a is not None and b is not None and a > b
            for a, b in zip(after, kills_before, strict=True)
        ):
            return (
                "killed by the kernel's OOM killer: the machine (or the run's memory limit) ran "
                "out of memory"
            )
    tail = _tail(log_path)
    for line in reversed(tail):
        if line.startswith("trainui: "):
            continue
        for pattern, meaning in _KNOWN:
            if pattern.search(line):
                quoted = line.strip()
                if len(quoted) > 200:
                    quoted = quoted[:199] + "…"
                return f'{meaning}: "{quoted}"'
    return None


def last_line(log_path: str) -> str | None:
    """The last line the command wrote (not trainui's own), shortened: what a failed run's
    message ends with when no known cause quotes a line."""
    lines = last_lines(log_path, 1)
    return shortened(lines[0]) if lines else None


def shortened(line: str) -> str:
    """A log line as a run's message quotes it: 160 characters at most."""
    return line if len(line) <= 160 else line[:159] + "…"


def last_lines(log_path: str, count: int) -> list[str]:
    """The last ``count`` lines the command wrote (not trainui's own, nor empty), stripped."""
    found = []
    for line in reversed(_tail(log_path)):
        text = line.strip()
        if text and not line.startswith("trainui: "):
            found.append(text)
            if len(found) == count:
                break
    return found[::-1]


def _tail(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read(TAIL_BYTES)
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-200:]
