"""The dataset cache on real folders: entries, hard links, locks, eviction and its setting.

Objects come from a ``local`` bucket, read through the cache as an S3 or Swift bucket's would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from trainui.storage import ObjectInfo, StoreError, open_store
from trainui.storage.cache import (
    DEFAULT_MAX_BYTES,
    ENTRY_MTIME_NS,
    Cache,
    CacheSettingError,
    max_bytes,
)
from trainui.storage.staging import plan

CACHE_ID = "s3 http://example.test bucket"


@pytest.fixture
def bucket(tmp_path):
    root = tmp_path / "buckets" / "data"
    root.mkdir(parents=True)
    for name, size in (("a.bin", 1000), ("b.bin", 2000), ("c.bin", 3000)):
        (root / name).write_bytes(os.urandom(size))
    return open_store("local", "data", {"path": str(tmp_path / "buckets")}, "/nowhere")


def filled(cache: Cache, store, key: str):
    info = next(o for o in store.list_objects() if o.key == key)
    info = ObjectInfo(info.key, info.size, f"etag-of-{key}")
    entry = cache.entry(CACHE_ID, info)
    assert entry.lock()
    try:
        entry.fill(store)
    finally:
        entry.unlock()
    return entry


def test_a_filled_entry_is_read_only_and_hard_linked_into_a_run(tmp_path, bucket):
    cache = Cache(str(tmp_path / "cache"))
    entry = filled(cache, bucket, "a.bin")
    st = os.stat(entry.path)
    assert st.st_size == 1000 and st.st_mtime_ns == ENTRY_MTIME_NS
    assert st.st_mode & 0o777 == 0o444
    (tmp_path / "data").mkdir()
    assert entry.link_to(str(tmp_path / "data" / "a.bin"))
    assert os.stat(entry.path).st_nlink == 2
    assert os.listdir(tmp_path / "cache" / "tmp") == []


def test_keys_differ_by_store_bucket_key_etag_and_size(tmp_path):
    cache = Cache(str(tmp_path / "cache"))
    base = cache.entry(CACHE_ID, ObjectInfo("k", 1, "e")).path
    assert cache.entry(CACHE_ID, ObjectInfo("k", 1, "e")).path == base
    for cache_id, info in (
        ("s3 http://other bucket", ObjectInfo("k", 1, "e")),
        (CACHE_ID, ObjectInfo("k2", 1, "e")),
        (CACHE_ID, ObjectInfo("k", 1, "f")),
        (CACHE_ID, ObjectInfo("k", 2, "e")),
    ):
        assert cache.entry(cache_id, info).path != base


def test_an_entry_a_run_wrote_into_is_never_served_again(tmp_path, bucket):
    cache = Cache(str(tmp_path / "cache"))
    entry = filled(cache, bucket, "a.bin")
    (tmp_path / "run1").mkdir()
    (tmp_path / "run2").mkdir()
    assert entry.link_to(str(tmp_path / "run1" / "a.bin"))
    os.chmod(tmp_path / "run1" / "a.bin", 0o644)  # as root, or a chmod by the run
    with open(tmp_path / "run1" / "a.bin", "r+b") as f:
        f.write(b"changed")
    assert not entry.link_to(str(tmp_path / "run2" / "a.bin"))
    assert not (tmp_path / "run2" / "a.bin").exists()
    assert not entry.valid() and not os.path.exists(entry.path)


def test_a_lock_is_held_by_one_at_a_time_and_leaves_no_file(tmp_path):
    cache = Cache(str(tmp_path / "cache"))
    first = cache.entry(CACHE_ID, ObjectInfo("k", 1, "e"))
    second = cache.entry(CACHE_ID, ObjectInfo("k", 1, "e"))
    assert first.lock()
    assert not second.lock(blocking=False)
    # and from another process too (flock, not a lock of this process only)
    code = (
        "import sys; from trainui.storage.cache import Cache; from trainui.storage import"
        " ObjectInfo\ne = Cache(sys.argv[1]).entry(sys.argv[2], ObjectInfo('k', 1, 'e'))\n"
        "print(e.lock(blocking=False))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "cache"), CACHE_ID],
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == "False"
    first.unlock()
    assert os.listdir(tmp_path / "cache" / "locks") == []
    assert second.lock(blocking=False)
    second.unlock()


def test_trim_evicts_the_least_recently_used_entries_not_in_use(tmp_path, bucket):
    cache = Cache(str(tmp_path / "cache"), limit=4500)
    a = filled(cache, bucket, "a.bin")  # 1000 bytes
    b = filled(cache, bucket, "b.bin")  # 2000
    c = filled(cache, bucket, "c.bin")  # 3000
    now = time.time_ns()
    for entry, age in ((a, 30), (b, 20), (c, 10)):  # a is the least recently used
        os.utime(entry.path, ns=(now - age * 10**9, ENTRY_MTIME_NS))
    (tmp_path / "run").mkdir()
    assert a.link_to(str(tmp_path / "run" / "a.bin"))  # in use: never evicted
    os.utime(a.path, ns=(now - 30 * 10**9, ENTRY_MTIME_NS))
    evicted, freed = cache.trim()
    assert (evicted, freed) == (1, 2000)  # b goes (a is in use): 4000 bytes are left
    assert [os.path.exists(e.path) for e in (a, b, c)] == [True, False, True]
    evicted, freed = cache.trim(limit=0)
    assert (evicted, freed) == (1, 3000)
    assert os.path.exists(a.path)
    os.unlink(tmp_path / "run" / "a.bin")  # the run ended
    assert cache.trim(limit=0) == (1, 1000)
    assert cache.usage() == (0, 0)


def test_trim_skips_an_entry_being_staged(tmp_path, bucket):
    cache = Cache(str(tmp_path / "cache"), limit=0)
    a = filled(cache, bucket, "a.bin")
    assert a.lock()
    try:
        assert cache.trim() == (0, 0)
    finally:
        a.unlock()
    assert cache.trim() == (1, 1000)


def test_trim_removes_downloads_of_learners_that_died(tmp_path):
    cache = Cache(str(tmp_path / "cache"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_out())
    stale = tmp_path / "cache" / "tmp" / f"{'0' * 64}.{dead.stdout.strip()}.1.part"
    mine = tmp_path / "cache" / "tmp" / f"{'1' * 64}.{os.getpid()}.1.part"
    stale.write_bytes(b"half")
    mine.write_bytes(b"under way")
    cache.trim()
    assert not stale.exists() and mine.exists()


def _out() -> dict:
    return {"capture_output": True, "text": True, "check": True}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_MAX_BYTES),
        ("", DEFAULT_MAX_BYTES),
        ("0", 0),
        ("1048576", 1 << 20),
        ("500M", 500 << 20),
        ("2G", 2 << 30),
        ("1.5GiB", 3 << 29),
        ("10gb", 10 << 30),
        ("1T", 1 << 40),
    ],
)
def test_the_size_limit_setting(value, expected):
    environ = {} if value is None else {"TRAINUI_CACHE_MAX_BYTES": value}
    assert max_bytes(environ) == expected


def test_a_size_limit_that_is_no_size_is_refused():
    expected = r"TRAINUI_CACHE_MAX_BYTES must be a size like 1G, 500M or 0, not 'lots'"
    with pytest.raises(CacheSettingError, match=expected):
        max_bytes({"TRAINUI_CACHE_MAX_BYTES": "lots"})


def test_planning_refuses_escaping_keys_and_collisions(tmp_path):
    root = str(tmp_path / "data")
    files, folders = plan(
        [ObjectInfo("a/b.txt", 1), ObjectInfo("dir/", 0), ObjectInfo("./c.txt", 1)], root
    )
    assert [p for _i, p in files] == [f"{root}/a/b.txt", f"{root}/c.txt"]
    assert folders == [f"{root}/dir"]
    for objects, message in (
        ([ObjectInfo("../x", 1)], "contains a '..' path component"),
        ([ObjectInfo("/etc/passwd", 1)], "is an absolute path"),
        ([ObjectInfo("a//b", 1), ObjectInfo("a/b", 1)], "would both be written to 'a/b'"),
        ([ObjectInfo("a", 1), ObjectInfo("a/b", 1)], "'a' would have to be both"),
        ([ObjectInfo("a/b", 1), ObjectInfo("a", 1)], "'a' would have to be both"),
        ([ObjectInfo("a/", 0), ObjectInfo("a", 1)], "'a' would have to be both"),
    ):
        with pytest.raises(StoreError, match=message):
            plan(objects, root)


def test_planning_names_every_refused_key_at_once(tmp_path):
    # one fix of the bucket, not one run per odd key
    objects = [
        ObjectInfo("../escape.txt", 1), ObjectInfo("/abs.txt", 1), ObjectInfo("ok.txt", 1),
        ObjectInfo("a", 1), ObjectInfo("a/b", 1),
    ]  # fmt: skip
    with pytest.raises(StoreError) as refused:
        plan(objects, str(tmp_path / "data"))
    said = str(refused.value)
    assert said.startswith("object key '../escape.txt' contains a '..' path component")
    assert "object key '/abs.txt' is an absolute path" in said
    assert "object keys 'a' and 'a/b' conflict" in said
    assert "ok.txt" not in said
    many = [ObjectInfo(f"../k{i}", 1) for i in range(8)]
    with pytest.raises(StoreError, match=r"'\.\./k4' contains .*; and 3 more$"):
        plan(many, str(tmp_path / "data"))
