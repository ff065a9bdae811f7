"""GPU readings through NVML (nvidia-ml-py, imported as ``pynvml``), tied to training runs.

``GpuMonitor`` initialises NVML once, caches the device handles and, in a daemon thread, takes
one snapshot of every GPU per interval: utilisation, memory used/total, temperature, power
draw/limit and the compute processes with their GPU memory, each process matched to a run by
``process_owner``. Fields that change slowly (name, UUID, power limit, MIG mode) are read once a
minute. A field the driver does not support reads ``None`` (unknown) and never stops the others.

Nothing here raises out of the monitor: no NVML library or driver, a driver/library version
mismatch, a GPU that fell off the bus, MIG mode, each is a state with a sentence in words
(``snapshot()["state"]`` and ``["message"]``), and the monitor keeps polling (it tries to start
NVML again every ``RETRY_INIT_SECONDS``).

The snapshot is the JSON of ``GET /v3/gpus``::

    {"state": "ok" | "no_gpu" | "error", "message": str, "driver_version": str | None,
     "taken_at": RFC 3339,
     "gpus": [{"index", "uuid", "name", "utilization" (%), "memory_used", "memory_total"
               (bytes), "temperature" (C), "power_draw", "power_limit" (W), "mig" (bool),
               "state": "ok" | "lost" | "error",
               "processes": [{"pid", "memory" (bytes), "run" (run ID or None)}]}]}

``message`` is "" when every GPU reads fine; otherwise it says what is missing or wrong.

This module imports nothing heavy: ``pynvml`` is imported when a monitor starts, so the CLI can
use ``format_table`` cheaply.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

__all__ = [
    "GpuMonitor",
    "format_table",
    "nvml_gpu_ids",
    "off_snapshot",
    "owner_by_process_tree",
]

MIN_INTERVAL = 0.25  # seconds: NVML's utilisation is itself averaged over 1/6 s to 1 s
SLOW_FIELDS_SECONDS = 60.0  # name, UUID, power limit, MIG mode: read this rarely
RETRY_INIT_SECONDS = 30.0  # NVML could not be started: try again this often
FIRST_READING_TIMEOUT = 5.0  # snapshot() waits this long for the first reading at most

# NVML error codes (as in pynvml; read from the module given when it has them)
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_RESET_REQUIRED = 16
_LIB_RM_VERSION_MISMATCH = 18
_UNINITIALIZED = 1
_ARGUMENT_VERSION_MISMATCH = 25

OWNER_UNKNOWN = None  # a process of no run (or one we may not look at)


# ----------------------------------------------------------------------------- snapshots


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def off_snapshot(message: str, state: str = "no_gpu") -> dict:
    """A snapshot with no GPU in it, for when no monitor runs (``TRAINUI_GPUS=none``, say)."""
    return {
        "state": state,
        "message": message,
        "driver_version": None,
        "taken_at": _rfc3339(time.time()),
        "gpus": [],
    }


def _gpu_entry(index: int) -> dict:
    return {
        "index": index,
        "uuid": None,
        "name": None,
        "utilization": None,
        "memory_used": None,
        "memory_total": None,
        "temperature": None,
        "power_draw": None,
        "power_limit": None,
        "mig": False,
        "state": "ok",
        "processes": [],
    }


class _Lost(Exception):
    """The GPU fell off the bus (or needs a reset): stop reading it this round."""


class _Broken(Exception):
    """NVML as a whole stopped working (driver unloaded or upgraded): start it again later."""


class _Device:
    """What is known of one GPU between snapshots: its handle and its slow fields."""

    __slots__ = ("handle", "mig_handles", "mig", "name", "power_limit", "slow_at", "uuid")

    def __init__(self) -> None:
        self.handle = None
        self.name: str | None = None
        self.uuid: str | None = None
        self.power_limit: float | None = None
        self.mig = False
        self.mig_handles: list | None = None
        self.slow_at = float("-inf")


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class GpuMonitor:
    """Polls every GPU through NVML in a daemon thread; ``snapshot()`` and ``history()`` are
    cheap and thread-safe (they hand out the latest reading, never wait for NVML, except for
    the very first reading after ``start()``)."""

    def __init__(
        self,
        interval: float = 1.0,
        history_seconds: float = 300,
        nvml=None,
        process_owner: Callable[[int], str | None] | None = None,
    ) -> None:
        self.interval = max(MIN_INTERVAL, float(interval))
        self.history_length = max(1, round(float(history_seconds) / self.interval))
        self._nvml = nvml  # None: the real pynvml, imported when first needed
        self._process_owner = process_owner
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False  # nvmlInit succeeded and nvmlShutdown is owed
        self._init_tried_at: float | None = None
        self._devices: list[_Device] = []
        self._driver: str | None = None
        self._history: dict[int, tuple[deque, deque]] = {}
        self._memory_v2 = True  # until the driver says it has no nvmlDeviceGetMemoryInfo_v2
        self._snapshot = off_snapshot("GPU monitoring has not started yet", state="error")

    # --- public ---------------------------------------------------------------------------

    def start(self) -> GpuMonitor:
        """Start polling in a daemon thread (NVML is initialised there, not here)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="trainui-gpu", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling and shut NVML down."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        if thread is None or not thread.is_alive():
            self._shutdown()

    def snapshot(self, timeout: float = FIRST_READING_TIMEOUT) -> dict:
        """The latest reading of every GPU (see the module's docstring). Until the first
        reading after ``start()`` it waits up to ``timeout`` seconds for it. The dict is new
        with each reading and never changed after: do not change it either."""
        if not self._ready.is_set() and self._thread is not None and timeout > 0:
            self._ready.wait(timeout)
        with self._lock:
            return self._snapshot

    def history(self) -> dict:
        """``{"interval": s, "gpus": {"0": {"utilization": [...], "memory_used": [...]}}}``,
        oldest first, one value per reading (None where unknown), about ``history_seconds``."""
        with self._lock:
            gpus = {
                str(index): {"utilization": list(util), "memory_used": list(mem)}
                for index, (util, mem) in sorted(self._history.items())
            }
        return {"interval": self.interval, "gpus": gpus}

    def sample(self) -> dict:
        """Take one reading of every GPU now (the thread calls this every interval); never
        raises. Returns the new snapshot."""
        try:
            snapshot = self._sample(time.monotonic())
        except Exception as error:  # a bug or an NVML surprise: say it, keep the service up
            self._shutdown()
            self._init_tried_at = time.monotonic()  # start again in RETRY_INIT_SECONDS
            snapshot = off_snapshot(f"reading the GPUs failed: {_error_text(error)}", "error")
            snapshot["driver_version"] = self._driver
        with self._lock:
            self._snapshot = snapshot
            if snapshot["state"] != "no_gpu" or snapshot["gpus"]:
                self._record(snapshot)
        self._ready.set()
        return snapshot

    # --- the thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stopping.is_set():
                self.sample()
                next_at += self.interval
                now = time.monotonic()
                if next_at < now:  # a slow reading: skip the missed beats, never catch up
                    next_at = now + self.interval
                self._stopping.wait(next_at - now)
        finally:
            self._shutdown()

    def _record(self, snapshot: dict) -> None:
        seen = set()
        for gpu in snapshot["gpus"]:
            index = gpu["index"]
            seen.add(index)
            if index not in self._history:
                n = self.history_length
                self._history[index] = (deque(maxlen=n), deque(maxlen=n))
            util, mem = self._history[index]
            util.append(gpu["utilization"])
            mem.append(gpu["memory_used"])
        for index, (util, mem) in self._history.items():
            if index not in seen:  # NVML broke this round: keep the time line even
                util.append(None)
                mem.append(None)

    # --- NVML -----------------------------------------------------------------------------

    def _module(self):
        if self._nvml is None:
            import pynvml

            self._nvml = pynvml
        return self._nvml

    def _code(self, name: str, default: int) -> int:
        return getattr(self._nvml, "NVML_ERROR_" + name, default)

    def _init(self, now: float) -> dict | None:
        """Start NVML and cache the handles; a snapshot saying why not, or None."""
        self._init_tried_at = now
        try:
            nvml = self._module()
        except ImportError as error:
            return off_snapshot(f"no NVIDIA GPU or driver found (nvidia-ml-py: {error})")
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as error:
            return off_snapshot(*self._init_problem(error))
        self._started = True
        try:
            count = nvml.nvmlDeviceGetCount()
            try:
                self._driver = _text(nvml.nvmlSystemGetDriverVersion())
            except nvml.NVMLError:
                self._driver = None
        except nvml.NVMLError as error:
            self._shutdown()
            return off_snapshot(*self._init_problem(error))
        if count == 0:
            self._shutdown()
            snapshot = off_snapshot("no NVIDIA GPU found (the driver reports none)")
            snapshot["driver_version"] = self._driver
            return snapshot
        self._devices = [_Device() for _ in range(count)]
        return None

    def _init_problem(self, error) -> tuple[str, str]:
        code = getattr(error, "value", None)
        if code in (
            self._code("LIBRARY_NOT_FOUND", _LIBRARY_NOT_FOUND),
            self._code("DRIVER_NOT_LOADED", _DRIVER_NOT_LOADED),
        ):
            return f"no NVIDIA GPU or driver found ({error})", "no_gpu"
        if code == self._code("LIB_RM_VERSION_MISMATCH", _LIB_RM_VERSION_MISMATCH):
            return (
                "driver/library version mismatch: the NVIDIA kernel driver and its NVML "
                "library differ (reload the driver or reboot)",
                "error",
            )
        if code == self._code("NO_PERMISSION", _NO_PERMISSION):
            return f"NVML refused access to the GPUs ({error})", "error"
        return f"NVML could not be started ({_error_text(error)})", "error"

    def _shutdown(self) -> None:
        if self._started:
            self._started = False
            self._devices = []
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def _sample(self, now: float) -> dict:
        if not self._started:
            if (
                self._init_tried_at is not None
                and now - self._init_tried_at < RETRY_INIT_SECONDS
                and self._snapshot["state"] != "ok"
            ):
                return {**self._snapshot, "taken_at": _rfc3339(time.time())}
            problem = self._init(now)
            if problem is not None:
                return problem
        nvml = self._nvml
        owners: dict[int, str | None] = {}
        gpus = []
        problems = []
        try:
            for index, device in enumerate(self._devices):
                gpu = self._read_gpu(nvml, index, device, now, owners)
                gpus.append(gpu)
                if gpu["state"] == "lost":
                    problems.append(f"GPU {index} has fallen off the bus")
                elif gpu["state"] == "error":
                    problems.append(f"GPU {index} cannot be read")
                elif gpu["mig"]:
                    problems.append(f"GPU {index} is in MIG mode: its utilisation is not reported")
        except _Broken as broken:
            self._shutdown()
            self._init_tried_at = now
            message, state = self._init_problem(broken.args[0])
            snapshot = off_snapshot(message, state)
            snapshot["driver_version"] = self._driver
            return snapshot
        failed = sum(1 for gpu in gpus if gpu["state"] != "ok")
        return {
            "state": "error" if failed == len(gpus) else "ok",
            "message": "; ".join(problems),
            "driver_version": self._driver,
            "taken_at": _rfc3339(time.time()),
            "gpus": gpus,
        }

    def _call(self, nvml, function, *args):
        """One NVML reading: its value, None when unsupported or refused, _Lost, _Broken."""
        try:
            return function(*args)
        except nvml.NVMLError as error:
            code = getattr(error, "value", None)
            if code in (self._code("GPU_IS_LOST", _GPU_IS_LOST),):
                raise _Lost from None
            if code in (
                self._code("UNINITIALIZED", _UNINITIALIZED),
                self._code("LIB_RM_VERSION_MISMATCH", _LIB_RM_VERSION_MISMATCH),
                self._code("DRIVER_NOT_LOADED", _DRIVER_NOT_LOADED),
            ):
                raise _Broken(error) from None
            return None  # not supported, no permission, no data, ...: unknown

    def _read_gpu(self, nvml, index: int, device: _Device, now: float, owners: dict) -> dict:
        gpu = _gpu_entry(index)
        try:
            if device.handle is None:
                device.handle = self._call(nvml, nvml.nvmlDeviceGetHandleByIndex, index)
                if device.handle is None:
                    gpu["state"] = "error"
                    return gpu
            handle = device.handle
            if now - device.slow_at >= SLOW_FIELDS_SECONDS:
                self._read_slow(nvml, device)
                device.slow_at = now
            gpu.update(
                uuid=device.uuid, name=device.name, power_limit=device.power_limit, mig=device.mig
            )
            utilization = self._call(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
            if utilization is not None:
                gpu["utilization"] = int(utilization.gpu)
            memory = self._memory(nvml, handle)
            if memory is not None:
                gpu["memory_used"] = int(memory.used)
                gpu["memory_total"] = int(memory.total)
            temperature = self._call(
                nvml,
                nvml.nvmlDeviceGetTemperature,
                handle,
                getattr(nvml, "NVML_TEMPERATURE_GPU", 0),
            )
            if temperature is not None:
                gpu["temperature"] = int(temperature)
            power = self._call(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
            if power is not None:
                gpu["power_draw"] = round(power / 1000.0, 1)  # mW -> W
            gpu["processes"] = self._processes(nvml, device, owners)
        except _Lost:
            gpu.update(_lost_fields())
            gpu["state"] = "lost"
        return gpu

    def _read_slow(self, nvml, device: _Device) -> None:
        handle = device.handle
        device.name = _text(self._call(nvml, nvml.nvmlDeviceGetName, handle))
        device.uuid = _text(self._call(nvml, nvml.nvmlDeviceGetUUID, handle))
        limit = self._call(nvml, nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        device.power_limit = None if limit is None else round(limit / 1000.0, 1)
        mode = self._call(nvml, nvml.nvmlDeviceGetMigMode, handle)
        enabled = getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)
        device.mig = bool(mode is not None and mode[0] == enabled)
        device.mig_handles = None  # found again when needed

    def _memory(self, nvml, handle):
        # v2 counts the driver's reserved memory apart, as nvidia-smi does; v1 counts it used
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None and self._memory_v2:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            except nvml.NVMLError as error:
                code = getattr(error, "value", None)
                if code not in (
                    self._code("FUNCTION_NOT_FOUND", _FUNCTION_NOT_FOUND),
                    self._code("ARGUMENT_VERSION_MISMATCH", _ARGUMENT_VERSION_MISMATCH),
                    self._code("NOT_SUPPORTED", _NOT_SUPPORTED),
                ):
                    # lost, broken or unknown: the same rules as every other reading
                    return self._call(nvml, _raise, error)
                self._memory_v2 = False  # an older driver: v1 from now on
            except TypeError:  # an older nvidia-ml-py without the version argument
                self._memory_v2 = False
        return self._call(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)

    def _processes(self, nvml, device: _Device, owners: dict) -> list[dict]:
        found = self._call(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, device.handle)
        if found is None and device.mig:
            # the parent GPU of MIG instances answers only to privileged callers: ask each
            # instance instead
            found = []
            for handle in self._mig_handles(nvml, device):
                found.extend(
                    self._call(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
                )
        processes = []
        for process in found or []:
            pid = int(process.pid)
            memory = getattr(process, "usedGpuMemory", None)
            if pid not in owners:
                owners[pid] = self._owner(pid)
            processes.append(
                {"pid": pid, "memory": None if memory is None else int(memory), "run": owners[pid]}
            )
        return processes

    def _mig_handles(self, nvml, device: _Device) -> list:
        if device.mig_handles is None:
            handles = []
            count = self._call(nvml, nvml.nvmlDeviceGetMaxMigDeviceCount, device.handle) or 0
            for k in range(count):
                try:
                    handles.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(device.handle, k))
                except nvml.NVMLError:
                    continue  # no instance in this slot
            device.mig_handles = handles
        return device.mig_handles

    def _owner(self, pid: int) -> str | None:
        if self._process_owner is None:
            return None
        try:
            return self._process_owner(pid)
        except Exception:  # the service's bookkeeping changed under us: unknown this round
            return None


def _raise(error):
    raise error


def _lost_fields() -> dict:
    return {
        "utilization": None,
        "memory_used": None,
        "memory_total": None,
        "temperature": None,
        "power_draw": None,
        "processes": [],
    }


def _error_text(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ------------------------------------------------------------------------------ inventory


def nvml_gpu_ids(nvml=None) -> list[int]:
    """The indices of the GPUs NVML reports and can read (a GPU that fell off the bus is left
    out); [] when there is no driver, no library or no GPU. Starts and shuts down NVML."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return []
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return []
    try:
        ids = []
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                nvml.nvmlDeviceGetMemoryInfo(handle)  # answers unless the GPU is gone
            except nvml.NVMLError:
                continue
            ids.append(index)
        return ids
    except nvml.NVMLError:
        return []
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def nvml_minor_numbers(nvml=None) -> dict[int, int]:
    """Each GPU's index -> the minor number of its device node (``/dev/nvidiaN``), for the
    sandbox to pass a run exactly its GPUs; {} when NVML cannot say."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return {}
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return {}
    try:
        minors = {}
        for index in range(nvml.nvmlDeviceGetCount()):
            with contextlib.suppress(nvml.NVMLError):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                minors[index] = int(nvml.nvmlDeviceGetMinorNumber(handle))
        return minors
    except nvml.NVMLError:
        return {}
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


# ---------------------------------------------------------------------------- GPU -> run


def _proc_stat(pid: int, proc: str) -> tuple[int, int, int] | None:
    """(parent pid, process group, session) of a process, None if it is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[1]), int(fields[2]), int(fields[3])
    except (IndexError, ValueError):
        return None


def owner_by_process_tree(
    pid: int, roots: Mapping[int, str], proc: str = "/proc", max_depth: int = 64
) -> str | None:
    """The run whose process tree holds ``pid``: ``roots`` maps a run's root PIDs (its
    learner's PID; its command's process group, which is also its session) to its ID. The
    process, its process group, its session and then each parent up the ``/proc`` parent
    links are looked up in ``roots``; None when none matches (another user's process, one in
    another PID namespace, one that has ended)."""
    if not roots:
        return None
    seen = set()
    current = pid
    for _ in range(max_depth):
        if current in roots:
            return roots[current]
        if current <= 1 or current in seen:
            return None
        seen.add(current)
        stat = _proc_stat(current, proc)
        if stat is None:
            return None
        parent, group, session = stat
        if group in roots:
            return roots[group]
        if session in roots:
            return roots[session]
        current = parent
    return None


# ------------------------------------------------------------------------------- printing

_GIB = 1 << 30
_RESET = "\x1b[0m"


def _paint(text: str, code: str, use_color: bool) -> str:
    return f"\x1b[{code}m{text}{_RESET}" if use_color and code else text


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / _GIB:.1f}"


def _memory_text(gpu: dict) -> str:
    used, total = gpu["memory_used"], gpu["memory_total"]
    if used is None and total is None:
        return "?"
    return f"{_gib(used)} / {_gib(total)} GiB"


def _power_text(gpu: dict) -> str:
    draw, limit = gpu["power_draw"], gpu["power_limit"]
    if draw is None and limit is None:
        return "?"
    d = "?" if draw is None else f"{draw:.0f}"
    return f"{d} / {'?' if limit is None else f'{limit:.0f}'} W"


def _runs_text(gpu: dict, use_color: bool) -> str:
    """``training-XXXX (12.3 GiB)``, other processes as such, ``-`` when none."""
    if not gpu["processes"]:
        return "-"
    totals: dict[str | None, int | None] = {}
    for process in gpu["processes"]:
        key = process["run"]
        memory = process["memory"]
        if key in totals:
            known = totals[key]
            totals[key] = None if known is None or memory is None else known + memory
        else:
            totals[key] = memory
    parts = []
    for run in sorted(totals, key=lambda r: (r is None, r or "")):
        memory = totals[run]
        size = "" if memory is None else f" ({memory / _GIB:.1f} GiB)"
        name = _paint(run, "36", use_color) if run else "other process"
        parts.append(name + size)
    return ", ".join(parts)


def _level(value: int | None, warn: int, high: int) -> str:
    if value is None:
        return ""
    return "31" if value >= high else "33" if value >= warn else "32"


def format_table(snapshot: dict, use_color: bool = False) -> str:
    """A table in the spirit of gpustat for ``trainui gpus``; without GPUs, the sentence that
    says why."""
    gpus = snapshot.get("gpus") or []
    if not gpus:
        return snapshot.get("message") or "no NVIDIA GPU found"
    header = ["GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "RUN"]
    rows = []
    for gpu in gpus:
        state = gpu.get("state", "ok")
        name = gpu.get("name") or "?"
        if state != "ok":
            what = "fallen off the bus" if state == "lost" else "cannot be read"
            # a short row: index, name, state, then what is wrong (no columns to fill)
            rows.append([(str(gpu["index"]), ""), (name, ""), (state.upper(), "31"), (what, "31")])
            continue
        util = gpu["utilization"]
        if util is not None:
            util_text = f"{util}%"
        elif gpu.get("mig"):
            util_text = "MIG"
        else:
            util_text = "?"
        temp = gpu["temperature"]
        rows.append(
            [
                (str(gpu["index"]), ""),
                (name + (" (MIG)" if gpu.get("mig") else ""), ""),
                (util_text, _level(util, 30, 70)),
                (_memory_text(gpu), ""),
                ("?" if temp is None else f"{temp}°C", _level(temp, 60, 80)),
                (_power_text(gpu), ""),
                (_runs_text(gpu, use_color), ""),
            ]
        )
    widths = [len(h) for h in header]
    for row in rows:
        for i, (text, _) in enumerate(row[:-1] if len(row) == len(header) else row[:3]):
            widths[i] = max(widths[i], len(text))
    right = {0, 2, 3, 4, 5}  # numbers line up on the right

    def cell(i: int, text: str, color: str = "") -> str:
        padded = text.rjust(widths[i]) if i in right else text.ljust(widths[i])
        return _paint(padded, color, use_color) if text else padded

    lines = ["  ".join(cell(i, h) for i, h in enumerate(header)).rstrip()]
    if use_color:
        lines[0] = _paint(lines[0], "1", True)
    for row in rows:
        cells = [cell(i, text, color) for i, (text, color) in enumerate(row[:-1])]
        last, color = row[-1]
        lines.append("  ".join([*cells, _paint(last, color, use_color)]).rstrip())
    footer = []
    if snapshot.get("driver_version"):
        footer.append(f"driver {snapshot['driver_version']}")
    if snapshot.get("taken_at"):
        footer.append(f"read at {snapshot['taken_at']}")
    if footer:
        lines.append(", ".join(footer))
    if snapshot.get("message"):
        lines.append(_paint(snapshot["message"], "33", use_color))
    return "\n".join(lines)


if __name__ == "__main__":  # python -m trainui.gpu: one reading, as a table
    import sys

    _monitor = GpuMonitor()
    _color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(format_table(_monitor.sample(), use_color=bool(_color)))
    _monitor.stop()
