"""GPU monitoring (trainui.gpu): the real NVML library where this machine has no driver, and
a recorded-snapshot stand-in behind pynvml's interface for the rest (no GPU here). Process
ownership is checked with real process trees."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pynvml
import pytest

from trainui import gpu
from trainui.gpu import GpuMonitor, format_table, nvml_gpu_ids, owner_by_process_tree

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gpu"
GIB = 1 << 30


# ------------------------------------------------------------------- the recorded stand-in


def _error(name: str) -> pynvml.NVMLError:
    return pynvml.NVMLError(getattr(pynvml, "NVML_ERROR_" + name))


class _Handle:
    def __init__(self, index: int, mig: int | None = None) -> None:
        self.index = index
        self.mig = mig


class RecordedNvml:
    """pynvml's interface, answering from a recording (tests/fixtures/gpu/*.json): each
    device's answers by call, ``{"error": NAME}`` raising that NVMLError, ``{"bytes": s}``
    answering bytes. Constants and error classes are the real module's. ``calls`` counts the
    calls by function name; ``advance()`` applies the recording's next frame."""

    def __init__(self, recording: dict) -> None:
        self.recording = copy.deepcopy(recording)
        self.devices = self.recording["devices"]
        self.frames = list(self.recording.get("frames", []))
        self.calls: Counter[str] = Counter()
        self.initialised = 0
        self.broken: str | None = None  # an error every call answers (driver gone, ...)
        self.fail_with: dict[str, Exception] = {}  # function name -> exception to raise

    @classmethod
    def load(cls, name: str) -> RecordedNvml:
        return cls(json.loads((FIXTURES / name).read_text()))

    def __getattr__(self, name: str):
        if name.startswith(("NVML", "nvmlMemory_v")):
            return getattr(pynvml, name)
        raise AttributeError(name)

    def advance(self) -> None:
        frame = self.frames.pop(0)
        for index, changes in frame.items():
            self.devices[int(index)].update(changes)

    # --- helpers

    def _count(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.fail_with:
            raise self.fail_with[name]
        if self.broken and name not in ("nvmlShutdown",):
            raise _error(self.broken)
        if not self.initialised and name not in ("nvmlInit", "nvmlShutdown"):
            raise _error("UNINITIALIZED")

    @staticmethod
    def _value(value):
        if isinstance(value, dict) and "error" in value:
            raise _error(value["error"])
        if isinstance(value, dict) and "bytes" in value:
            return value["bytes"].encode()
        return value

    def _device(self, handle: _Handle, key: str):
        device = self.devices[handle.index]
        if device.get("lost"):
            raise _error("GPU_IS_LOST")
        if handle.mig is not None:
            return self._value(device["mig_devices"][handle.mig][key])
        if key not in device:
            raise _error("NOT_SUPPORTED")
        return self._value(device[key])

    # --- the interface

    def nvmlInit(self) -> None:
        self._count("nvmlInit")
        if self.recording.get("init"):
            raise _error(self.recording["init"])
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._count("nvmlShutdown")
        if not self.initialised:
            raise _error("UNINITIALIZED")
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self):
        self._count("nvmlSystemGetDriverVersion")
        return self._value(self.recording["driver_version"])

    def nvmlDeviceGetCount(self) -> int:
        self._count("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._count("nvmlDeviceGetHandleByIndex")
        if index >= len(self.devices):
            raise _error("INVALID_ARGUMENT")
        self._value(self.devices[index].get("handle"))
        return _Handle(index)

    def nvmlDeviceGetName(self, handle):
        self._count("nvmlDeviceGetName")
        return self._device(handle, "name")

    def nvmlDeviceGetUUID(self, handle):
        self._count("nvmlDeviceGetUUID")
        return self._device(handle, "uuid")

    def nvmlDeviceGetUtilizationRates(self, handle):
        self._count("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(**self._device(handle, "utilization"))

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        self._count("nvmlDeviceGetMemoryInfo")
        if version is not None:
            if "memory_v2" not in self.devices[handle.index]:
                raise _error("FUNCTION_NOT_FOUND")  # what pynvml says on an older driver
            return SimpleNamespace(**self._device(handle, "memory_v2"))
        return SimpleNamespace(**self._device(handle, "memory"))

    def nvmlDeviceGetTemperature(self, handle, sensor):
        self._count("nvmlDeviceGetTemperature")
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._device(handle, "temperature")

    def nvmlDeviceGetPowerUsage(self, handle):
        self._count("nvmlDeviceGetPowerUsage")
        return self._device(handle, "power_usage")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        self._count("nvmlDeviceGetEnforcedPowerLimit")
        return self._device(handle, "power_limit")

    def nvmlDeviceGetMigMode(self, handle):
        self._count("nvmlDeviceGetMigMode")
        return list(self._device(handle, "mig_mode"))

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        self._count("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(**p) for p in self._device(handle, "processes")]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        self._count("nvmlDeviceGetMaxMigDeviceCount")
        return 7 if self.devices[handle.index].get("mig_devices") else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, index):
        self._count("nvmlDeviceGetMigDeviceHandleByIndex")
        if index >= len(self.devices[handle.index].get("mig_devices", [])):
            raise _error("NOT_FOUND")
        return _Handle(handle.index, index)


RUNS = {41001: "training-aaaaaaaaa", 41002: "training-aaaaaaaaa", 41010: "training-bbbbbbbbb"}


def monitor_for(name: str, **kwargs) -> tuple[GpuMonitor, RecordedNvml]:
    fake = RecordedNvml.load(name)
    kwargs.setdefault("process_owner", RUNS.get)
    return GpuMonitor(nvml=fake, **kwargs), fake


# -------------------------------------------------------------------- the real library


def _nvml_library_present() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


no_driver_here = pytest.mark.skipif(
    _nvml_library_present(), reason="this machine has an NVIDIA driver"
)


@no_driver_here
def test_no_driver_with_the_real_library():
    monitor = GpuMonitor()  # the real pynvml: nvmlInit fails for real here
    snapshot = monitor.sample()
    assert snapshot["state"] == "no_gpu"
    assert snapshot["message"] == "no NVIDIA GPU or driver found (NVML Shared Library Not Found)"
    assert snapshot["gpus"] == []
    assert snapshot["driver_version"] is None
    assert format_table(snapshot) == snapshot["message"]
    assert monitor.history() == {"interval": 1.0, "gpus": {}}
    assert nvml_gpu_ids() == []


@no_driver_here
def test_the_thread_survives_no_driver():
    monitor = GpuMonitor(interval=0.25).start()
    try:
        assert monitor.snapshot()["state"] == "no_gpu"  # waits for the first reading
        time.sleep(0.3)
        assert monitor._thread.is_alive()
    finally:
        monitor.stop()
    assert monitor._thread is None


# ---------------------------------------------------------------------------- readings


def test_a_snapshot_has_exactly_the_api_keys_and_is_json():
    monitor, _ = monitor_for("dgx4.json")
    snapshot = monitor.sample()
    assert set(snapshot) == {"state", "message", "driver_version", "taken_at", "gpus"}
    for entry in snapshot["gpus"]:
        assert set(entry) == {
            "index", "uuid", "name", "utilization", "memory_used", "memory_total",
            "temperature", "power_draw", "power_limit", "mig", "state", "processes",
        }  # fmt: skip
        for process in entry["processes"]:
            assert set(process) == {"pid", "memory", "run"}
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot["taken_at"].endswith("Z") and snapshot["taken_at"][10] == "T"


def test_readings_in_api_units():
    monitor, _ = monitor_for("dgx4.json")
    snapshot = monitor.sample()
    assert snapshot["state"] == "ok"
    assert snapshot["driver_version"] == "550.54.15"
    first = snapshot["gpus"][0]
    assert first == {
        "index": 0,
        "uuid": "GPU-6d5e2d1a-6a43-7c34-1f1b-3f0c5d7a0000",
        "name": "NVIDIA A100-SXM4-80GB",
        "utilization": 97,
        "memory_used": 34867249152,  # the v2 reading: reserved memory not counted, as nvidia-smi
        "memory_total": 85899345920,
        "temperature": 64,
        "power_draw": 312.5,  # W, from mW
        "power_limit": 400.0,
        "mig": False,
        "state": "ok",
        "processes": [
            {"pid": 41001, "memory": 20 * GIB, "run": "training-aaaaaaaaa"},
            {"pid": 41002, "memory": 12 * GIB, "run": "training-aaaaaaaaa"},
            {"pid": 52000, "memory": GIB // 2, "run": None},
        ],
    }
    assert snapshot["gpus"][1]["processes"] == []
    assert snapshot["gpus"][1]["utilization"] == 0


def test_recorded_h100_under_load():
    # recorded by bench/gpu_check.py on an H100 while a trainui run multiplied matrices
    monitor, _ = monitor_for("h100_load.json", process_owner={467: "training-23CV4EAkv"}.get)
    snapshot = monitor.sample()
    assert (snapshot["state"], snapshot["message"]) == ("ok", "")
    assert snapshot["driver_version"] == "580.159.04"
    (h100,) = snapshot["gpus"]
    assert h100["name"] == "NVIDIA H100 80GB HBM3"
    assert h100["utilization"] == 99
    # nvidia-smi read 1139 MiB used of 81559 MiB: NVML's v2 reading, not v1's 1619 MiB
    assert round(h100["memory_used"] / (1 << 20)) == 1139
    assert h100["memory_total"] // (1 << 20) == 81559
    assert (h100["temperature"], h100["power_draw"], h100["power_limit"]) == (54, 696.1, 700.0)
    assert h100["mig"] is False
    assert h100["processes"] == [{"pid": 467, "memory": 1184890880, "run": "training-23CV4EAkv"}]
    row = format_table(snapshot).splitlines()[1]
    assert row.split() == [
        "0", "NVIDIA", "H100", "80GB", "HBM3", "99%", "1.1", "/", "79.6", "GiB", "54°C",
        "696", "/", "700", "W", "training-23CV4EAkv", "(1.1", "GiB)",
    ]  # fmt: skip


def test_recorded_h100_idle():
    snapshot = monitor_for("h100_idle.json")[0].sample()
    (h100,) = snapshot["gpus"]
    assert (h100["utilization"], h100["temperature"], h100["power_draw"]) == (0, 35, 75.8)
    assert h100["memory_used"] == 3407872 and h100["processes"] == []
    assert format_table(snapshot).splitlines()[1].endswith("76 / 700 W  -")


def test_an_unsupported_field_is_unknown_and_the_others_read():
    monitor, _ = monitor_for("dgx4.json")
    third = monitor.sample()["gpus"][3]
    assert third["power_draw"] is None and third["power_limit"] is None
    assert third["mig"] is False  # MIG mode not supported: not MIG
    assert (third["utilization"], third["temperature"], third["memory_used"]) == (12, 38, 507510784)
    assert third["state"] == "ok"


def test_any_nvml_error_of_one_field_leaves_the_rest():
    monitor, fake = monitor_for("dgx4.json")
    fake.devices[1]["temperature"] = {"error": "NO_PERMISSION"}
    fake.devices[1]["utilization"] = {"error": "UNKNOWN"}
    second = monitor.sample()["gpus"][1]
    assert second["temperature"] is None and second["utilization"] is None
    assert second["memory_total"] == 85899345920 and second["power_draw"] == 61.2
    assert second["state"] == "ok"


def test_an_older_driver_reads_memory_v1_and_bytes():
    monitor, fake = monitor_for("old_driver.json")
    snapshot = monitor.sample()
    only = snapshot["gpus"][0]
    assert snapshot["driver_version"] == "470.223.02"
    assert only["name"] == "NVIDIA GeForce GTX 1080 Ti"
    assert only["uuid"] == "GPU-11111111-2222-3333-4444-555555555555"
    assert only["memory_used"] == 311160064  # v1
    assert only["power_draw"] == 15.0 and only["power_limit"] is None
    assert only["processes"] == [{"pid": 999999, "memory": None, "run": None}]
    monitor.sample()
    # v2 was tried once; the driver said it has none, so v1 from then on
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 3


def test_mig_gpus_say_so_and_their_processes_come_from_the_instances():
    monitor, _ = monitor_for("dgx4.json")
    snapshot = monitor.sample()
    mig = snapshot["gpus"][2]
    assert mig["mig"] is True and mig["state"] == "ok"
    assert mig["utilization"] is None
    assert mig["memory_used"] == 10 * GIB
    assert mig["processes"] == [
        {"pid": 41010, "memory": 4 * GIB, "run": "training-bbbbbbbbb"},
        {"pid": 52001, "memory": None, "run": None},
    ]
    assert snapshot["message"] == "GPU 2 is in MIG mode: its utilisation is not reported"
    assert snapshot["state"] == "ok"


def test_nvml_is_started_once_handles_are_cached_slow_fields_read_rarely():
    monitor, fake = monitor_for("dgx4.json")
    for _ in range(5):
        monitor.sample()
    assert fake.calls["nvmlInit"] == 1
    assert fake.calls["nvmlDeviceGetCount"] == 1
    assert fake.calls["nvmlDeviceGetHandleByIndex"] == 4
    for slow in ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetEnforcedPowerLimit"):
        assert fake.calls[slow] == 4, slow
    assert fake.calls["nvmlDeviceGetMigDeviceHandleByIndex"] == 7  # found once, kept
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 20
    assert fake.calls["nvmlDeviceGetTemperature"] == 20
    monitor.stop()
    assert fake.calls["nvmlShutdown"] == 1 and fake.initialised == 0


def test_slow_fields_are_read_again_after_a_while(monkeypatch):
    monitor, fake = monitor_for("dgx4.json")
    monitor.sample()
    fake.devices[0]["power_limit"] = 300000  # an administrator lowered it
    monitor.sample()
    assert monitor.snapshot()["gpus"][0]["power_limit"] == 400.0
    monkeypatch.setattr(gpu, "SLOW_FIELDS_SECONDS", 0.0)
    assert monitor.sample()["gpus"][0]["power_limit"] == 300.0


def test_the_interval_has_a_floor_and_history_about_five_minutes():
    assert GpuMonitor(interval=0.01, nvml=RecordedNvml.load("dgx4.json")).interval == 0.25
    monitor = GpuMonitor(interval=2.0, history_seconds=300, nvml=None)
    assert monitor.history_length == 150


# ------------------------------------------------------------------------------ history


def test_history_is_a_ring_buffer_per_gpu_oldest_first():
    monitor, fake = monitor_for("dgx4.json", interval=1.0, history_seconds=3)
    for _ in range(4):
        fake.advance()
        monitor.sample()
    history = monitor.history()
    assert history["interval"] == 1.0
    assert set(history["gpus"]) == {"0", "1", "2", "3"}
    assert history["gpus"]["0"] == {"utilization": [20, 30, 40], "memory_used": [2000, 3000, 4000]}
    assert history["gpus"]["2"]["utilization"] == [None, None, None]  # MIG: unknown
    assert history["gpus"]["1"]["memory_used"] == [0, 0, 0]
    json.dumps(history)


# ------------------------------------------------------------------------ failure states


def test_a_gpu_that_fell_off_the_bus_is_lost_and_the_others_read():
    monitor, _ = monitor_for("lost.json")
    snapshot = monitor.sample()
    assert snapshot["state"] == "ok"
    assert snapshot["message"] == "GPU 1 has fallen off the bus"
    good, lost = snapshot["gpus"]
    assert good["state"] == "ok" and good["utilization"] == 55
    assert lost["state"] == "lost"
    assert lost["utilization"] is None and lost["memory_used"] is None
    assert lost["processes"] == []
    assert "LOST" in format_table(snapshot) and "fallen off the bus" in format_table(snapshot)
    assert nvml_gpu_ids(RecordedNvml.load("lost.json")) == [0]


def test_a_gpu_lost_while_watched_keeps_its_name():
    monitor, fake = monitor_for("dgx4.json")
    monitor.sample()
    fake.devices[1]["lost"] = True
    snapshot = monitor.sample()
    lost = snapshot["gpus"][1]
    assert lost["state"] == "lost"
    assert lost["name"] == "NVIDIA A100-SXM4-80GB" and lost["uuid"].endswith("0001")
    assert snapshot["message"].startswith("GPU 1 has fallen off the bus")
    assert monitor.history()["gpus"]["1"]["utilization"] == [0, None]


def test_every_gpu_lost_is_an_error_state():
    monitor, fake = monitor_for("lost.json")
    fake.devices[0]["lost"] = True
    snapshot = monitor.sample()
    assert snapshot["state"] == "error"
    assert snapshot["message"] == "GPU 0 has fallen off the bus; GPU 1 has fallen off the bus"


def test_a_handle_that_cannot_be_had_is_an_error_gpu():
    monitor, fake = monitor_for("dgx4.json")
    fake.devices[3]["handle"] = {"error": "NO_PERMISSION"}
    snapshot = monitor.sample()
    assert snapshot["gpus"][3]["state"] == "error"
    assert snapshot["message"].endswith("GPU 3 cannot be read")
    del fake.devices[3]["handle"]  # it answers again: the handle is asked for again
    assert monitor.sample()["gpus"][3]["state"] == "ok"


def test_driver_library_mismatch_is_an_error_state_in_words():
    monitor, _ = monitor_for("mismatch.json")
    snapshot = monitor.sample()
    assert snapshot["state"] == "error"
    assert snapshot["message"].startswith("driver/library version mismatch")
    assert snapshot["gpus"] == []
    assert format_table(snapshot) == snapshot["message"]
    assert nvml_gpu_ids(RecordedNvml.load("mismatch.json")) == []


def test_no_driver_loaded_and_no_gpu_are_no_gpu_states():
    snapshot = monitor_for("no_driver.json")[0].sample()
    assert snapshot["state"] == "no_gpu"
    assert snapshot["message"] == "no NVIDIA GPU or driver found (Driver Not Loaded)"
    monitor, fake = monitor_for("no_gpu.json")
    snapshot = monitor.sample()
    assert snapshot["state"] == "no_gpu"
    assert snapshot["message"] == "no NVIDIA GPU found (the driver reports none)"
    assert snapshot["driver_version"] == "550.54.15"
    assert fake.initialised == 0  # shut down again


def test_nvml_breaking_mid_run_is_reported_and_started_again(monkeypatch):
    monitor, fake = monitor_for("dgx4.json")
    monitor.sample()
    fake.broken = "LIB_RM_VERSION_MISMATCH"  # the driver was upgraded under us
    snapshot = monitor.sample()
    assert snapshot["state"] == "error"
    assert snapshot["message"].startswith("driver/library version mismatch")
    assert snapshot["driver_version"] == "550.54.15"
    assert monitor.history()["gpus"]["0"]["utilization"] == [97, None]
    fake.broken = None
    assert monitor.sample()["state"] == "error"  # not retried at once
    monkeypatch.setattr(gpu, "RETRY_INIT_SECONDS", 0.0)
    assert monitor.sample()["state"] == "ok"
    assert fake.calls["nvmlInit"] == 2


def test_an_unexpected_exception_is_an_error_state_never_raised(monkeypatch):
    monitor, fake = monitor_for("dgx4.json")
    fake.fail_with["nvmlDeviceGetTemperature"] = RuntimeError("ctypes went wrong")
    snapshot = monitor.sample()
    assert snapshot["state"] == "error"
    assert snapshot["message"] == "reading the GPUs failed: RuntimeError: ctypes went wrong"
    del fake.fail_with["nvmlDeviceGetTemperature"]
    monkeypatch.setattr(gpu, "RETRY_INIT_SECONDS", 0.0)
    assert monitor.sample()["state"] == "ok"


def test_a_failing_process_owner_means_unknown_not_a_crash():
    def owner(pid):
        raise RuntimeError("dictionary changed size during iteration")

    monitor, _ = monitor_for("dgx4.json", process_owner=owner)
    processes = monitor.sample()["gpus"][0]["processes"]
    assert [p["run"] for p in processes] == [None, None, None]


def test_the_thread_polls_until_stopped():
    monitor, fake = monitor_for("dgx4.json", interval=0.25)
    before_start = monitor.snapshot()
    assert before_start["state"] == "error" and "not started" in before_start["message"]
    monitor.start()
    try:
        assert monitor.snapshot()["state"] == "ok"
        time.sleep(0.6)
    finally:
        monitor.stop()
    readings = fake.calls["nvmlDeviceGetUtilizationRates"] // 4
    assert 2 <= readings <= 5
    assert fake.calls["nvmlInit"] == 1 and fake.calls["nvmlShutdown"] == 1
    assert len(monitor.history()["gpus"]["0"]["utilization"]) == readings


# ------------------------------------------------------------------- GPU -> run, for real


def _spawn_tree(command: str) -> tuple[subprocess.Popen, list[int]]:
    """A learner-like root (own session) that starts ``command`` in its own session as the
    learner does; returns the root and the PIDs the shell prints (then its own)."""
    script = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen(['/bin/sh', '-c', {command!r}], start_new_session=True,\n"
        "                      stdout=subprocess.PIPE, text=True)\n"
        "print(p.pid, p.stdout.readline().strip(), flush=True)\n"
        "p.wait()\n"
        "sys.stdin.read()\n"
    )
    root = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids = [int(word) for word in root.stdout.readline().split()]
    return root, pids


def _end(root: subprocess.Popen, groups: list[int]) -> None:
    for group in groups:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
    root.kill()
    root.wait()


def test_a_process_the_command_spawns_belongs_to_the_run():
    root, (shell, worker) = _spawn_tree("sleep 60 & echo $!; wait")
    try:
        roots = {root.pid: "training-aaaaaaaaa"}
        assert owner_by_process_tree(worker, roots) == "training-aaaaaaaaa"
        assert owner_by_process_tree(shell, roots) == "training-aaaaaaaaa"
        assert owner_by_process_tree(root.pid, roots) == "training-aaaaaaaaa"
        assert owner_by_process_tree(os.getpid(), roots) is None
        assert owner_by_process_tree(worker, {}) is None
        assert owner_by_process_tree(worker, {os.getpid() + 10**6: "x"}) is None
    finally:
        _end(root, [shell, root.pid])


def test_an_orphan_of_the_command_is_matched_by_its_session():
    # the shell exits at once; its background worker is re-parented away from the learner
    root, (shell, worker) = _spawn_tree("sleep 60 >/dev/null 2>&1 & echo $!")
    try:
        deadline = time.monotonic() + 5
        while gpu._proc_stat(worker, "/proc")[0] == shell and time.monotonic() < deadline:
            time.sleep(0.01)
        parent, group, session = gpu._proc_stat(worker, "/proc")
        assert parent != shell and group == shell and session == shell
        assert owner_by_process_tree(worker, {root.pid: "training-a"}) is None
        roots = {root.pid: "training-a", shell: "training-a"}  # learner + command_pgid
        assert owner_by_process_tree(worker, roots) == "training-a"
    finally:
        _end(root, [shell, root.pid])


def test_gone_processes_have_no_owner():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert owner_by_process_tree(process.pid, {1: "init-is-no-run"}) is None


def test_the_monitor_attributes_a_real_process_tree_to_its_run():
    root, (shell, worker) = _spawn_tree("sleep 60 & echo $!; wait")
    try:
        fake = RecordedNvml.load("dgx4.json")
        fake.devices[1]["processes"] = [{"pid": worker, "usedGpuMemory": 3 * GIB}]
        monitor = GpuMonitor(
            nvml=fake,
            process_owner=lambda pid: owner_by_process_tree(pid, {root.pid: "training-ccc"}),
        )
        snapshot = monitor.sample()
        assert snapshot["gpus"][1]["processes"] == [
            {"pid": worker, "memory": 3 * GIB, "run": "training-ccc"}
        ]
        assert snapshot["gpus"][0]["processes"][0]["run"] is None  # 41001: not ours here
        assert "training-ccc (3.0 GiB)" in format_table(snapshot).splitlines()[2]
    finally:
        _end(root, [shell, root.pid])


# ---------------------------------------------------------------------------- the table


def test_the_table():
    monitor, _ = monitor_for("dgx4.json")
    snapshot = monitor.sample()
    lines = format_table(snapshot).splitlines()
    assert lines[0].split() == ["GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "RUN"]
    assert lines[1].split() == [
        "0", "NVIDIA", "A100-SXM4-80GB", "97%", "32.5", "/", "80.0", "GiB", "64°C",
        "312", "/", "400", "W", "training-aaaaaaaaa", "(32.0", "GiB),", "other", "process",
        "(0.5", "GiB)",
    ]  # fmt: skip
    assert lines[2].split()[3:] == [
        "0%", "0.0", "/", "80.0", "GiB", "31°C", "61", "/", "400", "W", "-",
    ]  # fmt: skip
    assert "(MIG)" in lines[3] and " MIG " in lines[3]
    assert "training-bbbbbbbbb (4.0 GiB), other process" in lines[3]
    assert lines[4].split()[3:] == ["12%", "0.5", "/", "80.0", "GiB", "38°C", "?", "-"]
    assert lines[5].startswith("driver 550.54.15, read at ")
    assert lines[6] == "GPU 2 is in MIG mode: its utilisation is not reported"
    columns = {line.index("GiB") for line in lines[1:5]}
    assert len(columns) == 1  # the memory column lines up
    assert "\x1b[" not in "\n".join(lines)


def test_the_table_in_color():
    monitor, _ = monitor_for("dgx4.json")
    text = format_table(monitor.sample(), use_color=True)
    assert "\x1b[31m" in text  # 97% is red
    assert "\x1b[36mtraining-aaaaaaaaa\x1b[0m" in text
    plain = format_table(monitor.snapshot())
    assert len(text.splitlines()) == len(plain.splitlines())


def test_the_table_without_gpus_is_its_sentence():
    assert format_table(gpu.off_snapshot("GPU monitoring is off (TRAINUI_GPUS=none)")) == (
        "GPU monitoring is off (TRAINUI_GPUS=none)"
    )
    assert format_table({"gpus": []}) == "no NVIDIA GPU found"


def test_inventory_helper():
    assert nvml_gpu_ids(RecordedNvml.load("dgx4.json")) == [0, 1, 2, 3]
    assert nvml_gpu_ids(RecordedNvml.load("no_driver.json")) == []
    assert nvml_gpu_ids(RecordedNvml.load("no_gpu.json")) == []
