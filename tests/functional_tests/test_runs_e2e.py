"""Training runs end to end: the real CLI, the real service on its Unix socket, real learners."""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import group_alive, process_state, spare_learners

QUICK = "echo hello from $TRAINING_ID; echo trained > $RESULT_DIR/model.txt"


def test_a_run_completes_and_stores_the_results_layout(home):
    home.bucket("data", {"a.txt": "alpha", "sub/b.txt": "beta"})
    model = home.model("quick", {"train.py": "print('model code')\n"})
    manifest = home.manifest(
        "cat $DATA_DIR/a.txt $DATA_DIR/sub/b.txt; echo; python3 train.py; "
        + QUICK.split("; ", 1)[1]
        + "; env | grep -E '^(GPU_COUNT|CUDA_VISIBLE_DEVICES|LEARNER_ID|NUM_LEARNERS)=' | sort"
    )
    model_id = home.submit(model, manifest)
    run = home.wait(model_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert run["exit_code"] == 0 and run["error_code"] is None
    assert run["results"] == {
        "type": "local",
        "bucket": "results",
        "endpoint": "",
        "prefix": f"{model_id}/",
    }
    stored = home.buckets / "results" / model_id
    assert sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file()) == [
        "_submitted_code/model.zip",
        "manifest.yml",
        "model.txt",
        "training-log.txt",
        "training-status.json",
    ]
    log = (stored / "training-log.txt").read_text()
    assert "alphabeta" in log and "model code" in log
    assert "CUDA_VISIBLE_DEVICES=\nGPU_COUNT=0\nLEARNER_ID=1\nNUM_LEARNERS=1" in log
    status = json.loads((stored / "training-status.json").read_text())
    assert status["status"] == "completed" and status["exit_code"] == 0
    with zipfile.ZipFile(stored / "_submitted_code" / "model.zip") as zf:
        assert zf.namelist() == ["train.py"]
    # the CLI's views of the same run
    listed = home.cli("list", "trained-models", check=True).stdout
    assert "test-run" in listed and model_id in listed and "completed" in listed
    assert "1 records found." in listed
    shown = home.cli("show", "trained-models", model_id, check=True).stdout
    assert f"ModelId        {model_id}" in shown
    assert f"url            /v3/models/{model_id}" in shown
    assert "State          completed" in shown
    assert home.cli("logs", model_id, check=True).stdout == log


def test_the_home_and_socket_are_private(home):
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest("true"))
    home.wait(model_id, "completed")
    assert stat.S_IMODE(home.path.stat().st_mode) == 0o700
    assert stat.S_IMODE((home.path / "trainui.sock").stat().st_mode) == 0o600


def test_a_failing_command_is_c201_with_its_exit_code_and_stays_listed(home):
    manifest = home.manifest("echo about to fail; exit 3", name="failing")
    model_id = home.submit(home.model("m", {"t.py": ""}), manifest)
    run = home.wait(model_id, "completed", "failed")
    assert (run["status"], run["error_code"], run["exit_code"]) == ("failed", "C201", 3)
    assert "exited with code 3" in run["status_message"]
    log = (home.buckets / "results" / model_id / "training-log.txt").read_text()
    assert "about to fail" in log
    assert model_id in home.cli("list", check=True).stdout
    shown = home.cli("show", model_id, check=True).stdout
    assert "Exit_code      3" in shown and "Error_code     C201" in shown


def test_halt_stops_the_process_group_and_stores_the_logs(home):
    manifest = home.manifest("echo started; sleep 1000 & sleep 1000; echo never")
    model_id = home.submit(home.model("m", {"t.py": ""}), manifest)
    home.wait(model_id, "running")
    wait_for(lambda: "started" in home.cli("logs", model_id).stdout)  # its command runs
    status = json.loads((home.path / "runs" / model_id / "status.json").read_text())
    pgid = status["command_pgid"]
    os.killpg(pgid, 0)  # the command's group exists
    result = home.cli("halt", model_id, check=True)
    assert "OK" in result.stdout
    run = home.wait(model_id, "halted", "failed", "completed", timeout=30)
    assert run["status"] == "halted"
    assert not group_alive(pgid)
    log = (home.buckets / "results" / model_id / "training-log.txt").read_text()
    assert "started" in log and "never" not in log
    shown = home.cli("show", model_id, check=True).stdout
    assert "Exit_code      -15 (killed by SIGTERM)" in shown, shown
    said = home.cli("metrics", model_id, check=True).stdout
    assert said == f"Run {model_id} has no metric points (it halted without writing any).\n"


def test_delete_while_pending_and_while_running(home):
    home.env["TRAINUI_CPU_SLOTS"] = "1"
    blocker = home.submit(
        home.model("m", {"t.py": ""}), home.manifest("sleep 1000", name="blocker")
    )
    home.wait(blocker, "running")
    waiting = home.submit(home.model("m", {"t.py": ""}), home.manifest("true", name="waiting"))
    run = home.show(waiting)
    assert run["status"] == "pending"
    assert run["status_message"] == "waiting for a CPU slot: 0 of 1 free"
    assert "Delete trained-models successful" in home.cli("delete", waiting, check=True).stdout
    assert "not found" in home.cli("show", waiting).stderr
    home.cli("delete", "trained-models", blocker, check=True)
    assert home.cli("show", blocker).returncode == 1
    listed = home.cli("list", check=True).stdout
    assert "0 records found." in listed
    # the halted run still stored its log, and its folder goes once the learner has ended
    deadline = time.monotonic() + 30
    while (home.path / "runs" / blocker).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (home.path / "runs" / blocker).exists()
    assert (home.buckets / "results" / blocker / "training-log.txt").exists()


def test_four_gpus_are_shared_without_overlap_and_a_second_large_run_waits(home):
    home.env["TRAINUI_GPUS"] = "0,1,2,3"
    model = home.model("m", {"t.py": ""})
    hold = "echo CVD=$CUDA_VISIBLE_DEVICES; sleep 1000"
    small = home.submit(model, home.manifest(hold, "small", name="s"))
    medium = home.submit(model, home.manifest(hold, "medium", name="m"))
    runs = [home.wait(r, "running") for r in (small, medium)]
    assert runs[0]["gpu_ids"] == [0] and runs[1]["gpu_ids"] == [1, 2]
    large = home.submit(model, home.manifest(hold, "large", name="l"))
    run = home.show(large)
    assert run["status"] == "pending"
    assert run["status_message"] == "waiting for 4 GPUs: 1 free"
    home.cli("halt", small, check=True)
    home.cli("halt", medium, check=True)
    run = home.wait(large, "running", timeout=30)
    assert run["gpu_ids"] == [0, 1, 2, 3]
    large2 = home.submit(model, home.manifest(hold, "large", name="l2"))
    assert home.show(large2)["status_message"] == "waiting for 4 GPUs: 0 free"
    wait_for(lambda: "CVD=0,1,2,3" in home.cli("logs", large, check=True).stdout)
    home.cli("delete", large, check=True)
    assert home.wait(large2, "running", timeout=30)["gpu_ids"] == [0, 1, 2, 3]


def test_a_run_larger_than_the_machine_is_refused_with_s100(home):
    home.env["TRAINUI_GPUS"] = "0,1"
    result = home.cli(
        "train", str(home.model("m", {"t.py": ""})), str(home.manifest("true", "large"))
    )
    assert result.returncode == 1
    assert "the run needs 4 GPUs (large) but this machine has 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_manifest_is_refused_with_located_problems(home):
    manifest = home.manifest("true")
    manifest.write_text(manifest.read_text().replace("resource: small", "resource: huge"))
    result = home.cli("train", str(home.model("m", {"t.py": ""})), str(manifest))
    assert result.returncode == 1
    assert (
        f"{manifest}:6:15: model_definition.execution.resource: 'huge' is not one of"
        in result.stderr
    )
    assert "is not a valid manifest" in result.stderr


def test_a_tar_model_definition_is_refused(home, tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 100)
    result = home.cli("train", str(archive), str(home.manifest("true")))
    assert result.returncode == 1
    assert "is a gzip archive: only .zip model definitions are accepted" in result.stderr


def test_a_refused_model_definition_is_named_as_the_user_gave_it(home, tmp_path):
    """Not "model.zip": the archive by its own name, a folder by the folder's, whether the
    service was started by this command (the client's upload) or was up (the direct one)."""
    archive = tmp_path / "x.tgz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 100)
    folder = home.model("three-files", {"a.py": "", "b.py": "", "c.py": ""})
    limit = {"TRAINUI_DEFINITION_MAX_ENTRIES": "2"}  # the service's limit (it starts with it)
    manifest = str(home.manifest("true"))
    for _started_then_up in range(2):
        result = home.cli("train", str(archive), manifest, **limit)
        assert result.returncode == 1
        assert "trainui: x.tgz is a gzip archive: only .zip model definitions" in result.stderr
        result = home.cli("train", str(folder), manifest, **limit)
        assert result.returncode == 1
        assert "trainui: model-three-files has 3 entries; at most 2" in result.stderr
        # the service's limit, said as the service's (a remote user cannot set it)
        assert "(the service's TRAINUI_DEFINITION_MAX_ENTRIES: whoever runs" in result.stderr
        assert "model.zip" not in result.stderr
    pipe = tmp_path / "model.zip"
    os.mkfifo(pipe)  # read from, it would wait for a writer for ever
    result = home.cli("train", str(pipe), manifest, timeout=30)
    assert result.returncode == 2
    assert f"{pipe}: not a file or a folder (a pipe?); give the model" in result.stderr


def test_train_of_a_folder_warns_of_what_it_skips_and_follows_links_inside(home, tmp_path):
    model = home.model("m", {"train.py": "print('hi')"})
    (model / "same.py").symlink_to("train.py")
    (tmp_path / "elsewhere.txt").write_text("not part of the model")
    (model / "out.txt").symlink_to(tmp_path / "elsewhere.txt")
    os.mkfifo(model / "pipe")
    result = home.cli("train", str(model), str(home.manifest("true")), check=True)
    assert result.stderr.splitlines() == [
        f"warning: skipped 1 symlink, 1 FIFO in {model} (only regular files, and symlinks to "
        "files inside it, are zipped): out.txt, pipe"
    ]
    model_id = result.stdout.strip().splitlines()[-1].split("'")[1]
    out_zip = tmp_path / "got.zip"
    home.cli("download", model_id, "--definition", "-o", str(out_zip), check=True)
    with zipfile.ZipFile(out_zip) as zf:
        assert sorted(zf.namelist()) == ["same.py", "train.py"]
        assert zf.read("same.py") == b"print('hi')"


def test_logs_follow_from_an_offset_neither_loses_nor_repeats(home):
    script = "for i in $(seq 1 400); do echo line-$i; sleep 0.002; done"
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest(script))
    home.wait(model_id, "running")
    first = home.cli("logs", model_id, check=True).stdout.encode()
    cut = first.rfind(b"line-")  # resume in the middle of whatever was there
    cut = max(cut, 0)
    rest = home.cli("logs", model_id, "--follow", "--offset", str(cut), check=True).stdout
    whole = first[:cut].decode() + rest
    lines = [line for line in whole.splitlines() if line.startswith("line-")]
    assert lines == [f"line-{i}" for i in range(1, 401)]
    assert home.show(model_id)["status"] == "completed"


def test_train_follow_prints_the_log_and_exits_with_the_run(home):
    ok = home.cli(
        "train", "--follow", str(home.model("m", {"t.py": ""})), str(home.manifest("echo done-ok"))
    )
    assert ok.returncode == 0 and "done-ok" in ok.stdout
    assert "completed" in ok.stderr
    bad = home.cli("train", "-f", str(home.model("m", {"t.py": ""})), str(home.manifest("exit 4")))
    assert bad.returncode == 1 and "failed" in bad.stderr


def test_a_follow_says_why_its_run_waits_and_ctrl_c_says_the_run_goes_on(home):
    home.env["TRAINUI_CPU_SLOTS"] = "1"
    model = home.model("m", {"t.py": ""})
    blocker = home.submit(model, home.manifest("sleep 300", name="blocker"))
    home.wait(blocker, "running")
    follow = subprocess.Popen(
        [sys.executable, "-m", "trainui", "train", "--follow", str(model),
         str(home.manifest("echo never", name="waiting"))],
        env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        said = ""
        deadline = time.monotonic() + 30
        while "its log follows when it starts" not in said:
            assert time.monotonic() < deadline, said
            ready, _, _ = select.select([follow.stderr], [], [], 1)
            if ready:
                said += follow.stderr.readline()
        follow.send_signal(signal.SIGINT)
        out, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
    model_id = out.split("Model-ID is '")[1].split("'")[0]
    assert f"trainui: {model_id} is pending: waiting for a CPU slot" in said
    assert follow.returncode == 130 and "Traceback" not in err, err
    assert f"trainui: stopped following; {model_id} goes on (trainui logs {model_id} --follow" in (
        err
    )
    assert home.show(model_id)["status"] == "pending"  # it goes on waiting
    home.cli("halt", blocker, check=True)


def test_the_service_killed_mid_run_and_restarted_loses_nothing(home):
    script = "for i in $(seq 1 60); do echo tick-$i; sleep 0.05; done"
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest(script))
    home.wait(model_id, "running")
    follower = subprocess.Popen(
        [sys.executable, "-m", "trainui", "logs", "--follow", model_id],
        stdout=subprocess.PIPE,
        bufsize=0,  # its first line is read byte by byte: communicate() reads on from there
        env=home.env,
    )
    assert select.select([follower.stdout], [], [], 30)[0], "the follower printed nothing"
    first = follower.stdout.readline()  # it follows
    home.kill_service()
    out, _ = follower.communicate(timeout=60)  # the follower starts a new service and resumes
    out = (first + out).decode()
    assert follower.returncode == 0
    ticks = [line for line in out.splitlines() if line.startswith("tick-")]
    assert ticks == [f"tick-{i}" for i in range(1, 61)]
    run = home.wait(model_id, "completed", "failed")
    assert run["status"] == "completed"
    stored = (home.buckets / "results" / model_id / "training-log.txt").read_text()
    assert [line for line in stored.splitlines() if line.startswith("tick-")] == ticks


def spares(home) -> list[int]:
    """The spare learners of this home's service: waiting, not yet given a run."""
    return list(spare_learners(home))


def dead(pid: int) -> bool:
    """Has the process ended (a zombie, or reaped)?"""
    return process_state(pid) in ("Z", "X", None)


def one_spare(home, *gone: int) -> list[int] | None:
    """The one spare learner of ``home`` that is none of ``gone``, once there is exactly one."""
    found = [pid for pid in spares(home) if pid not in gone]
    return found if len(found) == 1 else None


def wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_a_spare_learner_takes_the_next_run_and_goes_with_the_service(home):
    """The service keeps one learner started ahead; a run is handed to it (no interpreter
    start on its way), a new one is made, a spare killed is replaced, and none outlives the
    service."""
    home.env["TRAINUI_IDLE_EXIT"] = "2"
    home.cli("list", check=True)
    (spare,) = wait_for(lambda: spares(home))
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest("echo ran by the spare"))
    run = home.wait(model_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert "ran by the spare" in home.cli("logs", model_id, check=True).stdout
    status = json.loads((home.path / "runs" / model_id / "status.json").read_text())
    assert status["learner_pid"] == spare  # the spare learner ran it
    # the spare that ran the run keeps its command line until it has exited
    (second,) = wait_for(lambda: one_spare(home, spare))
    os.kill(second, signal.SIGKILL)  # a spare that died is passed over, and runs go on
    wait_for(lambda: dead(second))  # died, not dying: a run handed over meanwhile goes with it
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest("echo still runs"))
    assert home.wait(model_id, "completed", "failed")["status"] == "completed"
    wait_for(lambda: one_spare(home, spare, second))  # a new one replaces the killed spare
    service = home.service_pid()
    wait_for(lambda: home.service_pid() is None, timeout=30)  # the idle service exits
    assert service is not None
    wait_for(lambda: not spares(home))


def test_the_learners_quick_start_leaves_the_commands_python_as_it_was(home):
    """The learner starts without ``site`` (given the service's module path): the command's
    Python still has its site, and the environment gets no module path of trainui's."""
    command = (
        'python3 -c "import os, sys; '
        "print('no_site', sys.flags.no_site, 'path', os.environ.get('PYTHONPATH', '-'))\""
    )
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest(command))
    run = home.wait(model_id, "completed", "failed")
    assert run["status"] == "completed", run
    log = home.cli("logs", model_id, check=True).stdout
    assert f"no_site 0 path {home.env.get('PYTHONPATH', '-')}" in log


def test_a_queued_run_waits_in_the_run_store_and_survives_a_killed_service(home, tmp_path):
    """A queued run's files wait in the run store (a submission creates no file); they reach
    its folder when it starts, also after the service was killed in between."""
    home.env["TRAINUI_CPU_SLOTS"] = "1"
    blocker = home.submit(home.model("b", {"t.py": ""}), home.manifest("sleep 1000", name="b"))
    home.wait(blocker, "running")
    model = home.model("q", {"train.py": "print('queued code ran')\n"})
    queued = home.submit(model, home.manifest("python3 train.py", name="queued"))
    assert home.show(queued)["status"] == "pending"
    assert not (home.path / "runs" / queued).exists()
    # another queued run: its definition can be fetched before it starts, and it can go
    again = home.submit(model, home.manifest("true", name="again"))
    out_zip = tmp_path / "again.zip"
    home.cli("download", again, "--definition", "-o", str(out_zip), check=True)
    with zipfile.ZipFile(out_zip) as zf:
        assert zf.read("train.py") == b"print('queued code ran')\n"
    home.cli("delete", again, check=True)
    assert not (home.path / "runs" / again).exists()
    follower = subprocess.Popen(
        [sys.executable, "-m", "trainui", "logs", "--follow", queued],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=home.env,
    )
    time.sleep(0.5)  # following a run that has no log yet
    home.kill_service()
    home.cli("halt", blocker, check=True)  # a new service, the same queue
    out, err = follower.communicate(timeout=60)  # it resumes against the new service
    assert follower.returncode == 0, err
    assert "queued code ran" in out
    run = home.wait(queued, "completed", "failed")
    assert run["status"] == "completed", run
    folder = home.path / "runs" / queued
    assert stat.S_IMODE((folder / "results.json").stat().st_mode) == 0o600
    stored = home.buckets / "results" / queued
    with zipfile.ZipFile(stored / "_submitted_code" / "model.zip") as zf:
        assert zf.read("train.py") == b"print('queued code ran')\n"
    assert "python3 train.py" in (stored / "manifest.yml").read_text()


def test_a_learner_killed_outright_fails_its_run_with_a_reason(home):
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest("sleep 1000"))
    home.wait(model_id, "running")

    def command_started() -> dict | None:
        status = json.loads((home.path / "runs" / model_id / "status.json").read_text())
        return status if status.get("command_pgid") else None

    status = wait_for(command_started)
    os.kill(status["learner_pid"], signal.SIGKILL)
    run = home.wait(model_id, "failed", timeout=30)
    assert "the learner process ended unexpectedly" in run["status_message"]
    assert not group_alive(status["command_pgid"])  # its command does not hold the GPU on


def test_a_learner_killed_outright_still_stores_its_metric_points_and_log_dir(home):
    """The learner cannot store what it took (the OOM killer): the service stores the metric
    points and LOG_DIR's files (TensorBoard's) with the log, where the learner would have."""
    points = "".join(f'{{"step": {s}, "loss": {1 / s}}}\\n' for s in range(1, 4))
    command = (
        f"printf '{points}' > $LOG_DIR/metrics.jsonl; mkdir $LOG_DIR/tb; "
        "echo events > $LOG_DIR/tb/events.out.tfevents.1; echo trained; sleep 1000"
    )
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest(command))

    def points_taken() -> dict | None:
        run = home.show(model_id)
        return run if (run.get("metrics") or {}).get("loss", {}).get("steps") == 3 else None

    wait_for(points_taken)
    status = json.loads((home.path / "runs" / model_id / "status.json").read_text())
    assert str(home.path).encode() in Path(f"/proc/{status['learner_pid']}/environ").read_bytes()
    os.kill(status["learner_pid"], signal.SIGKILL)
    run = home.wait(model_id, "failed", timeout=30)
    assert run["error_code"] == "S300"
    stored = home.buckets / "results" / model_id
    wait_for(lambda: (stored / "training-log.txt").exists())  # stored last
    log = (stored / "training-log.txt").read_text()
    assert "trained\n" in log and "trainui: failed (S300)" in log
    lines = (stored / "metrics.jsonl").read_text().splitlines()
    assert [(p["step"], p["value"]) for p in map(json.loads, lines)] == [
        (1, 1.0),
        (2, 0.5),
        (3, 1 / 3),
    ]
    assert (stored / "logs" / "tb" / "events.out.tfevents.1").read_text() == "events\n"
    assert (stored / "logs" / "metrics.jsonl").exists()  # LOG_DIR as the command left it
    status = json.loads((stored / "training-status.json").read_text())
    assert status["status"] == "failed"


@pytest.mark.slow  # 100 runs and 100 CLI processes: tests/run.sh's second stage
def test_two_clis_submitting_50_runs_each_never_double_book_a_gpu(home, tmp_path):
    home.env["TRAINUI_GPUS"] = "0,1,2,3"
    home.env["TRAINUI_ISOLATION"] = "off"  # the commands write the trace outside their runs
    trace = tmp_path / "trace.txt"
    command = (
        f'echo "start $CUDA_VISIBLE_DEVICES $(date +%s.%N)" >> {trace}; sleep 0.05; '
        f'echo "end $CUDA_VISIBLE_DEVICES $(date +%s.%N)" >> {trace}'
    )
    model = home.model("m", {"t.py": ""})
    manifests = [home.manifest(command, size, name=size) for size in ("small", "medium")]
    home.cli("list", check=True)  # one service, started before the race
    script = (
        "import sys, subprocess\n"
        "for i in range(50):\n"
        "    subprocess.run([sys.executable, '-m', 'trainui', 'train', sys.argv[1],"
        " sys.argv[2 + i % 2]], check=True, capture_output=True)\n"
    )
    submitters = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(model), *map(str, manifests)], env=home.env
        )
        for _ in range(2)
    ]
    for submitter in submitters:
        assert submitter.wait(timeout=300) == 0
    runs = json.loads(home.cli("list", "--json", check=True).stdout)
    assert len(runs) == 100
    for run in runs:
        home.wait(run["model_id"], "completed", timeout=120)
    intervals: dict[str, list] = {}
    for line in trace.read_text().splitlines():
        kind, gpus, when = line.split()
        for gpu in gpus.split(","):
            intervals.setdefault(gpu, []).append((float(when), kind))
    assert sorted(intervals) == ["0", "1", "2", "3"]
    for gpu, events in intervals.items():
        depth = 0
        for _, kind in sorted(events):
            depth += 1 if kind == "start" else -1
            assert depth <= 1, f"GPU {gpu} was given to two runs at once"


def test_a_run_submitted_without_the_check_has_its_results_bucket_checked_before_it_trains(
    home,
):
    # --no-check (for stores only the GPU box reaches) must not mean hours of training for
    # results the bucket then refuses: the learner checks before it stages anything
    manifest = home.manifest("echo COMMAND-RAN", results="a-file")
    home.buckets.mkdir(parents=True, exist_ok=True)
    (home.buckets / "a-file").write_text("not a folder")  # a bucket that cannot be written
    model = home.model("unchecked", {"t.py": ""})
    refused = home.cli("train", str(model), str(manifest))  # checked at submit
    assert refused.returncode == 1
    assert "the results bucket is refused: local bucket 'a-file'" in refused.stderr
    submitted = home.cli("train", "--no-check", str(model), str(manifest), check=True)
    model_id = submitted.stdout.strip().splitlines()[-1].split("'")[1]
    run = home.wait(model_id, "completed", "failed")
    log = home.cli("logs", model_id).stdout
    assert run["status"] == "failed" and run["error_code"] == "C103", log
    assert run["status_message"].startswith(
        "the results bucket is refused: local bucket 'a-file'"
    ), run["status_message"]
    assert "COMMAND-RAN" not in log and "staging" not in log


def test_both_buckets_refused_at_submit_are_said_at_once(home):
    manifest = home.manifest("true", data="data", results="a-file")
    home.buckets.mkdir(parents=True, exist_ok=True)
    (home.buckets / "a-file").write_text("not a folder")
    manifest.write_text(manifest.read_text().replace("bucket: data,", "bucket: no-such-data,"))
    refused = home.cli("train", str(home.model("both", {"t.py": ""})), str(manifest))
    assert refused.returncode == 1
    said = refused.stderr
    assert "the training data bucket is refused: local bucket 'no-such-data'" in said, said
    assert "; the results bucket is refused: local bucket 'a-file'" in said, said
    assert "Traceback" not in said
