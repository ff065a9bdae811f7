"""A full disk: the home on a small file system of its own (an 8 MiB tmpfs), as a user sees it.

A run that fills the disk fails saying so, and which file; submissions are refused with 507
while the disk is full; deleting a run works on the full disk and frees its space; a run's
log is cut at TRAINUI_LOG_MAX_BYTES and the run completes. Mounting needs root (CI runs as
root): elsewhere these tests are skipped, saying why.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from conftest import multipart_submission, new_home
from trainui.core.lifecycle import Run
from trainui.core.runs import write_json_atomic
from trainui.service.store import RunStore, disk_full

HOME_SIZE = 8 << 20
# about 40 MB of output, five times what the home holds
FLOOD = "python3 -c \"import sys\nfor i in range(400000): sys.stdout.write('x' * 99 + '\\n')\""
FIVE_LINES = "for i in 1 2 3 4 5; do echo line $i; done"


def _mount_small(path: Path, size: int = HOME_SIZE) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the home needs root (CI runs as root)")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")


def _unmount(path: Path) -> None:
    deadline = time.monotonic() + 10
    while subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:  # something still holds it: detach it at least
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
            return
        time.sleep(0.1)


@pytest.fixture
def small_disk(tmp_path):
    """An empty 8 MiB tmpfs at tmp_path/disk, unmounted at the end."""
    path = tmp_path / "disk"
    _mount_small(path)
    yield path
    _unmount(path)


@pytest.fixture
def small_home(tmp_path):
    """A trainui home on an 8 MiB tmpfs, its buckets outside it; the service and learners are
    stopped (by PID) before the file system is unmounted."""
    path = tmp_path / "home"
    _mount_small(path)
    home = new_home(path)
    home.buckets = tmp_path / "buckets"
    (home.buckets / "data").mkdir(parents=True)
    try:
        yield home
    finally:
        home.stop()
        _unmount(path)


def manifest(home, command: str, name: str) -> Path:
    path = home.path.parent / f"manifest-{name}.yml"
    path.write_text(
        textwrap.dedent(
            f"""\
            model_definition:
              name: {name}
              framework: {{name: python, version: "3.11"}}
              execution:
                command: {json.dumps(command)}
                resource: small
            training_data:
              connection: {{path: {home.buckets}}}
              source: {{bucket: data, type: local}}
            training_results:
              connection: {{path: {home.buckets}}}
              target: {{bucket: results, type: local}}
            """
        )
    )
    return path


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(path: Path) -> Path:
    """A file that takes every byte left on the file system of ``path``."""
    filler = path / "filler"
    block = bytes(64 << 10)
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while f.write(block):
            pass
    assert free_bytes(path) < 64 << 10
    return filler


def post_run(home, model: Path, manifest_path: Path) -> httpx.Response:
    """A submission over the home's Unix socket, as the CLI sends it."""
    from trainui.core import definition

    zip_path = home.path.parent / "model.zip"
    definition.zip_directory(str(model), str(zip_path))
    body, content_type = multipart_submission(zip_path.read_bytes(), manifest_path.read_bytes())
    transport = httpx.HTTPTransport(uds=str(home.path / "trainui.sock"))
    with httpx.Client(transport=transport, base_url="http://trainui") as http:
        return http.post("/v3/models", content=body, headers={"Content-Type": content_type})


# ------------------------------------------------------------------------------ tests


def test_a_run_that_fills_the_disk_fails_saying_so_and_deleting_it_frees_the_space(small_home):
    home = small_home
    model = home.model("m", {"t.py": ""})
    flood = home.submit(model, manifest(home, FLOOD, "flood"))
    run = home.wait(flood, "completed", "failed", "halted", timeout=120)

    log_path = home.path / "runs" / flood / "training-log.txt"
    assert run["status"] == "failed", run
    assert run["error_code"] == "S300", run
    assert run["status_message"].startswith(f"no space left on device writing {log_path}"), run
    assert "the training command was stopped" in run["status_message"]
    # what the log held is still stored in the results bucket, which has room
    stored = (home.buckets / "results" / flood / "training-log.txt").read_text()
    assert stored.count("x" * 99) > 1000
    # the line the disk cut ends there (the learner's lines were written onto it), and the
    # last one says how the run ended; its status is stored beside it
    lines = stored.splitlines()
    torn = [line for line in lines if line != "x" * 99 and not line.startswith("trainui: ")]
    assert len(torn) <= 1 and set("".join(torn)) <= {"x"}, [line[:120] for line in torn]
    assert lines[-1].startswith("trainui: failed (S300): no space left on device"), lines[-3:]
    status = json.loads((home.buckets / "results" / flood / "training-status.json").read_text())
    assert (status["status"], status["error_code"]) == ("failed", "S300"), status

    # the disk is full now: a submission is refused in one sentence, and says so
    refused = home.cli("train", str(model), str(manifest(home, FIVE_LINES, "five")))
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "disk full" in refused.stderr and "Traceback" not in refused.stderr
    answer = post_run(home, model, manifest(home, FIVE_LINES, "five"))
    assert answer.status_code == 507, answer.text
    assert answer.json()["message"].startswith("disk full: ")

    # deleting the run works on the full disk, and gives its space back
    before = free_bytes(home.path)
    home.cli("delete", flood, check=True)
    assert not (home.path / "runs" / flood).exists()
    assert free_bytes(home.path) > before + (4 << 20)
    assert flood not in home.cli("list", check=True).stdout

    # the next run, submitted once there is space, completes
    five = home.submit(model, manifest(home, FIVE_LINES, "five"))
    run = home.wait(five, "completed", "failed", "halted", timeout=60)
    assert run["status"] == "completed", run
    log = home.cli("logs", five, check=True).stdout
    assert [line for line in log.splitlines() if line.startswith("line ")] == [
        f"line {i}" for i in range(1, 6)
    ]


def test_a_restart_after_a_full_disk_waits_for_space_instead_of_failing_again(small_home):
    """Attempt 1 fills the disk and fails; attempt 2 waits (its restart not spent on a disk
    that is still full), and runs once space is freed."""
    home = small_home
    home.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    ballast = home.path / "ballast"  # what the user frees later
    ballast.write_bytes(b"\0" * (2 << 20))
    model = home.model("m", {"t.py": ""})
    command = f'[ "$TRAINING_ATTEMPT" = 1 ] && {FLOOD} || echo "second attempt"'
    path = manifest(home, command, "flood")
    path.write_text(
        path.read_text().replace("resource: small", "resource: small\n    max_restarts: 1")
    )
    model_id = home.submit(model, path)
    deadline = time.monotonic() + 120
    while "waiting for disk space" not in (run := home.show(model_id))["status_message"]:
        assert run["status"] not in ("completed", "failed", "halted"), run
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    assert run["attempt"] == 2 and run["attempts"][0]["error_code"] == "S300", run
    time.sleep(1.5)  # still waiting, its restart not spent
    assert home.show(model_id)["status"] != "failed"
    ballast.unlink()
    # deleting what the first attempt's log took is the user's to do; here the ballast is it
    run = home.wait(model_id, "completed", "failed", timeout=120)
    assert run["status"] == "completed", run
    assert "second attempt" in home.cli("logs", model_id, check=True).stdout


def test_a_full_disk_refuses_submissions_with_507_and_deletes_still_work(small_home):
    home = small_home
    model = home.model("m", {"t.py": ""})
    done = home.submit(model, manifest(home, FIVE_LINES, "five"))
    assert home.wait(done, "completed", "failed", timeout=60)["status"] == "completed"
    running = home.submit(model, manifest(home, "echo started; sleep 60", "sleeper"))
    pending = home.submit(model, manifest(home, FIVE_LINES, "five"))  # one CPU slot: it waits
    home.wait(running, "running")
    filler = fill(home.path)

    answer = post_run(home, model, manifest(home, FIVE_LINES, "five"))
    assert answer.status_code == 507, answer.text
    body = answer.json()
    assert body["message"].startswith("disk full: "), body
    assert "delete runs" in body["message"]
    result = home.cli("train", str(model), str(manifest(home, FIVE_LINES, "five")))
    assert result.returncode == 1 and "disk full" in result.stderr, result.stderr

    # deletes on the full disk are no 500: an ended run, a waiting one (whose files are in
    # the run store: nothing to free first), a running one (halted first)
    for model_id in (done, pending, running):
        deleted = home.cli("delete", model_id)
        assert deleted.returncode == 0, deleted.stderr
        assert model_id not in home.cli("list", check=True).stdout
    deadline = time.monotonic() + 30
    while (home.path / "runs" / running).exists():  # forgotten once its learner ended
        assert time.monotonic() < deadline, "the deleted running run is still there"
        time.sleep(0.1)
    assert not (home.path / "runs" / done).exists()

    # once there is space, the run store gets what the full disk held back, and a new
    # service (reading the history from it) knows none of the three
    filler.unlink()
    deadline = time.monotonic() + 30
    while stored_runs(home) & {done, pending, running}:
        assert time.monotonic() < deadline, f"still in runs.db: {stored_runs(home)}"
        time.sleep(0.2)
    home.stop()
    listed = home.cli("list", check=True).stdout
    assert not any(model_id in listed for model_id in (done, pending, running)), listed

    five = home.submit(model, manifest(home, FIVE_LINES, "five"))
    assert home.wait(five, "completed", "failed", timeout=60)["status"] == "completed"


def stored_runs(home) -> set[str]:
    """The runs in the home's run store, read as a second process would."""
    import sqlite3

    db = sqlite3.connect(f"file:{home.path / 'runs.db'}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT model_id FROM runs")}
    finally:
        db.close()


def test_the_log_cap_keeps_a_loud_run_within_the_disk_and_it_completes(small_home):
    home = small_home
    home.env["TRAINUI_LOG_MAX_BYTES"] = "1M"
    model = home.model("m", {"t.py": ""})
    command = FLOOD + " && echo the-end > $RESULT_DIR/end.txt"
    loud = home.submit(model, manifest(home, command, "loud"))
    run = home.wait(loud, "completed", "failed", "halted", timeout=120)

    assert run["status"] == "completed", run
    assert run["exit_code"] == 0
    log = (home.path / "runs" / loud / "training-log.txt").read_text()
    lines = log.splitlines()
    notice = (
        "trainui: the log is cut here, at 1,048,576 bytes of the command's output"
        " (TRAINUI_LOG_MAX_BYTES); the command goes on, its further output is dropped"
    )
    assert notice in lines
    kept = lines[: lines.index(notice)]
    assert kept[-1] == "x" * 99  # cut at the end of a line
    assert sum(len(line) + 1 for line in kept if line == "x" * 99) <= 1 << 20
    assert not any(line == "x" * 99 for line in lines[lines.index(notice) :])
    assert "trainui: the log's cap (TRAINUI_LOG_MAX_BYTES) dropped" in log
    assert lines[-1] == "trainui: completed"
    # the command was never held up: it wrote all of its output, then its result
    assert (home.buckets / "results" / loud / "end.txt").read_text() == "the-end\n"

    # with the disk not filled, the next run completes too
    five = home.submit(model, manifest(home, FIVE_LINES, "five"))
    assert home.wait(five, "completed", "failed", timeout=60)["status"] == "completed"


def test_a_full_bucket_is_named_as_the_place_written_not_the_file_read(small_disk, tmp_path):
    """A results bucket on a full file system: the sentence names the bucket's folder being
    written; it named the run's file being read, which reads as "the home is full"."""
    from trainui.storage import StoreError, open_store

    (small_disk / "results").mkdir()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(HOME_SIZE + (1 << 20)))
    store = open_store("local", "results", {"path": str(small_disk)}, str(tmp_path))
    with pytest.raises(StoreError) as raised:
        store.upload(str(big), "training-x/big.bin")
    said = str(raised.value)
    assert "No space left on device" in said, said
    assert f"(writing {small_disk / 'results' / 'training-x'})" in said and str(big) not in said


def test_a_status_write_that_fails_on_a_full_disk_leaves_the_old_file(small_disk):
    status = small_disk / "status.json"
    write_json_atomic(str(status), {"status": "running"})
    fill(small_disk)
    with pytest.raises(OSError) as raised:
        write_json_atomic(str(status), {"status": "completed", "padding": "x" * (256 << 10)})
    assert raised.value.errno == errno.ENOSPC
    assert json.loads(status.read_text()) == {"status": "running"}
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "status.json"]


def test_the_run_store_says_disk_full_when_its_database_cannot_grow(small_disk):
    store = RunStore(str(small_disk))
    try:
        fill(small_disk)
        run = Run(model_id="training-AAAAAAAAA", seq=1, status="pending")
        with pytest.raises(Exception) as raised:
            store.save_new(run, {"model.zip": os.urandom(1 << 20)})
        assert disk_full(raised.value), repr(raised.value)
    finally:
        store.close()


def test_a_run_whose_command_fills_the_disk_still_records_its_outcome(tmp_path, learner_run):
    # The command frees what the learner would free at its end (learner.json, read already,
    # and the work folder's files), takes every byte left, then writes more than its log can
    # take: only the space the learner kept is left for the final status.json.
    home = tmp_path / "home"
    _mount_small(home, 1 << 20)
    try:
        buckets = tmp_path / "buckets"
        (buckets / "data").mkdir(parents=True)
        store = {"type": "local", "connection": {"path": str(buckets)}}
        filler = home / "filler"
        command = (
            'rm -rf ../../learner.json "$MODEL_DIR"/* "$DATA_DIR"/*; '
            f"head -c 2M /dev/zero > {filler}; "
            "python3 -c \"print(('y' * 99 + '\\n') * 1000)\"; echo done"
        )
        run = learner_run(
            {**store, "bucket": "data"}, {**store, "bucket": "results"}, command, home
        )
        status = run.run(timeout=60)

        assert free_bytes(home) < 128 << 10  # the filler is still there
        assert status["status"] == "failed", status
        assert status["error_code"] == "S300", status
        log_path = run.dir / "training-log.txt"
        assert status["status_message"].startswith(
            f"no space left on device writing {log_path}; the training command was stopped"
        ), status
        assert not (run.dir / "status.reserve").exists()
        assert not list(run.dir.glob("*.tmp"))
    finally:
        _unmount(home)
