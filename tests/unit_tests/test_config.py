"""Settings read from TRAINUI_* variables: values, and a bad one named in one sentence."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from trainui.config import ConfigError, load_settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 1 << 30),
        ("0", 0),
        ("65536", 65536),
        ("64K", 64 << 10),
        ("500M", 500 << 20),
        ("1.5GiB", 3 << 29),
        ("2g", 2 << 30),
    ],
)
def test_log_max_bytes_takes_a_size(value, expected):
    environ = {"TRAINUI_GPUS": "none"}
    if value is not None:
        environ["TRAINUI_LOG_MAX_BYTES"] = value
    assert load_settings(environ).log_max_bytes == expected


@pytest.mark.parametrize("value", ["lots", "-1", "1X", "inf", "nan"])
def test_a_log_max_bytes_that_is_no_size_is_refused_in_one_sentence(value):
    with pytest.raises(ConfigError) as raised:
        load_settings({"TRAINUI_GPUS": "none", "TRAINUI_LOG_MAX_BYTES": value})
    assert str(raised.value) == (
        f"TRAINUI_LOG_MAX_BYTES must be a size like 1G, 500M or 0, not '{value}'"
    )


def test_serve_refuses_a_bad_log_max_bytes(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "trainui", "serve", "--no-tcp"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "TRAINUI_HOME": str(tmp_path / "home"),
            "TRAINUI_GPUS": "none",
            "TRAINUI_LOG_MAX_BYTES": "lots",
        },
    )
    assert result.returncode == 2
    assert result.stderr == (
        "trainui: TRAINUI_LOG_MAX_BYTES must be a size like 1G, 500M or 0, not 'lots'\n"
    )


# --- the settings object: every TRAINUI_* variable, declared once ------------------------------


def test_every_trainui_variable_the_code_reads_is_a_declared_setting():
    """A variable read anywhere in src/ is one of Settings' (or a name the code passes on)."""
    import re
    from pathlib import Path

    from trainui.config import Settings

    declared = {v.name for v in Settings.variables()} | {"TRAINUI_HOME"}
    src = Path(__file__).resolve().parents[2] / "src" / "trainui"
    named = set()
    for path in src.rglob("*.py"):
        named |= set(re.findall(r"\bTRAINUI_[A-Z_]+[A-Z]\b", path.read_text()))
    assert named - declared == set()
    assert len(declared) >= 30


def test_settings_are_typed_parsed_when_read_and_overridden_by_options():
    from trainui.config import Settings

    settings = Settings({"TRAINUI_CPU_SLOTS": "3", "TRAINUI_GPUS": "0,2", "TRAINUI_HOME": "/h"})
    assert settings.cpu_slots == 3
    assert settings.gpu_ids == [0, 2]
    assert settings.home == "/h"
    assert settings.launcher == "local"  # the default
    assert Settings({"TRAINUI_LAUNCHER": "ray"}, launcher="local").launcher == "local"
    assert Settings({"TRAINUI_LAUNCHER": "ray"}, launcher=None).launcher == "ray"  # not given
    # a bad value is refused only where it is read: a client is not refused over the service's
    lazy = Settings({"TRAINUI_CPU_SLOTS": "many", "TRAINUI_URL": "http://x:1"})
    assert lazy.url == "http://x:1"
    with pytest.raises(ConfigError, match="TRAINUI_CPU_SLOTS must be a whole number, not 'many'"):
        lazy.check()
    with pytest.raises(AttributeError):
        settings.cpu_slots = 4
    with pytest.raises(TypeError):
        Settings({}, no_such_setting=1)


def test_the_ray_launcher_needs_an_address():
    with pytest.raises(ConfigError, match="TRAINUI_RAY_ADDRESS"):
        load_settings({"TRAINUI_GPUS": "none", "TRAINUI_LAUNCHER": "ray"})
    settings = load_settings({"TRAINUI_GPUS": "none"}, launcher="ray", ray_address="http://h:1")
    assert (settings.launcher, settings.ray_address) == ("ray", "http://h:1")
