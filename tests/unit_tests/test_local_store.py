"""The ``local`` object store and the store interface, on real folders under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from trainui.storage import ObjectInfo, StoreError, iter_files, open_store, safe_key_path
from trainui.storage.local import LocalStore


@pytest.fixture
def buckets(tmp_path):
    root = tmp_path / "buckets"
    data = root / "data"
    (data / "images" / "cats").mkdir(parents=True)
    (data / "train.csv").write_text("a,b\n1,2\n")
    (data / "images" / "cats" / "1.png").write_bytes(b"\x89PNG" + bytes(100))
    (data / "empty.txt").write_bytes(b"")
    return root


def test_open_store_finds_a_local_bucket_under_the_connection_path(buckets):
    store = open_store("local", "data", {"path": str(buckets)}, home="/nowhere")
    assert isinstance(store, LocalStore)
    assert store.description == f"local bucket 'data' ({buckets})"


def test_a_local_bucket_defaults_to_the_buckets_folder_of_home(tmp_path):
    store = open_store("local", "data", {}, home=str(tmp_path))
    assert store.description == f"local bucket 'data' ({tmp_path / 'buckets'})"


def test_a_home_relative_path_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    store = open_store("local", "data", {"path": "~/my-buckets"}, home="/nowhere")
    assert store.description == f"local bucket 'data' ({tmp_path / 'my-buckets'})"


def test_an_unknown_store_type_is_named():
    with pytest.raises(StoreError, match="unknown store type 'ftp': expected one of s3, "):
        open_store("ftp", "data", {}, home="/nowhere")


@pytest.mark.parametrize("bucket", ["", ".", "..", "a/b"])
def test_a_bucket_name_must_name_a_folder(tmp_path, bucket):
    with pytest.raises(StoreError, match="is not a valid local bucket name"):
        LocalStore(bucket, str(tmp_path))


def test_list_objects_walks_nested_keys_sorted_with_sizes(buckets):
    store = LocalStore("data", str(buckets))
    assert list(store.list_objects()) == [
        ObjectInfo("empty.txt", 0, ""),
        ObjectInfo("images/cats/1.png", 104, ""),
        ObjectInfo("train.csv", 8, ""),
    ]


def test_list_objects_skips_symlinks_that_leave_the_bucket(buckets, tmp_path):
    (tmp_path / "secret.txt").write_text("not in the bucket")
    data = buckets / "data"
    (data / "secret-link.txt").symlink_to(tmp_path / "secret.txt")
    (data / "outside-folder").symlink_to(tmp_path, target_is_directory=True)
    (data / "dangling").symlink_to(tmp_path / "missing")
    (data / "alias.csv").symlink_to("train.csv")
    keys = [obj.key for obj in LocalStore("data", str(buckets)).list_objects()]
    assert keys == ["alias.csv", "empty.txt", "images/cats/1.png", "train.csv"]
    with pytest.raises(StoreError, match=r"'secret-link\.txt' does not exist"):
        LocalStore("data", str(buckets)).download("secret-link.txt", str(tmp_path / "x"))


def test_a_missing_bucket_is_one_clear_sentence(tmp_path):
    store = LocalStore("demo-data", str(tmp_path))
    message = f"local bucket 'demo-data' does not exist ({tmp_path / 'demo-data'})"
    for call in (lambda: list(store.list_objects()), store.check):
        with pytest.raises(StoreError) as info:
            call()
        assert str(info.value) == message


def test_download_copies_into_new_folders_and_returns_the_size(buckets, tmp_path):
    store = LocalStore("data", str(buckets))
    dest = tmp_path / "staged" / "images" / "cats" / "1.png"
    assert store.download("images/cats/1.png", str(dest)) == 104
    assert dest.read_bytes() == (buckets / "data" / "images" / "cats" / "1.png").read_bytes()
    assert not dest.is_symlink()
    assert store.download("empty.txt", str(tmp_path / "staged" / "empty.txt")) == 0
    assert (tmp_path / "staged" / "empty.txt").read_bytes() == b""


def test_download_of_a_missing_object_names_it(buckets, tmp_path):
    store = LocalStore("data", str(buckets))
    with pytest.raises(StoreError) as info:
        store.download("nope.csv", str(tmp_path / "nope.csv"))
    assert str(info.value) == f"object 'nope.csv' does not exist in {store.description}"


def test_download_into_an_unwritable_place_says_what_failed(buckets, tmp_path):
    (tmp_path / "a-file").write_text("")
    store = LocalStore("data", str(buckets))
    with pytest.raises(StoreError, match=r"copying 'train\.csv' from local bucket 'data'"):
        store.download("train.csv", str(tmp_path / "a-file" / "train.csv"))


def test_upload_creates_nested_folders_in_the_bucket(tmp_path):
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    (tmp_path / "buckets" / "results").mkdir(parents=True)
    store = LocalStore("results", str(tmp_path / "buckets"))
    store.upload(str(src), "training-AbCdEf123/model/weights.bin")
    stored = tmp_path / "buckets" / "results" / "training-AbCdEf123" / "model" / "weights.bin"
    assert stored.read_bytes() == src.read_bytes()
    # No temporary files are left next to it.
    assert os.listdir(stored.parent) == ["weights.bin"]


def test_delete_removes_the_file_and_the_folders_it_leaves_empty_never_outside(tmp_path):
    src = tmp_path / "ckpt.txt"
    src.write_text("3")
    bucket = tmp_path / "buckets" / "results"
    bucket.mkdir(parents=True)
    store = LocalStore("results", str(tmp_path / "buckets"))
    store.upload(str(src), "training-A/checkpoints/deep/ckpt-1.txt")
    store.upload(str(src), "training-A/log.txt")
    store.delete("training-A/checkpoints/deep/ckpt-1.txt")
    store.delete("training-A/checkpoints/deep/ckpt-1.txt")  # gone already: no error
    assert sorted(os.listdir(bucket / "training-A")) == ["log.txt"]  # its empty folders too
    with pytest.raises(StoreError):
        store.delete("../outside.txt")
    assert bucket.is_dir()


def test_upload_into_a_bucket_that_was_removed_does_not_make_it_again(tmp_path):
    """As S3's NoSuchBucket: a run resumed after its results bucket went must not find one
    (empty, made by the last attempt's storing) and start again from its first step."""
    src = tmp_path / "log.txt"
    src.write_text("x")
    store = LocalStore("results", str(tmp_path / "buckets"))
    with pytest.raises(StoreError) as info:
        store.upload(str(src), "training-AbCdEf123/training-log.txt")
    assert str(info.value) == f"local bucket 'results' does not exist ({store.root})"
    assert not (tmp_path / "buckets").exists()
    store.check(write=True)  # a submission's check makes it (local buckets only)
    store.upload(str(src), "training-AbCdEf123/training-log.txt")
    assert [o.key for o in store.list_objects()] == ["training-AbCdEf123/training-log.txt"]


def test_upload_replaces_an_object_and_keeps_empty_files(tmp_path):
    (tmp_path / "results").mkdir()
    store = LocalStore("results", str(tmp_path))
    src = tmp_path / "log.txt"
    src.write_text("first")
    store.upload(str(src), "run/log.txt")
    src.write_text("")
    store.upload(str(src), "run/log.txt")
    assert (tmp_path / "results" / "run" / "log.txt").read_text() == ""
    assert [o.key for o in store.list_objects()] == ["run/log.txt"]


def test_a_failed_upload_leaves_nothing_behind(tmp_path):
    (tmp_path / "results").mkdir()
    store = LocalStore("results", str(tmp_path))
    with pytest.raises(StoreError, match="copying 'run/x' to local bucket 'results'"):
        store.upload(str(tmp_path / "missing-source"), "run/x")
    assert os.listdir(tmp_path / "results" / "run") == []


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("../escape.txt", "contains a '..' path component"),
        ("a/../../escape.txt", "contains a '..' path component"),
        ("/etc/passwd", "is an absolute path"),
        ("a\x00b", "contains a NUL character"),
        ("", "names no file"),
        ("./", "names no file"),
    ],
)
def test_keys_that_escape_are_refused(tmp_path, key, problem):
    with pytest.raises(StoreError) as info:
        safe_key_path(str(tmp_path), key)
    assert str(info.value) == (
        f"object key {key!r} {problem}: it would be written outside its folder"
    )
    store = LocalStore("results", str(tmp_path))
    src = tmp_path / "src"
    src.write_text("x")
    with pytest.raises(StoreError, match="it would be written outside its folder"):
        store.upload(str(src), key)
    assert not (tmp_path / "escape.txt").exists()


def test_safe_key_paths_keep_nesting_and_ignore_empty_parts(tmp_path):
    root = str(tmp_path)
    assert safe_key_path(root, "a/b/c.txt") == os.path.join(root, "a", "b", "c.txt")
    assert safe_key_path(root, "a//./b") == os.path.join(root, "a", "b")
    assert safe_key_path(root, "folder/") == os.path.join(root, "folder")
    assert safe_key_path(root, "..hidden") == os.path.join(root, "..hidden")


def test_check_reads_and_writes(buckets, tmp_path):
    LocalStore("data", str(buckets)).check()
    LocalStore("data", str(buckets)).check(write=True)
    results = LocalStore("new-results", str(tmp_path / "elsewhere"))
    results.check(write=True)  # created, as an upload would
    assert os.listdir(tmp_path / "elsewhere" / "new-results") == []


def test_check_write_fails_with_a_sentence(tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    store = LocalStore("results", str(tmp_path / "not-a-folder"))
    with pytest.raises(StoreError) as info:
        store.check(write=True)
    assert str(info.value).startswith(f"{store.description} cannot be written: ")


def test_iter_files_gives_keys_paths_and_sizes(buckets):
    root = buckets / "data"
    assert list(iter_files(str(root))) == [
        ("empty.txt", str(root / "empty.txt"), 0),
        ("images/cats/1.png", str(root / "images" / "cats" / "1.png"), 104),
        ("train.csv", str(root / "train.csv"), 8),
    ]


def test_storage_imports_no_ui_or_web_code():
    probe = (
        "import sys, json, trainui.storage, trainui.storage.local;"
        " print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules = set(json.loads(out.stdout))
    heavy = {"textual", "rich", "starlette", "httpx", "uvicorn", "yaml", "boto3", "swiftclient"}
    assert modules & heavy == set()
    assert not [m for m in modules if m.startswith(("trainui.service", "trainui.tui"))]
