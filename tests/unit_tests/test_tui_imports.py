"""The TUI talks to the service through the client only, and shows what `show` shows."""

from __future__ import annotations

import json
import subprocess
import sys

from trainui.tui.widgets.run_detail import fields

FORBIDDEN = ("trainui.service", "trainui.storage", "trainui.learner", "boto3", "sqlite3",
             "swiftclient", "starlette", "uvicorn")  # fmt: skip


def test_the_app_imports_no_store_scheduler_or_object_store():
    probe = (
        "import trainui.tui, trainui.tui.app, trainui.tui.screens.run, trainui.tui.screens.editor"
        ", trainui.tui.logdoc, sys, json\nprint(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules = json.loads(out.stdout.splitlines()[-1])
    loaded = [m for m in modules if m.startswith(FORBIDDEN)]
    assert loaded == []


def test_opening_the_app_does_not_import_numpy_or_the_editor():
    probe = "import trainui.tui.app, sys\nprint(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "'numpy'" not in out.stdout and "tree_sitter" not in out.stdout
    assert "trainui.tui.screens.editor" not in out.stdout


def test_the_detail_pane_shows_every_field_of_show():
    from trainui.cli import _show_fields

    run = {
        "model_id": "training-abcdefghi", "url": "/v3/models/training-abcdefghi", "name": "n",
        "status": "downloading", "submitted_at": "2026-11-27T05:00:00.000Z", "resource": "small",
        "gpus": 1, "gpu_ids": [0], "framework": {"name": "tf", "version": "1.2"},
        "data": {"type": "s3", "bucket": "d", "endpoint": "https://s3"},
        "results": {"type": "s3", "bucket": "r", "endpoint": "https://s3", "prefix": "x/"},
        "progress": {"phase": "downloading", "bytes_done": 1, "bytes_total": 2,
                     "objects_done": 1, "objects_total": 2},
    }  # fmt: skip
    shown = {label.replace(" ", "_").lower() for label, *_ in fields(run)}
    wanted = {label.lower() for label, _ in _show_fields(run)}
    assert wanted <= shown
