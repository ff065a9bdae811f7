"""Issue 6's device check, for a machine with an NVIDIA GPU and PyTorch (no network needed).

1. trainui's readings (GpuMonitor, real NVML) against ``nvidia-smi --query-gpu`` taken at the
   same moment, idle and under load;
2. a PyTorch matrix-multiply run submitted THROUGH trainui (``python -m trainui train``, a
   temporary TRAINUI_HOME, a local bucket; the service and the learner start by themselves)
   reaches > 50% utilisation and its GPU process is attributed to its run by GpuMonitor with
   ``owner_by_process_tree`` (the process is a grandchild of the command's shell);
3. two small runs each get their own CUDA_VISIBLE_DEVICES and see exactly one device in
   PyTorch; with one GPU, the second waits (pending, then running once the first ended);
4. the cost of one snapshot of all GPUs (goal < 5 ms) against one ``nvidia-smi --query-gpu``
   call, timed in the same run;
5. (issue 13) each run's command is sandboxed (bubblewrap) and ``nvidia-smi -L`` inside it
   lists exactly the run's GPUs, while PyTorch sees one device (3.);
6. (issue 18) a run whose framework is a container (podman, an image made from a tarball with
   a static busybox: no registry is reachable) gets its GPU by CDI, and ``nvidia-smi -L``
   inside the container lists exactly that GPU. Needs podman, busybox and a CDI spec
   (``nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml`` is tried when there is none);
   said as not run, and why, otherwise.

Prints a table at the end; writes ``gpu_check.json`` and the raw NVML answers of this machine
(idle and under load, in the format of tests/fixtures/gpu/) to ``--out``. Under 5 minutes.
Without nvidia-smi it still runs the trainui part (TRAINUI_GPUS=0, the command sleeps instead
of multiplying), to check the script itself on a machine without a GPU.

    PYTHONPATH=src python3 bench/gpu_check.py [--out DIR] [--seconds 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _common import pct, stop_home  # noqa: E402

from trainui.gpu import GpuMonitor, format_table, owner_by_process_tree  # noqa: E402

T0 = time.monotonic()
DEADLINE = T0 + 270  # seconds: everything ends well inside 5 minutes
MIB = 1 << 20
QUERY = (
    "index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,"
    "power.limit,driver_version"
)

TRAIN_PY = """\
import os, sys, time
seconds = float(sys.argv[1])
tag = sys.argv[2]
try:
    import torch
except ImportError:
    torch = None
visible = os.environ.get("CUDA_VISIBLE_DEVICES")
count = torch.cuda.device_count() if torch is not None else -1
print(f"[{tag}] CUDA_VISIBLE_DEVICES={visible!r} torch.cuda.device_count()={count} "
      f"pid={os.getpid()} ppid={os.getppid()}", flush=True)
if torch is not None and torch.cuda.is_available():
    print(f"[{tag}] device 0: {torch.cuda.get_device_name(0)}", flush=True)
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    start = time.time()
    done = 0
    while time.time() - start < seconds:
        for _ in range(20):
            c = a @ b
        torch.cuda.synchronize()
        done += 20
    took = time.time() - start
    print(f"[{tag}] {done} matmuls of {n}x{n} bf16 in {took:.1f} s: "
          f"{done * 2 * n**3 / took / 1e12:.0f} TFLOP/s", flush=True)
else:
    print(f"[{tag}] no CUDA here: sleeping {seconds} s instead", flush=True)
    time.sleep(seconds)
"""

# the command's shell runs launch.py, which runs train.py: the GPU process is a grandchild
LAUNCH_PY = """\
import shutil, subprocess, sys
if shutil.which("nvidia-smi"):  # what the sandbox lets the run see, whatever CUDA says
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        print(f"[{sys.argv[2]}] nvidia-smi -L: {line}", flush=True)
sys.exit(subprocess.call([sys.executable, "train.py", *sys.argv[1:]]))
"""


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def left() -> float:
    return DEADLINE - time.monotonic()


def nvidia_smi() -> tuple[list[dict], float]:
    """One ``nvidia-smi --query-gpu`` call: its rows and how long it took (s)."""
    started = time.perf_counter()
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    took = time.perf_counter() - started
    rows = []
    for line in out.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        row = dict(zip(QUERY.split(","), cells, strict=False))
        rows.append(row)
    return rows, took


def _num(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def compare(snapshot: dict, smi: list[dict], label: str) -> list[tuple]:
    """Rows (what, trainui, nvidia-smi, tolerance, ok) for every GPU and field."""
    rows = []
    for gpu, ref in zip(snapshot["gpus"], smi, strict=False):
        i = gpu["index"]

        def add(what, ours, theirs, ok, tolerance, i=i):
            rows.append((f"{label} GPU {i} {what}", ours, theirs, tolerance, ok))

        add("name", gpu["name"], ref["name"], gpu["name"] == ref["name"], "equal")
        add("uuid", gpu["uuid"], ref["uuid"], gpu["uuid"] == ref["uuid"], "equal")
        ours = None if gpu["memory_used"] is None else gpu["memory_used"] / MIB
        theirs = _num(ref["memory.used"])
        add(
            "memory used MiB",
            None if ours is None else round(ours, 1),
            theirs,
            ours is not None and theirs is not None and abs(ours - theirs) <= 64,
            "±64 MiB",
        )
        ours = None if gpu["memory_total"] is None else gpu["memory_total"] / MIB
        theirs = _num(ref["memory.total"])
        add(
            "memory total MiB",
            None if ours is None else round(ours, 1),
            theirs,
            ours is not None and theirs is not None and abs(ours - theirs) <= 1,
            "±1 MiB",
        )
        theirs = _num(ref["utilization.gpu"])
        ours = gpu["utilization"]
        add(
            "utilization %",
            ours,
            theirs,
            ours is not None and theirs is not None and abs(ours - theirs) <= 15,
            "±15 (both sampled)",
        )
        theirs = _num(ref["temperature.gpu"])
        ours = gpu["temperature"]
        add(
            "temperature C",
            ours,
            theirs,
            ours is not None and theirs is not None and abs(ours - theirs) <= 2,
            "±2 C",
        )
        theirs = _num(ref["power.draw"])
        ours = gpu["power_draw"]
        add(
            "power draw W",
            ours,
            theirs,
            ours is not None
            and theirs is not None
            and abs(ours - theirs) <= max(30.0, 0.15 * theirs),
            "±max(30 W, 15%)",
        )
        theirs = _num(ref["power.limit"])
        ours = gpu["power_limit"]
        add(
            "power limit W",
            ours,
            theirs,
            ours is not None and theirs is not None and abs(ours - theirs) <= 1,
            "±1 W",
        )
        driver = ref.get("driver_version")
        add(
            "driver",
            snapshot["driver_version"],
            driver,
            snapshot["driver_version"] == driver,
            "equal",
        )
    return rows


# ------------------------------------------------------------------ recording NVML answers


def record_nvml(comment: str) -> dict:
    """This machine's raw NVML answers, in the format of tests/fixtures/gpu/*.json."""
    import pynvml as nvml

    names = {
        getattr(nvml, n): n[len("NVML_ERROR_") :] for n in dir(nvml) if n.startswith("NVML_ERROR_")
    }

    def answer(function, *args, convert=lambda v: v):
        try:
            return convert(function(*args))
        except nvml.NVMLError as error:
            return {"error": names.get(error.value, str(error.value))}

    def text(value):
        return value.decode() if isinstance(value, bytes) else value

    def struct(*fields):
        return lambda v: {f: getattr(v, f) for f in fields}

    def processes(found):
        return [{"pid": p.pid, "usedGpuMemory": p.usedGpuMemory} for p in found]

    nvml.nvmlInit()
    try:
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(index)
            devices.append(
                {
                    "name": answer(nvml.nvmlDeviceGetName, h, convert=text),
                    "uuid": answer(nvml.nvmlDeviceGetUUID, h, convert=text),
                    "utilization": answer(
                        nvml.nvmlDeviceGetUtilizationRates, h, convert=struct("gpu", "memory")
                    ),
                    "memory": answer(
                        nvml.nvmlDeviceGetMemoryInfo, h, convert=struct("total", "free", "used")
                    ),
                    "memory_v2": answer(
                        lambda h: nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2),
                        h,
                        convert=struct("total", "reserved", "free", "used"),
                    ),
                    "temperature": answer(
                        nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU
                    ),
                    "power_usage": answer(nvml.nvmlDeviceGetPowerUsage, h),
                    "power_limit": answer(nvml.nvmlDeviceGetEnforcedPowerLimit, h),
                    "mig_mode": answer(nvml.nvmlDeviceGetMigMode, h, convert=list),
                    "processes": answer(
                        nvml.nvmlDeviceGetComputeRunningProcesses, h, convert=processes
                    ),
                }
            )
        return {
            "comment": comment,
            "init": None,
            "driver_version": answer(nvml.nvmlSystemGetDriverVersion, convert=text),
            "devices": devices,
        }
    finally:
        nvml.nvmlShutdown()


def nvml_costs(repeat: int = 200) -> dict[str, float]:
    """Median microseconds of each NVML call the monitor makes each interval, on GPU 0."""
    import pynvml as nvml

    nvml.nvmlInit()
    try:
        h = nvml.nvmlDeviceGetHandleByIndex(0)
        calls = {
            "utilization": lambda: nvml.nvmlDeviceGetUtilizationRates(h),
            "memory (v2)": lambda: nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2),
            "temperature": lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),
            "power": lambda: nvml.nvmlDeviceGetPowerUsage(h),
            "compute processes": lambda: nvml.nvmlDeviceGetComputeRunningProcesses(h),
        }
        costs = {}
        for name, call in calls.items():
            samples = []
            for _ in range(repeat):
                t = time.perf_counter()
                with contextlib.suppress(nvml.NVMLError):
                    call()
                samples.append(time.perf_counter() - t)
            costs[name] = statistics.median(samples) * 1e6
        return costs
    finally:
        nvml.nvmlShutdown()


def snapshot_cost(monitor: GpuMonitor, repeat: int) -> list[float]:
    monitor.sample()  # warm: NVML started, slow fields read
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        monitor.sample()
        samples.append(time.perf_counter() - t)
    return samples


# -------------------------------------------------------------------------- trainui runs


class Trainui:
    """A temporary trainui home, the CLI run as ``python -m trainui``."""

    def __init__(self, tmp: Path, gpus: str | None) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        paths = [str(ROOT / "src")] + [
            os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
        ]
        self.env = {
            **os.environ,
            "TRAINUI_HOME": str(self.home),
            "TRAINUI_IDLE_EXIT": "120",
            "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),  # absolute: the service runs in /
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
        }
        self.env.pop("TRAINUI_GPUS", None)
        if gpus is not None:
            self.env["TRAINUI_GPUS"] = gpus
        (self.home / "buckets" / "gpucheck-data").mkdir(parents=True)
        (self.home / "buckets" / "gpucheck-data" / "README.txt").write_text("no data needed\n")
        (self.home / "buckets" / "gpucheck-results").mkdir()
        self.model = tmp / "model"
        self.model.mkdir()
        (self.model / "train.py").write_text(TRAIN_PY)
        (self.model / "launch.py").write_text(LAUNCH_PY)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "trainui", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    def submit(self, name: str, seconds: float, tag: str, command: str | None = None) -> str:
        command = command or f"python3 launch.py {seconds} {tag}"
        manifest = self.tmp / f"{name}.yml"
        manifest.write_text(
            textwrap.dedent(
                f"""\
                model_definition:
                  name: {name}
                  framework: {{name: pytorch, version: "2"}}
                  execution:
                    command: {json.dumps(command)}
                    resource: small
                training_data_reference:
                  connection: {{}}
                  source: {{bucket: gpucheck-data, type: local}}
                training_results_reference:
                  connection: {{}}
                  target: {{bucket: gpucheck-results, type: local}}
                """
            )
        )
        result = self.cli("train", str(self.model), str(manifest), timeout=120)
        found = re.search(r"Model-ID is '([^']+)'", result.stdout)
        if result.returncode != 0 or not found:
            raise RuntimeError(
                f"trainui train failed ({result.returncode}): {result.stdout}{result.stderr}"
            )
        return found.group(1)

    def show(self, run_id: str) -> dict:
        result = self.cli("show", run_id, "--json")
        if result.returncode != 0:
            raise RuntimeError(f"trainui show failed: {result.stdout}{result.stderr}")
        return json.loads(result.stdout)

    def status_file(self, run_id: str) -> dict:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((self.home / "runs" / run_id / "status.json").read_text())
        return {}

    def wait(self, run_id: str, states: set[str], timeout: float) -> dict:
        deadline = min(time.monotonic() + timeout, DEADLINE)
        while True:
            run = self.show(run_id)
            if run["status"] in states or time.monotonic() > deadline:
                return run
            time.sleep(0.3)

    def logs(self, run_id: str) -> str:
        return self.cli("logs", run_id).stdout

    def stop(self) -> None:
        """The service and whatever learners and commands are left, by PID."""
        stop_home(self.home)


class Watch:
    """A GpuMonitor in its thread, attributing processes to the runs in ``roots``; remembers
    the busiest reading attributed to each run."""

    def __init__(self) -> None:
        self.roots: dict[int, str] = {}
        self.monitor = GpuMonitor(
            interval=0.5, process_owner=lambda pid: owner_by_process_tree(pid, self.roots)
        )
        self.best: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Watch:
        self.monitor.start()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._look()
            except Exception:
                log("watching failed:\n" + traceback.format_exc())

    def _look(self) -> None:
        snapshot = self.monitor.snapshot()
        for gpu in snapshot["gpus"]:
            for process in gpu["processes"]:
                run = process["run"]
                if run is None:
                    continue
                best = self.best.get(run)
                if best is None or (gpu["utilization"] or 0) > (best["utilization"] or 0):
                    self.best[run] = {
                        "gpu": gpu["index"],
                        "utilization": gpu["utilization"],
                        "pid": process["pid"],
                        "memory": process["memory"],
                        "cmdline": _cmdline(process["pid"]),
                        "at": round(time.monotonic() - T0, 1),
                        "table": format_table(snapshot),
                    }

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.monitor.stop()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def container_check(rows: list, note) -> None:
    """Issue 18: a container run's GPUs, as ``nvidia-smi -L`` lists them inside it."""
    sys.path.insert(1, str(ROOT / "tests" / "functional_tests"))
    from podman_env import Podman, PodmanUnavailable

    from trainui.learner.runtime import _cdi_has_nvidia

    if not _cdi_has_nvidia() and shutil.which("nvidia-ctk"):
        os.makedirs("/var/run/cdi", exist_ok=True)
        made = subprocess.run(
            ["nvidia-ctk", "cdi", "generate", "--output=/var/run/cdi/nvidia.yaml"],
            capture_output=True,
            text=True,
        )
        note(f"nvidia-ctk cdi generate: exit {made.returncode} {made.stderr[-300:]}")
    if not _cdi_has_nvidia():
        note("container check not run: no CDI spec for NVIDIA GPUs (nvidia-ctk not here?)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-podman-"))
    try:
        podman = Podman(tmp).start()
    except PodmanUnavailable as why:
        note(f"container check not run: {why}")
        return
    (tmp / "frameworks.toml").write_text(
        '[[framework]]\nname = "pytorch"\nversions = ["2"]\nruntime = "container"\n'
        'image = "localhost/trainui-test:1"\n'
    )
    box = Trainui(tmp / "t", gpus=None)
    box.env.update(podman.env, TRAINUI_FRAMEWORKS=str(tmp / "frameworks.toml"))
    try:
        run_id = box.submit(
            "gpu-check-container",
            0,
            "C",
            'echo "[C] CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"; nvidia-smi -L',
        )
        run = box.wait(run_id, {"completed", "failed", "halted"}, 120)
        log_text = box.logs(run_id)
        log("container run log:\n" + textwrap.indent(log_text.strip(), "    "))
        listed = [x for x in log_text.splitlines() if x.startswith("GPU ")]
        rows.append(
            (
                "container run: GPUs nvidia-smi -L lists inside",
                f"{run['status']}, {len(listed)}",
                f"gpu_ids {run.get('gpu_ids')}",
                "its GPUs only",
                run["status"] == "completed" and len(listed) == len(run.get("gpu_ids") or [0]),
            )
        )
    finally:
        box.stop()
        podman.stop()


# -------------------------------------------------------------------------------- the check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    parser.add_argument("--seconds", type=float, default=30.0, help="the first run's matmuls")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    has_gpu = shutil.which("nvidia-smi") is not None
    results: dict = {"rows": [], "notes": []}
    rows: list[tuple] = results["rows"]  # (check, trainui, reference, goal, ok)

    def note(text: str) -> None:
        results["notes"].append(text)
        log(text)

    log(f"python {sys.version.split()[0]} at {sys.executable}; nvidia-smi: {has_gpu}")
    with contextlib.suppress(Exception):
        import torch

        log(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
    with contextlib.suppress(Exception):
        import pynvml

        log(f"nvidia-ml-py at {pynvml.__file__}")

    probe = GpuMonitor()
    smi_cost: list[float] = []

    # 1. idle readings against nvidia-smi, and the cost of a snapshot
    if has_gpu:
        try:
            first = probe.sample()
            log("first snapshot:\n" + format_table(first))
            snapshot = probe.sample()
            smi, took = nvidia_smi()
            smi_cost.append(took)
            rows.extend(compare(snapshot, smi, "idle"))
            with contextlib.suppress(Exception):
                (out / "h100_idle.json").write_text(
                    json.dumps(record_nvml("recorded idle by bench/gpu_check.py"), indent=1)
                )
            idle = snapshot_cost(probe, 200)
            results["snapshot_idle_ms"] = [statistics.median(idle) * 1e3, pct(idle, 0.95) * 1e3]
            for _ in range(4):
                smi_cost.append(nvidia_smi()[1])
        except Exception:
            note("idle comparison failed:\n" + traceback.format_exc())
    else:
        note("no nvidia-smi here: only the trainui part runs (TRAINUI_GPUS=0, no CUDA)")

    # 2. and 3. runs through trainui
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    trainui = Trainui(tmp, gpus=None if has_gpu else "0")
    watch = Watch().start() if has_gpu else None
    try:
        t = time.monotonic()
        a = trainui.submit("gpu-check-a", args.seconds, "A")
        note(f"run A {a} submitted in {time.monotonic() - t:.1f} s (service started by the CLI)")
        run_a = trainui.wait(a, {"running", "completed", "failed", "halted"}, 90)
        note(f"run A: {run_a['status']} on GPUs {run_a.get('gpu_ids')} ({run_a['status_message']})")
        status = trainui.status_file(a)
        if watch is not None and status.get("learner_pid"):
            watch.roots[status["learner_pid"]] = a  # what the service knows: the learner's PID
            note(
                f"run A learner pid {status['learner_pid']}, command pgid {status['command_pgid']}"
            )
        # the second run, while the first holds the only GPU
        time.sleep(2)
        b = trainui.submit("gpu-check-b", 8, "B")
        run_b = trainui.show(b)
        note(f"run B {b} right after submit: {run_b['status']} ({run_b['status_message']})")
        rows.append(
            (
                "second run waits while the first holds the GPU",
                f"{run_b['status']}: {run_b['status_message']}",
                "",
                "pending",
                run_b["status"] == "pending",
            )
        )
        # under load: readings against nvidia-smi, the snapshot's cost
        if has_gpu:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                best = watch.best.get(a)
                if best and (best["utilization"] or 0) > 50:
                    break
                time.sleep(0.5)
            time.sleep(2)
            try:
                snapshot = probe.sample()
                smi, took = nvidia_smi()
                smi_cost.append(took)
                rows.extend(compare(snapshot, smi, "load"))
                busy = snapshot_cost(probe, 200)
                results["snapshot_load_ms"] = [
                    statistics.median(busy) * 1e3,
                    pct(busy, 0.95) * 1e3,
                ]
                results["nvml_call_us"] = nvml_costs()
                with contextlib.suppress(Exception):
                    (out / "h100_load.json").write_text(
                        json.dumps(
                            record_nvml("recorded under load by bench/gpu_check.py"), indent=1
                        )
                    )
            except Exception:
                note("comparison under load failed:\n" + traceback.format_exc())
        run_a = trainui.wait(a, {"completed", "failed", "halted"}, args.seconds + 60)
        note(f"run A ended: {run_a['status']} at {run_a.get('finished_at')}")
        run_b = trainui.wait(b, {"running", "completed", "failed", "halted"}, 60)
        note(
            f"run B then: {run_b['status']} ({run_b['status_message']}), started at "
            f"{run_b.get('started_at')}"
        )
        status = trainui.status_file(b)
        if watch is not None and status.get("learner_pid"):
            watch.roots[status["learner_pid"]] = b
        run_b = trainui.wait(b, {"completed", "failed", "halted"}, 90)
        note(f"run B ended: {run_b['status']} at {run_b.get('finished_at')}")
        rows.append(
            (
                "second run starts once the first ended",
                f"B started {run_b.get('started_at')}",
                f"A ended {run_a.get('finished_at')}",
                "after",
                bool(run_b.get("started_at"))
                and bool(run_a.get("finished_at"))
                and run_b["started_at"] >= run_a["finished_at"],
            )
        )
        for tag, run_id, run in (("A", a, run_a), ("B", b, run_b)):
            text = trainui.logs(run_id)
            (out / f"run_{tag}.log").write_text(text)
            line = next((x for x in text.splitlines() if f"[{tag}] CUDA_VISIBLE" in x), "")
            log(f"run {tag} log:\n" + textwrap.indent(text.strip(), "    "))
            sandboxed = "sandboxed (bubblewrap)" in text
            listed = [x for x in text.splitlines() if f"[{tag}] nvidia-smi -L: GPU " in x]
            rows.append(
                (
                    f"run {tag}: sandboxed, GPUs nvidia-smi -L lists inside",
                    f"{'sandboxed' if sandboxed else 'NOT sandboxed'}, {len(listed)}",
                    f"gpu_ids {run.get('gpu_ids')}",
                    "sandboxed, its GPUs only" if has_gpu else "sandboxed",
                    sandboxed and (len(listed) == len(run.get("gpu_ids") or []) or not has_gpu),
                )
            )
            count = re.search(r"device_count\(\)=(-?\d+)", line)
            visible = re.search(r"CUDA_VISIBLE_DEVICES=('[^']*'|None)", line)
            want = str(run.get("gpu_ids"))
            rows.append(
                (
                    f"run {tag}: CUDA_VISIBLE_DEVICES, devices in torch",
                    f"{visible.group(1) if visible else '?'}, {count.group(1) if count else '?'}",
                    f"gpu_ids {want}",
                    "its GPU, 1 device" if has_gpu else "its GPU (no torch)",
                    bool(visible and count)
                    and visible.group(1).strip("'") == ",".join(map(str, run.get("gpu_ids") or []))
                    and (count.group(1) == "1" or not has_gpu),
                )
            )
            rows.append(
                (
                    f"run {tag} completed",
                    run["status"],
                    "",
                    "completed",
                    run["status"] == "completed",
                )
            )
        if watch is not None:
            for tag, run_id in (("A", a), ("B", b)):
                best = watch.best.get(run_id)
                if best:
                    log(f"busiest reading of run {tag} ({best['at']} s):\n{best['table']}")
                    log(f"  its process {best['pid']}: {best['cmdline']}")
                rows.append(
                    (
                        f"run {tag} attributed to its run by GpuMonitor",
                        f"pid {best['pid']} ({best['cmdline'][:40]})" if best else "never seen",
                        run_id,
                        "attributed",
                        best is not None,
                    )
                )
            best = watch.best.get(a)
            rows.append(
                (
                    "run A utilisation (busiest reading)",
                    f"{best['utilization']}%" if best else "?",
                    "",
                    "> 50%",
                    bool(best) and (best["utilization"] or 0) > 50,
                )
            )
            results["history_points"] = {
                k: len(v["utilization"]) for k, v in watch.monitor.history()["gpus"].items()
            }
    except Exception:
        note("the trainui part failed:\n" + traceback.format_exc())
        with contextlib.suppress(Exception):
            note("service.log:\n" + (trainui.home / "service.log").read_text()[-3000:])
        for errors in trainui.home.glob("runs/*/learner-errors.txt"):
            with contextlib.suppress(Exception):
                note(f"{errors}:\n" + errors.read_text()[-2000:])
    finally:
        if watch is not None:
            watch.stop()
        with contextlib.suppress(Exception):
            shutil.copy(trainui.home / "service.log", out / "service.log")
        trainui.stop()
        probe.stop()

    # 6. a container run sees exactly its GPU
    if has_gpu:
        try:
            container_check(rows, note)
        except Exception:
            note("the container check failed:\n" + traceback.format_exc())

    # 4. cost
    if "snapshot_idle_ms" in results and smi_cost:
        smi_ms = statistics.median(smi_cost) * 1e3
        for label, key in (("idle", "snapshot_idle_ms"), ("under load", "snapshot_load_ms")):
            if key in results:
                median, p95 = results[key]
                rows.append(
                    (
                        f"one snapshot of all GPUs, {label} (median, p95)",
                        f"{median:.2f} ms, {p95:.2f} ms",
                        f"nvidia-smi --query-gpu: {smi_ms:.0f} ms",
                        "< 5 ms",
                        median < 5,
                    )
                )
    if "nvml_call_us" in results:
        costs = ", ".join(f"{k} {v:.0f}" for k, v in results["nvml_call_us"].items())
        log(f"NVML calls on GPU 0 (median µs): {costs}")

    # the table
    widths = [48, 34, 34, 18]
    lines = [
        f"{'check':{widths[0]}} {'trainui':{widths[1]}} {'reference':{widths[2]}} "
        f"{'goal':{widths[3]}} ok"
    ]
    for check, ours, theirs, goal, ok in rows:
        lines.append(
            f"{check[: widths[0]]:{widths[0]}} {str(ours)[: widths[1]]:{widths[1]}} "
            f"{str(theirs)[: widths[2]]:{widths[2]}} {goal:{widths[3]}} {'yes' if ok else 'NO'}"
        )
    failed = [r for r in rows if not r[4]]
    lines.append(
        f"{len(rows) - len(failed)} of {len(rows)} checks passed in {time.monotonic() - T0:.0f} s"
    )
    print("\n" + "\n".join(lines), flush=True)
    results["rows"] = [list(r) for r in rows]
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
    return 0 if not failed and rows else 1


if __name__ == "__main__":
    sys.exit(main())
