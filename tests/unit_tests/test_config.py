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
