"""Runs that survive failure (SPEC §11), first part: restarts. A failed attempt whose command
failed or whose learner was lost starts again, up to ``max_restarts`` times, after a back-off,
through the real CLI, service and learners."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

FLAKY = '[ "$TRAINING_ATTEMPT" -ge {ok} ] || exit 7; echo "done on attempt $TRAINING_ATTEMPT"'


def restarting_manifest(home, command: str, max_restarts: int, name: str = "flaky") -> Path:
    path = home.manifest(command, name=name)
    text = path.read_text().replace(
        "    resource: small\n", f"    resource: small\n    max_restarts: {max_restarts}\n"
    )
    assert f"max_restarts: {max_restarts}" in text
    path.write_text(text)
    return path


def log(home, model_id: str) -> str:
    return (home.path / "runs" / model_id / "training-log.txt").read_text()


def test_a_run_that_fails_twice_completes_on_its_third_attempt(home):
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    model = home.model("flaky", {"t.py": ""})
    model_id = home.submit(model, restarting_manifest(home, FLAKY.format(ok=3), 3))
    run = home.wait(model_id, "completed", "failed", "halted", timeout=60)
    assert run["status"] == "completed", run
    assert run["attempt"] == 3 and run["max_restarts"] == 3
    assert [
        (a["attempt"], a["status"], a["error_code"], a["exit_code"]) for a in run["attempts"]
    ] == [
        (1, "failed", "C201", 7),
        (2, "failed", "C201", 7),
        (3, "completed", None, 0),
    ]
    text = log(home, model_id)
    assert text.count("trainui: attempt ") == 3
    assert (
        text.index("attempt 1 of 4") < text.index("attempt 2 of 4") < text.index("attempt 3 of 4")
    )
    assert "done on attempt 3" in text
    # each attempt's last line is followed by the word that another comes (not taken for the end)
    said = text.index("trainui: restarting: attempt 2 of 4 in 0.2 s\n")
    assert text.index("trainui: failed (C201)") < said < text.index("trainui: attempt 2 of 4")
    assert "trainui: restarting: attempt 3 of 4 in 0.4 s\n" in text
    shown = home.cli("show", model_id, check=True).stdout
    assert "Attempt        3 of 4" in shown
    assert "  attempt 1    failed C201 exit 7 at " in shown
    assert "  attempt 3    completed exit 0 at " in shown
    # the stores' secrets (learner.json) go once the run has completed
    assert not (home.path / "runs" / model_id / "learner.json").exists()
    # the results bucket has the whole log: every attempt
    stored = (home.buckets / "results" / model_id / "training-log.txt").read_text()
    assert "attempt 3 of 4" in stored and "attempt 1 of 4" in stored


def test_restarts_run_out_and_the_run_fails_with_its_last_reason(home):
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.1"
    model = home.model("never", {"t.py": ""})
    model_id = home.submit(model, restarting_manifest(home, "exit 3", 1))
    run = home.wait(model_id, "completed", "failed", "halted", timeout=60)
    assert run["status"] == "failed" and run["error_code"] == "C201" and run["exit_code"] == 3
    assert [a["attempt"] for a in run["attempts"]] == [1, 2]
    assert run["attempt"] == 2


def test_a_resumed_run_gets_its_restarts_again(home):
    """A resume is the user's word, not a failure: the run may restart max_restarts times
    again after it, as `attempt 3 of 4` says (not `3 of 3`, a resume that spent them)."""
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.1"
    model = home.model("never", {"t.py": ""})
    model_id = home.submit(model, restarting_manifest(home, FLAKY.format(ok=4), 1))
    run = home.wait(model_id, "completed", "failed", "halted", timeout=60)
    assert run["status"] == "failed" and [a["attempt"] for a in run["attempts"]] == [1, 2]
    home.cli("resume", model_id, check=True)
    run = home.wait(model_id, "completed", "failed", "halted", timeout=60)
    assert run["status"] == "completed", run  # attempt 3 failed, and restarted by itself
    assert [(a["attempt"], a["status"]) for a in run["attempts"]] == [
        (1, "failed"), (2, "failed"), (3, "failed"), (4, "completed")
    ]  # fmt: skip
    assert "resumed_at" in run["attempts"][1] and "resumed_at" not in run["attempts"][2]
    text = log(home, model_id)
    assert "trainui: attempt 3 of 4" in text and "trainui: restarting: attempt 4 of 4" in text
    assert "done on attempt 4" in text
    assert "Attempt        4 of 4" in home.cli("show", model_id, check=True).stdout


def test_a_halt_is_never_restarted_in_an_attempt_or_between_two(home):
    home.env["TRAINUI_RESTART_BACKOFF"] = "60"  # the second attempt waits: halted meanwhile
    model = home.model("halt", {"t.py": ""})
    running = home.submit(model, restarting_manifest(home, "echo up; sleep 60", 3, name="a"))
    home.wait(running, "running")
    home.cli("halt", running, check=True)
    run = home.wait(running, "halted", "failed", "completed", timeout=30)
    assert run["status"] == "halted" and run["attempt"] == 1
    failing = home.submit(model, restarting_manifest(home, "exit 5", 3, name="b"))
    run = home.wait(failing, "restarting", timeout=30)
    said = run["status_message"]
    when = r"at \d\d:\d\d:\d\dZ"  # the clock time too: the message is read later
    assert re.match(rf"attempt 2 of 4 in 60 s, {when} \(attempt 1: the training", said), said
    assert (home.path / "runs" / failing / "learner.json").exists()
    home.cli("halt", failing, check=True)
    run = home.wait(failing, "halted", timeout=10)
    assert run["status_message"] == "halted before attempt 2 started"
    # attempt 2 never began: it is not listed, and a resume starts it (not an "attempt 3")
    assert [(a["attempt"], a["status"], a["exit_code"]) for a in run["attempts"]] == [
        (1, "failed", 5),
    ]
    assert run["attempt"] == 1
    # kept for `trainui resume` (a halted run may start again), 0600 in the private home
    assert (home.path / "runs" / failing / "learner.json").stat().st_mode & 0o777 == 0o600
    time.sleep(0.5)
    assert home.show(failing)["status"] == "halted"
    # the results bucket says so too: its status was the failed attempt's
    stored = home.buckets / "results" / failing
    deadline = time.monotonic() + 20
    while json.loads((stored / "training-status.json").read_text())["status"] != "halted":
        assert time.monotonic() < deadline, (stored / "training-status.json").read_text()
        time.sleep(0.05)
    last = (stored / "training-log.txt").read_text().splitlines()[-1]
    assert last == "trainui: halted: halted before attempt 2 started"
    home.cli("resume", failing, check=True)
    run = home.wait(failing, "restarting", timeout=30)  # attempt 2 failed as 1 did
    assert [a["attempt"] for a in run["attempts"]] == [1, 2] and run["attempt"] == 3
    home.cli("halt", failing, check=True)


def test_a_halt_that_comes_as_a_failed_attempt_stores_its_results_is_not_restarted(home):
    # the command has failed, the learner is storing (a large result): the halt lands there,
    # the attempt ends failed all the same, and the run must not start again
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    model = home.model("race", {"t.py": ""})
    command = "head -c 400000000 /dev/zero > $RESULT_DIR/big.bin; exit 3"
    model_id = home.submit(model, restarting_manifest(home, command, 2, name="race"))
    deadline = time.monotonic() + 60
    while home.show(model_id)["status"] != "storing":
        assert time.monotonic() < deadline, home.show(model_id)
        time.sleep(0.01)
    home.cli("halt", model_id, check=True)
    run = home.wait(model_id, "halted", "failed", "completed", timeout=60)
    assert run["status"] == "failed" and run["attempt"] == 1, run
    assert run["status_message"].endswith("; halted by request: not restarted"), run
    time.sleep(0.5)  # the back-off: no second attempt came
    assert home.show(model_id)["status"] == "failed"
    assert "attempt 2 of 3" not in log(home, model_id)


ATTEMPTS = """\
import json, os, sys, time
attempt = int(os.environ["TRAINING_ATTEMPT"])
with open(os.path.join(os.environ["LOG_DIR"], "metrics.jsonl"), "a") as out:
    for step in range(4):
        out.write(json.dumps({"step": step, "loss": attempt * 10 + step}) + "\\n")
        out.flush()
        time.sleep(0.1)
sys.exit(4 if attempt == 1 else 0)
"""


def test_metrics_asked_for_between_two_attempts_follow_the_next_one(home):
    # a read between the attempts was kept, and answered instead of the whole run's points
    home.env["TRAINUI_RESTART_BACKOFF"] = "1"
    model = home.model("attempts", {"train.py": ATTEMPTS})
    model_id = home.submit(model, restarting_manifest(home, "python3 train.py", 1, name="m"))
    home.wait(model_id, "restarting", timeout=60)
    between = home.cli("metrics", model_id, "--json", check=True).stdout.splitlines()
    assert [json.loads(line)["value"] for line in between] == [10, 11, 12, 13]
    assert home.wait(model_id, "completed", "failed", timeout=60)["status"] == "completed"
    points = home.cli("metrics", model_id, "--json", check=True).stdout.splitlines()
    assert [json.loads(line)["value"] for line in points] == [10, 11, 12, 13, 20, 21, 22, 23]
    assert home.show(model_id)["metrics"]["loss"]["last"] == 23


def test_a_run_waiting_for_its_next_attempt_says_the_last_points_of_the_failed_one(home):
    """Through a back-off (up to minutes), the run's record (show, the ranking, list
    --metric) has the last points the failed attempt wrote, not those of its first read."""
    home.env["TRAINUI_RESTART_BACKOFF"] = "120"
    script = """\
        import json, os, sys, time
        with open(os.path.join(os.environ["LOG_DIR"], "metrics.jsonl"), "a") as f:
            for step in range(30):
                f.write(json.dumps({"step": step, "loss": 1 / (step + 1)}) + "\\n")
                f.flush()
                time.sleep(0.1 if step < 3 else 0.01)
        sys.exit(3)
        """
    model = home.model("stale", {"train.py": script})
    model_id = home.submit(model, restarting_manifest(home, "python3 train.py", 1, name="s"))
    home.wait(model_id, "restarting", timeout=60)
    deadline = time.monotonic() + 10
    while (home.show(model_id)["metrics"] or {}).get("loss", {}).get("step") != 29:
        assert time.monotonic() < deadline, home.show(model_id)["metrics"]
        time.sleep(0.2)
    assert home.show(model_id)["status"] == "restarting"
    assert home.show(model_id)["metrics"]["loss"]["last"] == 1 / 30


def test_a_lost_learner_counts_as_a_failed_attempt_and_the_run_starts_again(home):
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    model = home.model("lost", {"t.py": ""})
    # attempt 1 checkpoints (no periodic copy: the default is every 5 minutes) and is lost;
    # attempt 2 starts from that checkpoint, which the lost learner could not copy
    command = (
        '[ "$TRAINING_ATTEMPT" -ge 2 ] && echo "second from $(cat $CHECKPOINT_DIR/step)" || '
        "{ echo 7 > $CHECKPOINT_DIR/step; echo first; sleep 60; }"
    )
    model_id = home.submit(model, restarting_manifest(home, command, 2))
    os.kill(_learner_of(home, model_id, "first\n"), signal.SIGKILL)
    run = home.wait(model_id, "completed", "failed", timeout=60)
    assert run["status"] == "completed", run
    first = run["attempts"][0]
    assert first["error_code"] == "S300", first
    # how it ended, and no pointer to an empty learner-errors.txt
    assert first["status_message"] == (
        "the learner process ended unexpectedly (killed by signal SIGKILL)"
    )
    text = log(home, model_id)
    assert "second from 7\n" in text, text
    # the log closes the lost attempt before the next one begins
    closed = text.index("trainui: failed (S300): the learner process ended unexpectedly")
    assert text.index("first\n") < closed < text.index("trainui: attempt 2 of 3")
    assert "copied 1 checkpoint file" in text


def _learner_of(home, model_id: str, line: str) -> int:
    """The pid of ``model_id``'s learner, once its log has ``line``."""
    deadline = time.monotonic() + 30
    while line not in log(home, model_id):
        assert time.monotonic() < deadline, log(home, model_id)
        time.sleep(0.05)
    status = json.loads((home.path / "runs" / model_id / "status.json").read_text())
    learner = status["learner_pid"]
    assert str(home.path).encode() in Path(f"/proc/{learner}/environ").read_bytes()
    return learner


def test_a_learner_stopped_from_outside_trainui_is_a_lost_one_not_a_halt(home):
    """SIGTERM from a `kill` or a shutdown is not `trainui halt`: the run starts again (it was
    recorded "halted by request" and never restarted)."""
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    model = home.model("term", {"t.py": ""})
    command = '[ "$TRAINING_ATTEMPT" -ge 2 ] && echo second || { echo first; sleep 60; }'
    model_id = home.submit(model, restarting_manifest(home, command, 1))
    os.kill(_learner_of(home, model_id, "first\n"), signal.SIGTERM)
    run = home.wait(model_id, "completed", "failed", "halted", timeout=60)
    assert run["status"] == "completed", run
    first = run["attempts"][0]
    assert (first["status"], first["error_code"]) == ("failed", "S300"), first
    assert "stopped by SIGTERM from outside trainui" in first["status_message"]
    # a run halted by trainui, then resumed: the earlier halt's reason does not make an outside
    # SIGTERM of the new attempt a halt
    other = home.submit(model, home.manifest("echo up $TRAINING_ATTEMPT; sleep 60", name="b"))
    _learner_of(home, other, "up 1\n")
    home.cli("halt", other, check=True)
    assert home.wait(other, "halted", "failed", timeout=30)["status_message"] == (
        "halted by request"
    )
    home.cli("resume", other, check=True)
    os.kill(_learner_of(home, other, "up 2\n"), signal.SIGTERM)
    run = home.wait(other, "halted", "failed", "completed", timeout=30)
    assert (run["status"], run["error_code"]) == ("failed", "S300"), run


def test_a_service_started_again_keeps_what_is_left_of_a_back_off(home):
    """A restart waits its back-off even when the service starts again meanwhile (it
    started at once: the back-off was kept in the service's memory alone)."""
    home.env["TRAINUI_RESTART_BACKOFF"] = "30"
    model = home.model("backoff", {"t.py": ""})
    model_id = home.submit(model, restarting_manifest(home, FLAKY.format(ok=2), 1))
    home.wait(model_id, "restarting", timeout=60)
    home.kill_service()
    time.sleep(2)  # the next CLI call starts the service again
    for _ in range(10):
        run = home.show(model_id)
        assert run["status"] == "restarting" and run["attempt"] == 2, run
        time.sleep(0.2)
    home.cli("halt", model_id, check=True)
    assert home.wait(model_id, "halted")["status_message"] == "halted before attempt 2 started"


def test_a_restarted_run_takes_its_place_by_submission_in_the_queue(home):
    """The rule: during its back-off the others go on; then it waits where its submission put
    it, before the runs submitted after it that still wait (never ahead of one submitted
    before it)."""
    home.env.update(TRAINUI_RESTART_BACKOFF="0", TRAINUI_CPU_SLOTS="1")
    model = home.model("queue", {"t.py": ""})
    first = home.submit(model, restarting_manifest(home, FLAKY.format(ok=2), 1, name="first"))
    second = home.submit(model, restarting_manifest(home, "echo second", 0, name="second"))
    a = home.wait(first, "completed", "failed", timeout=60)
    b = home.wait(second, "completed", "failed", timeout=60)
    assert a["status"] == b["status"] == "completed"
    assert a["attempts"][1]["started_at"] < b["started_at"]  # attempt 2 went before "second"


def test_a_run_halted_before_it_started_resumes(home):
    # its files waited in the run store: resume said they were "no longer kept"
    model = home.model("wait", {"t.py": ""})
    blocker = home.submit(model, home.manifest("sleep 60", name="blocker"))
    home.wait(blocker, "running")
    waiting = home.submit(model, home.manifest("echo resumed", name="waiting"))
    assert home.show(waiting)["status"] == "pending"
    home.cli("halt", waiting, check=True)
    assert home.wait(waiting, "halted")["status_message"] == "halted before it started"
    resumed = home.cli("resume", waiting)
    assert resumed.returncode == 0, resumed.stderr
    # its first attempt never began: the resume makes it pending again, listed once
    again = home.show(waiting)
    assert again["status"] == "pending" and again["attempt"] == 1, again
    halted_run = home.show(blocker)
    assert again["resumed_at"] > again["submitted_at"] and halted_run["resumed_at"] is None
    assert again["status_message"].startswith("waiting for a CPU slot"), again
    home.cli("halt", blocker, check=True)
    run = home.wait(waiting, "completed", "failed", timeout=60)
    assert run["status"] == "completed" and "resumed" in log(home, waiting)
    assert run["attempt"] == 1 and not run["attempts"]  # as a run that never waited
    assert run["started_at"] >= run["resumed_at"] == again["resumed_at"]


def test_the_demo_resumed_goes_on_from_its_checkpoint(home):
    """The demo reads the checkpoint a resumed run is given (it started again from epoch 1)."""
    demo = Path(__file__).resolve().parents[2] / "examples" / "demo"
    home.bucket("data", {"spirals.csv": (demo / "data" / "spirals.csv").read_text()})
    model = home.model("demo", {"train.py": (demo / "model" / "train.py").read_text()})
    command = (
        "python3 train.py --data $DATA_DIR/spirals.csv --epochs 12 --epoch-delay 0.3 --hidden 8"
        " --checkpoint-every 1"
    )
    model_id = home.submit(model, home.manifest(command, name="demo"))
    _learner_of(home, model_id, "epoch 3/12")
    home.cli("halt", model_id, check=True)
    assert home.wait(model_id, "halted", "failed", "completed", timeout=30)["status"] == "halted"
    home.cli("resume", model_id, check=True)
    run = home.wait(model_id, "completed", "failed", "halted", timeout=60)
    assert run["status"] == "completed", run
    text = log(home, model_id)
    after = text[text.index("trainui: attempt 2 of 2") :]
    resumed = re.search(r"resumed from the checkpoint of epoch (\d+)", after)
    assert resumed, after
    epochs = [int(e) for e in re.findall(r"^epoch (\d+)/12 ", after, re.M)]
    assert epochs == list(range(int(resumed[1]) + 1, 13)) and int(resumed[1]) >= 2, epochs
