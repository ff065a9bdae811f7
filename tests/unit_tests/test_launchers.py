"""The service makes its launcher from its settings (trainui.config), never from os.environ."""

from __future__ import annotations

import pytest

from trainui.config import ConfigError, Settings
from trainui.service.launchers.local import LocalLauncher
from trainui.service.server import make_launcher


def test_the_ray_launcher_is_made_from_the_settings_given(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINUI_RAY_PYTHON", "/not/this/python")  # the process's: not used
    monkeypatch.setenv("TRAINUI_RAY_GRACE", "99")
    environ = {
        "TRAINUI_HOME": str(tmp_path),
        "TRAINUI_LAUNCHER": "ray",
        "TRAINUI_RAY_ADDRESS": "127.0.0.1:9",  # nothing answers: the launcher only waits
        "TRAINUI_RAY_GRACE": "7.5",
        "TRAINUI_RAY_PYTHON": " /opt/workers/bin/python3 ",
        "TRAINUI_TOKEN": "secret",
    }
    launcher = make_launcher(Settings(environ))
    try:
        assert (launcher.name, launcher.address) == ("ray", "http://127.0.0.1:9")
        assert (launcher.lost_grace, launcher.python) == (7.5, "/opt/workers/bin/python3")
        assert launcher.runs_dir == str(tmp_path / "runs")
        # the jobs get the settings' environment (less the token), not the process's
        assert launcher.env_vars["TRAINUI_RAY_GRACE"] == "7.5"
        assert "TRAINUI_TOKEN" not in launcher.env_vars
    finally:
        launcher.close()
    unset = make_launcher(Settings({**environ, "TRAINUI_RAY_GRACE": "", "TRAINUI_RAY_PYTHON": ""}))
    try:
        assert (unset.lost_grace, unset.python) == (60.0, "python3")  # the defaults
    finally:
        unset.close()


def test_a_bad_ray_grace_is_refused_in_one_sentence():
    settings = Settings(
        {"TRAINUI_LAUNCHER": "ray", "TRAINUI_RAY_ADDRESS": "h:1", "TRAINUI_RAY_GRACE": "soon"}
    )
    with pytest.raises(ConfigError, match="TRAINUI_RAY_GRACE must be a number, not 'soon'"):
        make_launcher(settings)


def test_the_local_launcher_is_the_default():
    assert isinstance(make_launcher(Settings({})), LocalLauncher)
