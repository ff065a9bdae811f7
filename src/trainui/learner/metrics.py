"""Metrics extraction (SPEC §8): the learner reads the run's metric points while it trains.

An ``Extractor`` thread starts with the training command and stops once it has ended, with one
final complete pass. It follows the manifest's ``evaluation_metrics`` sources (without any,
``$LOG_DIR/metrics.jsonl`` if the command writes it) and appends every point it finds, in the
order found, to ``<run_dir>/metrics.jsonl``, one JSON object a line::

    {"metric":"loss","step":12,"value":0.53,"time":1733400000.123}

Sources:

- ``jsonl``: one JSON object a line; numeric top-level values are metrics (booleans are not
  numbers), ``step`` the step (else the line's ordinal, from 0), ``time`` the time (else when
  the line was read).
- ``tensorboard``: a folder of event files, searched recursively, new files picked up as they
  appear (a file in a sub-folder, a TensorBoard run of its own, names its tags
  ``sub/folder/tag``); scalar summaries (``simple_value``, and the 0-d tensors of the
  ``scalars`` plugin that TF2 writes). The records are cut from the file here and decoded by
  tensorboard's protobuf classes (``event_pb2``, imported only when such a source is used; see
  ``_EventFile`` for why not tensorboard's ``event_file_loader``).
- ``log``: the run's log (or the file ``in`` names), each line searched with ``pattern``; every
  named group but ``step`` is a metric.

The command is another process: following its files costs it nothing but the CPU this thread
takes, kept low by cheap ``stat`` checks with a poll interval that backs off while nothing
changes, JSON decoded a batch at a time (msgspec), and bounded: while the command runs, each
pass reads at most ``FOLLOW_BYTES`` of a file and is followed by a pause that keeps the thread
under ``CPU_SHARE`` of a core (about 35,000 points a second followed live; a command that logs
faster is caught up with when it slows or ends). A line is taken only once its
newline is written (a torn last line waits; at the end it is parsed if it is complete JSON).
Non-finite values and malformed lines are skipped and counted: the run's log says each kind
once (``trainui: metrics: ...``) and the totals at the end. A step going backwards is kept.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable

import msgspec

from trainui.core.runs import LOG_CUT, METRICS_FILE, within

TYPES = ("jsonl", "tensorboard", "log")
DEFAULT_SOURCE = {"type": "jsonl", "in": "$LOG_DIR/metrics.jsonl"}
POLL_FIRST = 0.05  # seconds between passes while points come
POLL_MAX = 1.0  # the longest pause while nothing changes (the interval doubles up to it)
SCAN_INTERVAL = 2.0  # seconds between two walks of a tensorboard folder for new event files
READ_BYTES = 8 << 20  # the most a source reads of a file in one pass
# the longest a log pattern may take on one line: a pattern that backtracks without end (the
# regular expression engine tries every way to split the line) would otherwise hold the learner
MATCH_SECONDS = 0.5
FOLLOW_BYTES = 64 << 10  # ... while the command runs: short passes, each paid for by a pause
CPU_SHARE = 0.02  # while the command runs, this thread takes at most this share of one core
LONGEST_LINE = 1 << 20  # a line longer than this is no metric: left out, not held in memory
LONGEST_NAME = 256  # a metric's name: longer, or with a control character, it is left out
STOP_TIMEOUT = 120.0  # the final pass of a huge backlog: how long the learner waits for it
TENSORBOARD_HINT = "pip install 'trainui[tensorboard]'"
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


STEP_MIN, STEP_MAX = -(2**63), 2**63 - 1  # a step is a signed 64-bit integer


class Point(msgspec.Struct):
    """One point of the points file (its keys in this order)."""

    metric: str
    step: int
    value: float
    time: float


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


# ----------------------------------------------------------------------------- what is said


class Tally:
    """Problems met, counted by kind; ``say`` is called once per kind as it first happens."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self.counts: dict[str, int] = {}

    def add(self, kind: str, detail: str, n: int = 1) -> None:
        if kind not in self.counts:
            self.counts[kind] = 0
            self._say(f"{detail}: skipped (said once, counted: totals at the end)")
        self.counts[kind] += n

    def say(self, text: str) -> None:
        self._say(text)


# ----------------------------------------------------------------------------- line files


def open_beneath(root: str, path: str) -> int:
    """A descriptor of the regular file ``path``, read-only, opened one name at a time from
    ``root`` (the run's folders) following no symbolic link: the command writes these files,
    and the learner, which may read what the command may not (the home, other runs), must
    never be led out of them. A FIFO, a device or a folder is refused (``OSError``), and never
    waited on: a FIFO opened for reading would block until a writer came."""
    names = os.path.relpath(path, root).split(os.sep)
    if names[0] in (os.pardir, os.curdir) or os.path.isabs(names[0]):
        raise OSError(errno.EXDEV, "outside the run's folders", path)
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names[:-1]:
            inner = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder
            )
            os.close(folder)
            folder = inner
        fd = os.open(
            names[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder
        )
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd


class LineFollower:
    """A growing text file, read as whole lines: what is past the last newline waits for it.

    ``read(final)`` gives the complete lines added since the last call (at most about
    ``READ_BYTES`` of them; ``more`` then says there is more to read). With ``final``, a last
    line without its newline is given too, in ``tail``. A file that shrinks or is replaced
    is read again from its start."""

    def __init__(self, path: str, carriage_returns: bool = False, root: str | None = None) -> None:
        self.path = path
        self.root = root  # the command's file, under these folders (open_beneath); None: ours
        self.carriage_returns = carriage_returns  # `\r` ends a line too (progress bars)
        self.overlong = 0  # lines longer than LONGEST_LINE, left out
        self._skipping = False  # within such a line: the rest of it is left out too
        self.offset = 0
        self.rest = b""  # bytes of a line whose newline has not come yet
        self.ino: int | None = None
        self.fd = -1
        self.more = False
        self.tail = b""
        self.restarted = False

    def read(self, final: bool = False, limit: int | None = None) -> list[bytes]:
        self.more = False
        self.tail = b""
        try:  # the command's file: what is there now, a link not followed
            st = os.stat(self.path) if self.root is None else os.lstat(self.path)
        except OSError:
            return []
        if self.fd < 0 or st.st_ino != self.ino or st.st_size < self.offset:
            if self.fd >= 0:
                self.restarted = True
            self.close()
            try:
                if self.root is None:
                    self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                else:
                    self.fd = open_beneath(self.root, self.path)
            except OSError:
                return []
            opened = os.fstat(self.fd)
            self.ino = opened.st_ino
            if opened.st_ino != st.st_ino:  # replaced meanwhile: its size is the one opened
                st = opened
            self.offset, self.rest = 0, b""
        lines: list[bytes] = []
        if st.st_size > self.offset:
            want = min(st.st_size - self.offset, limit or READ_BYTES)
            data = os.pread(self.fd, want, self.offset)
            self.offset += len(data)
            self.more = self.offset < st.st_size
            if data and self.carriage_returns:
                data = data.replace(b"\r", b"\n")
            if data:
                cut = data.rfind(b"\n")
                if cut < 0:
                    self.rest += data
                else:
                    lines = (self.rest + data[:cut]).split(b"\n")
                    self.rest = data[cut + 1 :]
                    if self._skipping:  # the end of a line too long to keep
                        self._skipping = False
                        del lines[0]
                if len(self.rest) > LONGEST_LINE:
                    self.overlong += not self._skipping  # one line, however long
                    self.rest, self._skipping = b"", True
        if final and not self.more and self.rest and not self._skipping:
            self.tail, self.rest = self.rest, b""
        return lines

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _count_overlong(lines: LineFollower, tally: Tally, path: str) -> None:
    if lines.overlong:
        detail = f"{path} has a line over {LONGEST_LINE >> 20} MiB"
        tally.add("line-too-long", detail, lines.overlong)
        lines.overlong = 0


def _step(value: object) -> int | None:
    """An integer step from a JSON value or a matched text; None if it is not one, or does not
    fit in 64 bits (what the service keeps a step in)."""
    step = _integer(value)
    return step if step is not None and STEP_MIN <= step <= STEP_MAX else None


def _integer(value: object) -> int | None:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is str:
        try:
            return int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                return None
            return int(number) if number.is_integer() else None
    return None


class JsonlSource:
    """``type: jsonl``: a file of JSON objects, one a line."""

    def __init__(
        self, path: str, tally: Tally, quiet: bool = False, label: str = "", root: str | None = None
    ) -> None:
        self.path = label or path  # as the manifest wrote it, in what is said
        self.label = self.path
        self.lines = LineFollower(path, root=root)
        self.tally = tally
        self.quiet = quiet  # the zero-configuration default: its absence is not worth a word
        # the step of an object without ``step``: the one after the last object's (W&B's
        # rule), so 0, 1, 2... where none has one, and never behind a step given before it
        self.ordinal = 0

    @property
    def more(self) -> bool:
        return self.lines.more

    def poll(self, out: list[Point], final: bool, limit: int | None = None) -> None:
        lines = [line for line in self.lines.read(final, limit) if line.strip()]
        _count_overlong(self.lines, self.tally, self.path)
        if self.lines.restarted:
            self.lines.restarted = False
            self.tally.say(f"{self.path} was replaced or shortened: read again from its start")
        objects: list[object] = []
        if lines:
            try:  # the usual case: every line is an object, decoded in one call
                batch = _decoder.decode(b"[" + b",".join(lines) + b"]")
            except msgspec.DecodeError:
                batch = None
            if isinstance(batch, list) and len(batch) == len(lines):
                objects = batch
            else:
                objects = [self._decode_line(line) for line in lines]
        if self.lines.tail.strip():
            tail = self._decode_line(self.lines.tail, torn=True)
            objects.append(tail)
        if final and not self.quiet and self.lines.fd < 0:
            self.tally.say(f"{self.path} was never written: no points from it")
        now = time.time()
        for obj in objects:
            if obj is None:
                continue
            if type(obj) is not dict:
                self.tally.add("jsonl-object", f"a line of {self.path} is not a JSON object")
                continue
            self._points(obj, out, now)

    def _decode_line(self, line: bytes, torn: bool = False) -> object:
        try:
            return _decoder.decode(line)
        except msgspec.DecodeError:
            pass
        import json  # NaN and Infinity (Python's json writes them): read, then counted

        try:
            return json.loads(line)
        except ValueError:
            if torn:
                self.tally.add(
                    "jsonl-torn", f"the last line of {self.path} is incomplete (no newline)"
                )
            else:
                self.tally.add("jsonl-malformed", f"a line of {self.path} is not valid JSON")
            return None

    def _points(self, obj: dict, out: list[Point], now: float) -> None:
        step = obj.get("step", self.ordinal)
        if type(step) is not int or not STEP_MIN <= step <= STEP_MAX:
            step = _step(step)
            if step is None:
                self.ordinal += 1
                self.tally.add(
                    "jsonl-step", f"a line of {self.path} has a step that is no 64-bit integer"
                )
                return
        self.ordinal = min(step + 1, STEP_MAX)
        when = obj.get("time", now)
        if type(when) is not float:
            when = float(when) if type(when) is int else now
        for key, value in obj.items():
            kind = type(value)
            if (kind is not float and kind is not int) or key == "step" or key == "time":
                continue
            if not key or not key.isprintable() or len(key) > LONGEST_NAME:
                self.tally.add("name", _bad_name(key, self.path))
                continue
            try:
                value = float(value)
            except OverflowError:
                value = math.inf
            if value - value != 0.0:  # NaN or infinite
                self.tally.add("non-finite", f"a non-finite value ({key}={value}) in {self.path}")
                continue
            out.append(Point(key, step, value, when))

    def close(self) -> None:
        self.lines.close()


_LOG_CUT = LOG_CUT.encode()


class LogSource:
    """``type: log``: lines of a text file (the run's log) searched with a pattern whose named
    groups are the metrics (and ``step``). The learner's own lines (``trainui: ...``) are not
    searched."""

    def __init__(
        self, path: str, pattern: str, tally: Tally, label: str = "", root: str | None = None
    ) -> None:
        import regex  # the field's engine: a match under a time limit, without the GIL

        self.path = label or path
        self.label = self.path
        self.pattern = pattern
        self.regex = regex.compile(pattern)
        self.names = [n for n in self.regex.groupindex if n != "step"]
        self.lines = LineFollower(path, carriage_returns=True, root=root)
        self.tally = tally
        self.ordinal = 0
        self.stopped = False  # the pattern took too long on a line: no longer searched

    @property
    def more(self) -> bool:
        return self.lines.more and not self.stopped

    def poll(self, out: list[Point], final: bool, limit: int | None = None) -> None:
        lines = self.lines.read(final, limit)
        _count_overlong(self.lines, self.tally, self.path)
        if self.lines.tail:
            lines.append(self.lines.tail)
        if not lines or self.stopped:
            return
        search, now = self.regex.search, time.time()
        for raw in lines:
            if raw.startswith(b"trainui: "):
                if raw.startswith(_LOG_CUT):  # the lines after it are not in the log
                    self.tally.say(
                        f"{self.path} was cut at its cap (TRAINUI_LOG_MAX_BYTES): the pattern "
                        f"{self.pattern!r} reads no line after the cut, its later points are "
                        "not recorded"
                    )
                continue
            try:
                # concurrent: the GIL is let go meanwhile (a halt is heard at once)
                match = search(
                    raw.decode("utf-8", "replace"), timeout=MATCH_SECONDS, concurrent=True
                )
            except TimeoutError:
                self.stopped = True
                self.tally.say(
                    f"the pattern {self.pattern!r} took over {MATCH_SECONDS:g} s on a line of "
                    f"{self.path}: it is searched no more (a group such as (a|aa)+ tries "
                    "every way to split a line); the points it gave before are kept"
                )
                return
            if match is None:
                continue
            groups = match.groupdict()
            ordinal = self.ordinal
            self.ordinal += 1
            text = groups.get("step")
            step = ordinal if text is None else _step(text)
            if step is None:
                self.tally.add("log-step", f"a matched line's step {text!r} is no 64-bit integer")
                continue
            for name in self.names:
                text = groups[name]
                if text is None:
                    continue
                try:
                    value = float(text)
                except ValueError:
                    self.tally.add(
                        "log-number", f"a matched line's {name} {text!r} is not a number"
                    )
                    continue
                if value - value != 0.0:
                    self.tally.add(
                        "non-finite", f"a non-finite value ({name}={text}) in {self.path}"
                    )
                    continue
                out.append(Point(name, step, value, now))

    def close(self) -> None:
        self.lines.close()


# ----------------------------------------------------------------------------- the thread


def expand(path: str, variables: dict[str, str], base: str) -> str:
    """``$LOG_DIR/tb`` (or ``${LOG_DIR}/tb``) with the run's folders; relative to ``base``.
    An unknown variable is left as written."""

    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    path = os.path.expanduser(_VARIABLE.sub(one, path))
    return os.path.normpath(os.path.join(base, path))


def unknown_variables(path: str, variables: dict[str, str]) -> list[str]:
    """The names in ``path`` (``$NAME``, ``${NAME}``) that are not the run's variables."""
    found = (match.group(1) or match.group(2) for match in _VARIABLE.finditer(path))
    return sorted({name for name in found if name not in variables})


def open_sources(
    specs: Iterable[dict] | None,
    variables: dict[str, str],
    base: str,
    log_path: str,
    tally: Tally,
) -> list:
    """The sources of ``specs`` (the manifest's ``evaluation_metrics`` as dicts), or the
    default one when there are none."""
    sources: list = []
    # the command's files are read beneath the run's folders only (JOB_STATE_DIR holds them
    # all), never through a link out of them: the learner may read what the command may not
    root = variables.get("JOB_STATE_DIR") or base
    if not specs:
        path = expand(DEFAULT_SOURCE["in"], variables, base)
        return [JsonlSource(path, tally, quiet=True, label=DEFAULT_SOURCE["in"], root=root)]
    for spec in specs:
        kind = spec.get("type")
        where = spec.get("in")
        unknown = unknown_variables(where or "", variables)
        if unknown and kind in TYPES:  # warned at submit too: a path that never fills
            names = ", ".join(f"${name}" for name in unknown)
            known = ", ".join(f"${name}" for name in sorted(variables))
            tally.say(f"the {kind} source {where}: {names} is not a run folder (known: {known}); "
                      "the path is read as written")  # fmt: skip
        if where and kind in TYPES and not within(expand(where, variables, base), root):
            tally.say(f"the {kind} source {where} is outside the run's folders: not read")
            continue
        if kind == "jsonl":
            where = where or DEFAULT_SOURCE["in"]
            path = expand(where, variables, base)
            sources.append(JsonlSource(path, tally, label=where, root=root))
        elif kind == "log":
            # the run's log is the learner's own file; another is the command's
            path, beneath = (expand(where, variables, base), root) if where else (log_path, None)
            try:
                label = where or "the run's log"
                sources.append(LogSource(path, spec.get("pattern") or "", tally, label, beneath))
            except Exception as error:  # regex.error: checked at submit, so not seen here
                tally.say(f"the pattern {spec.get('pattern')!r} does not compile: {error}")
        elif kind == "tensorboard":
            folder = expand(where or "", variables, base)
            source = TensorboardSource.make(folder, tally, where, root)
            if source is not None:
                sources.append(source)
        else:
            tally.say(f"unknown source type {kind!r}: one of {', '.join(TYPES)}")
    return sources


class Extractor:
    """The thread that follows the sources and appends their points to the points file.

    ``specs`` is the manifest's ``evaluation_metrics`` as a list of dicts, or a callable
    giving it (called in the thread: reading the manifest never delays the command)."""

    def __init__(
        self,
        run_dir: str,
        specs: list[dict] | Callable[[], list[dict] | None] | None,
        variables: dict[str, str],
        base: str,
        log_path: str,
        say: Callable[[str], None],
    ) -> None:
        self.path = os.path.join(run_dir, METRICS_FILE)
        self.specs = specs
        self.variables = variables
        self.base = base
        self.log_path = log_path
        self._say = say
        # what is said while the command runs waits for its end: the command's output goes
        # into the same log, and a line written between two of its writes would cut one of
        # its lines in two (and a `log` pattern would miss it)
        self._held: list[str] | None = []
        self._held_lock = threading.Lock()
        self.tally = Tally(self._tell)
        self.sources: list = []
        self.points = 0
        self.metrics: set[str] = set()
        # a metric's name → the source it first came from (None: said to come from two)
        self._origins: dict[str, str | None] = {}
        self.fd = -1
        self.write_failed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trainui-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _tell(self, text: str) -> None:
        with self._held_lock:
            if self._held is not None:
                self._held.append(text)
                return
        self._say(f"metrics: {text}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Ask for the final pass and wait for it; False if it did not end in ``timeout``.
        Called once the command ended: what was held back is said now, then as it comes."""
        with self._held_lock:
            held, self._held = self._held or [], None
        for text in held:
            self._say(f"metrics: {text}")
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.tally.say(f"the final pass did not end within {timeout:g} s; left unfinished")
            return False
        return True

    def _run(self) -> None:
        try:
            specs = self.specs() if callable(self.specs) else self.specs
            self.sources = open_sources(specs, self.variables, self.base, self.log_path, self.tally)
            delay = POLL_FIRST
            while not self._stop.is_set():
                spent = time.thread_time()
                found, more = self.one_pass(final=False, limit=FOLLOW_BYTES)
                # a pass is followed by a pause long enough that this thread takes at most
                # CPU_SHARE of a core: the command is never slowed by more, even on a machine
                # whose other cores are busy; a command that logs faster than that is caught up
                # with later (at the latest when it ends)
                spent = time.thread_time() - spent
                owed = spent * (1 / CPU_SHARE - 1)
                if not more:
                    delay = POLL_FIRST if found else min(delay * 2, POLL_MAX)
                self._stop.wait(owed if more else max(delay, owed))
            while self.one_pass(final=False)[1]:  # everything written so far, then the ends
                pass
            self.one_pass(final=True)
            self._report()
        except Exception as exc:  # never the run's failure: said, and the run goes on
            self.tally.say(f"extraction stopped: {type(exc).__name__}: {exc}")
        finally:
            for source in self.sources:
                with contextlib.suppress(Exception):
                    source.close()
            if self.fd >= 0:
                os.close(self.fd)

    def one_pass(self, final: bool, limit: int | None = None) -> tuple[int, bool]:
        """Read every source once (up to ``limit`` bytes of each file), append what they gave
        in one write: (points, more to read)."""
        points: list[Point] = []
        more = False
        several = len(self.sources) > 1
        for source in self.sources:
            start = len(points)
            source.poll(points, final, limit)
            more = more or source.more
            if several and len(points) > start:
                self._same_names(source.label, points[start:])
        if points:
            self._write(points)
        return len(points), more

    def _same_names(self, label: str, points: list[Point]) -> None:
        """Say once of each metric that two sources give (a ``log`` pattern's ``loss`` and a
        TensorBoard tag ``loss``): their points make one series, which a chart draws as one
        zig-zagging line."""
        for name in sorted({p.metric for p in points}):
            first = self._origins.setdefault(name, label)
            if first != label and first is not None:
                self._origins[name] = None  # said
                self.tally.say(
                    f"warning: the metric {name!r} comes from {first} and from {label}: their"
                    " points are one series; give one of them another name"
                )

    def _write(self, points: list[Point]) -> None:
        if self.write_failed:
            return
        data = _encoder.encode_lines(points)
        try:
            if self.fd < 0:
                self.fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as error:
            self.write_failed = True
            self.tally.say(f"{self.path} could not be written ({error.strerror}): no more points")
            return
        self.points += len(points)
        self.metrics.update(p.metric for p in points)

    def _report(self) -> None:
        if not self.points and not self.tally.counts:
            return
        said = f"{_count(self.points, 'point')} of {_count(len(self.metrics), 'metric')}"
        skipped = ", ".join(_skipped(k, n) for k, n in self.tally.counts.items())
        self.tally.say(f"{said} in {METRICS_FILE}" + (f"; skipped: {skipped}" if skipped else ""))


def _bad_name(name: str, where: str) -> str:
    """What is said of a metric name left out: shown escaped and cut (a newline in it would
    forge a line of the log, an escape sequence recolour the terminal)."""
    shown = ascii(name[:40]) + ("..." if len(name) > 40 else "")
    return (
        f"a metric name in {where} is empty, holds a control character or is over "
        f"{LONGEST_NAME} characters ({shown})"
    )


_KINDS = {  # what is counted: (one, several)
    "name": ("metric with an unusable name", "metrics with an unusable name"),
    "jsonl-object": ("line not a JSON object", "lines not a JSON object"),
    "jsonl-malformed": ("malformed line", "malformed lines"),
    "jsonl-torn": ("torn last line", "torn last lines"),
    "jsonl-step": ("line with a bad step", "lines with a bad step"),
    "non-finite": ("non-finite value", "non-finite values"),
    "log-step": ("match with a bad step", "matches with a bad step"),
    "log-number": ("matched value not a number", "matched values not a number"),
    "tb-record": ("unreadable event record", "unreadable event records"),
    "line-too-long": ("line too long to read", "lines too long to read"),
}


def _skipped(kind: str, n: int) -> str:
    """``n`` problems of ``kind``, said in words: "1 malformed line", "2 malformed lines"."""
    one, several = _KINDS.get(kind, (kind, kind))
    return f"{n:,} {one if n == 1 else several}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


# ----------------------------------------------------------------------------- tensorboard

# An event file is a TFRecord file: records of [length u64][masked crc32c of the length u32]
# [payload][masked crc32c of the payload u32], each payload an ``Event`` protobuf. The records
# are cut here (struct), their payloads decoded by tensorboard's protobuf classes; the CRCs are
# not checked: tensorboard's reader without TensorFlow checks them in pure Python, which costs
# more than the whole rest of the read (bench/metrics_learner.py). A torn record (its length
# says more than is there) waits for the rest; an absurd length ends the file's reading.
_RECORD_HEAD = 12
_RECORD_MAX = 256 << 20
_DATA_CLASS_SCALAR = 1  # SummaryMetadata.DataClass.DATA_CLASS_SCALAR
_EVENT_NAME = "tfevents"  # what tensorboard looks for in an event file's name


class _EventFile:
    """One event file, followed by offset; ``records()`` gives the whole records added."""

    def __init__(self, path: str, prefix: str = "", root: str | None = None) -> None:
        self.path = path
        self.root = root  # the run's folders: opened beneath them (open_beneath)
        self.prefix = prefix  # put before its tags: its sub-folder's path and "/"
        self.offset = 0
        self.rest = b""
        self.fd = -1
        self.more = False
        self.broken = False

    def records(self, limit: int | None = None) -> list[bytes]:
        self.more = False
        if self.broken:
            return []
        try:
            if self.fd < 0:
                if self.root is None:
                    self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                else:
                    self.fd = open_beneath(self.root, self.path)
            size = os.fstat(self.fd).st_size
            if size <= self.offset:
                return []
            data = os.pread(self.fd, min(size - self.offset, limit or READ_BYTES), self.offset)
        except OSError:
            return []
        self.offset += len(data)
        self.more = self.offset < size
        if self.rest:
            data = self.rest + data
        unpack, pos, end, out = struct.unpack_from, 0, len(data), []
        while pos + _RECORD_HEAD <= end:
            (length,) = unpack("<Q", data, pos)
            if length > _RECORD_MAX:
                self.broken = True
                return out
            stop = pos + _RECORD_HEAD + length
            if stop + 4 > end:
                break
            out.append(data[pos + _RECORD_HEAD : stop])
            pos = stop + 4
        self.rest = data[pos:]
        return out

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


class TensorboardSource:
    """``type: tensorboard``: the scalars of every event file under a folder (recursively),
    files that appear later included, read in the order of their names as TensorBoard does."""

    def __init__(
        self, folder: str, tally: Tally, event_class, label: str = "", root: str | None = None
    ) -> None:
        self.folder = folder
        self.root = root  # its files are opened beneath these folders (open_beneath)
        self.label = label or folder
        self.tally = tally
        self.decode = event_class.FromString
        self.files: dict[str, _EventFile] = {}
        self.scalar_tags: set[str] = set()  # tags whose tensors are scalars (their metadata)
        self.make_ndarray = None
        self.next_scan = 0.0
        self.more = False
        self.seen_folder = False

    @classmethod
    def make(
        cls, folder: str, tally: Tally, label: str = "", root: str | None = None
    ) -> TensorboardSource | None:
        try:
            from tensorboard.compat.proto import event_pb2
        except ImportError as error:
            tally.say(
                f"the tensorboard source {label or folder} is not read: tensorboard is not"
                f" installed ({error}); {TENSORBOARD_HINT}"
            )
            return None
        return cls(folder, tally, event_pb2.Event, label, root)

    def scan(self) -> None:
        found = []
        for root, dirs, names in os.walk(self.folder):
            dirs.sort()
            found.extend(os.path.join(root, n) for n in names if _EVENT_NAME in n)
        self.seen_folder = self.seen_folder or os.path.isdir(self.folder)
        for path in sorted(found):
            if path not in self.files:
                self.files[path] = _EventFile(path, self._prefix(path), self.root)

    def _prefix(self, path: str) -> str:
        """A file in a sub-folder is a TensorBoard run of its own (Keras writes train/ and
        validation/, each with ``epoch_loss``): its tags are named ``train/epoch_loss``."""
        folder = os.path.relpath(os.path.dirname(path), self.folder)
        return "" if folder == "." else folder.replace(os.sep, "/") + "/"

    def poll(self, out: list[Point], final: bool, limit: int | None = None) -> None:
        now = time.monotonic()
        if final or now >= self.next_scan:
            self.scan()
            self.next_scan = now + SCAN_INTERVAL
        self.more = False
        for events in self.files.values():
            records = events.records(limit)
            self.more = self.more or events.more
            if events.broken and events.fd >= 0:
                events.close()
                self.tally.add("tb-record", f"{events.path} has a record of a wrong length")
            for record in records:
                self._points(record, events.prefix, out)
        if final and not self.seen_folder:
            self.tally.say(f"{self.label} was never made: no points from it")

    def _points(self, record: bytes, prefix: str, out: list[Point]) -> None:
        try:
            event = self.decode(record)
        except Exception:  # google.protobuf.message.DecodeError
            self.tally.add("tb-record", "an event record could not be decoded")
            return
        if not event.HasField("summary"):
            return
        step, when = event.step, event.wall_time
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            tag = value.tag
            if kind == "simple_value":
                number = value.simple_value
            elif kind == "tensor":
                if value.HasField("metadata"):
                    meta = value.metadata
                    if (
                        meta.plugin_data.plugin_name == "scalars"
                        or meta.data_class == _DATA_CLASS_SCALAR
                    ):
                        self.scalar_tags.add(tag)
                if tag not in self.scalar_tags:
                    continue
                number = self._tensor_scalar(value.tensor)
                if number is None:
                    continue
            else:
                continue
            name = prefix + tag if prefix else tag
            if not name or not name.isprintable() or len(name) > LONGEST_NAME:
                self.tally.add("name", _bad_name(name, self.label))
                continue
            if number - number != 0.0:
                self.tally.add("non-finite", f"a non-finite value ({tag}={number}) in {self.label}")
                continue
            out.append(Point(name, step, number, when))

    def _tensor_scalar(self, tensor) -> float | None:
        if self.make_ndarray is None:
            from tensorboard.util.tensor_util import make_ndarray

            self.make_ndarray = make_ndarray
        try:
            array = self.make_ndarray(tensor)
        except Exception:
            return None
        if array.size != 1 or array.dtype.kind not in "fiu":
            return None
        return float(array.reshape(()))

    def close(self) -> None:
        for events in self.files.values():
            events.close()
