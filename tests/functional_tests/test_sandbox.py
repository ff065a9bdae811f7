"""Runs sandboxed from the service and from each other (bubblewrap): tried as an attacker
with a token would, over TCP, against a real service and real runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import pytest
from test_remote import Remote, free_port

from trainui.sandbox import unavailable

WHY_NOT = unavailable()
needs_sandbox = pytest.mark.skipif(WHY_NOT is not None, reason=f"no sandbox here: {WHY_NOT}")

# What a curious run does: look for the home, the run store, other runs' secrets, the tokens;
# try to write an admin token; look at every process it can see. It prints what it finds.
ATTACK = r"""
import glob, json, os, sys
home = sys.argv[1]
found = []
def note(what, text):
    found.append(what)
    print("FOUND", what, text[:2000])
for top in (home, os.path.dirname(home), "/"):
    for folder, dirs, files in os.walk(top):
        if folder.startswith(("/proc", "/sys", "/usr", "/etc", "/dev", "/opt", "/root/.pyenv")):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(folder, name)
            if name.startswith(("runs.db", "tokens.json", "results.json", "learner.json")):
                try:
                    note(path, open(path, "rb").read().decode(errors="replace"))
                except OSError as error:
                    print("REFUSED", path, error.strerror)
pids = [p for p in os.listdir("/proc") if p.isdigit()]
print("PIDS", len(pids))
for pid in pids:
    try:
        print("PROCENV", pid, open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
    except OSError as error:
        print("REFUSED", pid, error.strerror)
try:
    with open(os.path.join(home, "tokens.json"), "a") as f:
        f.write(json.dumps({"name": "mallory", "admin": True}))
    print("WROTE tokens.json")
except OSError as error:
    print("REFUSED write", error.strerror)
print("ENV", json.dumps(dict(os.environ)))
print("UID", os.getuid())
print("ATTACK-DONE")
"""


@pytest.fixture
def remote(home):
    home.env["TRAINUI_CPU_SLOTS"] = "2"  # two users' runs at once
    r = Remote(home)
    yield r
    r.kill()


def _run_of(remote: Remote, user: str, manifest_text: str, files: dict[str, str]) -> str:
    model = remote.home.model(f"{user}-{abs(hash(manifest_text))}", files)
    manifest = remote.home.path.parent / f"manifest-{user}-{abs(hash(manifest_text))}.yml"
    manifest.write_text(textwrap.dedent(manifest_text))
    result = remote.cli(user, "train", str(model), str(manifest))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1].split("'")[1]


def _wait(remote: Remote, user: str, model_id: str, *states: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = json.loads(remote.cli(user, "show", model_id, "--json").stdout)
        if run["status"] in states or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def _log(remote: Remote, user: str, model_id: str) -> str:
    return remote.cli(user, "logs", model_id).stdout


@needs_sandbox
def test_a_run_reaches_neither_the_home_nor_another_users_secrets(remote, s3_server):
    home = remote.home
    home.bucket("data")
    bucket = s3_server.bucket({"train.csv": "1,2\n"})
    bob_secret = "bob-" + "S3CRET-" + os.urandom(6).hex()
    connection = json.dumps(s3_server.connection(aws_secret_access_key=bob_secret))
    # moto takes any secret: bob's run reads its data with it and waits, its secrets in its
    # run folder (results.json, learner.json) and in the run store
    bob = _run_of(
        remote,
        "bob",
        f"""\
        model_definition:
          name: bob-run
          framework: {{name: python, version: "3.11"}}
          execution: {{command: "sleep 60", resource: small}}
        training_data:
          connection: {connection}
          source: {{bucket: {bucket}, type: s3}}
        training_results:
          connection: {connection}
          target: {{bucket: {bucket}, type: s3}}
        """,
        {"train.py": "pass\n"},
    )
    assert _wait(remote, "bob", bob, "running")["status"] == "running"
    tokens_before = (home.path / "tokens.json").read_bytes()
    alice = _run_of(
        remote,
        "alice",
        f"""\
        model_definition:
          name: alice-run
          framework: {{name: python, version: "3.11"}}
          execution: {{command: "python3 attack.py {home.path}", resource: small}}
        training_data:
          connection: {{}}
          source: {{bucket: data, type: local}}
        training_results:
          connection: {{}}
          target: {{bucket: results, type: local}}
        """,
        {"attack.py": ATTACK},
    )
    run = _wait(remote, "alice", alice, "completed", "failed", timeout=90)
    log = _log(remote, "alice", alice)
    assert "ATTACK-DONE" in log, log
    assert run["status"] == "completed", log
    assert bob_secret not in log
    assert remote.tokens["bob"] not in log
    assert "FOUND" not in log, log  # no run store, token file or run folder
    assert "TRAINUI_HOME=" not in log  # no process of the service's or a learner's
    assert "WROTE tokens.json" not in log
    assert (home.path / "tokens.json").read_bytes() == tokens_before
    pids = int(log.split("\nPIDS ", 1)[1].split()[0])
    assert pids <= 4, log  # bwrap's init, sh, python: nothing of the learner or bob's run
    env = json.loads(log.split("\nENV ", 1)[1].splitlines()[0])
    assert "TRAINUI_HOME" not in env and "TRAINUI_TOKEN" not in env
    own = str(home.path / "runs" / alice / "work")
    assert all(own in value for value in env.values() if str(home.path) in value), env
    if os.geteuid() == 0:  # the service is root: the command is not
        assert int(log.split("\nUID ", 1)[1].split()[0]) == 65534
    # the forged admin token does not exist: mallory is nobody
    assert (
        httpx.get(f"{remote.url}/v3/models", headers={"Authorization": "Bearer x"}).status_code
        == 401
    )
    remote.cli("bob", "halt", bob)


@needs_sandbox
def test_halt_ends_a_daemon_the_command_started_with_setsid(home):
    # the daemon leaves the command's process group and ignores SIGTERM; it writes a line a
    # tenth of a second into a file of RESULT_DIR's
    command = (
        'setsid sh -c \'trap "" TERM; while :; do echo tick >> $RESULT_DIR/ticks; sleep 0.1; '
        "done' & sleep 300"
    )
    model_id = home.submit(home.model("daemon", {"x.py": ""}), home.manifest(command))
    home.wait(model_id, "running")
    ticks = None
    deadline = time.monotonic() + 30
    while ticks is None and time.monotonic() < deadline:
        ticks = _processes_of(model_id)
        ticks = ticks if len(ticks) >= 3 else None  # sh, sleep 300, the daemon (and its sleep)
        time.sleep(0.1)
    assert ticks, "the daemon did not start"
    home.cli("halt", model_id, check=True)
    run = home.wait(model_id, "halted", "failed", timeout=60)
    assert run["status"] == "halted"
    assert _processes_of(model_id) == [], "a process of the run outlived its halt"


def _processes_of(model_id: str) -> list[int]:
    """Live processes whose environment names the run (TRAINING_ID), but not bwrap's own."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        ours = f"TRAINING_ID={model_id}".encode() in environ
        if ours and state not in "ZX" and comm not in ("bwrap", "env"):
            found.append(int(entry))
    return found


@needs_sandbox
@pytest.mark.skipif(os.geteuid() != 0, reason="the service switches users only as root")
def test_a_token_mapped_to_a_unix_user_runs_as_that_user(home):
    import pwd

    login = "daemon" if _has_user("daemon") else None
    if login is None:
        pytest.skip("no 'daemon' account on this machine")
    refused = home.cli("token", "add", "eve", "--unix-user", "no-such-login-here")
    assert refused.returncode != 0 and "no Unix user 'no-such-login-here'" in refused.stderr
    refused = home.cli("token", "add", "eve", "--unix-user", "root")
    assert refused.returncode != 0 and "root" in refused.stderr
    token = home.cli("token", "add", "dan", "--unix-user", login, check=True).stdout.split()[-1]
    listing = home.cli("token", "list", check=True).stdout
    assert "dan" in listing and login in listing
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "trainui", "serve", "--port", str(port)], env=home.env
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url)
        manifest = home.manifest("id -u; touch $RESULT_DIR/mine")
        result = home.cli(
            "--url", url, "--token", token, "train", str(home.model("id", {"a": ""})), str(manifest)
        )
        assert result.returncode == 0, result.stderr
        model_id = result.stdout.strip().split("'")[1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run = json.loads(
                home.cli("--url", url, "--token", token, "show", model_id, "--json").stdout
            )
            if run["status"] in ("completed", "failed"):
                break
            time.sleep(0.1)
        log = home.cli("--url", url, "--token", token, "logs", model_id).stdout
        assert run["status"] == "completed", log
        assert str(pwd.getpwnam(login).pw_uid) in log.splitlines()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


def _has_user(login: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(login)
        return True
    except KeyError:
        return False


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v3/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"no service on {url}")


def _local_health(home) -> dict:
    transport = httpx.HTTPTransport(uds=str(home.path / "trainui.sock"))
    with httpx.Client(transport=transport) as client:
        return client.get("http://localhost/v3/health").json()


def _without_bwrap(tmp_path, env: dict[str, str]) -> dict[str, str]:
    """The environment of a machine without bubblewrap: a PATH of everything else."""
    bin_dir = tmp_path / "bin-without-bwrap"
    bin_dir.mkdir()
    for folder in env.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name != "bwrap" and not (bin_dir / name).exists():
                with_path = os.path.join(folder, name)
                if os.access(with_path, os.X_OK) and not os.path.isdir(with_path):
                    (bin_dir / name).symlink_to(with_path)
    return {**env, "PATH": str(bin_dir)}


def test_where_runs_cannot_be_sandboxed_serve_refuses_several_users_over_tcp(home, tmp_path):
    env = _without_bwrap(tmp_path, home.env)
    for name in ("alice", "bob"):
        home.cli("token", "add", name, check=True)
    port = str(free_port())
    refused = subprocess.run(
        [sys.executable, "-m", "trainui", "serve", "--port", port],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "cannot be sandboxed" in refused.stderr and "--no-isolation" in refused.stderr
    assert "bubblewrap" in refused.stderr and "Traceback" not in refused.stderr
    # said on purpose: it serves, and says runs are not sandboxed
    server = subprocess.Popen(
        [sys.executable, "-m", "trainui", "serve", "--port", port, "--no-isolation"], env=env
    )
    try:
        _wait_up(f"http://127.0.0.1:{port}")
        health = _local_health(home)
        assert health["isolation"] == {
            "sandbox": False,
            "reason": "isolation is off (--no-isolation)",
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


def test_without_a_sandbox_the_local_default_still_runs(home, tmp_path):
    env = _without_bwrap(tmp_path, home.env)
    home.env = env
    model_id = home.submit(
        home.model("plain", {"t.py": "print('plain run')\n"}), home.manifest("python3 t.py")
    )
    run = home.wait(model_id, "completed", "failed")
    assert run["status"] == "completed", home.cli("logs", model_id).stdout
    health = _local_health(home)
    assert health["isolation"]["sandbox"] is False
    assert "bubblewrap" in health["isolation"]["reason"]
    # and TRAINUI_ISOLATION=on will not serve there
    home.stop()
    refused = home.cli("serve", "--no-tcp", TRAINUI_ISOLATION="on", PATH=env["PATH"])
    assert refused.returncode != 0 and "cannot be sandboxed" in refused.stderr


@needs_sandbox
def test_the_sandbox_gives_back_the_commands_exit_code_and_signal(tmp_path):
    from trainui import sandbox

    work = tmp_path / "work"
    dirs = [str(work / name) for name in ("model", "results", "data", "tmp")]
    for d in dirs:
        os.makedirs(d)
    user = sandbox.resolve_user(None) if os.geteuid() == 0 else None
    sandbox.give_to(user, dirs)
    argv = sandbox.wrap(
        ["/bin/sh", "-c", "kill -9 $$"],
        readonly=[dirs[2]], writable=dirs[:2], tmp_dir=dirs[3], hide=[str(tmp_path)], user=user,
    )  # fmt: skip
    code = subprocess.run(argv, check=False).returncode
    assert sandbox.exit_code(code) == -9
    argv[-1] = "exit 3"
    assert sandbox.exit_code(subprocess.run(argv, check=False).returncode) == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's user is chosen only as root")
def test_a_sandbox_user_that_does_not_exist_stops_the_service_from_starting(home):
    refused = home.cli("serve", "--no-tcp", TRAINUI_SANDBOX_USER="no-such-login-here")
    assert refused.returncode != 0
    assert "TRAINUI_SANDBOX_USER: no Unix user 'no-such-login-here'" in refused.stderr
    assert "Traceback" not in refused.stderr


@needs_sandbox
def test_a_halted_sandboxed_command_gets_sigterm_and_its_grace(home):
    command = (
        "trap 'sleep 0.3; echo saved > $RESULT_DIR/saved.txt; exit 0' TERM; "
        "echo ready; while :; do sleep 0.05; done"
    )
    model_id = home.submit(home.model("grace", {"x.py": ""}), home.manifest(command))
    deadline = time.monotonic() + 30
    while "ready" not in home.cli("logs", model_id).stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    home.cli("halt", model_id, check=True)
    run = home.wait(model_id, "halted", "failed", timeout=60)
    log = home.cli("logs", model_id).stdout
    assert run["status"] == "halted", log
    assert "did not stop within" not in log  # it stopped by itself within its grace
    assert "command exited with code 0" in log
    saved = home.buckets / "results" / model_id / "saved.txt"
    assert saved.read_text() == "saved\n"


# The sandbox is made while the data are staged, its command waiting for the learner's word
# (trainui.learner.process: _sandbox_ahead). A run that ends before its command starts must
# never start it, and leave nothing behind; the command must not see how it was told to go.
SANDBOX = {"gpu_devices": None, "required": True, "unix_user": None, "paths": []}
RAN = "echo COMMAND-RAN; ls -l /proc/$$/fd"  # the shell's own open files, and what they are


def _s3(server, bucket, endpoint=None) -> dict:
    return {"type": "s3", "bucket": bucket, "connection": server.connection(endpoint)}


@needs_sandbox
def test_a_sandboxed_command_does_not_inherit_the_learners_word_to_start(s3_server, learner_run):
    data = s3_server.bucket({"a.txt": "a"})
    run = learner_run(
        _s3(s3_server, data), _s3(s3_server, s3_server.bucket()), RAN, sandbox=SANDBOX
    )
    status = run.start().wait()
    log = run.log()
    assert status["status"] == "completed", log
    assert "sandboxed (bubblewrap)" in log
    fds = [line.split()[-3] for line in log.splitlines() if " -> " in line]
    assert {"0", "1", "2"} <= set(fds) and "3" not in fds, log


@needs_sandbox
def test_a_sandboxed_run_halted_while_it_stages_never_starts_its_command(
    s3_server, fault_proxy, learner_run
):
    data = s3_server.bucket()
    s3_server.seed(data, {"big.bin": os.urandom(32 << 20)})
    proxy = fault_proxy(s3_server.port)
    proxy.throttle(4 << 20)  # eight seconds for the whole object
    run = learner_run(
        _s3(s3_server, data, proxy.endpoint), _s3(s3_server, s3_server.bucket()), RAN,
        sandbox=SANDBOX,
    )  # fmt: skip
    run.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the data on their way
        with contextlib.suppress(OSError, ValueError, KeyError):
            if run.status()["progress"]["bytes_done"] >= 1 << 20:
                break
        time.sleep(0.02)
    # the sandbox, made while the data are staged, waits in it
    assert _processes_of(run.model_id), f"no sandbox was made while staging: {run.log()}"
    assert run.status()["status"] == "downloading"
    run.halt()
    status = run.wait(timeout=30)
    log = run.log()
    assert status["status"] == "halted", log
    assert "staging stopped after 0 of 1 object" in log
    assert "COMMAND-RAN" not in log
    assert _processes_of(run.model_id) == [], "the sandbox made ahead outlived the run"


@needs_sandbox
def test_a_sandboxed_run_that_fails_to_stage_never_starts_its_command(s3_server, learner_run):
    run = learner_run(
        _s3(s3_server, "no-such-data"), _s3(s3_server, s3_server.bucket()), RAN, sandbox=SANDBOX
    )
    status = run.start().wait(timeout=60)
    log = run.log()
    assert status["error_code"] == "S302", log
    assert "COMMAND-RAN" not in log
    assert _processes_of(run.model_id) == []


@needs_sandbox
@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's user differs from ours only as root")
def test_the_folders_bwrap_makes_above_the_runs_folders_stay_roots(s3_server, learner_run):
    # the home is under /tmp here, so bwrap makes the folders above the run's mount points in
    # the run's own /tmp: those are not the command's to write (only its folders and /tmp are)
    command = 'touch "$(dirname "$MODEL_DIR")/planted" 2>/dev/null && echo PLANTED || echo REFUSED'
    data = s3_server.bucket({f"f{i}.txt": "x" for i in range(20)})
    run = learner_run(
        _s3(s3_server, data), _s3(s3_server, s3_server.bucket()), command, sandbox=SANDBOX
    )
    assert str(run.home).startswith("/tmp/")
    status = run.start().wait()
    log = run.log()
    assert status["status"] == "completed", log
    assert "REFUSED" in log and "PLANTED" not in log
