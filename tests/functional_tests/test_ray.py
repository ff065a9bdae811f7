"""Runs on a Ray cluster: a private Ray head (4 pretend GPUs) started by this module, the real
CLI, the real service with the ray launcher, real learners as Ray jobs.

Skipped where Ray is not installed. The head-killed test kills the module's head: it runs last,
and a test after it would get a fresh head.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from ray_head import RayHead, ray_installed

from conftest import group_alive, new_home
from trainui.core.runs import STATUS_MARKER
from trainui.service.launchers import LauncherError
from trainui.service.launchers.ray_api import normalize_address, ray_error, ray_sentence

if not ray_installed():
    pytest.skip("ray is not installed (pip install 'ray[default]')", allow_module_level=True)

pytestmark = pytest.mark.ray

LOG = "training-log.txt"
RECORD = 'echo "cvd=$CUDA_VISIBLE_DEVICES gpus=$GPU_COUNT"; echo trained > $RESULT_DIR/model.txt'


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead(num_gpus=4, num_cpus=2).start()
    yield head
    head.stop()


@pytest.fixture
def cluster(ray_head):
    if not ray_head.alive():  # killed by an earlier test
        ray_head.restart()
    return ray_head


@pytest.fixture
def rhome(home, cluster):
    """A trainui home whose service (started by the first CLI call) uses the ray launcher."""
    home.env.update(
        TRAINUI_LAUNCHER="ray",
        TRAINUI_RAY_ADDRESS=cluster.address,
        TRAINUI_RAY_GRACE="3",
        TRAINUI_GPUS="none",  # this machine's GPUs do not matter: the cluster's do
    )
    return home


@pytest.fixture
def lhome(tmp_path):
    """A second home, with the local launcher: the same run done on this machine."""
    home = new_home(tmp_path / "local-home")
    yield home
    home.stop()


def s3_manifest(path: Path, s3, command: str, data: str, results: str) -> Path:
    connection = json.dumps(s3.connection())
    path.write_text(
        textwrap.dedent(
            f"""\
            model_definition:
              name: s3-run
              framework: {{name: python, version: "3.11"}}
              execution:
                command: {json.dumps(command)}
                resource: small
            training_data:
              connection: {connection}
              source: {{bucket: {data}, type: s3}}
            training_results:
              connection: {connection}
              target: {{bucket: {results}, type: s3}}
            """
        )
    )
    return path


def log_lines_of_ray(cluster: RayHead, model_id: str) -> str:
    """The job's log as Ray keeps it (the learner's stdout, status records included)."""
    return httpx.get(f"{cluster.address}/api/jobs/{model_id}/logs", timeout=30).json()["logs"]


def wait_for_job(cluster: RayHead, model_id: str, *states: str, timeout: float = 30) -> dict | None:
    """The run's Ray job once its status is one of ``states`` (None: gone)."""
    deadline = time.monotonic() + timeout
    while True:
        job = cluster.job(model_id)
        if (job["status"] if job else None) in states:
            return job
        assert time.monotonic() < deadline, f"the Ray job of {model_id} is {job}"
        time.sleep(0.2)


def test_a_run_completes_on_ray_with_its_results_stored(rhome, cluster):
    # the command also writes metrics: they come back through Ray's log like the log does
    points = "; ".join(
        f'echo \'{{"step": {s}, "loss": {1 / s}}}\' >> $LOG_DIR/metrics.jsonl' for s in (1, 2, 3)
    )
    model_id = rhome.submit(
        rhome.model("m", {"train.py": ""}), rhome.manifest(f"{RECORD}; {points}")
    )
    run = rhome.wait(model_id, "completed", "failed", "halted", timeout=90)
    assert run["status"] == "completed", run
    assert run["metrics"]["loss"]["steps"] == 3 and run["metrics"]["loss"]["last"] == 1 / 3, run
    shown = [
        json.loads(line) for line in rhome.cli("metrics", model_id, "--json").stdout.splitlines()
    ]
    assert [(p["metric"], p["step"], p["value"]) for p in shown] == [
        ("loss", 1, 1.0), ("loss", 2, 0.5), ("loss", 3, 1 / 3)
    ]  # fmt: skip
    assert len(run["gpu_ids"]) == 1  # the GPU Ray chose
    results = rhome.buckets / "results" / model_id
    assert (results / "model.txt").read_text() == "trained\n"
    assert (results / "_submitted_code" / "model.zip").exists()
    assert '"status": "completed"' in (results / "training-status.json").read_text()
    assert (results / "metrics.jsonl").read_text().count('"metric":"loss"') == 3
    log = (results / "training-log.txt").read_text()
    assert f"cvd={run['gpu_ids'][0]} gpus=1" in log
    job = wait_for_job(cluster, model_id, "SUCCEEDED")
    assert job["metadata"]["trainui_run"] == model_id
    assert "trainui.learner" in job["entrypoint"]
    # delete forgets the run and deletes its Ray job; what it stored stays
    rhome.cli("delete", "trained-models", model_id, check=True)
    assert wait_for_job(cluster, model_id, None) is None
    assert (results / "training-log.txt").exists()


def test_an_experiments_runs_are_ray_jobs_with_their_parameters(rhome, cluster):
    manifest = rhome.manifest('echo "lr=$lr $EXPERIMENT_ID" > $RESULT_DIR/p.txt', name="sweep")
    manifest.write_text(
        manifest.read_text()
        + "experiment:\n  method: grid\n  max_parallel: 1\n  parameters: {lr: [0.1, 0.01]}\n"
    )
    out = rhome.cli("train", str(rhome.model("e", {"t.py": ""})), str(manifest), check=True)
    lines = out.stdout.splitlines()
    experiment_id = next(x for x in lines if x.startswith("Experiment-ID")).split("'")[1]
    runs = [x.split("'")[1] for x in lines if x.startswith("Model-ID")]
    assert len(runs) == 2
    for model_id, lr in zip(runs, ("0.1", "0.01"), strict=True):
        run = rhome.wait(model_id, "completed", "failed", "halted", timeout=90)
        assert run["status"] == "completed", run
        stored = (rhome.buckets / "results" / model_id / "p.txt").read_text()
        assert stored == f"lr={lr} {experiment_id}\n"
        assert wait_for_job(cluster, model_id, "SUCCEEDED")["metadata"]["trainui_run"] == model_id
    shown = json.loads(rhome.cli("show", "experiment", experiment_id, "--json").stdout)
    assert shown["status"] == "completed" and shown["runs_by_status"]["completed"] == 2


def test_a_framework_runs_in_its_venv_on_the_ray_node(rhome, cluster, tmp_path):
    """The catalogue's entry goes with the run: the learner on the node runs the command in
    the venv (there, at the same path), as a local learner does."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "tf")], check=True
    )
    (site,) = (tmp_path / "tf").glob("lib/python*/site-packages")
    (site / "marker.py").write_text("WHO = 'the venv'\n")
    catalogue = tmp_path / "frameworks.toml"
    catalogue.write_text(
        f'[[framework]]\nname = "tensorflow"\nversions = ["2.16"]\nruntime = "venv"\n'
        f'path = "{tmp_path}/tf"\n'
    )
    rhome.env["TRAINUI_FRAMEWORKS"] = str(catalogue)
    manifest = rhome.manifest(
        'python -c "import marker; print(marker.WHO)" > $RESULT_DIR/who.txt', name="venv"
    )
    manifest.write_text(
        manifest.read_text().replace(
            'framework: {name: python, version: "3.11"}',
            'framework: {name: tensorflow, version: "2.16"}',
        )
    )
    model_id = rhome.submit(rhome.model("v", {"t.py": ""}), manifest)
    run = rhome.wait(model_id, "completed", "failed", "halted", timeout=90)
    assert run["status"] == "completed", run
    assert (rhome.buckets / "results" / model_id / "who.txt").read_text() == "the venv\n"
    assert f"in the venv {tmp_path}/tf" in log_lines_of_ray(cluster, model_id)


def test_a_failed_attempt_on_ray_starts_again_as_a_job_of_its_own(rhome, cluster):
    rhome.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    manifest = rhome.manifest(
        '[ "$TRAINING_ATTEMPT" -ge 2 ] || exit 9; echo "ok on $TRAINING_ATTEMPT"', name="flaky"
    )
    manifest.write_text(
        manifest.read_text().replace("resource: small", "resource: small\n    max_restarts: 2")
    )
    model_id = rhome.submit(rhome.model("f", {"t.py": ""}), manifest)
    run = rhome.wait(model_id, "completed", "failed", "halted", timeout=120)
    assert run["status"] == "completed", run
    assert [(a["attempt"], a["exit_code"]) for a in run["attempts"]] == [(1, 9), (2, 0)]
    log = rhome.cli("logs", model_id, check=True).stdout
    assert "attempt 1 of 3" in log and "attempt 2 of 3" in log and "ok on 2" in log
    # the learner's job ends well whatever its command did (the learner says how)
    assert wait_for_job(cluster, model_id, "SUCCEEDED")["metadata"]["trainui_run"] == model_id
    second = wait_for_job(cluster, f"{model_id}-attempt-2", "SUCCEEDED")
    assert second["metadata"]["trainui_run"] == model_id
    assert not (rhome.path / "runs" / model_id / "learner.json").exists()


def test_a_medium_run_gets_two_gpus_from_ray(rhome, cluster):
    model_id = rhome.submit(rhome.model("m", {"t.py": ""}), rhome.manifest(RECORD, "medium"))
    run = rhome.wait(model_id, "completed", "failed", "halted", timeout=90)
    assert run["status"] == "completed", run
    ids = run["gpu_ids"]
    assert len(ids) == 2 and len(set(ids)) == 2, run
    log = rhome.cli("logs", model_id, check=True).stdout
    assert f"cvd={ids[0]},{ids[1]} gpus=2" in log
    shown = rhome.cli("show", model_id, check=True).stdout
    assert re.search(rf"GPUs\s+{ids[0]},{ids[1]}\b", shown), shown


def test_a_second_large_run_waits_in_trainuis_queue_not_rays(rhome, cluster):
    model = rhome.model("m", {"t.py": ""})
    first = rhome.submit(model, rhome.manifest("sleep 60", "large", name="first"))
    rhome.wait(first, "running", timeout=60)
    second = rhome.submit(model, rhome.manifest("sleep 60", "large", name="second"))
    time.sleep(2)  # time enough for a wrong submission to reach Ray
    run = rhome.show(second)
    assert run["status"] == "pending", run
    assert run["status_message"].startswith("waiting for 4 GPUs: 0 free"), run
    assert cluster.job(second) is None  # not queued in Ray
    rhome.cli("halt", first, check=True)
    rhome.wait(first, "halted", timeout=30)
    rhome.wait(second, "running", timeout=60)
    assert cluster.job(second)["status"] == "RUNNING"
    rhome.cli("delete", second, check=True)  # halts it first, then deletes its Ray job
    assert wait_for_job(cluster, second, None, timeout=90) is None  # slow under load


def test_a_deleted_job_that_ray_writes_back_is_deleted_again(rhome, cluster):
    # Ray's job manager may write a deleted job back, FAILED: when the job's supervisor actor
    # exits after the DELETE, it finds no record of the job and makes one ("Job supervisor
    # actor died"). That race is made here at will, with Ray's own job store, as Ray does it.
    import asyncio

    from ray._raylet import GcsClient
    from ray.dashboard.modules.job.common import JobInfoStorageClient, JobStatus

    jobs = JobInfoStorageClient(GcsClient(address=f"127.0.0.1:{cluster.gcs_port}"))
    model_id = rhome.submit(rhome.model("m", {"t.py": ""}), rhome.manifest("true"))
    run = rhome.wait(model_id, "completed", "failed", "halted", timeout=90)
    assert run["status"] == "completed", run
    rhome.cli("delete", model_id, check=True)
    assert wait_for_job(cluster, model_id, None, timeout=60) is None
    died = "Job supervisor actor died: The actor died unexpectedly before finishing this task."
    asyncio.run(jobs.put_status(model_id, JobStatus.FAILED, message=died))
    back = cluster.job(model_id)
    assert back["status"] == "FAILED" and back["entrypoint"] == "Entrypoint not found.", back
    assert wait_for_job(cluster, model_id, None, timeout=60) is None  # deleted again


def test_halt_stops_the_ray_job_and_stores_what_the_run_has(rhome, cluster):
    command = "echo working; echo partial > $RESULT_DIR/partial.txt; sleep 60"
    model_id = rhome.submit(rhome.model("m", {"t.py": ""}), rhome.manifest(command))
    rhome.wait(model_id, "running", timeout=60)
    wait_for_job(cluster, model_id, "RUNNING")
    rhome.cli("halt", model_id, check=True)
    run = rhome.wait(model_id, "halted", "failed", "completed", timeout=30)
    assert run["status"] == "halted", run
    wait_for_job(cluster, model_id, "STOPPED")
    results = rhome.buckets / "results" / model_id
    log = (results / "training-log.txt").read_text()
    assert "halt requested (SIGTERM)" in log  # Ray's stop reached the learner, which stored
    assert (results / "partial.txt").read_text() == "partial\n"


def test_a_ray_job_stopped_outside_trainui_fails_the_run_and_restarts_it(rhome, cluster):
    # `ray job stop`, Ray's dashboard: not `trainui halt`, so the run's restarts apply (the
    # learner on its node cannot tell: the service does, by the reason it writes for its halts)
    rhome.env["TRAINUI_RESTART_BACKOFF"] = "0.2"
    command = '[ "$TRAINING_ATTEMPT" -ge 2 ] && echo second || { echo first; sleep 60; }'
    manifest = rhome.manifest(command)
    manifest.write_text(
        manifest.read_text().replace("resource: small\n", "resource: small\n    max_restarts: 1\n")
    )
    model_id = rhome.submit(rhome.model("m", {"t.py": ""}), manifest)
    rhome.wait(model_id, "running", timeout=60)
    wait_for_job(cluster, model_id, "RUNNING")
    request = urllib.request.Request(f"{cluster.address}/api/jobs/{model_id}/stop", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["stopped"] is True
    run = rhome.wait(model_id, "completed", "failed", "halted", timeout=90)
    assert run["status"] == "completed", run
    first = run["attempts"][0]
    assert (first["status"], first["error_code"]) == ("failed", "S300"), first
    assert "from outside trainui" in first["status_message"], first


def test_a_run_halted_before_ray_started_it_never_runs(rhome, cluster):
    # Ray cannot stop a PENDING job: trainui ends the run itself and disarms the learner
    marker = rhome.path.parent / "ran"
    rhome.env["TRAINUI_ISOLATION"] = "off"  # the marker is outside the run's folders
    model = rhome.model("m", {"t.py": ""})
    model_id = rhome.submit(model, rhome.manifest(f"touch {marker}; sleep 60"))
    rhome.cli("halt", model_id, check=True)  # at once: Ray has not started the job yet
    run = rhome.wait(model_id, "halted", "failed", "completed", timeout=30)
    assert run["status"] == "halted", run
    wait_for_job(cluster, model_id, "FAILED", "STOPPED", None)
    # before trainui handed it to Ray (the halt came first: the CLI runs in the test's
    # process now), or handed but not yet started by Ray: it never ran
    if run["status_message"].startswith("halted before it started"):
        assert not marker.exists()
    else:  # this machine was quick enough for the learner to start: Ray's stop halted it
        assert run["status_message"] == "halted by request", run


def test_a_restarted_service_follows_its_runs_on_ray(rhome, cluster):
    model = rhome.model("m", {"t.py": ""})
    first = rhome.submit(model, rhome.manifest("sleep 5; echo done", "medium", name="first"))
    before = rhome.wait(first, "running", timeout=60)
    rhome.kill_service()  # the learner, a Ray job, goes on
    # the next command starts a new service, which adopts the run's Ray job and counts its
    # GPUs: 2 of 4 are free, so a medium run starts and a large one waits in trainui's queue.
    # (`list` starts it. A submission sent here was reset now and then under CI's load: it
    # reached the killed service's socket, still open in a thread not yet ended while the main
    # one was a zombie, which kill_service took for gone; it now waits for every thread)
    rhome.cli("list", check=True)
    second = rhome.submit(model, rhome.manifest("true", "medium", name="second"))
    third = rhome.submit(model, rhome.manifest("true", "large", name="third"))
    assert rhome.show(third)["status"] == "pending" and cluster.job(third) is None
    rhome.cli("delete", third, check=True)
    assert rhome.wait(second, "completed", "failed", timeout=60)["status"] == "completed"
    run = rhome.wait(first, "completed", "failed", timeout=60)
    assert run["status"] == "completed" and run["gpu_ids"] == before["gpu_ids"], run


def test_a_learner_killed_on_the_cluster_fails_the_run_with_rays_reason(rhome, cluster):
    model_id = rhome.submit(rhome.model("m", {"t.py": ""}), rhome.manifest("sleep 60"))
    rhome.wait(model_id, "running", timeout=60)
    status = json.loads((rhome.path / "runs" / model_id / "status.json").read_text())
    os.kill(status["learner_pid"], signal.SIGKILL)
    run = rhome.wait(model_id, "failed", "halted", "completed", timeout=30)
    assert run["status"] == "failed" and run["error_code"] == "S300", run
    assert run["status_message"] == (
        f"the run's Ray job {model_id} failed before the learner recorded an outcome: "
        "Job entrypoint command failed with exit code -9"
    )
    assert not group_alive(status["command_pgid"])  # what held its GPU was stopped


def test_the_learner_works_in_a_home_of_its_own_on_its_node(rhome, cluster, s3_server):
    # The cluster shares no folder with the service: the run travels as a Ray package, the
    # learner stages into, caches in and works in the node's home, and what the service's run
    # folder holds is what the service wrote and what it mirrored from Ray's log.
    data = s3_server.bucket({"train.csv": "a,b\n1,2\n"})
    results = s3_server.bucket()
    command = 'echo "model_dir=$MODEL_DIR"; cp $DATA_DIR/train.csv $RESULT_DIR/copy.csv'
    manifest = s3_manifest(rhome.path.parent / "s3.yml", s3_server, command, data, results)
    model_id = rhome.submit(rhome.model("m", {"train.py": "print(1)\n"}), manifest)
    run = rhome.wait(model_id, "completed", "failed", "halted", timeout=90)
    assert run["status"] == "completed", run
    log = rhome.cli("logs", model_id, check=True).stdout
    model_dir = re.search(r"^model_dir=(.*)$", log, re.M).group(1)
    private = os.path.dirname(os.path.dirname(model_dir))  # <private run folder>/work/model
    assert os.path.dirname(private) == os.path.join(cluster.node_home, "runs"), log
    assert not os.path.exists(private)  # removed at the end
    assert os.listdir(os.path.join(cluster.node_home, "cache"))  # the node's dataset cache
    assert not (rhome.path / "cache").exists()
    run_dir = rhome.path / "runs" / model_id
    assert sorted(os.listdir(run_dir)) == [
        "manifest.yml", "model.zip", "ray-log.json", "results.json", "status.json",
        "training-log.txt",
    ]  # fmt: skip
    assert s3_server.objects(results)[f"{model_id}/copy.csv"] == b"a,b\n1,2\n"
    # the job: the learner in the working_dir of a Ray package; neither the service's home nor
    # a secret in what Ray shows of the job
    job = wait_for_job(cluster, model_id, "SUCCEEDED")
    working_dir = job["runtime_env"]["working_dir"]
    assert re.fullmatch(r"gcs://_ray_pkg_[0-9a-f]{40}\.zip", working_dir), job
    assert job["entrypoint"].endswith("-m trainui.learner --ray"), job
    shown = json.dumps(job)
    assert str(rhome.path) not in shown and s3_server.secret not in shown, shown
    assert s3_server.secret not in log + log_lines_of_ray(cluster, model_id)
    # on the node, the package's learner.json (the secrets) was deleted once read
    package = working_dir.removeprefix("gcs://").removesuffix(".zip")
    unpacked = Path(cluster.temp_dir, "session_latest", "runtime_resources", "working_dir_files")
    assert sorted(os.listdir(unpacked / package)) == ["manifest.yml", "model.zip"]


def test_results_are_stored_as_by_a_local_run(rhome, lhome, cluster, s3_server):
    data = s3_server.bucket({"in/train.csv": "x\n"})
    results = s3_server.bucket()
    command = (
        "cp $DATA_DIR/in/train.csv $RESULT_DIR/copy.csv; mkdir $RESULT_DIR/sub; "
        "echo trained > $RESULT_DIR/sub/model.txt; echo done"
    )
    model = rhome.model("m", {"train.py": "print(1)\n"})
    stored = {}
    for home in (lhome, rhome):
        manifest = s3_manifest(home.path.parent / "s3.yml", s3_server, command, data, results)
        model_id = home.submit(model, manifest)
        run = home.wait(model_id, "completed", "failed", "halted", timeout=90)
        assert run["status"] == "completed", run
        prefix = f"{model_id}/"
        objects = {
            key[len(prefix) :]: body
            for key, body in s3_server.objects(results).items()
            if key.startswith(prefix)
        }
        assert objects["training-log.txt"] == (home.path / "runs" / model_id / LOG).read_bytes()
        stored[home is rhome] = model_id, objects
    (local_id, local), (ray_id, ray) = stored[False], stored[True]
    assert sorted(local) == sorted(ray) == [
        "_submitted_code/model.zip", "copy.csv", "manifest.yml", "sub/model.txt",
        "training-log.txt", "training-status.json",
    ]  # fmt: skip
    for key in ("_submitted_code/model.zip", "copy.csv", "manifest.yml", "sub/model.txt"):
        assert local[key] == ray[key], key
    statuses = [json.loads(objects["training-status.json"]) for objects in (local, ray)]
    assert sorted(statuses[0]) == sorted(statuses[1])
    assert [status["status"] for status in statuses] == ["completed", "completed"]
    assert statuses[1]["gpu_ids"] and not statuses[0]["gpu_ids"]  # Ray's GPU; none here

    def lines(log: bytes, model_id: str) -> list[str]:  # the same lines, less what differs
        text = log.decode().replace(model_id, "ID")
        text = re.sub(
            r"\(/[^)]*\)|[\d.]+ (s|kB|bytes)\b|GPU \d+|the CPU: no GPU on this machine", "_", text
        )
        return text.splitlines()

    assert lines(local["training-log.txt"], local_id) == lines(ray["training-log.txt"], ray_id)


def test_a_long_log_is_mirrored_whole_each_line_once_across_a_service_restart(rhome, cluster):
    # 20,000 numbered lines, the service killed in the middle: the next one goes on from what
    # the first had mirrored, and the log outlives Ray's job
    command = (
        "seq -f 'line %g' 1 10000; sleep 4; seq -f 'line %g' 10001 20000; "
        "printf 'no newline at the end'"
    )
    model_id = rhome.submit(rhome.model("m", {"t.py": ""}), rhome.manifest(command))
    log_path = rhome.path / "runs" / model_id / LOG
    deadline = time.monotonic() + 90
    while not log_path.exists() or b"line 10000\n" not in log_path.read_bytes():
        assert time.monotonic() < deadline, log_path.exists() and log_path.read_text()[-500:]
        time.sleep(0.05)
    rhome.kill_service()
    time.sleep(1)  # Ray's log grows meanwhile
    run = rhome.wait(model_id, "completed", "failed", "halted", timeout=90)
    assert run["status"] == "completed", run
    log = rhome.cli("logs", model_id, check=True).stdout
    numbered = [line for line in log.splitlines() if line.startswith("line ")]
    assert numbered == [f"line {i}" for i in range(1, 20001)]
    assert "no newline at the end\ntrainui: command exited with code 0\n" in log
    assert STATUS_MARKER not in log
    stored = (rhome.buckets / "results" / model_id / LOG).read_text()
    assert log_path.read_text() == stored
    # Ray forgets the job: its log stays here
    assert httpx.delete(f"{cluster.address}/api/jobs/{model_id}").status_code == 200
    assert cluster.job(model_id) is None
    assert rhome.cli("logs", model_id, check=True).stdout == log


def test_status_records_stay_out_of_the_log_and_cannot_be_forged(rhome, cluster):
    fake = '{"status": "completed", "status_message": "forged", "exit_code": 0}'
    command = (
        f"echo '{STATUS_MARKER}0123456789abcdef0123456789abcdef {fake}'; "
        f"echo '{STATUS_MARKER}{fake}'; printf 'x {STATUS_MARKER}mid-line\\n'; "
        "echo working; exit 3"
    )
    model_id = rhome.submit(rhome.model("m", {"t.py": ""}), rhome.manifest(command))
    run = rhome.wait(model_id, "completed", "failed", "halted", timeout=90)
    assert run["status"] == "failed" and run["error_code"] == "C201", run
    assert run["status_message"] == (
        'the training command exited with code 3; the log ends: "working"'
    ), run
    nonce = json.loads((rhome.path / "runs" / model_id / "ray-log.json").read_text())["nonce"]
    real = f"{STATUS_MARKER}{nonce} "
    assert real in log_lines_of_ray(cluster, model_id)  # the records were in Ray's log
    log = rhome.cli("logs", model_id, check=True).stdout
    stored = (rhome.buckets / "results" / model_id / LOG).read_text()
    for text in (log, stored):
        assert real not in text
        # the command's lines, forged records included, are log lines like any other
        assert f"{STATUS_MARKER}0123456789abcdef0123456789abcdef {fake}\n" in text
        assert f"\n{STATUS_MARKER}{fake}\n" in text
        assert f"x {STATUS_MARKER}mid-line\nworking\n" in text
    assert (rhome.path / "runs" / model_id / LOG).read_text() == stored


def test_a_learner_that_cannot_start_on_its_node_fails_the_run_saying_why(rhome, cluster):
    # the workers' Python without trainui: Python without its site-packages (-S), and blind to
    # PYTHONPATH (-E), which the job gets (the launcher ships it, the head's workers inherit it)
    # and which finds trainui when the suite runs with PYTHONPATH=src instead of installed
    python = rhome.path.parent / "python-without-trainui"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -S -E "$@"\n')
    python.chmod(0o755)
    rhome.env["TRAINUI_RAY_PYTHON"] = str(python)
    model_id = rhome.submit(rhome.model("m", {"t.py": ""}), rhome.manifest("true"))
    run = rhome.wait(model_id, "failed", "completed", "halted", timeout=60)
    assert run["status"] == "failed" and run["error_code"] == "S300", run
    assert run["status_message"].startswith(
        f"the learner did not start on the Ray cluster at {cluster.address} "
        f"(is trainui installed in the workers' Python, {python}?): "
        "Job entrypoint command failed with exit code 1"
    ), run
    log = rhome.cli("logs", model_id, check=True).stdout
    assert "No module named 'trainui'" in log, log


def test_the_relay_and_the_mirror_pass_a_log_whole_however_it_is_cut(tmp_path):
    # The learner's relay (log file -> stdout, records between lines) and the service's mirror
    # (Ray's log -> training-log.txt and status.json), with a file as Ray's log between them.
    from trainui.learner.relay import _Relay
    from trainui.service.launchers.ray import _Job, _Mirror

    nonce = "ab" * 16
    learner_log, ray_log = tmp_path / "learner.txt", tmp_path / "ray.txt"
    ray_log.write_bytes(
        b"2026-01-01 INFO job_manager.py:581 -- Runtime env is setting up.\n"
        b"Running entrypoint for job x: exec python3 -m trainui.learner --ray\n"
    )  # what Ray writes before the learner starts
    log_fd = os.open(learner_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    out_fd = os.open(ray_log, os.O_WRONLY | os.O_APPEND)
    relay = _Relay(str(learner_log), nonce, out_fd)  # records come encoded, on one line
    relay.record(b'{"status":"downloading"}', 0)
    forged = f'{STATUS_MARKER}{"cd" * 16} {{"status": "completed"}}\n'.encode()
    pieces = [b"line 1\n", b"par", b"tial", b" line\n", forged, f"{STATUS_MARKER}\n".encode(),
              b"@@trainui\n", b"@ at\n", b"\n", b"x" * 70000 + b"\n", b"last line\n"]  # fmt: skip
    for number, piece in enumerate(pieces):
        os.write(log_fd, piece)
        if number in (1, 4):  # a record made in the middle of a line, and after a whole one
            size = os.fstat(log_fd).st_size
            relay.record(b'{"status":"running","n":%d}' % number, size)
    relay.record(b'{"status":"completed","exit_code":0}', os.fstat(log_fd).st_size)
    relay.close()
    os.close(log_fd)
    os.close(out_fd)
    expected = learner_log.read_bytes()
    assert expected == b"".join(pieces)
    sent = ray_log.read_bytes()
    real = f"{STATUS_MARKER}{nonce} ".encode()
    lines = sent.splitlines(keepends=True)
    assert b"".join(line for line in lines[2:] if not line.startswith(real)) == expected
    assert [line[len(real) :] for line in lines if line.startswith(real)] == [
        b'{"status":"downloading"}\n',
        b'{"status":"running","n":1}\n',
        b'{"status":"running","n":4}\n',
        b'{"status":"completed","exit_code":0}\n',
    ]
    assert sent.index(b'"n":1') > sent.index(b"partial line\n")  # never inside a line
    for size in (1, 2, 3, 7, 64, 4096, len(sent)):
        run_dir = tmp_path / f"run-{size}"
        run_dir.mkdir()
        (run_dir / LOG).write_bytes(b"")
        job = _Job("x", str(run_dir), 1, "RUNNING")
        job.nonce = nonce
        mirror = _Mirror(None, job)
        mirror._load()
        for start in range(0, len(sent), size):
            assert not mirror.final
            mirror._take(sent[start : start + size])
        assert mirror.final, size
        assert (run_dir / LOG).read_bytes() == expected, size
        status = json.loads((run_dir / "status.json").read_text())
        assert status == {"status": "completed", "exit_code": 0}, size


def test_rays_refusals_become_one_sentence(cluster):
    job = {"entrypoint": "true", "submission_id": "trainui-test-twice"}
    httpx.post(f"{cluster.address}/api/jobs/", json=job).raise_for_status()
    again = httpx.post(f"{cluster.address}/api/jobs/", json=job)
    assert again.status_code >= 400 and "Traceback" in again.text
    assert ray_error(again) == (
        "Job with submission_id trainui-test-twice already exists. "
        "Please use a different submission_id"
    )
    assert ray_sentence("Job supervisor actor could not be scheduled.\nmore") == (
        "Job supervisor actor could not be scheduled"
    )


def test_ray_addresses_are_checked_before_the_service_starts(home):
    assert normalize_address("127.0.0.1:8265") == "http://127.0.0.1:8265"
    assert normalize_address("https://ray.example.com/") == "https://ray.example.com"
    for bad in ("", "ray://head:10001", "http://:8265", "http://head:port"):
        with pytest.raises(LauncherError):
            normalize_address(bad)
    result = home.cli("serve", "--no-tcp", "--launcher", "ray", "--ray-address", "ray://h:10001")
    assert result.returncode == 1
    assert "is a Ray Client address" in result.stderr and "Traceback" not in result.stderr


def test_the_head_killed_mid_run_fails_the_run_with_a_reason(rhome, cluster):
    # last in this module: it kills the module's head
    model = rhome.model("m", {"t.py": ""})
    model_id = rhome.submit(model, rhome.manifest("sleep 120"))
    rhome.wait(model_id, "running", timeout=60)
    cluster.kill()
    run = rhome.wait(model_id, "failed", "halted", "completed", timeout=30)
    assert run["status"] == "failed" and run["error_code"] == "S300", run
    assert f"lost contact with the Ray cluster at {cluster.address}" in run["status_message"]
    # while the cluster does not answer, a submission is refused, naming the cluster
    refused = rhome.cli("train", str(model), str(rhome.manifest("true")))
    assert refused.returncode == 1, refused.stdout
    assert f"the Ray cluster at {cluster.address} does not answer" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_metrics_pass_the_relay_and_the_mirror_once_each_across_a_service_restart(
    tmp_path, monkeypatch
):
    # The relay forwards the lines appended to the learner's metrics.jsonl as metrics records
    # (before a status record: the final one after the last points); the service's mirror
    # appends them to its own metrics.jsonl. A service that dies after appending more than its
    # ray-log.json says cuts its files back and takes the rest again: the service's index
    # (which read past the cut) ends with every point once.
    from trainui.core.runs import METRICS_MARKER
    from trainui.learner.relay import _Relay
    from trainui.service.launchers import ray as ray_launcher
    from trainui.service.launchers.ray import _Job, _Mirror
    from trainui.service.metrics import MetricsIndex

    nonce = "ef" * 16
    node = tmp_path / "node"
    node.mkdir()
    learner_log, learner_points, ray_log = node / LOG, node / "metrics.jsonl", tmp_path / "ray"
    ray_log.write_bytes(b"Running entrypoint for job x\n")
    log_fd = os.open(learner_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    out_fd = os.open(ray_log, os.O_WRONLY | os.O_APPEND)
    relay = _Relay(str(learner_log), nonce, out_fd)
    relay.record(b'{"status":"running"}', 0)

    def point(step: int, metric: str = "loss") -> bytes:
        return json.dumps({"metric": metric, "step": step, "value": 1 / (step + 1),
                           "time": 1.7e9 + step}).encode() + b"\n"  # fmt: skip

    forged = f"{METRICS_MARKER}{'00' * 16} {point(999).decode()}".encode()
    with learner_points.open("ab") as points:
        for step in range(300):
            os.write(log_fd, b"epoch %d\n" % step if step % 7 else b"no newline yet ")
            if step == 150:
                os.write(log_fd, forged)  # the command's line: log text, never a point
            if step == 201:
                points.write(b'ep": 1000, "value": 0.5, "time": 1.7e9}\n')
            points.write(point(step) + point(step, "eval/acc"))
            if step == 200:
                points.write(b'{"metric": "loss", "st')  # torn: relayed once whole
            points.flush()
            if step % 50 == 0:
                time.sleep(0.06)  # the relay runs meanwhile
    os.write(log_fd, b"done\n")
    relay.record(b'{"status":"completed","exit_code":0}', os.fstat(log_fd).st_size)
    relay.close()
    os.close(log_fd)
    os.close(out_fd)
    sent = ray_log.read_bytes()
    assert sent.count(f"{METRICS_MARKER}{nonce} ".encode()) == 601
    # every point relayed before the final record
    assert sent.rindex(METRICS_MARKER.encode()) < sent.index(b'"status":"completed"')

    run_dir = tmp_path / "service-run"
    run_dir.mkdir()
    (run_dir / LOG).write_bytes(b"")
    job = _Job("x", str(run_dir), 1, "RUNNING")
    job.nonce = nonce
    monkeypatch.setattr(ray_launcher, "LOG_SAVE_INTERVAL", 3600.0)  # saved only when forced
    first = _Mirror(None, job)
    first._load()
    third = len(sent) // 3
    for start in range(0, third, 997):
        first._take(sent[start : min(start + 997, third)])
    first._save(force=True)
    for start in range(third, 2 * third, 997):  # appended, never saved: the service dies
        first._take(sent[start : min(start + 997, 2 * third)])
    index = MetricsIndex(str(run_dir / "metrics.jsonl"))
    index.read()
    read_before = index.points
    assert read_before > 0
    second = _Mirror(None, job)  # the next service: from ray-log.json
    second._load()
    assert second.raw < 2 * third
    index.read()  # the file is shorter now: nothing read again
    assert index.points == read_before
    rest = sent[second.raw :]
    for start in range(0, len(rest), 4096):
        assert not second.final
        second._take(rest[start : start + 4096])
        index.read()
    assert second.final
    assert (run_dir / "metrics.jsonl").read_bytes() == learner_points.read_bytes()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    log = (run_dir / LOG).read_bytes()
    assert log == learner_log.read_bytes()
    assert forged in log and METRICS_MARKER.encode() + nonce.encode() not in log
    every = index.points_of("loss", offset=0)["steps"]
    assert every == [*range(201), 1000, *range(201, 300)]  # each point once, as written
    assert index.points_of("eval/acc", offset=0)["steps"] == list(range(300))
    assert index.points == 601
