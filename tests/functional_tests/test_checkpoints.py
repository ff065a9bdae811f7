"""Checkpoints and resume (SPEC §11): CHECKPOINT_DIR copied to <id>/checkpoints/ in the
results bucket (while the command runs, and when it fails or is halted), restored before the
next attempt, and `trainui resume`, through the real CLI, service and learners."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

EPOCHS = """\
import os, sys, time
checkpoint = os.path.join(os.environ["CHECKPOINT_DIR"], "epoch.txt")
attempt = os.environ["TRAINING_ATTEMPT"]
start = int(open(checkpoint).read()) if os.path.exists(checkpoint) else 0
print(f"attempt {attempt} starts after epoch {start}", flush=True)
stop_after, pause = int(sys.argv[1]), float(sys.argv[2])
for epoch in range(start + 1, 7):
    with open(os.path.join(os.environ["RESULT_DIR"], f"epoch-{epoch}.txt"), "w") as f:
        f.write(f"attempt {attempt}\\n")
    with open(checkpoint + ".tmp", "w") as f:  # a checkpoint is written whole, then renamed
        f.write(str(epoch))
    os.replace(checkpoint + ".tmp", checkpoint)
    print(f"epoch {epoch}", flush=True)
    if epoch == stop_after and attempt == "1":
        time.sleep(120)  # killed or halted here
    time.sleep(pause)
"""


def manifest(home, command: str, extra: str, name: str) -> Path:
    path = home.manifest(command, name=name)
    text = path.read_text().replace("    resource: small\n", f"    resource: small\n{extra}")
    path.write_text(text)
    return path


def log(home, model_id: str) -> str:
    return (home.path / "runs" / model_id / "training-log.txt").read_text()


def wait_for(home, model_id: str, line: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while line not in log(home, model_id):
        assert time.monotonic() < deadline, log(home, model_id)
        time.sleep(0.05)


def refuse_writes(home) -> Path:
    """The local results bucket moved away (to results-away) and a file in its place: every
    write to it fails. The bucket's path."""
    bucket = home.buckets / "results"
    bucket.rename(home.buckets / "results-away")
    bucket.write_text("not a folder: the bucket refuses every write\n")
    return bucket


def epochs_stored(home, model_id: str) -> dict[int, str]:
    folder = home.buckets / "results" / model_id
    return {int(p.stem.split("-")[1]): p.read_text().strip() for p in folder.glob("epoch-*.txt")}


ROTATING = """\
import os, sys, time
folder, attempt = os.environ["CHECKPOINT_DIR"], os.environ["TRAINING_ATTEMPT"]
found = sorted(os.listdir(folder))
print(f"attempt {attempt} finds {' '.join(found) or 'nothing'}", flush=True)
start = max((int(name[5:-4]) for name in found), default=0)
for epoch in range(start + 1, 7):
    with open(os.path.join(folder, f"ckpt-{epoch}.txt"), "w") as f:
        f.write(str(epoch))
    if os.path.exists(os.path.join(folder, f"ckpt-{epoch - 2}.txt")):  # the last two kept
        os.remove(os.path.join(folder, f"ckpt-{epoch - 2}.txt"))
    print(f"epoch {epoch}", flush=True)
    if attempt == "1":  # settled (SETTLE): the periodic copies take each epoch's
        time.sleep(1.3)
    if epoch == 4 and attempt == "1":
        sys.exit(3)
"""


def test_checkpoints_the_command_removed_do_not_come_back(home):
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    model = home.model("rotating", {"train.py": ROTATING})
    extra = "    max_restarts: 1\n    checkpoint_interval: 0.3\n"
    model_id = home.submit(model, manifest(home, "python3 train.py", extra, "rotating"))
    run = home.wait(model_id, "completed", "failed", timeout=60)
    text = log(home, model_id)
    assert run["status"] == "completed", text
    # the second attempt finds what the first left, not every checkpoint it ever wrote
    assert "checkpoint: 1 file" in text  # copied while it ran: ckpt-1.txt went to the bucket
    assert "attempt 2 finds ckpt-3.txt ckpt-4.txt\n" in text
    stored = home.buckets / "results" / model_id / "checkpoints"
    assert sorted(p.name for p in stored.iterdir()) == ["ckpt-5.txt", "ckpt-6.txt"]


def test_a_command_killed_mid_run_restarts_from_its_last_epoch(home):
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    model = home.model("epochs", {"train.py": EPOCHS})
    model_id = home.submit(
        model, manifest(home, "python3 train.py 3 0", "    max_restarts: 2\n", "killed")
    )
    wait_for(home, model_id, "epoch 3\n")
    status = json.loads((home.path / "runs" / model_id / "status.json").read_text())
    os.killpg(status["command_pgid"], signal.SIGKILL)  # the command, not the learner
    run = home.wait(model_id, "completed", "failed", timeout=60)
    text = log(home, model_id)
    assert run["status"] == "completed", text
    assert "killed by signal SIGKILL" in run["attempts"][0]["status_message"]
    assert "checkpoint: 1 file" in text  # the last copy, as the attempt failed
    assert "restored 1 checkpoint file (1 byte)" in text
    assert "attempt 2 starts after epoch 3" in text
    # every epoch once in the results: 1 to 3 of the first attempt, 4 to 6 of the second
    assert epochs_stored(home, model_id) == {
        1: "attempt 1", 2: "attempt 1", 3: "attempt 1",
        4: "attempt 2", 5: "attempt 2", 6: "attempt 2",
    }  # fmt: skip
    stored = home.buckets / "results" / model_id / "checkpoints" / "epoch.txt"
    assert stored.read_text() == "6"  # completed: the last copy has the last epoch


def test_the_learner_killed_restarts_from_the_copy_made_while_it_ran(home):
    """No last copy when the learner itself is killed: the periodic one is what remains."""
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    model = home.model("periodic", {"train.py": EPOCHS})
    extra = "    max_restarts: 1\n    checkpoint_interval: 0.3\n"
    model_id = home.submit(model, manifest(home, "python3 train.py 4 1.5", extra, "periodic"))
    wait_for(home, model_id, "epoch 4\n", timeout=60)
    checkpoint = home.buckets / "results" / model_id / "checkpoints" / "epoch.txt"
    deadline = time.monotonic() + 20
    while not (checkpoint.exists() and checkpoint.read_text() == "4"):
        assert time.monotonic() < deadline, log(home, model_id)
        time.sleep(0.1)
    status = json.loads((home.path / "runs" / model_id / "status.json").read_text())
    learner = status["learner_pid"]
    assert str(home.path).encode() in Path(f"/proc/{learner}/environ").read_bytes()
    os.kill(learner, signal.SIGKILL)
    run = home.wait(model_id, "completed", "failed", timeout=60)
    text = log(home, model_id)
    assert run["status"] == "completed", text
    assert run["attempts"][0]["error_code"] == "S300"
    assert "attempt 2 starts after epoch 4" in text
    assert sorted(epochs_stored(home, model_id)) == [5, 6]  # the lost attempt stored nothing
    assert "checkpoint: 1 file" in text  # copies while it ran, said in the log


def test_a_learner_killed_with_no_restart_left_keeps_what_its_command_left(home, tmp_path):
    """No restart, no periodic copy: the learner killed outright (the OOM killer) stores
    nothing; the service keeps its RESULT_DIR and CHECKPOINT_DIR on the box, `download
    --results` gets them, `trainui resume` starts from them, and once it completes the bucket
    has the last checkpoint."""
    model = home.model("oom", {"train.py": EPOCHS})
    model_id = home.submit(model, manifest(home, "python3 train.py 2 0", "", "oom"))
    wait_for(home, model_id, "epoch 2\n")
    status = json.loads((home.path / "runs" / model_id / "status.json").read_text())
    learner = status["learner_pid"]
    assert str(home.path).encode() in Path(f"/proc/{learner}/environ").read_bytes()
    os.kill(learner, signal.SIGKILL)
    run = home.wait(model_id, "failed", timeout=60)
    assert run["error_code"] == "S300"
    deadline = time.monotonic() + 20
    while "trainui download" not in (text := log(home, model_id)):
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert "trainui: the results and the checkpoints the command left are kept on the box" in text
    got = home.cli("download", model_id, "--results", "--output", str(tmp_path / "got"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "got" / "checkpoints" / "epoch.txt").read_text() == "2"
    assert (tmp_path / "got" / "epoch-2.txt").read_text() == "attempt 1\n"
    home.cli("resume", model_id, check=True)
    run = home.wait(model_id, "completed", "failed", timeout=60)
    text = log(home, model_id)
    assert run["status"] == "completed", text
    assert "attempt 2 starts after epoch 2" in text
    stored = home.buckets / "results" / model_id / "checkpoints" / "epoch.txt"
    assert stored.read_text() == "6"  # the last copy, as the run completed
    assert epochs_stored(home, model_id) == {
        1: "attempt 1", 2: "attempt 1", 3: "attempt 2", 4: "attempt 2", 5: "attempt 2",
        6: "attempt 2",
    }  # fmt: skip


def test_resume_starts_a_halted_run_again_from_its_last_checkpoint(home):
    model = home.model("resume", {"train.py": EPOCHS})
    model_id = home.submit(model, manifest(home, "python3 train.py 2 0", "", "resumed"))
    wait_for(home, model_id, "epoch 2\n")
    home.cli("halt", model_id, check=True)
    run = home.wait(model_id, "halted", timeout=30)
    assert run["attempt"] == 1 and run["attempts"] is None  # a run without restarts
    # the secrets stay for `resume` (0600 in the private home)
    spec = home.path / "runs" / model_id / "learner.json"
    assert spec.exists() and spec.stat().st_mode & 0o777 == 0o600
    out = home.cli("resume", model_id, check=True).stdout
    assert "State downloading: starting on the CPU" in out  # a slot was free: at once
    run = home.wait(model_id, "completed", "failed", timeout=60)
    text = log(home, model_id)
    assert run["status"] == "completed", text
    assert [(a["attempt"], a["status"]) for a in run["attempts"]] == [
        (1, "halted"),
        (2, "completed"),
    ]
    assert "attempt 2 starts after epoch 2" in text
    assert "trainui: attempt 2 of 2" in text  # resumed past its restarts (none): not "of 1"
    # when it was resumed (the second attempt waits from then) and when that attempt started
    first = run["attempts"][0]
    assert first["finished_at"] <= first["resumed_at"] <= run["started_at"], run
    assert run["attempts"][1]["started_at"] == run["started_at"]
    assert "Attempt        2 of 2" in home.cli("show", model_id, check=True).stdout
    assert epochs_stored(home, model_id) == {
        1: "attempt 1", 2: "attempt 1", 3: "attempt 2", 4: "attempt 2", 5: "attempt 2",
        6: "attempt 2",
    }  # fmt: skip
    assert not spec.exists()  # completed: its secrets go
    # only a halted or failed run resumes
    again = home.cli("resume", model_id)
    assert again.returncode == 1 and "only a halted or failed run resumes" in again.stderr


def test_checkpoints_the_results_bucket_refused_are_kept_and_resumed_from(home, tmp_path):
    """The last copy fails (the results bucket is gone): CHECKPOINT_DIR stays in the run folder
    and `trainui resume` starts from it, not from the bucket's older copy (none here); the
    results kept then are stored when the bucket takes them again. Meanwhile `download
    --results` (the service's, as a remote user's) gets what the box kept."""
    model = home.model("kept", {"train.py": EPOCHS})
    model_id = home.submit(model, manifest(home, "python3 train.py 2 0", "", "kept"))
    wait_for(home, model_id, "epoch 2\n")
    bucket = refuse_writes(home)
    home.cli("halt", model_id, check=True)
    run = home.wait(model_id, "halted", "failed", timeout=30)
    text = log(home, model_id)
    assert run["error_code"] == "S303", text
    assert "warning: the checkpoints could not be copied" in text
    kept = home.path / "runs" / model_id / "checkpoints-not-copied"
    assert f"the checkpoints are kept in {kept}" in text
    assert (kept / "epoch.txt").read_text() == "2"
    got = home.cli("download", model_id, "--results", "--output", str(tmp_path / "got"))
    assert got.returncode == 0, got.stderr
    assert "trainui: the results bucket cannot be " in got.stderr
    assert got.stderr.rstrip().endswith("; downloading what the box kept"), got.stderr
    assert (tmp_path / "got" / "checkpoints" / "epoch.txt").read_text() == "2"
    assert (tmp_path / "got" / "epoch-2.txt").read_text() == "attempt 1\n"
    assert got.stdout.rstrip().endswith(
        f"of {model_id} to {tmp_path / 'got'} (3 of them from the box: not in the results bucket)"
    ), got.stdout
    bucket.unlink()
    (home.buckets / "results-away").rename(bucket)
    # the bucket back, holding nothing of the run: what the box kept, nothing said of it
    again = home.cli("download", model_id, "--results", "--output", str(tmp_path / "again"))
    assert again.returncode == 0 and not again.stderr, again.stderr
    assert sorted(p.name for p in (tmp_path / "again").rglob("*.txt")) == [
        "epoch-1.txt", "epoch-2.txt", "epoch.txt"
    ]  # fmt: skip
    home.cli("resume", model_id, check=True)
    run = home.wait(model_id, "completed", "failed", timeout=60)
    text = log(home, model_id)
    assert run["status"] == "completed", text
    assert "restored 1 checkpoint file (1 byte) kept in the run folder" in text
    assert "attempt 2 starts after epoch 2" in text
    assert not kept.exists()
    # attempt 1's results, kept on the box then, are stored with attempt 2's
    assert "stored 2 files of the results an earlier attempt kept" in text
    assert not (home.path / "runs" / model_id / "results-not-stored").exists()
    # started from checkpoints kept on the box: once completed, the bucket has the last
    stored = home.buckets / "results" / model_id / "checkpoints" / "epoch.txt"
    assert stored.read_text() == "6"
    assert epochs_stored(home, model_id) == {
        1: "attempt 1", 2: "attempt 1", 3: "attempt 2", 4: "attempt 2", 5: "attempt 2",
        6: "attempt 2",
    }  # fmt: skip


def test_a_bucket_gone_after_the_last_periodic_copy_loses_no_checkpoint(home):
    """The periodic copy took the checkpoint, then the results bucket went: at the failure
    nothing changed to be sent, yet the bucket no longer holds it. The last copy finds that
    out, CHECKPOINT_DIR is kept, and the restart starts from it. (The bucket stays gone: the
    last attempt's results are kept on the box, S303.)"""
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    model = home.model("gone", {"train.py": EPOCHS})
    extra = "    max_restarts: 1\n    checkpoint_interval: 0.3\n"
    model_id = home.submit(model, manifest(home, "python3 train.py 2 0", extra, "gone"))
    wait_for(home, model_id, "epoch 2\n")
    copied = home.buckets / "results" / model_id / "checkpoints" / "epoch.txt"
    deadline = time.monotonic() + 20
    while not (copied.exists() and copied.read_text() == "2"):
        assert time.monotonic() < deadline, log(home, model_id)
        time.sleep(0.1)
    (home.buckets / "results").rename(home.buckets / "results-away")  # the bucket is gone
    status = json.loads((home.path / "runs" / model_id / "status.json").read_text())
    os.killpg(status["command_pgid"], signal.SIGKILL)
    run = home.wait(model_id, "completed", "failed", timeout=60)
    text = log(home, model_id)
    assert run["error_code"] == "S303", text
    assert "warning: the checkpoints could not be copied" in text
    assert "restored 1 checkpoint file (1 byte) kept in the run folder" in text
    assert "attempt 2 starts after epoch 2" in text
    kept = home.path / "runs" / model_id / "results-not-stored"
    assert (kept / "epoch-6.txt").read_text() == "attempt 2\n"
    assert not (home.buckets / "results").exists()  # not made again by a write


def test_a_command_that_ended_well_whose_results_were_refused_keeps_its_checkpoints(home):
    """S303 after the command exited 0: `resume` would train again; from its last checkpoint,
    kept on the box with the results."""
    model = home.model("ended", {"train.py": EPOCHS})
    model_id = home.submit(model, manifest(home, "python3 train.py 0 0.3", "", "ended"))
    wait_for(home, model_id, "epoch 1\n")
    refuse_writes(home)
    run = home.wait(model_id, "failed", timeout=30)
    text = log(home, model_id)
    assert run["error_code"] == "S303" and "command exited with code 0" in text, text
    kept = home.path / "runs" / model_id / "checkpoints-not-copied"
    assert (kept / "epoch.txt").read_text() == "6"
    assert text.rstrip().splitlines()[-1].startswith("trainui: failed (S303)")  # the last line


def test_a_results_bucket_gone_at_resume_is_the_results_buckets_fault_not_the_datas(home):
    """Its checkpoints cannot be restored: C103 (the results bucket refused), not S302 (the
    training data could not be loaded), which sent the user to a data bucket that is fine."""
    model = home.model("gone", {"train.py": EPOCHS})
    model_id = home.submit(model, manifest(home, "python3 train.py 2 0", "", "gone"))
    wait_for(home, model_id, "epoch 2\n")
    home.cli("halt", model_id, check=True)
    home.wait(model_id, "halted", timeout=30)
    refuse_writes(home)
    home.cli("resume", model_id, check=True)
    run = home.wait(model_id, "completed", "failed", timeout=60)
    assert run["error_code"] == "C103", log(home, model_id)
    assert run["status_message"].startswith("the checkpoints could not be restored: ")


def test_a_results_bucket_removed_is_not_made_again_so_a_second_resume_fails_too(home):
    """The first resume fails C103; its storing must not make the bucket again (empty), or
    the next resume would find no checkpoint and train again from the first epoch."""
    import shutil

    model = home.model("removed", {"train.py": EPOCHS})
    model_id = home.submit(model, manifest(home, "python3 train.py 2 0", "", "removed"))
    wait_for(home, model_id, "epoch 2\n")
    home.cli("halt", model_id, check=True)
    home.wait(model_id, "halted", timeout=30)
    shutil.rmtree(home.buckets / "results")
    for _ in range(2):
        home.cli("resume", model_id, check=True)
        run = home.wait(model_id, "completed", "failed", timeout=60)
        assert run["error_code"] == "C103", log(home, model_id)
        assert not (home.buckets / "results").exists()
    assert "attempt 2 starts after epoch 0" not in log(home, model_id)
    assert "attempt 3 starts" not in log(home, model_id)
