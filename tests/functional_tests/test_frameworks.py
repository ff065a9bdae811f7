"""Frameworks (SPEC §10) end to end: the service's catalogue, C104 at validate and at submit,
and each runtime for real: two venvs made here, a conda environment's activation, and podman
with an image made from a tarball (no registry outside is reachable: a local registry serves
the pulls), through the real CLI, service and learners."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from podman_env import Podman, PodmanUnavailable

from trainui.learner import runtime

PYTORCH = """\
[[framework]]
name = "pytorch"
versions = ["2.4", "2.5"]
runtime = "host"
"""


def write_catalogue(home, text: str) -> Path:
    path = home.path.parent / "frameworks.toml"
    path.write_text(textwrap.dedent(text))
    home.env["TRAINUI_FRAMEWORKS"] = str(path)
    return path


def framework_manifest(home, command: str, name: str, version: str, **kwargs) -> Path:
    path = home.manifest(command, name=f"{name}-{version}".replace(".", "-"), **kwargs)
    text = path.read_text().replace(
        'framework: {name: python, version: "3.11"}',
        f"framework: {{name: {name}, version: {json.dumps(version)}}}",
    )
    path.write_text(text)
    return path


def make_venv(where: Path, marker: str) -> Path:
    """A real venv whose site-packages holds a module ``marker`` of its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    (site,) = where.glob("lib/python*/site-packages")
    (site / "marker.py").write_text(f"WHO = {marker!r}\n")
    return where


def log(home, model_id: str) -> str:
    return (home.path / "runs" / model_id / "training-log.txt").read_text()


# --- the catalogue, validate and submit -----------------------------------------------------


def test_two_runs_in_two_venvs_each_see_their_own(home, tmp_path):
    make_venv(tmp_path / "env-2.15", "tf 2.15")
    make_venv(tmp_path / "env-2.16", "tf 2.16")
    write_catalogue(
        home,
        f"""\
        [[framework]]
        name = "tensorflow"
        versions = ["2.15", "2.16"]
        runtime = "venv"
        path = "{tmp_path}/env-{{version}}"
        """,
    )
    model = home.model("venv", {"show.py": """\
        import marker, os, sys
        print("marker:", marker.WHO, "|", os.environ["VIRTUAL_ENV"], "|", sys.prefix)
        """})  # fmt: skip
    ids = {
        v: home.submit(model, framework_manifest(home, "python show.py", "tensorflow", v))
        for v in ("2.15", "2.16")
    }
    for version, model_id in ids.items():
        run = home.wait(model_id, "completed", "failed")
        text = log(home, model_id)
        assert run["status"] == "completed", text
        env = tmp_path / f"env-{version}"
        assert f"marker: tf {version} | {env} | {env}" in text
        assert f"in the venv {env}" in text  # the learner says where it runs


def test_an_unsupported_framework_is_c104_at_validate_and_at_submit(home):
    write_catalogue(home, PYTORCH)
    model = home.model("c104", {"t.py": ""})
    typo = framework_manifest(home, "true", "pytorh", "2.4")
    old = framework_manifest(home, "true", "pytorch", "1.13")
    # no service answers yet: validate reads this machine's catalogue, and says so
    out = home.cli("validate", str(typo))
    assert out.returncode == 1
    assert re.search(
        r":3:\d+: model_definition.framework: C104 framework pytorh is not supported here "
        r"\(did you mean pytorch\?\)\. Supported: pytorch 2.4, 2.5",
        out.stdout,
    ), out.stdout
    assert "no service answered" in out.stdout
    # with another mistake in the manifest: both said, in the order of their lines
    both = framework_manifest(home, "true", "pytorh", "2.4")
    both.write_text(both.read_text().replace("resource: small", "resource: huge"))
    out = home.cli("validate", str(both))
    lines = [line for line in out.stdout.splitlines() if ": model_definition." in line]
    assert [line.split(": ", 2)[1] for line in lines] == [
        "model_definition.framework", "model_definition.execution.resource",
    ], out.stdout  # fmt: skip
    result = home.cli("train", str(model), str(old))
    assert result.returncode == 1
    said = result.stdout + result.stderr
    assert "framework pytorch 1.13 is not supported here: pytorch versions 2.4, 2.5" in said
    assert not list((home.path / "runs").glob("training-*"))  # nothing kept of it
    # a service answers now: validate asks it
    out = home.cli("validate", str(old))
    assert out.returncode == 1 and "checked against the service's catalogue" in out.stdout
    refused = home.cli("train", str(model), str(both))  # the service says both too
    assert refused.returncode == 1
    assert "framework: C104 framework pytorh is not supported" in refused.stderr, refused.stderr
    assert "'huge' is not one of" in refused.stdout + refused.stderr
    good = framework_manifest(home, "true", "PyTorch", "2.5")
    assert "valid" in home.cli("validate", str(good), check=True).stdout
    home.wait(home.submit(model, good), "completed")
    listed = json.loads(home.cli("frameworks", "--json", check=True).stdout)
    assert listed["frameworks"] == [
        {"name": "pytorch", "versions": ["2.4", "2.5"], "runtime": "host"}
    ]
    table = home.cli("frameworks", check=True).stdout
    assert re.search(r"pytorch\s+2\.4, 2\.5\s+host", table) and "1 framework in" in table
    # the catalogue moved away, then back as it was (its time too, as `cp -p` of a backup
    # does): submissions are taken again, not refused until the file is touched
    catalogue = Path(home.env["TRAINUI_FRAMEWORKS"])
    saved = catalogue.with_suffix(".saved")
    catalogue.rename(saved)
    time.sleep(1.1)  # the service looks again at most every second
    assert home.cli("train", str(model), str(good)).returncode == 1  # no catalogue: refused
    saved.rename(catalogue)
    time.sleep(1.1)
    home.wait(home.submit(model, good), "completed")


def test_without_a_catalogue_every_framework_runs_on_the_host(home, tmp_path):
    home.env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # nothing there
    out = home.cli("frameworks", check=True).stdout
    assert out.startswith("No frameworks catalogue: every framework runs on the host")
    assert str(tmp_path / "config" / "trainui" / "frameworks.toml") in out
    # the path is the service's, not this command's (a laptop's, for a remote service)
    json_out = json.loads(home.cli("frameworks", "--json", check=True).stdout)
    assert json_out["looked_in"] == str(tmp_path / "config" / "trainui" / "frameworks.toml")
    elsewhere = home.cli("frameworks", check=True, XDG_CONFIG_HOME=str(tmp_path / "laptop")).stdout
    assert str(tmp_path / "config" / "trainui" / "frameworks.toml") in elsewhere
    assert "laptop" not in elsewhere
    model = home.model("any", {"t.py": ""})
    run = home.wait(home.submit(model, framework_manifest(home, "true", "caffe", "1")), "completed")
    assert run["framework"] == {"name": "caffe", "version": "1"}


def test_a_run_whose_framework_left_the_catalogue_while_it_waited_fails_with_its_log(home):
    """Accepted, then the box's owner drops its framework version before it starts: C104 at
    start, said in its log, which is stored in the results bucket as for any failed run."""
    home.env["TRAINUI_CPU_SLOTS"] = "1"
    catalogue = write_catalogue(home, PYTORCH)
    model = home.model("left", {"t.py": ""})
    blocker = home.submit(model, framework_manifest(home, "sleep 60", "pytorch", "2.4"))
    home.wait(blocker, "running")
    waiting = home.submit(model, framework_manifest(home, "echo trained", "pytorch", "2.5"))
    assert home.show(waiting)["status"] == "pending"
    catalogue.write_text(catalogue.read_text().replace('["2.4", "2.5"]', '["2.4"]'))
    time.sleep(1.1)  # the service looks again at most every second
    home.cli("halt", blocker, check=True)
    run = home.wait(waiting, "failed")
    assert "C104" in json.dumps(run) and "2.5" in run["status_message"], run
    stored = home.buckets / "results" / waiting
    deadline = time.monotonic() + 30
    while not (stored / "training-log.txt").exists():
        assert time.monotonic() < deadline, sorted(stored.parent.rglob("*"))
        time.sleep(0.1)
    said = home.cli("logs", waiting, check=True).stdout
    assert "trainui: failed (C104):" in said and "trained" not in said
    assert "trainui: failed (C104):" in (stored / "training-log.txt").read_text()
    status = json.loads((stored / "training-status.json").read_text())
    assert status["status"] == "failed", status


def test_a_catalogue_broken_while_the_service_runs_refuses_runs_and_validate_says_so(home):
    """The owner's edit with an error: the last good catalogue is listed (with a warning),
    every submission is refused until it is fixed, and `validate` says so beforehand."""
    catalogue = write_catalogue(home, PYTORCH)
    model = home.model("broken", {"t.py": ""})
    manifest = framework_manifest(home, "true", "pytorch", "2.4")
    home.cli("list", check=True)  # the service starts with the good one
    catalogue.write_text(catalogue.read_text().replace('runtime = "host"', 'runtime = "hots"'))
    time.sleep(1.1)  # the service looks again at most every second
    listed = home.cli("frameworks")
    assert (
        "the catalogue changed and has errors: the service takes no run until they are "
        "fixed" in listed.stdout + listed.stderr
    )  # not "the last good one is used"
    checked = home.cli("validate", str(manifest))
    assert checked.returncode == 1, checked.stdout
    assert "not checked: the service's catalogue has errors" in checked.stdout, checked.stdout
    said = "the service's frameworks catalogue has errors, and it takes no run until its owner"
    assert said in checked.stdout and "hots" in checked.stdout
    refused = home.cli("train", str(model), str(manifest))
    assert refused.returncode == 1 and said in refused.stderr and "Model-ID" not in refused.stdout


def test_a_broken_catalogue_stops_the_service_from_starting_with_every_error_located(home):
    path = write_catalogue(
        home,
        """\
        [[framework]]
        name = "pytorch"
        versions = ["2.4"]
        runtime = "podman"

        [[framework]]
        name = "tf"
        versions = ["2.16"]
        runtime = "venv"
        """,
    )
    started = time.monotonic()
    result = home.cli("list")
    assert result.returncode == 1
    said = result.stderr
    assert "the trainui service could not start: the frameworks catalogue is not valid" in said
    assert f"{path}:1: [[framework]] #1: runtime must be one of container" in said
    assert f"{path}:6: [[framework]] #2: a venv runtime needs path" in said
    assert time.monotonic() - started < 10  # said at once, not after the start timeout
    assert "Traceback" not in said


def test_a_missing_venv_fails_the_run_with_a_sentence_and_conda_is_activated(home, tmp_path):
    prefix = make_venv(tmp_path / "conda-env", "conda")
    (prefix / "conda-meta").mkdir()
    (prefix / "conda-meta" / "history").write_text("")
    hooks = prefix / "etc" / "conda" / "activate.d"
    hooks.mkdir(parents=True)
    (hooks / "cuda.sh").write_text('export CUDA_HOME="$CONDA_PREFIX/cuda"\n')
    write_catalogue(
        home,
        f"""\
        [[framework]]
        name = "gone"
        versions = ["*"]
        runtime = "venv"
        path = "{tmp_path}/nowhere-{{version}}"

        [[framework]]
        name = "jax"
        versions = ["0.4"]
        runtime = "conda"
        path = "{prefix}"
        """,
    )
    model = home.model("conda", {"t.py": ""})
    gone = home.submit(model, framework_manifest(home, "true", "gone", "1"))
    command = (
        'python -c "import marker; print(marker.WHO)"; echo "prefix=$CONDA_PREFIX'
        ' cuda=$CUDA_HOME"; exit 3'
    )
    conda = home.submit(model, framework_manifest(home, command, "jax", "0.4"))
    run = home.wait(gone, "failed")
    assert run["error_code"] == "S304"
    assert run["status_message"] == (
        f"gone 1: the venv {tmp_path}/nowhere-1 does not exist on this machine"
    )
    run = home.wait(conda, "failed", "completed")
    text = log(home, conda)
    assert run["error_code"] == "C201" and run["exit_code"] == 3, text  # its own exit code
    assert f"conda\nprefix={prefix} cuda={prefix}/cuda" in text


# --- containers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    """Podman with a test image and a local registry (podman_env); skipped where it cannot
    run a container, saying why."""
    try:
        box = Podman(tmp_path_factory.mktemp("podman")).start()
    except PodmanUnavailable as why:
        pytest.skip(str(why))
    yield box
    box.stop()


CONTAINER = """\
[[framework]]
name = "pytorch"
versions = ["1"]
runtime = "container"
image = "localhost/trainui-test:{version}"
"""


def container_home(home, podman, extra: str = "") -> None:
    home.env.update(podman.env)
    write_catalogue(home, CONTAINER + textwrap.dedent(extra))


def test_a_container_run_gets_its_folders_and_variables_and_data_read_only(home, podman):
    container_home(home, podman)
    home.bucket("data", {"in.txt": "hello"})
    model = home.model("container", {"t.py": ""})
    command = (
        "env | sort | grep -E '^(DATA_DIR|RESULT_DIR|TRAINING_ID|GPU_COUNT|CUDA_VISIBLE"
        "_DEVICES|PATH)='; cat $DATA_DIR/in.txt; echo; touch $DATA_DIR/x || echo read-only;"
        " id -u; echo made > $RESULT_DIR/out.txt"
    )
    model_id = home.submit(model, framework_manifest(home, command, "pytorch", "1"))
    run = home.wait(model_id, "completed", "failed")
    text = log(home, model_id)
    assert run["status"] == "completed", text
    work = home.path / "runs" / model_id / "work"
    assert f"DATA_DIR={work}/data\n" in text and f"RESULT_DIR={work}/results\n" in text
    assert f"TRAINING_ID={model_id}\n" in text and "GPU_COUNT=0\n" in text
    assert "CUDA_VISIBLE_DEVICES=\n" in text
    assert f"PATH={os.environ['PATH']}" not in text  # the image's own PATH, not the host's
    assert "hello\n" in text and "Read-only file system" in text and "read-only\n" in text
    assert "in container image localhost/trainui-test:1" in text
    if os.geteuid() == 0:  # the service is root: the command is not, nor has capabilities
        nobody = pwd.getpwnam("nobody").pw_uid
        assert f"\n{nobody}\n" in text and "\n0\n" not in text, text
        assert "as nobody, without capabilities" in text
    assert (home.buckets / "results" / model_id / "out.txt").read_text() == "made\n"
    assert podman.containers() == []  # removed with the run
    # the image is known to be here: the next run's learner asks podman nothing about it
    (note,) = (home.path / "images").glob("*.json")
    assert json.loads(note.read_text())["image"] == "localhost/trainui-test:1"
    again = home.submit(model, framework_manifest(home, "echo again", "pytorch", "1"))
    assert home.wait(again, "completed", "failed")["status"] == "completed"
    assert "again\n" in log(home, again)


def test_halting_a_container_run_leaves_no_container(home, podman):
    container_home(home, podman)
    model = home.model("halt", {"t.py": ""})
    polite = framework_manifest(
        home, "trap 'echo got TERM; exit 3' TERM; echo up; sleep 300 & wait", "pytorch", "1"
    )
    # ignores SIGTERM: SIGKILL after the halt's grace (2 s in tests) must not leave it running
    stubborn = framework_manifest(
        home, "trap '' TERM; echo up; sleep 300 & wait; sleep 300", "pytorch", "1"
    )
    for manifest, expect in ((polite, "got TERM"), (stubborn, "SIGKILL")):
        model_id = home.submit(model, manifest)
        deadline = time.monotonic() + 30
        while "up\n" not in log(home, model_id):
            assert time.monotonic() < deadline, log(home, model_id)
            time.sleep(0.1)
        assert podman.containers() == [f"trainui-{model_id}"]
        home.cli("halt", model_id, check=True)
        run = home.wait(model_id, "halted", timeout=30)
        assert expect in log(home, model_id)
        assert run["status_message"] == "halted by request"
        assert podman.containers() == [], log(home, model_id)


def test_a_lost_learner_does_not_leave_its_container_running(home, podman):
    container_home(home, podman)
    model = home.model("lost", {"t.py": ""})
    model_id = home.submit(model, framework_manifest(home, "echo up; sleep 300", "pytorch", "1"))
    deadline = time.monotonic() + 30
    while "up\n" not in log(home, model_id):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status = json.loads((home.path / "runs" / model_id / "status.json").read_text())
    # the command (the runtime's client) is the learner's child
    stat = Path(f"/proc/{status['command_pgid']}/stat").read_text()
    learner = int(stat[stat.rfind(")") + 2 :].split()[1])
    assert str(home.path).encode() in Path(f"/proc/{learner}/environ").read_bytes()
    os.kill(learner, signal.SIGKILL)
    run = home.wait(model_id, "failed", timeout=30)
    assert run["error_code"] == "S300"
    deadline = time.monotonic() + 10
    while podman.containers():
        assert time.monotonic() < deadline, podman.containers()
        time.sleep(0.2)


def test_a_command_exiting_125_is_its_own_failure_and_podmans_is_said_as_podmans(home, podman):
    """125 is podman's code for its own failure, and a command's exit code too: the run's
    message tells them apart (the container was created, or not)."""
    container_home(
        home,
        podman,
        """\
        [[framework]]
        name = "badoption"
        versions = ["1"]
        runtime = "container"
        image = "localhost/trainui-test:{version}"
        options = ["--no-such-option-of-podman"]
        """,
    )
    model = home.model("exit125", {"t.py": ""})
    own = home.submit(
        model, framework_manifest(home, "echo about to fail; exit 125", "pytorch", "1")
    )
    run = home.wait(own, "failed", timeout=60)
    assert run["error_code"] == "C201", log(home, own)
    assert run["exit_code"] == 125
    assert run["status_message"] == (
        'the training command exited with code 125; the log ends: "about to fail"'
    ), log(home, own)
    podmans = home.submit(model, framework_manifest(home, "echo never", "badoption", "1"))
    run = home.wait(podmans, "failed", timeout=60)
    text = log(home, podmans)
    assert run["error_code"] == "S304" and "never" not in text.replace("echo never", "")
    assert run["status_message"] == (
        'badoption 1: podman could not start the container (exit 125): "Error: unknown flag:'
        ' --no-such-option-of-podman"'
    ), text
    assert podman.containers() == []


def test_an_image_the_container_runtime_cannot_start_a_command_in_is_said_so(home, podman):
    """No /bin/sh in the image: the container's init (podman's catatonit) cannot start the
    command, and exits 1 saying so: the runtime's failure (S304), not the command's (C201),
    which would be restarted in vain; a command's own 127 (a shell's "not found") is C201."""
    container_home(
        home,
        podman,
        """        [[framework]]
        name = "bare"
        versions = ["1"]
        runtime = "container"
        image = "localhost/trainui-noshell:{version}"
        """,
    )
    model = home.model("exit127", {"t.py": ""})
    extra = "    max_restarts: 1\n"
    path = framework_manifest(home, "echo never", "bare", "1")
    path.write_text(
        path.read_text().replace("    resource: small\n", "    resource: small\n" + extra)
    )
    bare = home.submit(model, path)
    run = home.wait(bare, "failed", timeout=60)
    text = log(home, bare)
    assert run["error_code"] == "S304", text
    # catatonit's own PID in its line varies (6, 7): the rest is the same each time
    assert re.fullmatch(
        r'bare 1: podman could not start the container \(exit 1\): "ERROR \(catatonit:\d+\): '
        r'failed to exec pid1: No such file or directory"',
        run["status_message"],
    ), text
    assert run["attempt"] == 1 and len(run["attempts"]) == 1, run  # not restarted: in vain
    own = home.submit(model, framework_manifest(home, "no-such-command-here", "pytorch", "1"))
    run = home.wait(own, "failed", timeout=60)
    assert run["error_code"] == "C201" and run["exit_code"] == 127, log(home, own)


def test_an_image_is_pulled_once_for_many_runs_and_an_unreachable_one_fails_saying_so(home, podman):
    if podman.registry is None:
        pytest.skip("docker-registry is not installed: no local registry to pull from")
    container_home(
        home,
        podman,
        f"""\
        [[framework]]
        name = "pulled"
        versions = ["1"]
        runtime = "container"
        image = "{podman.registry}/trainui-test:{{version}}"

        [[framework]]
        name = "nowhere"
        versions = ["1"]
        runtime = "container"
        image = "registry.example.invalid/pytorch:{{version}}"

        [[framework]]
        name = "absent"
        versions = ["1"]
        runtime = "container"
        runtime_command = "podman-not-installed"
        image = "x"
        """,
    )
    home.env["TRAINUI_CPU_SLOTS"] = "3"
    podman.podman("rmi", "--force", f"{podman.registry}/trainui-test:1", check=False)
    model = home.model("pull", {"t.py": ""})
    pulled = framework_manifest(home, "echo ran", "pulled", "1")
    ids = [home.submit(model, pulled) for _ in range(3)]
    nowhere = home.submit(model, framework_manifest(home, "true", "nowhere", "1"))
    absent = home.submit(model, framework_manifest(home, "true", "absent", "1"))
    for model_id in ids:
        assert home.wait(model_id, "completed", "failed", timeout=60)["status"] == "completed"
    pulls = [log(home, i).count("(podman pull)") for i in ids]
    assert sorted(pulls) == [0, 0, 1], pulls  # one pull; the others waited for it
    puller = ids[pulls.index(1)]
    assert "pull: Copying blob" in log(home, puller)
    run = home.wait(nowhere, "failed", timeout=60)
    assert run["error_code"] == "S304"
    assert run["status_message"].startswith(
        "nowhere 1: the image registry.example.invalid/pytorch:1 could not be pulled:"
    )
    assert run["status_message"].endswith(
        "(the registry cannot be reached from this machine: no network?)"
    )
    run = home.wait(absent, "failed", timeout=30)
    assert run["status_message"] == (
        "absent 1: the container runtime podman-not-installed (runtime_command) is not"
        " installed on this machine"
    )


# --- the command line given to the runtime, GPUs included (none here) ------------------------


class _Learner:
    """What a runtime reads of its learner: the run's ID, GPUs and folders."""

    def __init__(self, gpu_ids: list[str]) -> None:
        self.model_id = "training-ABCDEFGHI"
        self.gpu_ids = gpu_ids
        self.cpu_mode = not gpu_ids
        self.dirs = {k: f"/w/{k.lower()}" for k in runtime.RUN_VARIABLES[:5]}
        self.config = {"parameters": {"lr": 0.1}}
        self.sandbox_user = None  # the service not root, or not sandboxed


def test_gpus_go_in_by_cdi_for_podman_and_by_gpus_for_docker(tmp_path, monkeypatch):
    spec = {"runtime": "container", "image": "img:1", "options": ["--shm-size=8g"]}
    box = runtime.Container(spec, _Learner(["1", "3"]))
    box.command = "/usr/bin/podman"
    monkeypatch.setattr(runtime, "CDI_FOLDERS", (str(tmp_path),))
    with pytest.raises(Exception, match="nvidia-ctk cdi generate"):
        box.gpu_options()
    (tmp_path / "nvidia.yaml").write_text("kind: nvidia.com/gpu\n")
    env = box.environment({"CUDA_VISIBLE_DEVICES": "1,3", "lr": "0.1", "DATA_DIR": "/w/data_dir"})
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"  # inside, its two GPUs are the only ones
    line = box.command_line(["/bin/sh", "-c", "train"], env)
    assert line[:8] == ["/usr/bin/podman", "run", "--rm", "--init", "--pull=never", "--name",
                        "trainui-training-ABCDEFGHI", "--replace"]  # fmt: skip
    assert "--volume" in line and "/w/data_dir:/w/data_dir:ro" in line
    assert "/w/model_dir:/w/model_dir:rw" in line
    joined = " ".join(line)
    assert "--device nvidia.com/gpu=1 --device nvidia.com/gpu=3" in joined
    assert "--env lr" in joined and "--env CUDA_VISIBLE_DEVICES" in joined
    assert "0.1" not in joined  # values never on the command line
    assert line[-5:] == ["--shm-size=8g", "img:1", "/bin/sh", "-c", "train"]
    docker = runtime.Container({**spec, "runtime_command": "docker"}, _Learner(["2"]))
    docker.command, docker.flavour = "/usr/bin/docker", "docker"
    assert docker.gpu_options() == ["--gpus", '"device=2"']
    cpu = runtime.Container(spec, _Learner([]))
    cpu.command = "/usr/bin/podman"
    assert cpu.gpu_options() == []


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client on this machine")
def test_docker_without_its_daemon_is_said_as_such_not_as_a_failed_pull(home):
    """docker's client with no daemon behind its socket (the real client, the real answer):
    the run fails S304 naming the daemon and what to do, instead of trying a pull."""
    socket = home.path.parent / "no-docker.sock"
    home.env["DOCKER_HOST"] = f"unix://{socket}"
    write_catalogue(home, CONTAINER + 'runtime_command = "docker"\n')
    model = home.model("nodaemon", {"t.py": ""})
    model_id = home.submit(model, framework_manifest(home, "echo never", "pytorch", "1"))
    run = home.wait(model_id, "failed", timeout=60)
    text = log(home, model_id)
    assert run["error_code"] == "S304", text
    assert run["status_message"] == (
        f"pytorch 1: docker cannot be used on this machine: Cannot connect to the Docker daemon"
        f" at unix://{socket}. Is the docker daemon running? (start docker's daemon, or use"
        " podman: runtime_command in the catalogue)"
    ), text
    assert "pull" not in text, text


def test_a_podman_that_cannot_read_its_storage_is_said_as_such(home, podman):
    """podman with a broken storage configuration: its own words, before any pull."""
    container_home(home, podman)
    broken = home.path.parent / "storage.conf"
    broken.write_text("[storage\ndriver = ")
    home.env["CONTAINERS_STORAGE_CONF"] = str(broken)
    model = home.model("badstorage", {"t.py": ""})
    model_id = home.submit(model, framework_manifest(home, "echo never", "pytorch", "1"))
    run = home.wait(model_id, "failed", timeout=60)
    text = log(home, model_id)
    assert run["error_code"] == "S304", text
    said = run["status_message"]
    assert said.startswith("pytorch 1: podman cannot be used on this machine: "), text
    # its words (logged as time="..." level=error msg="..."): the message alone
    assert "toml: line 2: expected '.' or ']' to end table name" in said, said
    assert "level=" not in said, said
    assert "pull" not in text, text
