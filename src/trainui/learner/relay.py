"""The relay: on a Ray node, the learner's log and status records copied to its stdout, which
Ray keeps as the job's log; and the lines of the run's metrics.jsonl as they are appended."""

from __future__ import annotations

import os
import time

from trainui.core.runs import (
    METRICS_FILE,
    METRICS_MARKER,
    STATUS_MARKER,
)

RELAY_CHUNK = 1 << 20  # bytes the relay copies from the log to stdout at a time
RELAY_IDLE = 0.05  # seconds the relay sleeps when the log has not grown
HEARTBEAT = 20.0  # seconds of a quiet log after which the relay says it is alive (an empty record)


class _Relay:
    """Copies the run's log to stdout as it grows, and status records between its lines.

    The command's output goes into the log file, as it does locally; this thread reads what
    was added, in large blocks, and writes it to stdout (on a Ray node, the job's log). A record
    is written at the first line boundary at or after the point of the log where it was made,
    so it never splits a line of the command's output. ``close`` copies the rest and ends.

    The complete lines appended to the run folder's ``metrics.jsonl`` (the learner's points,
    SPEC §8) go out too, each as a metrics record, between lines of the log; all of them before
    a status record (the final one comes after the learner's last points)."""

    def __init__(self, log_path: str, nonce: str, out_fd: int = 1) -> None:
        import collections
        import threading

        self.fd = os.open(log_path, os.O_RDONLY)
        self.out = out_fd
        self.prefix = f"{STATUS_MARKER}{nonce} ".encode()
        self.metrics_prefix = f"{METRICS_MARKER}{nonce} ".encode()
        self.metrics_path = os.path.join(os.path.dirname(log_path), METRICS_FILE)
        self.metrics_pos = 0  # bytes of metrics.jsonl relayed (always a line's end)
        self.pos = 0  # bytes of the log copied
        self.boundary = True  # what was copied ends a line
        self.pending: collections.deque[tuple[int, bytes]] = collections.deque()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.last_write = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="trainui-relay", daemon=True)
        self.thread.start()

    def record(self, status: bytes, log_size: int) -> None:
        """``status``: the record's JSON, on one line (msgspec's encoding has no newline)."""
        line = self.prefix + status + b"\n"
        with self.lock:
            self.pending.append((log_size, line))
        self.wake.set()

    def close(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join()
        os.close(self.fd)

    def _run(self) -> None:
        while True:
            stopping = self.stopping  # read first: after it is set, the log no longer grows
            if self._pump():
                continue
            if stopping:
                with self.lock:
                    rest = list(self.pending)
                    self.pending.clear()
                if rest and not self.boundary:  # a last line without its newline
                    self._write(b"\n")
                    self.boundary = True
                while self._relay_metrics():
                    pass
                for _, line in rest:
                    self._write(line)
                return
            if self.boundary and time.monotonic() - self.last_write >= HEARTBEAT:
                self._write(self.prefix + b"{}\n")
            self.wake.wait(RELAY_IDLE)
            self.wake.clear()

    def _pump(self) -> bool:
        """Copy some of the log, or write the next record that is due; False: nothing to do."""
        with self.lock:
            first = self.pending[0] if self.pending else None
            # what a record queued from now on is made after: never read beyond it, so that
            # a record comes before what the learner logged after making it
            end = os.fstat(self.fd).st_size
        if first is not None and self.pos >= first[0] and self.boundary:
            while self._relay_metrics():  # the points so far come before the record
                pass
            self._write(first[1])
            with self.lock:
                self.pending.popleft()
            return True
        limit = min(RELAY_CHUNK, end - self.pos)
        if first is not None and self.pos < first[0]:
            limit = min(limit, first[0] - self.pos)
        if limit <= 0:
            return self._relay_metrics()
        try:
            data = os.pread(self.fd, limit, self.pos)
        except OSError:
            return False
        if not data:
            return False
        if first is not None and self.pos >= first[0]:
            end = data.find(b"\n")  # the record is due: copy only up to the end of this line
            if end >= 0:
                data = data[: end + 1]
        self._write(data)
        self.pos += len(data)
        self.boundary = data.endswith(b"\n")
        return True

    def _relay_metrics(self) -> bool:
        """Relay the complete lines appended to metrics.jsonl (some), each as a metrics
        record, at a line boundary of the log; False: nothing to do."""
        if not self.boundary:
            return False
        try:
            fd = os.open(self.metrics_path, os.O_RDONLY)
        except OSError:
            return False
        try:
            data = os.pread(fd, RELAY_CHUNK, self.metrics_pos)
        except OSError:
            return False
        finally:
            os.close(fd)
        end = data.rfind(b"\n") + 1
        if end == 0:
            return False  # nothing, or a line not ended yet
        lines = data[:end].split(b"\n")[:-1]
        prefix = self.metrics_prefix
        self._write(b"".join(prefix + line + b"\n" for line in lines if line))
        self.metrics_pos += end
        return True

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.out, view)
            except OSError:
                return  # stdout is gone: nobody is left to tell
            view = view[written:]
        self.last_write = time.monotonic()
