"""`trainui download ID --results`: a run's <id>/ folder of its results bucket, fetched through
the service (local socket or remote with a token), from local, S3 and Swift buckets."""

from __future__ import annotations

import os
import pty
import random
import shutil
import stat
import subprocess
import sys
import textwrap
import threading

import httpx
import pytest
from test_remote import Remote

# what the training command writes into RESULT_DIR: a subfolder, odd names, an empty file and
# a file of several of the service's 1 MiB chunks (made by the command: the model stays small)
SMALL_FILES = {
    "model.txt": b"trained",
    "sub dir/w\u00e9ights \u00fc \u2603.txt": "snow \u2603".encode(),
    "signs/plus+equals=amp&question?hash#pct%20.txt": b"signs",
    "empty.txt": b"",
}
RESULT_FILES = {**SMALL_FILES, "model/weights.bin": random.Random(7).randbytes(2_500_000)}
LAYOUT = [
    "_submitted_code/model.zip",
    "manifest.yml",
    "training-log.txt",
    "training-status.json",
]

TRAIN = f"""\
import os, random
files = {SMALL_FILES!r}
files["model/weights.bin"] = random.Random(7).randbytes(2_500_000)
for key, body in files.items():
    path = os.path.join(os.environ["RESULT_DIR"], key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(body)
print("stored", len(files), "files")
"""


def tree(root) -> dict[str, bytes]:
    """Every file under ``root``, by '/'-separated path."""
    found = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root).replace(os.sep, "/")] = f.read()
    return found


def manifest(home, results: str, connection: str = "{}", kind: str = "local"):
    """A manifest that trains with TRAIN: data from a local bucket, results to ``results``."""
    home.bucket("data", {"x.txt": "x"})
    path = home.path.parent / f"manifest-{kind}-{results}.yml"
    path.write_text(
        textwrap.dedent(
            f"""\
            model_definition:
              name: download-test
              framework: {{name: python, version: "3.11"}}
              execution:
                command: python3 train.py
                resource: small
            training_data:
              connection: {{}}
              source: {{bucket: data, type: local}}
            training_results:
              connection: {connection}
              target: {{bucket: {results}, type: {kind}}}
            """
        )
    )
    return path


def completed(home, manifest_path, **env) -> str:
    model = home.model("download", {"train.py": TRAIN})
    model_id = home.submit(model, manifest_path, **env)
    run = home.wait(model_id, "completed", "failed", "halted", timeout=90)
    assert run["status"] == "completed", run
    return model_id


def expected(model_id: str, stored: dict[str, bytes]) -> dict[str, bytes]:
    """The objects under ``<id>/`` of a bucket's objects, keys less the prefix."""
    prefix = f"{model_id}/"
    return {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}


def check_layout(files: dict[str, bytes]) -> None:
    assert sorted(files) == sorted([*LAYOUT, *RESULT_FILES])
    for key, body in RESULT_FILES.items():
        assert files[key] == body, key


def no_partial_files(root) -> None:
    leftovers = [p for p in tree(root) if p.endswith(".part")] if os.path.exists(root) else []
    assert leftovers == []


# ---------------------------------------------------------------------------- local bucket


def test_the_results_of_a_local_run_download_byte_for_byte(home, tmp_path):
    model_id = completed(home, manifest(home, "results"))
    stored = tree(home.buckets / "results" / model_id)
    check_layout(stored)
    dest = tmp_path / "out"

    result = home.cli("download", model_id, "--results", "-o", str(dest))
    assert result.returncode == 0, result.stderr
    assert tree(dest) == stored
    total = sum(len(body) for body in stored.values())
    assert total > 2_500_000
    line = f"Downloaded 9 files ({total / (1 << 20):.1f} MiB) of {model_id} to {dest}\n"
    assert result.stdout == line
    assert result.stderr == ""  # no progress bar when stderr is not a terminal

    # again, into the same folder: files of the same name are replaced, others are left
    (dest / "model" / "weights.bin").write_bytes(b"changed here")
    (dest / "mine.txt").write_text("mine")
    home.cli("download", model_id, "--results", "-o", str(dest), check=True)
    assert tree(dest) == {**stored, "mine.txt": b"mine"}

    # without -o: ./ID
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    subprocess.run(
        [sys.executable, "-m", "trainui", "download", model_id, "--results"],
        cwd=cwd,
        env=home.env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert tree(cwd / model_id) == stored

    # the definition stays the default, and the two cannot be asked for at once
    home.cli("download", model_id, "-o", str(tmp_path / "def.zip"), check=True)
    assert (tmp_path / "def.zip").read_bytes() == stored["_submitted_code/model.zip"]
    both = home.cli("download", model_id, "--results", "--definition")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_the_results_store_is_kept_private_with_the_run_and_goes_with_it(home, tmp_path):
    model_id = completed(home, manifest(home, "results"))
    run_dir = home.path / "runs" / model_id
    assert stat.S_IMODE(os.stat(run_dir / "results.json").st_mode) == 0o600
    assert not (run_dir / "learner.json").exists()  # the learner removed its own copy

    # a run submitted before results.json existed: a sentence, not a traceback
    home.stop()  # a fresh service: nothing of this run's store is kept open
    (run_dir / "results.json").unlink()
    result = home.cli("download", model_id, "--results", "-o", str(tmp_path / "old"))
    assert result.returncode == 1
    assert result.stderr.startswith(f"trainui: run {model_id} was submitted to an older")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "old").exists()

    home.cli("delete", model_id, check=True)
    assert not run_dir.exists()
    result = home.cli("download", model_id, "--results", "-o", str(tmp_path / "gone"))
    assert result.returncode == 1
    assert result.stderr == f"trainui: run {model_id} not found\n"


def test_a_deleted_results_bucket_is_a_clear_error_and_leaves_nothing(home, tmp_path):
    model_id = completed(home, manifest(home, "results"))
    shutil.rmtree(home.buckets / "results")
    dest = tmp_path / "out"
    result = home.cli("download", model_id, "--results", "-o", str(dest))
    assert result.returncode == 1
    assert result.stderr == (
        "trainui: the results bucket cannot be listed: local bucket 'results' does not exist "
        f"({home.buckets / 'results'})\n"
    )
    assert not dest.exists()


def test_a_run_that_stored_nothing_yet_says_so(home, tmp_path):
    model = home.model("download", {"train.py": TRAIN})
    blocker = home.submit(model, home.manifest("sleep 1000", name="blocker"))
    home.wait(blocker, "running")
    waiting = home.submit(model, home.manifest("true", name="waiting"))
    assert home.show(waiting)["status"] == "pending"
    dest = tmp_path / "out"

    result = home.cli("download", waiting, "--results", "-o", str(dest))
    assert result.returncode == 1
    assert result.stderr == (
        f"trainui: run {waiting} is still pending: its results are stored when it ends\n"
    )
    result = home.cli("download", blocker, "--results", "-o", str(dest))
    assert result.returncode == 1
    assert f"run {blocker} is still running" in result.stderr

    home.cli("halt", waiting, check=True)  # halted before it started: nothing stored
    result = home.cli("download", waiting, "--results", "-o", str(dest))
    assert result.returncode == 1
    assert result.stderr == (
        f"trainui: nothing is stored under {waiting}/ in local bucket 'results' "
        f"({home.buckets}) (run {waiting} halted)\n"
    )
    assert not dest.exists()
    home.cli("halt", blocker, check=True)


def test_a_terminal_gets_a_progress_bar(home, tmp_path):
    model_id = completed(home, manifest(home, "results"))
    main, side = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "trainui", "download", model_id, "--results"],
        cwd=tmp_path,
        env={**home.env, "COLUMNS": "120", "TERM": "xterm"},
        stdout=subprocess.PIPE,
        stderr=side,
    )
    os.close(side)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the download's end of the terminal is closed
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=read)
    reader.start()
    out, _ = process.communicate(timeout=60)
    reader.join(10)
    os.close(main)
    assert process.returncode == 0
    assert out.decode().startswith("Downloaded 9 files (")
    text = shown.decode(errors="replace")
    assert "9/9 files" in text and model_id in text, text
    assert tree(tmp_path / model_id) == tree(home.buckets / "results" / model_id)


# ------------------------------------------------------------------------------- S3, Swift


def s3_connection(server, endpoint: str | None = None) -> str:
    return (
        f"{{endpoint_url: '{endpoint or server.endpoint}', aws_access_key_id: '{server.key_id}', "
        "aws_secret_access_key: '${S3_SECRET}'}"
    )


def test_the_results_of_an_s3_run_download_and_hostile_or_vanished_buckets_are_refused(
    home, s3_server, tmp_path
):
    bucket = s3_server.bucket()
    path = manifest(home, bucket, s3_connection(s3_server), "s3")
    model_id = completed(home, path, S3_SECRET=s3_server.secret)
    stored = expected(model_id, s3_server.objects(bucket))
    check_layout(stored)

    result = home.cli("download", model_id, "--results", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "out") == stored
    assert s3_server.secret not in result.stdout + result.stderr

    # a key that would escape the folder: nothing is written
    s3_server.client.put_object(Bucket=bucket, Key=f"{model_id}/../escape.txt", Body=b"x")
    result = home.cli("download", model_id, "--results", "-o", str(tmp_path / "escape"))
    assert result.returncode == 1
    assert "'../escape.txt' contains a '..' path component" in result.stderr
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape.txt").exists()

    # the bucket is gone
    for key in s3_server.objects(bucket):
        s3_server.client.delete_object(Bucket=bucket, Key=key)
    s3_server.client.delete_bucket(Bucket=bucket)
    result = home.cli("download", model_id, "--results", "-o", str(tmp_path / "vanished"))
    assert result.returncode == 1
    assert f"bucket '{bucket}' does not exist" in result.stderr
    assert "Traceback" not in result.stderr and s3_server.secret not in result.stderr
    assert not (tmp_path / "vanished").exists()


def test_a_fetch_that_fails_midway_cuts_the_download_short_and_leaves_no_part(
    home, s3_server, fault_proxy, tmp_path
):
    home.env["TRAINUI_STORE_ATTEMPTS"] = "2"  # the service gives up after two cut transfers
    proxy = fault_proxy(s3_server.port)
    bucket = s3_server.bucket()
    path = manifest(home, bucket, s3_connection(s3_server, proxy.endpoint), "s3")
    model_id = completed(home, path, S3_SECRET=s3_server.secret)

    proxy.cut(after=300_000, times=20)  # only weights.bin is that large
    dest = tmp_path / "out"
    result = home.cli("download", model_id, "--results", "-o", str(dest))
    assert result.returncode == 1
    assert "the download of model/weights.bin stopped after" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert not (dest / "model" / "weights.bin").exists()
    no_partial_files(dest)
    # what did arrive is whole
    stored = expected(model_id, s3_server.objects(bucket))
    for key, body in tree(dest).items() if dest.exists() else ():
        assert body == stored[key], key

    proxy.cut(after=300_000, times=0)
    home.cli("download", model_id, "--results", "-o", str(dest), check=True)
    assert tree(dest) == stored


def test_the_results_of_a_swift_run_download(home, swift_server, tmp_path):
    container = swift_server.container()
    connection = (
        f"{{auth_url: '{swift_server.auth_url}', user_name: 'test:tester', "
        "password: '${SWIFT_PASSWORD}'}"
    )
    path = manifest(home, container, connection, "bluemix_objectstore")
    model_id = completed(home, path, SWIFT_PASSWORD="testing")
    stored = expected(model_id, swift_server.objects(container))
    check_layout(stored)

    result = home.cli("download", model_id, "--results", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "out") == stored


# --------------------------------------------------------------------------------- remote


@pytest.fixture
def remote(home):
    r = Remote(home)
    yield r
    r.kill()


def test_a_remote_user_downloads_their_own_results_and_only_theirs(remote, tmp_path):
    home = remote.home
    model = home.model("download", {"train.py": TRAIN})
    result = remote.cli("alice", "train", str(model), str(manifest(home, "results")))
    assert result.returncode == 0, result.stderr
    model_id = result.stdout.strip().splitlines()[-1].split("'")[1]
    assert home.wait(model_id, "completed", "failed", timeout=90)["status"] == "completed"
    stored = tree(home.buckets / "results" / model_id)

    result = remote.cli("alice", "download", model_id, "--results", "-o", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "a") == stored

    result = remote.cli("bob", "download", model_id, "--results", "-o", str(tmp_path / "b"))
    assert result.returncode == 1
    assert result.stderr == f"trainui: run {model_id} not found\n"
    assert not (tmp_path / "b").exists()

    listing = f"{remote.url}/v3/models/{model_id}/results"
    one = listing + "/model/weights.bin"
    for user, status in (("bob", 404), ("root", 200), ("alice", 200)):
        headers = {"Authorization": f"Bearer {remote.tokens[user]}"}
        for url in (listing, one):
            assert httpx.get(url, headers=headers, timeout=30).status_code == status, (user, url)
    for url in (listing, one):
        assert httpx.get(url, timeout=30).status_code == 401
    headers = {"Authorization": f"Bearer {remote.tokens['alice']}"}
    body = httpx.get(listing, headers=headers, timeout=30).json()
    assert body["prefix"] == f"{model_id}/"
    assert body["count"] == len(stored) == len(body["objects"])
    assert body["bytes"] == sum(len(b) for b in stored.values())
    assert {o["key"]: o["size"] for o in body["objects"]} == {k: len(b) for k, b in stored.items()}
    response = httpx.get(one, headers=headers, timeout=30)
    assert response.headers["content-length"] == str(len(RESULT_FILES["model/weights.bin"]))
    assert response.content == RESULT_FILES["model/weights.bin"]


def test_results_the_box_kept_are_downloaded_over_the_buckets(home, tmp_path):
    """A run's RESULT_DIR (and CHECKPOINT_DIR) kept in its folder, the results bucket having
    refused them (as the learner keeps them: tests/functional_tests/test_checkpoints.py), are
    listed and served with what the bucket holds, over an older object of the same key."""
    model_id = completed(home, manifest(home, "results"))
    kept = home.path / "runs" / model_id / "results-not-stored"
    (kept / "model").mkdir(parents=True)
    (kept / "model.txt").write_bytes(b"trained again")
    (kept / "model" / "more.bin").write_bytes(b"\0" * 3000)
    (kept / "outside.txt").symlink_to(home.path / "service.log")  # never served
    (home.path / "runs" / model_id / "checkpoints-not-copied").mkdir()
    (home.path / "runs" / model_id / "checkpoints-not-copied" / "step.ckpt").write_bytes(b"7")
    service = httpx.Client(
        base_url="http://trainui",
        transport=httpx.HTTPTransport(uds=str(home.path / "trainui.sock")),
    )
    listing = service.get(f"/v3/models/{model_id}/results").json()
    kept_keys = {o["key"] for o in listing["objects"] if o["kept"]}
    assert kept_keys == {"model.txt", "model/more.bin", "checkpoints/step.ckpt"}
    assert listing["kept"] == 3 and listing["bucket_problem"] is None
    assert listing["count"] == len(LAYOUT) + len(RESULT_FILES) + 2
    dest = tmp_path / "out"
    result = home.cli("download", model_id, "--results", "-o", str(dest), check=True)
    assert result.stdout.rstrip().endswith("(3 of them from the box: not in the results bucket)")
    got = tree(dest)
    assert got["model.txt"] == b"trained again"  # the box's, newer than the bucket's
    assert got["model/more.bin"] == b"\0" * 3000 and got["checkpoints/step.ckpt"] == b"7"
    assert got["model/weights.bin"] == RESULT_FILES["model/weights.bin"]  # the bucket's
    assert "outside.txt" not in got
    assert service.get(f"/v3/models/{model_id}/results/outside.txt").status_code == 404
