"""The learner as the service starts it: a real detached process on a run folder built by hand.

Each test writes learner.json, model.zip and manifest.yml into a run folder, with local data
and results buckets under tmp_path, runs ``python -m trainui.learner RUN_DIR`` and looks at
what a user would see: status.json, the training log and the results bucket.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from trainui.core.runs import new_run_id

TRAIN_PY = """\
import os, sys
for name in ("DATA_DIR", "RESULT_DIR", "LOG_DIR", "MODEL_DIR", "CHECKPOINT_DIR", "TRAINING_ID",
             "GPU_COUNT", "CUDA_VISIBLE_DEVICES", "LEARNER_ID", "NUM_LEARNERS",
             "PYTHONUNBUFFERED"):
    print(f"env {name}={os.environ.get(name)!r}")
print(f"cwd {os.getcwd()}")
print(f"python {sys.executable}")
for root, _dirs, files in sorted(os.walk(os.environ["DATA_DIR"])):
    for name in sorted(files):
        path = os.path.join(root, name)
        rel = os.path.relpath(path, os.environ["DATA_DIR"])
        with open(path) as f:
            print(f"data {rel}={f.read()!r}")
os.makedirs(os.path.join(os.environ["RESULT_DIR"], "model"))
with open(os.path.join(os.environ["RESULT_DIR"], "model", "weights.txt"), "w") as f:
    f.write("0.5 0.25\\n")
with open(os.path.join(os.environ["RESULT_DIR"], "metrics.json"), "w") as f:
    f.write('{"accuracy": 0.9}')
"""

MANIFEST = "model_definition:\n  name: demo\n"


class Run:
    """A run folder, its buckets and the learner process working on it."""

    def __init__(self, tmp_path: Path, command: str, **config: object) -> None:
        self.model_id = new_run_id()
        self.buckets = tmp_path / "buckets"
        self.dir = tmp_path / "home" / "runs" / self.model_id
        self.dir.mkdir(parents=True)
        (self.buckets / "demo-data" / "sub").mkdir(parents=True)
        (self.buckets / "demo-data" / "x.csv").write_text("1,2\n3,4\n")
        (self.buckets / "demo-data" / "sub" / "y.txt").write_text("why")
        self.results = self.buckets / "demo-results" / self.model_id
        self.results.parent.mkdir()  # as the service's check at submit makes it
        files = config.pop("files", {"train.py": TRAIN_PY})
        with zipfile.ZipFile(self.dir / "model.zip", "w") as zf:
            for name, text in files.items():
                zf.writestr(name, text)
        (self.dir / "manifest.yml").write_text(MANIFEST)
        connection = {"path": str(self.buckets)}
        self.config = {
            "model_id": self.model_id,
            "name": "demo",
            "command": command,
            "resource": "small",
            "gpu_ids": [0],
            "cpu_mode": False,
            "data": {"type": "local", "bucket": "demo-data", "connection": connection},
            "results": {"type": "local", "bucket": "demo-results", "connection": connection},
            "home": str(tmp_path / "home"),
            "halt_grace_seconds": 10,
            "submitted_at": "2026-11-27T06:00:00.000Z",
            **config,
        }
        fd = os.open(self.dir / "learner.json", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.config, f)
        self.process: subprocess.Popen | None = None
        self.spawned_at = 0.0

    def start(self) -> Run:
        errors = open(self.dir / "learner-errors.txt", "ab")  # noqa: SIM115 - the learner's
        self.spawned_at = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trainui.learner", str(self.dir)],
            stdin=subprocess.DEVNULL,
            stdout=errors,
            stderr=errors,
            start_new_session=True,
        )
        errors.close()
        return self

    def wait(self, timeout: float = 15) -> dict:
        assert self.process is not None
        assert self.process.wait(timeout) == 0, self.learner_errors()
        return self.status()

    def run(self) -> dict:
        return self.start().wait()

    def halt(self) -> None:
        """Halt the run as the service does: its reason, then SIGTERM to the learner."""
        (self.dir / "halt-reason.txt").write_text("halted by request")
        self.process.send_signal(signal.SIGTERM)

    def status(self) -> dict:
        return json.loads((self.dir / "status.json").read_text())

    def wait_for(self, predicate, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = self.status()
            except (OSError, ValueError):
                status = None
            if status is not None and predicate(status):
                return status
            time.sleep(0.01)
        raise AssertionError(f"timed out; status is {status}")

    def log(self) -> str:
        return (self.dir / "training-log.txt").read_text()

    def stored_log(self) -> str:
        return (self.results / "training-log.txt").read_text()

    def stored_files(self) -> list[str]:
        return sorted(
            p.relative_to(self.results).as_posix() for p in self.results.rglob("*") if p.is_file()
        )

    def learner_errors(self) -> str:
        path = self.dir / "learner-errors.txt"
        return path.read_text() if path.exists() else ""


def env_seen(log: str) -> dict[str, str]:
    seen = {}
    for line in log.splitlines():
        if line.startswith("env "):
            name, _, value = line[4:].partition("=")
            seen[name] = eval(value)  # the repr printed by TRAIN_PY
    return seen


def assert_run_folder_cleaned(run: Run) -> None:
    assert not (run.dir / "work").exists()
    # learner.json holds the stores' secrets: gone once the run completed; a failed or halted
    # run keeps it, 0600, for `trainui resume` (SPEC §11)
    status = json.loads((run.dir / "status.json").read_text())["status"]
    spec = run.dir / "learner.json"
    if status == "completed":
        assert not spec.exists()
    else:
        assert spec.stat().st_mode & 0o777 == 0o600


# ------------------------------------------------------------------------------ tests


def test_a_run_completes_and_stores_its_results(tmp_path):
    run = Run(tmp_path, "python3 train.py --data ${DATA_DIR}/x.csv")
    status = run.run()

    assert status["status"] == "completed", status
    assert status["error_code"] is None
    assert status["exit_code"] == 0
    assert status["finished_at"] and status["started_at"]
    assert status["progress"]["phase"] is None
    assert status["progress"]["objects_total"] == status["progress"]["objects_done"] == 6
    timings = status["timings"]
    order = ["learner_started", "staged", "unpacked", "command_started", "command_ended", "stored"]
    assert [timings[k] for k in order] == sorted(timings[k] for k in order)

    assert run.stored_files() == [
        "_submitted_code/model.zip",
        "manifest.yml",
        "metrics.json",
        "model/weights.txt",
        "training-log.txt",
        "training-status.json",
    ]
    assert (run.results / "_submitted_code" / "model.zip").read_bytes() == (
        run.dir / "model.zip"
    ).read_bytes()
    assert (run.results / "manifest.yml").read_text() == MANIFEST
    assert (run.results / "model" / "weights.txt").read_text() == "0.5 0.25\n"
    stored_status = json.loads((run.results / "training-status.json").read_text())
    assert stored_status["status"] == "completed"
    assert stored_status["model_id"] == run.model_id
    assert stored_status["name"] == "demo"
    assert stored_status["exit_code"] == 0
    assert stored_status["submitted_at"] == "2026-11-27T06:00:00.000Z"
    assert stored_status["finished_at"]

    log = run.stored_log()
    assert log == run.log()
    work = run.dir / "work"
    assert env_seen(log) == {
        "DATA_DIR": str(work / "data"),
        "RESULT_DIR": str(work / "results"),
        "LOG_DIR": str(work / "logs"),
        "MODEL_DIR": str(work / "model"),
        "CHECKPOINT_DIR": str(work / "checkpoints"),
        "TRAINING_ID": run.model_id,
        "GPU_COUNT": "1",
        "CUDA_VISIBLE_DEVICES": "0",
        "LEARNER_ID": "1",
        "NUM_LEARNERS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    assert f"cwd {work / 'model'}\n" in log
    assert f"python {Path(sys.executable).parent}/python3\n" in log
    assert "data x.csv='1,2\\n3,4\\n'\n" in log
    assert "data sub/y.txt='why'\n" in log
    trainui_lines = [line for line in log.splitlines() if line.startswith("trainui: ")]
    assert trainui_lines[0] == (
        f"trainui: staging 2 objects (11 bytes) from local bucket 'demo-data' ({run.buckets})"
    )
    assert trainui_lines[1].startswith("trainui: staged 2 objects in ")
    assert "trainui: running on GPU 0" in trainui_lines
    assert "trainui: command exited with code 0" in trainui_lines
    assert trainui_lines[-2] == (
        f"trainui: stored 6 files in local bucket 'demo-results' ({run.buckets})"
        f" under {run.model_id}/"
    )
    assert trainui_lines[-1] == "trainui: completed"
    assert_run_folder_cleaned(run)

    # Start-to-command latency, for the record (pytest -s shows it).
    print(
        f"\nspawn -> command started: {timings['command_started'] - run.spawned_at:.3f} s;"
        f" learner started -> command started:"
        f" {timings['command_started'] - timings['learner_started']:.3f} s"
    )


def test_a_failing_command_fails_with_c201_and_its_log_is_stored(tmp_path):
    run = Run(tmp_path, "echo 'about to fail'; exit 3")
    status = run.run()

    assert status["status"] == "failed"
    assert status["error_code"] == "C201"
    assert status["exit_code"] == 3
    # the message ends with the command's last line (SPEC §11: a sentence a user can act on)
    expected = 'the training command exited with code 3; the log ends: "about to fail"'
    assert status["status_message"] == expected
    log = run.stored_log()
    assert "about to fail\n" in log
    assert log.endswith(
        "trainui: command exited with code 3\n"
        f"trainui: storing 4 files in local bucket 'demo-results' ({run.buckets})"
        f" under {run.model_id}/\n"
        f"trainui: stored 4 files in local bucket 'demo-results' ({run.buckets})"
        f" under {run.model_id}/\n"
        f"trainui: failed (C201): {expected}\n"
    )
    stored_status = json.loads((run.results / "training-status.json").read_text())
    assert stored_status["error_code"] == "C201"
    assert stored_status["exit_code"] == 3
    assert_run_folder_cleaned(run)


def test_a_command_killed_by_a_signal_says_which(tmp_path):
    run = Run(tmp_path, "printf 'no newline at the end'; kill -KILL $$")
    status = run.run()

    assert status["error_code"] == "C201"
    assert status["exit_code"] == -9
    assert status["status_message"] == (
        'the training command was killed by signal SIGKILL; the log ends: "no newline at the end"'
    )
    assert "no newline at the end\ntrainui: command was killed by signal SIGKILL\n" in (
        run.stored_log()
    )


def test_halt_while_running_stops_the_whole_process_group_and_stores_the_log(tmp_path):
    # The command's shell and a child that ignores SIGTERM: only SIGKILL ends the child.
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('stubborn child started', flush=True); time.sleep(60)"
    )
    run = Run(
        tmp_path,
        f'python3 -c "{stubborn}" & echo training; wait',
        halt_grace_seconds=0.5,
    ).start()
    status = run.wait_for(lambda s: s["status"] == "running")
    pgid = status["command_pgid"]
    assert pgid
    deadline = time.monotonic() + 10
    while "stubborn child started" not in run.log() and time.monotonic() < deadline:
        time.sleep(0.01)
    halted_at = time.monotonic()
    run.halt()
    status = run.wait()

    assert time.monotonic() - halted_at < 5
    assert status["status"] == "halted"
    assert status["status_message"] == "halted by request"
    assert status["error_code"] is None
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    log = run.stored_log()
    assert "training\n" in log
    assert "trainui: halt requested (SIGTERM)\n" in log
    assert "trainui: the training command did not stop within 0.5 s: SIGKILL\n" in log
    assert log.endswith("trainui: halted by request\n")
    assert "training-status.json" in run.stored_files()
    assert_run_folder_cleaned(run)


def test_halt_while_staging_skips_the_command(tmp_path):
    run = Run(tmp_path, "echo the command ran")
    for i in range(3000):
        (run.buckets / "demo-data" / f"part-{i:05d}.csv").write_text("1,2\n")
    run.start()
    run.wait_for(lambda s: s["progress"]["objects_total"] > 0)
    run.halt()
    status = run.wait()

    assert status["status"] == "halted"
    assert status["command_pgid"] is None
    assert status["timings"]["command_started"] is None
    log = run.stored_log()
    assert "the command ran" not in log
    assert "trainui: staging stopped after " in log
    assert log.endswith("trainui: halted by request\n")
    assert_run_folder_cleaned(run)


def test_a_halt_signal_from_outside_trainui_fails_the_run_as_a_lost_learner(tmp_path):
    # `kill PID`, or the machine shutting down: not a user's `trainui halt` (the service writes
    # its reason first), so the run's restarts may start it again
    run = Run(tmp_path, "echo training; sleep 60", halt_grace_seconds=0.5).start()
    run.wait_for(lambda s: s["status"] == "running")
    deadline = time.monotonic() + 10
    while "training" not in run.log() and time.monotonic() < deadline:
        time.sleep(0.01)
    run.process.send_signal(signal.SIGTERM)
    status = run.wait()
    assert (status["status"], status["error_code"]) == ("failed", "S300")
    expected = (
        "the learner was stopped by SIGTERM from outside trainui (a `kill`, the machine "
        "shutting down), not by `trainui halt`"
    )
    assert status["status_message"] == expected
    log = run.stored_log()
    assert "trainui: halt requested (SIGTERM)\n" in log
    assert log.endswith(f"{expected}\n"), log[-300:]
    assert json.loads((run.results / "training-status.json").read_text())["status"] == "failed"


def test_leftovers_of_a_finished_command_are_stopped(tmp_path):
    run = Run(tmp_path, "sleep 60 & echo started")
    status = run.run()

    assert status["status"] == "completed"
    with pytest.raises(ProcessLookupError):
        os.killpg(status["command_pgid"], 0)
    assert "trainui: stopping what the command left running" in run.stored_log()


def test_a_missing_data_bucket_fails_with_s302_and_the_log_is_stored(tmp_path):
    run = Run(tmp_path, "python3 train.py")
    run.config["data"]["bucket"] = "no-such-bucket"
    (run.dir / "learner.json").write_text(json.dumps(run.config))
    status = run.run()

    assert status["status"] == "failed"
    assert status["error_code"] == "S302"
    message = f"local bucket 'no-such-bucket' does not exist ({run.buckets / 'no-such-bucket'})"
    assert status["status_message"] == message
    assert run.stored_log().endswith(f"trainui: failed (S302): {message}\n")
    assert run.stored_files() == [
        "_submitted_code/model.zip",
        "manifest.yml",
        "training-log.txt",
        "training-status.json",
    ]
    assert_run_folder_cleaned(run)


def test_nothing_outside_the_data_bucket_is_staged(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the run")
    run = Run(tmp_path, "python3 train.py")
    (run.buckets / "demo-data" / "link.txt").symlink_to(secret)
    (run.buckets / "demo-data" / "inside.txt").symlink_to("x.csv")
    status = run.run()

    assert status["status"] == "completed", status
    log = run.stored_log()
    assert "data inside.txt='1,2\\n3,4\\n'\n" in log
    assert "link.txt" not in log


def test_results_that_cannot_be_stored_fail_with_s303(tmp_path):
    run = Run(tmp_path, "python3 train.py")
    run.config["results"]["connection"] = {"path": str(run.dir / "model.zip")}  # not a folder
    (run.dir / "learner.json").write_text(json.dumps(run.config))
    status = run.run()

    assert status["status"] == "failed"
    assert status["error_code"] == "S303"
    assert status["exit_code"] == 0
    # a write never makes the bucket (S3's NoSuchBucket): the submit's check makes a local one
    assert status["status_message"].startswith(
        f"results could not be stored: local bucket 'demo-results' does not exist ({run.dir}"
    )
    # The run folder keeps the log, which says what happened.
    assert "trainui: results could not be stored: " in run.log()
    assert_run_folder_cleaned(run)


def test_a_store_failure_after_a_failed_command_keeps_the_first_cause(tmp_path):
    run = Run(tmp_path, "exit 2")
    connection = {"aws_access_key_id": "AKIDEXAMPLE"}  # a key without its secret
    run.config["results"] = {"type": "s3", "bucket": "results", "connection": connection}
    (run.dir / "learner.json").write_text(json.dumps(run.config))
    status = run.run()

    assert status["error_code"] == "C201"
    assert status["status_message"] == (
        "the training command exited with code 2; results could not be stored:"
        " the s3 connection of bucket 'results' has aws_access_key_id but no aws_secret_access_key"
    )


def test_a_bad_zip_fails_with_s301(tmp_path):
    run = Run(tmp_path, "python3 train.py")
    (run.dir / "model.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    status = run.run()

    assert status["status"] == "failed"
    assert status["error_code"] == "S301"
    assert "model.zip is a corrupt zip file" in status["status_message"]
    assert run.stored_log().endswith(f"trainui: failed (S301): {status['status_message']}\n")
    assert_run_folder_cleaned(run)


def test_cpu_mode_says_so_and_hides_every_gpu(tmp_path):
    run = Run(tmp_path, "python3 train.py", gpu_ids=[], cpu_mode=True)
    status = run.run()

    assert status["status"] == "completed", status
    log = run.stored_log()
    assert "trainui: running on the CPU: no GPU on this machine\n" in log
    seen = env_seen(log)
    assert seen["CUDA_VISIBLE_DEVICES"] == ""
    assert seen["GPU_COUNT"] == "0"


def test_gpu_ids_are_given_to_the_command(tmp_path):
    run = Run(tmp_path, "python3 train.py", gpu_ids=[2, 3], resource="medium")
    run.run()
    log = run.stored_log()
    assert "trainui: running on GPU 2,3\n" in log
    assert env_seen(log)["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert env_seen(log)["GPU_COUNT"] == "2"


def test_every_line_of_a_loud_command_is_logged_once(tmp_path):
    loud = "import sys; sys.stdout.writelines(f'line {i}\\n' for i in range(100000))"
    run = Run(tmp_path, f'python3 -c "{loud}"')
    status = run.run()

    assert status["status"] == "completed"
    lines = run.stored_log().splitlines()
    assert [line for line in lines if not line.startswith("trainui: ")] == [
        f"line {i}" for i in range(100000)
    ]


def test_the_log_keeps_at_most_log_max_bytes_of_the_output_and_says_where_it_cut(tmp_path):
    # 2,000 lines of 10 bytes; the cap falls inside line 501
    loud = "import sys; sys.stdout.writelines(f'{i:09d}\\n' for i in range(2000))"
    command = f'python3 -c "{loud}" && echo done > "$RESULT_DIR/end.txt"'
    run = Run(tmp_path, command, log_max_bytes=5005)
    status = run.run()

    assert status["status"] == "completed", status
    assert status["exit_code"] == 0
    lines = run.stored_log().splitlines()
    notice = (
        "trainui: the log is cut here, at 5,005 bytes of the command's output"
        " (TRAINUI_LOG_MAX_BYTES); the command goes on, its further output is dropped"
    )
    output = [line for line in lines if not line.startswith("trainui: ")]
    assert output == [f"{i:09d}" for i in range(500)]  # whole lines only
    assert lines[lines.index(notice) - 1] == "000000499"
    assert (
        "trainui: the log's cap (TRAINUI_LOG_MAX_BYTES) dropped 15.0 kB of the command's output"
        in lines
    )
    assert lines[-1] == "trainui: completed"
    assert (run.results / "end.txt").read_text() == "done\n"  # the command was never held up


def test_a_log_max_bytes_of_0_keeps_everything(tmp_path):
    loud = "import sys; sys.stdout.writelines(f'{i:09d}\\n' for i in range(2000))"
    run = Run(tmp_path, f'python3 -c "{loud}"', log_max_bytes=0)
    assert run.run()["status"] == "completed"
    lines = run.stored_log().splitlines()
    assert [line for line in lines if not line.startswith("trainui: ")] == [
        f"{i:09d}" for i in range(2000)
    ]
    assert not any("TRAINUI_LOG_MAX_BYTES" in line for line in lines)


def test_a_process_that_left_the_command_holding_its_output_does_not_hold_the_run(tmp_path):
    # a daemon in a session of its own keeps the command's output open after the command ended
    pid_file = tmp_path / "daemon.pid"
    # (the command waits for the daemon's own session: until then, the end of the command's
    # process group takes it too)
    daemon = (
        f"setsid sh -c 'echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep 30' &"
        f" while [ ! -s {pid_file} ]; do sleep 0.01; done; echo started"
    )
    run = Run(tmp_path, daemon)
    try:
        status = run.start().wait(timeout=20)
        assert status["status"] == "completed", status
        log = run.stored_log()
        assert "started\n" in log
        daemon_pid = int(pid_file.read_text())
        if _alive(daemon_pid):  # not when a sandbox ended it with the command
            assert (
                "trainui: warning: a process the command started still holds its output open" in log
            )
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_broken_learner_json_still_gives_a_final_status(tmp_path):
    run_dir = tmp_path / "runs" / "training-AbCdEf123"
    run_dir.mkdir(parents=True)
    (run_dir / "learner.json").write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "trainui.learner", str(run_dir)], capture_output=True, text=True
    )
    assert result.returncode == 1
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed"
    assert status["status_message"] == (
        "learner error: learner.json is missing or is not a JSON object"
    )
    assert status["finished_at"]


def test_a_learner_json_with_a_wrong_value_still_gives_a_final_status(tmp_path):
    run = Run(tmp_path, "true", halt_grace_seconds="soon")
    run.start()
    assert run.process.wait(15) == 1
    status = run.status()
    assert status["status"] == "failed"
    assert status["status_message"] == (
        "learner error: ValueError: could not convert string to float: 'soon'"
    )


def test_the_learner_imports_nothing_heavy():
    probe = "import sys, trainui.learner; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules = set(out.stdout.split())
    heavy = {"yaml", "asyncio", "httpx", "textual", "starlette", "concurrent.futures", "subprocess"}
    assert modules & heavy == set()


def test_a_fault_of_the_learners_own_while_staging_is_s300_not_the_datas(tmp_path):
    """An exception no phase expects (here a store spec whose connection is no table, which
    only a broken learner.json holds) is the learner's fault, S300, which restarts may cure,
    not S302, which blames the user's data and is never restarted."""
    run = Run(tmp_path, "true")
    run.config["data"]["connection"] = ["not", "a", "table"]
    (run.dir / "learner.json").write_text(json.dumps(run.config))
    run.start()
    run.process.wait(15)  # it ends as it should: its outcome said in its status
    status = run.status()
    assert status["status"] == "failed"
    assert status["status_message"].startswith("learner error: "), status
    assert status["error_code"] == "S300", status
