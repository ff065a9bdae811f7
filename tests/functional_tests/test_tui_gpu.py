"""On a machine with an NVIDIA GPU: the GPU pane shows the real readings (NVML, through the
service) and the run that holds the GPU. Skipped elsewhere; the pane's drawing is checked with
fixed readings in test_tui.py and test_tui_snapshots.py.

``TRAINUI_SCREENSHOTS=DIR`` keeps an SVG of the screen (the device check does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


def nvidia_gpus() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount()
    except Exception:  # no library, no driver, no GPU: all mean none here
        return 0


def has_torch_cuda() -> bool:
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(
    nvidia_gpus() == 0, reason="no NVIDIA GPU here (the pane is checked with fixed readings)"
)

GPU_SCRIPT = """\
import sys, time, torch
a = torch.randn(8192, 8192, device="cuda")
end = time.time() + float(sys.argv[1])
step = 0
while time.time() < end:
    b = a @ a
    torch.cuda.synchronize()
    step += 1
    if step % 20 == 0:
        print(f"step {step} norm {float(b.norm()):.3e}", flush=True)
"""


def test_the_gpu_pane_shows_the_real_gpu_and_the_run_holding_it(tmp_path):
    if not has_torch_cuda():
        pytest.skip("a GPU, but no PyTorch with CUDA to keep it busy")
    home = tmp_path / "home"
    env = {**os.environ, "TRAINUI_HOME": str(home), "TRAINUI_IDLE_EXIT": "60"}
    env.pop("TRAINUI_GPUS", None)
    env.pop("TRAINUI_URL", None)
    (home / "buckets" / "data").mkdir(parents=True)
    model = tmp_path / "model"
    model.mkdir()
    (model / "gpu.py").write_text(GPU_SCRIPT)
    manifest = tmp_path / "manifest.yml"
    manifest.write_text(
        textwrap.dedent(
            """\
            model_definition:
              name: matmul
              framework: {name: pytorch, version: "2"}
              execution: {command: python3 gpu.py 60, resource: small}
            training_data: {connection: {}, source: {bucket: data, type: local}}
            training_results: {connection: {}, target: {bucket: results, type: local}}
            """
        )
    )

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "trainui", *args], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    model_id = cli("train", str(model), str(manifest)).strip().splitlines()[-1].split("'")[1]
    try:
        asyncio.run(_watch(home, env, model_id))
    finally:
        with contextlib.suppress(AssertionError):
            cli("halt", model_id)
        _stop(home)


async def _watch(home: Path, env: dict, model_id: str) -> None:
    from trainui.client import Client
    from trainui.tui.app import TrainuiApp
    from trainui.tui.config import TuiConfig

    app = TrainuiApp(Client(home=str(home), environ=env), config=TuiConfig(problems=[]))
    async with app.run_test(size=(100, 30)) as pilot:
        deadline = time.monotonic() + 90
        line = ""
        while time.monotonic() < deadline:
            screen = _text(app)
            line = next((row for row in screen.splitlines() if "GPU0" in row), "")
            if model_id in line and "%" in line:
                break
            await pilot.pause(0.5)
        assert model_id in line, _text(app)
        utilization = int(line.split("%")[0].split()[-1])
        assert utilization > 0, line
        assert any(c in line for c in "▁▂▃▄▅▆▇█")  # the sparkline has readings
        await pilot.pause(3.0)  # a few more readings for the sparkline
        folder = os.environ.get("TRAINUI_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            app.save_screenshot(str(Path(folder) / "gpu-runs.svg"))


def _text(app) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def _stop(home: Path) -> None:
    """The service and the run, by PID, each checked to be this home's."""

    def ours(pid: int) -> bool:
        for name in ("cmdline", "environ"):
            with contextlib.suppress(OSError):
                if str(home).encode() in Path(f"/proc/{pid}/{name}").read_bytes():
                    return True
        return False

    for status in (home / "runs").glob("*/status.json"):
        with contextlib.suppress(Exception):
            data = json.loads(status.read_text())
            for group in (data.get("command_pgid"), data.get("learner_pid")):
                if group and ours(group):
                    os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(Exception):
        pid = int((home / "service.lock").read_text().split()[0])
        if ours(pid):
            os.kill(pid, signal.SIGTERM)
