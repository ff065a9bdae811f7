"""Regenerate the SVG screenshots of the TUI's main screens (the README shows them).

    python screenshots/make.py [--size 100x30,80x24] [--out screenshots] [--gpus]

Everything runs in a temporary trainui home with its own service: the demo run, a run that
fails, one that is halted, the example sweep (an experiment of 6 demo runs), one run still
running and one waiting for it. Without ``--gpus`` the GPU
pane reads ``TRAINUI_GPUS=none`` and ``gpus.svg`` shows two sample H100 readings (the pane fed
with fixed data, as the tests do); with ``--gpus`` (on a machine with NVIDIA GPUs) every
screenshot shows the real readings. The service and the runs are stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(1, str(ROOT / "bench"))

from _common import stop_home  # noqa: E402

import trainui  # noqa: E402

DEMO = Path(trainui.__file__).resolve().parent / "demo"

SLOW = """\
import sys, time
for i in range(int(sys.argv[1])):
    print(f"step {i:>5}  loss {2.5 / (i + 1) ** 0.5:.4f}  lr 0.001  {12 + i % 7} it/s", flush=True)
    time.sleep(0.2)
"""

GPU = """\
import sys, time, torch
a = torch.randn(8192, 8192, device="cuda")
end, step = time.time() + float(sys.argv[1]), 0
while time.time() < end:
    b = a @ a
    torch.cuda.synchronize()
    step += 1
    if step % 20 == 0:
        print(f"step {step:>6}  loss {1 / step ** 0.5:.4f}  {float(b.norm()):.3e}", flush=True)
"""

SAMPLE_GPUS = {
    "state": "ok", "message": "", "driver_version": "550.54.15",
    "taken_at": "2026-11-27T05:00:00.000Z",
    "gpus": [
        {"index": 0, "uuid": "GPU-0", "name": "NVIDIA H100 80GB HBM3", "utilization": 87,
         "memory_used": 61 << 30, "memory_total": 80 << 30, "temperature": 64,
         "power_draw": 585.0, "power_limit": 700.0, "mig": False, "state": "ok",
         "processes": [{"pid": 4242, "memory": 60 << 30, "run": "training-DOl4q2LkR"}]},
        {"index": 1, "uuid": "GPU-1", "name": "NVIDIA H100 80GB HBM3", "utilization": 0,
         "memory_used": 1 << 29, "memory_total": 80 << 30, "temperature": 33,
         "power_draw": 71.0, "power_limit": 700.0, "mig": False, "state": "ok",
         "processes": []},
    ],
}  # fmt: skip
SAMPLE_HISTORY = {
    "interval": 1.0,
    "gpus": {
        "0": {"utilization": [3, 10, 35, 60, 82, 95, 99, 97, 91, 88, 90, 87],
              "memory_used": [i << 30 for i in (1, 4, 20, 41, 55, 60, 61, 61, 61, 61, 61, 61)]},
        "1": {"utilization": [0] * 12, "memory_used": [1 << 29] * 12},
    },
}  # fmt: skip


def manifest(name: str, command: str) -> bytes:
    return textwrap.dedent(
        f"""\
        model_definition:
          name: {name}
          description: screenshot run
          framework: {{name: pytorch, version: "2.3"}}
          execution:
            command: {json.dumps(command)}
            resource: small
        training_data:
          connection: {{}}
          source: {{bucket: demo-data, type: local}}
        training_results:
          connection: {{}}
          target: {{bucket: demo-results, type: local}}
        """
    ).encode()


async def make_runs(home: Path, tmp: Path, gpus: bool) -> dict[str, str]:
    from trainui.client import Client
    from trainui.core.definition import zip_directory

    bucket = home / "buckets" / "demo-data"
    bucket.mkdir(parents=True)
    for item in (DEMO / "data").iterdir():
        shutil.copyfile(item, bucket / item.name)
    demo_zip = zip_directory(DEMO / "model", tmp / "demo.zip").path
    other_zip = tmp / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("slow.py", SLOW)
        zf.writestr("gpu.py", GPU)
    ids = {}
    async with Client() as client:

        async def submit(key, zip_path, text, wait=True):
            ids[key] = (await client.submit(str(zip_path), text))["model_id"]
            while wait and (await client.get_run(ids[key]))["status"] not in (
                "completed", "failed", "halted",
            ):  # fmt: skip
                await asyncio.sleep(0.2)

        await submit("failed", other_zip, manifest("resnet-sweep", "python3 slow.py 3; exit 2"))
        await submit("halted", other_zip, manifest("bert-finetune", "python3 slow.py 1000"), False)
        await asyncio.sleep(2.0)
        await client.halt_run(ids["halted"])
        demo = (DEMO / "manifest.yml").read_bytes()
        await submit("demo", demo_zip, demo)
        slower = demo.replace(b"--epochs 30", b"--epochs 30 --learning-rate 0.03")
        await submit("demo-slower", demo_zip, slower.replace(b"demo-classifier", b"demo-lr-0.03"))
        # an experiment (SPEC §9): the example sweep, 6 demo runs ranked by val_loss
        sweep = (ROOT / "examples" / "sweep" / "manifest.yml").read_bytes()
        ids["experiment"] = (await client.submit(str(demo_zip), sweep))["experiment_id"]
        while (await client.get_experiment(ids["experiment"]))["status"] not in (
            "completed", "failed", "halted",
        ):  # fmt: skip
            await asyncio.sleep(0.5)
        busy = "python3 gpu.py 600" if gpus else "python3 slow.py 3000"  # a GPU kept busy
        await submit("running", other_zip, manifest("llama-lora", busy), False)
        await submit("pending", other_zip, manifest("vit-small", "python3 slow.py 10"), False)
        await asyncio.sleep(8.0)  # the running run has printed a few lines
    return ids


async def shoot(
    out: Path, size: tuple[int, int], ids: dict[str, str], real_gpus: bool, suffix: str = ""
) -> None:
    from textual.app import App

    from trainui.client import Client
    from trainui.tui.app import TrainuiApp
    from trainui.tui.config import TuiConfig
    from trainui.tui.widgets.gpu_pane import GpuPane

    def app(**kwargs) -> TrainuiApp:
        return TrainuiApp(Client(), config=TuiConfig(problems=[]), **kwargs)

    async def settle(pilot, condition, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await pilot.pause(0.5)

    def save(application, name: str) -> None:
        application.save_screenshot(str(out / f"{name}{suffix}.svg"))
        print(f"  {name}{suffix}.svg")

    async with (a := app()).run_test(size=size) as pilot:
        await settle(pilot, lambda: a.loaded and a.gpu_readings is not None)
        save(a, "runs")
        await pilot.press("question_mark")
        await pilot.pause(0.5)
        save(a, "help")
        await pilot.press("escape", "ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"del")
        await pilot.pause(0.5)
        save(a, "palette")
        await pilot.press("escape", "slash", *"fail", "enter")
        await pilot.pause(0.3)
        save(a, "filter")
        await pilot.press("slash", "escape", "d")
        await pilot.pause(0.5)
        save(a, "delete")
        await pilot.press("n", "home", "space", "space")
        await settle(pilot, lambda: "2 marked" in _text(a))
        save(a, "marked")
        await pilot.press("escape", "ctrl+g")
        await settle(pilot, lambda: "back" in _text(a))
        save(a, "gpus-full")

    async with (a := app(open_run=ids["demo"])).run_test(size=size) as pilot:
        await settle(pilot, lambda: "ModelId" in _text(a) and "completed" in _text(a))
        save(a, "run")
        await pilot.press("slash", *"accuracy 0.9", "enter")
        await settle(pilot, lambda: a.screen.log_view.current_match is not None)
        save(a, "search")
        await pilot.press("escape", "m")
        await settle(pilot, lambda: "read-only" in _text(a) and "model_definition" in _text(a))
        save(a, "manifest")

    async with (a := app(open_run=ids["demo"])).run_test(size=size) as pilot:
        await settle(pilot, lambda: "ModelId" in _text(a) and "completed" in _text(a))
        await pilot.press("v")
        await settle(pilot, lambda: "accuracy" in _text(a) and "last" in _text(a))
        save(a, "metrics")

    async with (a := app()).run_test(size=size) as pilot:
        await settle(pilot, lambda: a.loaded)
        for key in ("demo", "demo-slower"):
            a.screen.run_list.select(ids[key])
            await pilot.press("space")
        await pilot.press("C")
        await settle(pilot, lambda: "● demo-lr-0.03" in _text(a) and "ended" in _text(a))
        save(a, "compare")
        await pilot.press("2")
        await settle(pilot, lambda: "Final values" in _text(a))
        save(a, "compare-values")
        await pilot.press("3")
        await settle(pilot, lambda: "differ" in _text(a))
        save(a, "compare-manifests")

    async with (a := app(view="experiments")).run_test(size=size) as pilot:
        await settle(pilot, lambda: a.experiments_loaded and "demo-lr-hidden" in _text(a))
        save(a, "experiments")
        await pilot.press("enter")
        await settle(pilot, lambda: "★1" in _text(a) and "ended" in _text(a))
        save(a, "experiment")

    async with (a := app(open_run=ids["failed"])).run_test(size=size) as pilot:
        await settle(pilot, lambda: "C201" in _text(a) and "step" in _text(a))
        save(a, "failed")

    async with (a := app(open_run=ids["running"])).run_test(size=size) as pilot:
        await settle(pilot, lambda: "following" in _text(a))
        await pilot.pause(1.0)
        save(a, "following")

    async with (a := app()).run_test(size=size) as pilot:
        await settle(pilot, lambda: a.loaded)
        await pilot.press("n")
        await settle(pilot, lambda: "valid" in _text(a))
        editor = a.screen
        editor.area.cursor_blink = False
        editor.definition.value = "examples/demo/model"
        editor.area.move_cursor((8, 14))
        await pilot.press(*"xl")
        await settle(pilot, lambda: "not valid" in _text(a))
        save(a, "editor")

    async with (a := app()).run_test(size=size) as pilot:  # the framework, from the catalogue
        await settle(pilot, lambda: a.loaded)
        await pilot.press("n")
        editor = a.screen
        await settle(pilot, lambda: editor.frameworks is not None and "valid" in _text(a))
        editor.area.cursor_blink = False
        editor.definition.value = "examples/demo/model"
        editor.area.move_cursor((5, 17))  # version: "2.3|"
        await pilot.press("backspace", "6")
        await settle(pilot, lambda: "C104" in _text(a))
        save(a, "editor-framework")

    async with (a := app(theme="ansi")).run_test(size=size) as pilot:
        await settle(pilot, lambda: a.loaded and a.gpu_readings is not None)
        save(a, "runs-ansi")

    if not real_gpus:

        class Gpus(App):
            TITLE = "trainui: the GPU pane (sample readings)"

            def compose(self):
                yield GpuPane()

            def on_mount(self):
                pane = self.query_one(GpuPane)
                pane.seed_history(SAMPLE_HISTORY, SAMPLE_GPUS)
                pane.show_readings(SAMPLE_GPUS)

        async with (a := Gpus()).run_test(size=(size[0], 6)) as pilot:
            await pilot.pause(0.3)
            save(a, "gpus")


def _text(app) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size",
        default="100x30,80x24",
        help="terminal sizes, WIDTHxHEIGHT[,...]: the first gives NAME.svg, the others "
        "NAME-WIDTHxHEIGHT.svg",
    )
    parser.add_argument("--out", default=str(ROOT / "screenshots"))
    parser.add_argument("--gpus", action="store_true", help="real GPU readings (NVML)")
    args = parser.parse_args()
    sizes = [tuple(int(n) for n in size.split("x")) for size in args.size.lower().split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="trainui-screenshots-"))
    home = tmp / "home"
    catalogue = tmp / "frameworks.toml"  # the box's frameworks (SPEC §10): the runs' and more
    catalogue.write_text(
        '[[framework]]\nname = "pytorch"\nversions = ["2.3", "2.4", "2.5"]\nruntime = "host"\n'
        '[[framework]]\nname = "tensorflow"\nversions = ["2.16"]\nruntime = "venv"\n'
        'path = "/opt/envs/tf-{version}"\n'
        '[[framework]]\nname = "numpy"\nversions = ["*"]\nruntime = "host"\n'
    )
    os.environ.update(
        TRAINUI_HOME=str(home),
        TRAINUI_IDLE_EXIT="120",
        TRAINUI_CPU_SLOTS="1",
        TZ="UTC",
        TRAINUI_FRAMEWORKS=str(catalogue),
    )
    if not args.gpus:
        os.environ["TRAINUI_GPUS"] = "none"
    time.tzset()
    try:
        print(f"runs in {home} ...")
        ids = asyncio.run(make_runs(home, tmp, args.gpus))
        for i, (width, height) in enumerate(sizes):
            print(f"screenshots ({width}x{height}) in {out}:")
            suffix = f"-{width}x{height}" if i else ""
            asyncio.run(shoot(out, (width, height), ids, args.gpus, suffix))
    finally:
        stop_home(home)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
