"""The sandbox's command line: which GPUs a run is given, what covers the home."""

from __future__ import annotations

import pytest

from trainui import sandbox


def _pairs(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == option]


def test_a_run_is_given_its_gpus_nodes_and_the_shared_ones_only(tmp_path, monkeypatch):
    for name in ("nvidia0", "nvidia1", "nvidia12", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    (tmp_path / "null").touch()
    monkeypatch.setattr(sandbox, "DEVICES", str(tmp_path))
    common = dict(readonly=[], writable=[], tmp_dir=None, hide=[], user=None)
    args = sandbox.wrap(["true"], gpu_devices=[str(tmp_path / "nvidia1")], **common)
    given = {p.rsplit("/", 1)[1] for p in _pairs(args, "--dev-bind-try")}
    assert given == {"nvidia1", "nvidiactl", "nvidia-uvm"}
    args = sandbox.wrap(["true"], gpu_devices=[], **common)  # the CPU: no GPU at all
    assert {p.rsplit("/", 1)[1] for p in _pairs(args, "--dev-bind-try")} == {
        "nvidiactl",
        "nvidia-uvm",
    }
    args = sandbox.wrap(["true"], gpu_devices=None, **common)  # unknown: every GPU's node
    assert len(_pairs(args, "--dev-bind-try")) == 5


def test_the_home_is_covered_where_a_shown_folder_holds_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "PYTHON_PATHS", [str(tmp_path)])
    home = str(tmp_path / "home")
    args = sandbox.wrap(["true"], readonly=[], writable=[], tmp_dir=None, hide=[home], user=None)
    assert home in _pairs(args, "--tmpfs")
    shown = args.index(str(tmp_path))
    assert shown < args.index(home)  # the cover comes after what it covers
    args = sandbox.wrap(
        ["true"], readonly=[], writable=[], tmp_dir=None, hide=["/elsewhere/home"], user=None
    )
    assert "/elsewhere/home" not in args  # nothing shows it: nothing to cover


def test_folders_above_a_run_folder_are_made_searchable_before_it_is_bound():
    args = sandbox.wrap(
        ["true"], readonly=[], writable=["/a/b/c"], tmp_dir=None, hide=[], user=None
    )
    made = [args[i + 1] for i, a in enumerate(args) if a == "--dir"]
    assert made[-2:] == ["/a", "/a/b"]
    assert args.index("/a/b") < args.index("/a/b/c")


def test_exit_codes_of_signals_are_given_back():
    assert sandbox.exit_code(137) == -9
    assert sandbox.exit_code(143) == -15
    assert sandbox.exit_code(3) == 3


def test_root_is_never_the_sandbox_user():
    with pytest.raises(sandbox.SandboxError, match="root"):
        sandbox.resolve_user("root")
    with pytest.raises(sandbox.SandboxError, match="root"):
        sandbox.resolve_user("0")
    with pytest.raises(sandbox.SandboxError, match="no Unix user 'no-such-user-x'"):
        sandbox.resolve_user("no-such-user-x")
    assert sandbox.resolve_user(None, {"TRAINUI_SANDBOX_USER": "61234"}).uid == 61234
