"""The local launcher's spare learner: started ahead, not restarted in a loop when it cannot
start, and ended with the service."""

from __future__ import annotations

import time

from conftest import process_state
from trainui.service.launchers import local
from trainui.service.launchers.local import LocalLauncher


def test_a_spare_that_ends_unused_is_not_started_again_at_once(monkeypatch):
    # a learner given an argument it does not know prints its usage and ends at once: as a
    # spare that cannot start would
    monkeypatch.setattr(local, "SPARE", "--not-an-option")
    launcher = LocalLauncher()
    launcher.tick()
    first = launcher._spare
    assert first is not None
    assert first.wait(timeout=30) == 2
    started = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # ten ticks a second, as the service's heartbeat
        launcher.tick()
        if launcher._spare is not None and launcher._spare is not first:
            started.append(launcher._spare)
        time.sleep(0.1)
    assert started == []
    launcher.close()


def test_a_spare_is_given_the_next_run_and_closing_ends_one_that_waits(tmp_path):
    launcher = LocalLauncher()
    launcher.tick()
    spare = launcher._spare
    assert spare is not None and spare.poll() is None
    # a folder without learner.json: the learner records that and ends (exit status 1)
    pid, _start = launcher.start(str(tmp_path), 0)
    assert pid == spare.pid
    assert spare.wait(timeout=30) == 1
    assert "learner error" in (tmp_path / "status.json").read_text()
    time.sleep(local.SPARE_AFTER + 0.1)
    launcher.tick()
    waiting = launcher._spare
    assert waiting is not None and waiting.pid != spare.pid
    launcher.close()  # its stdin ends: it exits
    assert waiting.wait(timeout=10) == 0


def test_learners_that_ended_are_collected_by_the_heartbeat_not_left_zombies(tmp_path):
    # a service runs thousands of runs (an experiment): a learner that ended must not stay a
    # zombie until the service exits (the process table is finite)
    launcher = LocalLauncher()
    pids = []
    for i in range(3):
        run_dir = tmp_path / str(i)
        run_dir.mkdir()
        pids.append(launcher.start(str(run_dir), 0)[0])  # no learner.json: it ends at once
    deadline = time.monotonic() + 30
    while any(process_state(pid) not in ("Z", None) for pid in pids):
        assert time.monotonic() < deadline, [process_state(pid) for pid in pids]
        time.sleep(0.02)
    assert [process_state(pid) for pid in pids] == ["Z", "Z", "Z"]  # ended, nobody collected them
    launcher.tick()
    assert [process_state(pid) for pid in pids] == [None, None, None]
    launcher.close()


def test_the_spare_prepares_s3_only_where_the_last_run_used_it(tmp_path):
    # botocore's import and S3 model cost a spare about 0.3 s of CPU: a run per spare, so an
    # experiment of local runs would pay it a thousand times for nothing
    launcher = LocalLauncher()
    wanted = []
    for stores in ({"local"}, {"s3", "local"}, {"bluemix_objectstore"}):
        launcher.expect(frozenset(stores))
        time.sleep(local.SPARE_AFTER + 0.05)
        launcher.tick()
        spare = launcher._spare
        assert spare is not None
        wanted.append(spare.args[-1] == local.SPARE_S3)
        launcher.close()
        assert spare.wait(timeout=30) == 0
    assert wanted == [False, True, False]


SPARE_IMPORTS = (
    "import sys; from trainui.learner import spare_main; "
    "spare_main(s3=sys.argv[1] == 's3'); print('botocore' in sys.modules)"
)


def test_a_spare_without_s3_imports_no_botocore_and_one_with_it_does():
    import subprocess
    import sys

    seen = []
    for prepare in ("", "s3"):  # stdin ends at once: the spare makes its imports and goes
        done = subprocess.run(
            [sys.executable, "-c", SPARE_IMPORTS, prepare],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        seen.append(done.stdout.strip())
    assert seen == ["False", "True"]
