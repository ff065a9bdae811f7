"""Tests for trainui.core.definition: checking, unpacking and zipping model definitions.

The hostile archives are built here with zipfile/tarfile/gzip (and a little byte patching),
so every refusal is exercised against a real file.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trainui.core import definition
from trainui.core.definition import (
    DefinitionError,
    DefinitionInfo,
    Limits,
    check_zip,
    check_zip_bytes,
    detect_archive_kind,
    skipped_warning,
    unpack,
    zip_directory,
)

MB = 1 << 20


# ---------------------------------------------------------------------------- helpers


def make_zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    """Write ``members`` (name or ZipInfo, data) to ``path`` with deflate compression."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def file_info(name: str, mode: int = 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def patch_headers(data: bytes, **fields: int) -> bytes:
    """Overwrite header fields of the FIRST member, in both its local and central header.

    Supported fields: flag_bits, compress_type, file_size.
    """
    # (offset in local header, offset in central header, struct format)
    layout = {
        "flag_bits": (6, 8, "<H"),
        "compress_type": (8, 10, "<H"),
        "file_size": (22, 24, "<I"),
    }
    buf = bytearray(data)
    local = buf.index(b"PK\x03\x04")
    central = buf.index(b"PK\x01\x02")
    for field, value in fields.items():
        loc_off, cen_off, fmt = layout[field]
        struct.pack_into(fmt, buf, local + loc_off, value)
        struct.pack_into(fmt, buf, central + cen_off, value)
    return bytes(buf)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` as {'a/b.py': content}."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def refused(fn: Callable[..., object], *args: object, **kwargs: object) -> str:
    with pytest.raises(DefinitionError) as exc_info:
        fn(*args, **kwargs)
    return str(exc_info.value)


# ------------------------------------------------------------------------- good zips


def test_good_zip_with_nested_folders_unpacks_with_content_and_exec_bit(tmp_path: Path) -> None:
    src = make_zip(
        tmp_path / "model.zip",
        [
            ("proj/", b""),
            (file_info("proj/train.py", 0o755), b"print('train')\n"),
            (file_info("proj/pkg/deep/er/util.py"), b"X = 1\n"),
            (file_info("README.md", 0o600), b"# hi\n"),
        ],
    )
    info = check_zip(src)
    assert info == DefinitionInfo(
        path=str(src),
        entries=3,
        total_bytes=len(b"print('train')\n") + len(b"X = 1\n") + len(b"# hi\n"),
        names=("proj/train.py", "proj/pkg/deep/er/util.py", "README.md"),
    )

    target = tmp_path / "out" / "run1"  # parents are created too
    assert unpack(src, target) == info
    assert tree(target) == {
        "README.md": b"# hi\n",
        "proj/pkg/deep/er/util.py": b"X = 1\n",
        "proj/train.py": b"print('train')\n",
    }
    assert stat.S_IMODE((target / "proj/train.py").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "proj/pkg/deep/er/util.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((target / "README.md").stat().st_mode) == 0o644  # normalised
    assert stat.S_IMODE((target / "proj/pkg").stat().st_mode) == 0o755


def test_unpack_into_existing_empty_folder_and_accepts_pathlike_and_str(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "m.zip", [("./a//b.py", b"1"), ("c.py", b"2")])
    target = tmp_path / "t"
    target.mkdir()
    info = unpack(str(src), str(target))
    assert info.names == ("a/b.py", "c.py")
    assert tree(target) == {"a/b.py": b"1", "c.py": b"2"}


def test_backslash_separated_names_are_normalised(tmp_path: Path) -> None:
    # Old Windows tools write 'dir\\file'; that is a folder, not a strange file name.
    src = make_zip(tmp_path / "win.zip", [("proj\\train.py", b"x")])
    assert check_zip(src).names == ("proj/train.py",)
    unpack(src, tmp_path / "t")
    assert (tmp_path / "t/proj/train.py").read_bytes() == b"x"


# ------------------------------------------------------------ missing / not a zip at all


def test_missing_file(tmp_path: Path) -> None:
    msg = refused(check_zip, tmp_path / "nope.zip")
    assert "nope.zip" in msg and "does not exist" in msg


def test_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    msg = refused(check_zip, tmp_path / "proj")
    assert msg.startswith("proj is a folder")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads all")
def test_unreadable_file(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "locked.zip", [("a.py", b"1")])
    path.chmod(0)
    try:
        assert "locked.zip cannot be read" in refused(check_zip, path)
    finally:
        path.chmod(0o644)


def _tar_bytes(mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        data = b"print('hi')\n"
        member = tarfile.TarInfo("train.py")
        member.size = len(data)
        tf.addfile(member, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("filename", "make", "kind"),
    [
        ("model.tar", lambda: _tar_bytes("w"), "tar"),
        ("model.tar.gz", lambda: _tar_bytes("w:gz"), "gzip"),
        ("model.gz", lambda: gzip.compress(b"print(1)\n" * 10), "gzip"),
        ("model.bz2", lambda: bz2.compress(b"print(1)\n" * 10), "bzip2"),
        ("model.tar.bz2", lambda: _tar_bytes("w:bz2"), "bzip2"),
        ("model.xz", lambda: lzma.compress(b"print(1)\n"), "xz"),
        ("model.zst", lambda: b"\x28\xb5\x2f\xfd" + b"\0" * 40, "zstd"),
        ("model.7z", lambda: b"7z\xbc\xaf\x27\x1c" + b"\0" * 40, "7z"),
        ("model.rar", lambda: b"Rar!\x1a\x07\x01\x00" + b"\0" * 40, "rar"),
        # The extension is not trusted: a tar.gz named .zip is still a gzip archive.
        ("model.zip", lambda: _tar_bytes("w:gz"), "gzip"),
    ],
)
def test_other_archive_kinds_are_refused_by_magic(
    tmp_path: Path, filename: str, make: Callable[[], bytes], kind: str
) -> None:
    path = tmp_path / filename
    path.write_bytes(make())
    msg = refused(check_zip, path)
    assert msg == f"{filename} is a {kind} archive: only .zip model definitions are accepted"
    # unpack refuses the same way and writes nothing
    assert refused(unpack, path, tmp_path / "t") == msg
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"BZh91AY&SY", "bzip2"),
        (b"\xfd7zXZ\x00\x00", "xz"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04", "7z"),
        (b"Rar!\x1a\x07\x00", "rar"),
        (b"Rar!\x1a\x07\x01\x00", "rar"),
        (b"\x28\xb5\x2f\xfd\x04", "zstd"),
        (b"\0" * 257 + b"ustar\x0000", "tar"),
        (b"\0" * 257 + b"ustar  \0", "tar"),
        (b"PK\x03\x04rest", None),
        (b"BZh is just text", None),
        (b"hello world", None),
        (b"", None),
    ],
)
def test_detect_archive_kind(head: bytes, kind: str | None) -> None:
    assert detect_archive_kind(head) == kind


def test_random_bytes_are_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "noise.zip"
    path.write_bytes(b"\x00\x01" + random.Random(0).randbytes(4096))
    assert refused(check_zip, path) == "noise.zip is not a zip file"


def test_text_file_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text("print('hello')\n")
    assert refused(check_zip, path) == "train.py is not a zip file"


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.zip"
    path.touch()
    assert "empty.zip is empty (0 bytes)" in refused(check_zip, path)


def test_truncated_zip_is_corrupt(tmp_path: Path) -> None:
    good = make_zip(tmp_path / "good.zip", [("a.py", b"x" * 1000)]).read_bytes()
    path = tmp_path / "cut.zip"
    path.write_bytes(good[: len(good) // 2])
    assert refused(check_zip, path).startswith("cut.zip is a corrupt zip file")


def test_a_definition_in_memory_gets_the_same_refusals_as_a_file(tmp_path: Path) -> None:
    """What the service checks of a small upload, held in memory."""
    good = make_zip(tmp_path / "good.zip", [("a.py", b"x" * 1000)]).read_bytes()
    assert check_zip_bytes(good).names == ("a.py",)
    assert "model.zip is empty (0 bytes)" in refused(check_zip_bytes, b"")
    assert refused(check_zip_bytes, b"print(1)\n") == "model.zip is not a zip file"
    assert refused(check_zip_bytes, good[: len(good) // 2]).startswith(
        "model.zip is a corrupt zip file"
    )
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        tf.addfile(tarfile.TarInfo("a.py"), io.BytesIO(b""))
    assert "is a tar archive" in refused(check_zip_bytes, tar.getvalue())
    evil = make_zip(tmp_path / "evil.zip", [("../evil.py", b"x")]).read_bytes()
    assert "'..'" in refused(check_zip_bytes, evil)
    limits = Limits(max_entries=1)
    two = make_zip(tmp_path / "two.zip", [("a.py", b""), ("b.py", b"")]).read_bytes()
    assert refused(check_zip_bytes, two, "model.zip", limits) == refused(
        check_zip, tmp_path / "two.zip", limits
    ).replace("two.zip", "model.zip")


def test_corrupt_member_data_is_refused_on_unpack_and_rolled_back(tmp_path: Path) -> None:
    data = os.urandom(4000)
    raw = make_zip(tmp_path / "x.zip", [("a.py", data), ("b.py", b"ok")]).read_bytes()
    # Flip bytes inside a.py's compressed data (the local header is 30 + len(name) bytes).
    buf = bytearray(raw)
    for i in range(40, 60):
        buf[i] ^= 0xFF
    path = tmp_path / "bad.zip"
    path.write_bytes(bytes(buf))
    check_zip(path)  # the central directory is fine
    msg = refused(unpack, path, tmp_path / "t")
    assert msg.startswith("bad.zip entry 'a.py'")
    assert not (tmp_path / "t").exists()


# -------------------------------------------------------------- zip-level refusals


def test_encrypted_entry(tmp_path: Path) -> None:
    raw = make_zip(tmp_path / "x.zip", [("secret.py", b"x" * 100)]).read_bytes()
    path = tmp_path / "enc.zip"
    path.write_bytes(patch_headers(raw, flag_bits=0x1))
    msg = refused(check_zip, path)
    assert "'secret.py'" in msg and "encrypted" in msg


def test_unsupported_compression_method(tmp_path: Path) -> None:
    raw = make_zip(tmp_path / "x.zip", [("odd.py", b"x" * 100)]).read_bytes()
    path = tmp_path / "odd.zip"
    path.write_bytes(patch_headers(raw, compress_type=99))
    msg = refused(check_zip, path)
    assert "'odd.py'" in msg and "unsupported compression method 99" in msg


def test_empty_zip(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "empty.zip", [])
    assert refused(check_zip, path) == "empty.zip contains no files"


def test_zip_with_only_directories_is_empty(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "dirs.zip", [("a/", b""), ("a/b/", b"")])
    assert refused(check_zip, path) == "dirs.zip contains no files (only folders)"
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.py", "'..'"),
        ("ok/../../evil.py", "'..'"),
        ("..", "'..'"),
        ("/etc/passwd", "absolute path"),
        ("C:/x", "drive letter"),
        ("c:evil.py", "drive letter"),
        ("\\evil.py", "backslash"),
        ("..\\evil.py", "'..'"),
    ],
)
def test_escaping_names_are_refused(tmp_path: Path, name: str, why: str) -> None:
    path = make_zip(tmp_path / "evil.zip", [("fine.py", b"1"), (file_info(name), b"pwned")])
    msg = refused(check_zip, path)
    assert msg.startswith(f"evil.zip entry {name!r}")
    assert why in msg
    # unpack checks first, so not even the harmless entry is written
    assert refused(unpack, path, tmp_path / "t") == msg
    assert not (tmp_path / "t").exists()
    assert not (tmp_path / "evil.py").exists()


def test_nul_in_name_is_refused(tmp_path: Path) -> None:
    raw = make_zip(tmp_path / "x.zip", [("okXevil.py", b"1")]).read_bytes()
    path = tmp_path / "nul.zip"
    path.write_bytes(raw.replace(b"okXevil.py", b"ok\x00evil.py"))
    msg = refused(check_zip, path)
    assert "'ok\\x00evil.py'" in msg and "NUL" in msg


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("data/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = make_zip(tmp_path / "link.zip", [("a.py", b"1"), (link, b"/etc/passwd")])
    msg = refused(check_zip, path)
    assert msg == "link.zip entry 'data/link' is a symlink: symlinks are not allowed"


def test_duplicate_names(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate
        path = make_zip(tmp_path / "dup.zip", [("a/b.py", b"1"), ("a/b.py", b"2")])
    assert refused(check_zip, path) == "dup.zip contains 'a/b.py' more than once"


def test_duplicate_names_after_normalisation(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "dup.zip", [("a/b.py", b"1"), ("./a//b.py", b"2")])
    assert refused(check_zip, path) == "dup.zip contains 'a/b.py' more than once"


def test_file_and_folder_with_the_same_name(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "clash.zip", [("a/b/c.py", b"1"), ("a/b", b"2")])
    assert refused(check_zip, path) == "clash.zip has both a file and a folder named 'a/b'"


def test_too_many_entries(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "many.zip", [(f"f{i}.py", b"") for i in range(5)])
    msg = refused(check_zip, path, Limits(max_entries=3))
    assert msg.startswith("many.zip has 5 entries; at most 3 are allowed")
    assert "TRAINUI_DEFINITION_MAX_ENTRIES" in msg
    assert check_zip(path, Limits(max_entries=5)).entries == 5


# --------------------------------------------------------------------------- zip bombs


def _zeros_member(zf: zipfile.ZipFile, name: str, size: int) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w") as out:  # streamed, so the test never holds it all either
        chunk = b"\0" * MB
        for _ in range(size // MB):
            out.write(chunk)


def test_declared_size_above_limit_is_refused_without_unpacking(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w") as zf:
        _zeros_member(zf, "zeros.bin", 50 * MB)
    assert path.stat().st_size < MB  # it really is a bomb
    msg = refused(check_zip, path, Limits(max_bytes=10 * MB))
    assert msg.startswith("bomb.zip unpacks to 50.0 MiB; at most 10.0 MiB is allowed")
    assert refused(unpack, path, tmp_path / "t", Limits(max_bytes=10 * MB)) == msg
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("target_exists", [False, True])
def test_lying_header_bomb_stops_and_leaves_nothing(tmp_path: Path, target_exists: bool) -> None:
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w") as zf:
        _zeros_member(zf, "zeros.bin", 20 * MB)  # first member: the one patch_headers edits
        zf.writestr("pkg/ok.py", b"print('ok')\n")
    path.write_bytes(patch_headers(path.read_bytes(), file_size=1000))
    limits = Limits(max_bytes=10 * MB)
    assert check_zip(path, limits).total_bytes == 1000 + len(b"print('ok')\n")  # it lies

    target = tmp_path / "t"
    if target_exists:
        target.mkdir()
    msg = refused(unpack, path, target, limits)
    assert msg.startswith("liar.zip entry 'zeros.bin' does not match its header")
    assert "corrupt or tampered with" in msg
    if target_exists:
        assert list(target.iterdir()) == []
    else:
        assert not target.exists()


class _EndlessZeros:
    """Stands in for a member stream whose decompressor ignores the declared size."""

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        self.calls = 0

    def __enter__(self) -> _EndlessZeros:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def read(self, n: int = -1) -> bytes:
        self.calls += 1
        assert 0 < n <= 4 * MB  # streamed in bounded chunks, never read(-1)
        return b"\0" * n


def _first_entry_ok_then_endless(monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = zipfile.ZipFile.open

    def fake_open(
        self: zipfile.ZipFile, name: str | zipfile.ZipInfo, *args: Any, **kwargs: Any
    ) -> Any:
        info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
        if info.filename == "big.bin":
            return _EndlessZeros()
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", fake_open)


def test_member_yielding_more_than_declared_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_zip(tmp_path / "m.zip", [("a/first.py", b"1"), ("big.bin", b"\0" * 1000)])
    _first_entry_ok_then_endless(monkeypatch)
    msg = refused(unpack, path, tmp_path / "t")
    assert msg == (
        "m.zip entry 'big.bin' unpacks to more than the 1000 bytes it declares;"
        " refusing a possible zip bomb"
    )
    assert not (tmp_path / "t").exists()


def test_actual_total_above_limit_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_zip(tmp_path / "m.zip", [("a/first.py", b"1"), ("big.bin", b"\0" * 1000)])
    _first_entry_ok_then_endless(monkeypatch)
    target = tmp_path / "t"
    target.mkdir()
    msg = refused(unpack, path, target, Limits(max_bytes=4096))
    assert msg.startswith("m.zip unpacks to more than 4.0 KiB (stopped in entry 'big.bin')")
    assert list(target.iterdir()) == []


# ----------------------------------------------------------- what is already in target


def test_symlinked_folder_in_target_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "t"
    target.mkdir()
    (target / "pkg").symlink_to(outside, target_is_directory=True)
    path = make_zip(tmp_path / "m.zip", [("a.py", b"1"), ("pkg/x.py", b"pwned")])
    msg = refused(unpack, path, target)
    assert msg == "cannot unpack m.zip: 'pkg' in the target folder is a symlink"
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in target.iterdir()) == ["pkg"]  # a.py rolled back


def test_symlinked_file_in_target_is_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "t"
    target.mkdir()
    (target / "run.py").symlink_to(victim)
    path = make_zip(tmp_path / "m.zip", [("run.py", b"pwned")])
    msg = refused(unpack, path, target)
    assert msg == "cannot unpack m.zip: 'run.py' already exists in the target folder"
    assert victim.read_text() == "precious"
    assert (target / "run.py").is_symlink()


def test_existing_files_are_not_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "t"
    (target / "a").mkdir(parents=True)
    (target / "a/keep.py").write_text("mine")
    path = make_zip(tmp_path / "m.zip", [("a/new.py", b"1"), ("a/keep.py", b"theirs")])
    msg = refused(unpack, path, target)
    assert "'a/keep.py' already exists" in msg
    assert tree(target) == {"a/keep.py": b"mine"}  # a/new.py was removed again


def test_target_that_is_a_file(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "m.zip", [("a.py", b"1")])
    (tmp_path / "t").write_text("x")
    assert "exists and is not a folder" in refused(unpack, path, tmp_path / "t")


# ------------------------------------------------------------------------ zip_directory


def _write(path: Path, data: str = "x", mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    if mode is not None:
        path.chmod(mode)


def test_zip_directory_skips_caches_vcs_and_ignored_then_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    _write(src / "train.py", "print('train')\n", 0o755)
    _write(src / "pkg/model.py", "M = 1\n")
    _write(src / "pkg/__pycache__/model.cpython-311.pyc")
    _write(src / "__pycache__/x.pyc")
    _write(src / "stray.pyc")
    _write(src / ".git/config")
    _write(src / ".git/objects/ab/cdef")
    _write(src / "data/big.bin")  # ignored as a folder
    _write(src / "pkg/data/also.bin")  # 'data/' matches at any depth
    _write(src / "notes/data")  # a FILE named data: 'data/' is folders only
    _write(src / "ckpt/epoch1.ckpt")
    _write(src / "pkg/last.ckpt")
    _write(src / "logs/run.log")
    _write(src / "sub/logs/keep.txt")  # '/logs' is anchored to the root
    _write(src / "secrets.env")
    (src / ".trainuiignore").write_text(
        "# comment line\n\n   \n*.ckpt\ndata/\n/logs\nsecrets.env\n!pkg/last.ckpt\n"
    )
    dest = tmp_path / "out" / "proj.zip"

    info = zip_directory(src, dest)
    expected = [
        ".trainuiignore",
        "notes/data",
        "pkg/model.py",
        "sub/logs/keep.txt",
        "train.py",
    ]
    assert sorted(info.names) == expected
    assert info.entries == len(expected)
    assert info.path == str(dest)
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist()) == expected
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    assert not [p for p in dest.parent.iterdir() if p.name != "proj.zip"]  # no temp left

    # What zip_directory makes, check_zip/unpack accept: a faithful round trip.
    assert check_zip(dest).names == info.names
    out = tmp_path / "unpacked"
    unpack(dest, out)
    assert tree(out) == {name: (src / name).read_bytes() for name in expected}
    assert stat.S_IMODE((out / "train.py").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "pkg/model.py").stat().st_mode) == 0o644


def test_zip_directory_is_reproducible_in_order(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    for name in ("b.py", "a.py", "z/y.py", "c/d.py"):
        _write(src / name)
    first = zip_directory(src, tmp_path / "1.zip")
    second = zip_directory(src, tmp_path / "2.zip")
    assert first.names == second.names == ("a.py", "b.py", "c/d.py", "z/y.py")


def test_zip_directory_symlinks(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    _write(src / "real.py", "inside")
    _write(tmp_path / "secret.txt", "outside")
    _write(tmp_path / "elsewhere/mod.py", "outside dir")
    (src / "alias.py").symlink_to(src / "real.py")
    (src / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (src / "dangling.py").symlink_to(src / "missing.py")
    (src / "linkdir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    dest = tmp_path / "p.zip"
    info = zip_directory(src, dest)
    assert info.names == ("alias.py", "real.py")
    with zipfile.ZipFile(dest) as zf:
        assert zf.read("alias.py") == b"inside"  # stored by content, not as a link
        assert not stat.S_ISLNK(zf.getinfo("alias.py").external_attr >> 16)


def test_zip_directory_says_what_it_skipped_and_follows_links_to_files_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "proj"
    _write(src / "real.py", "inside")
    _write(src / "sub/data.txt", "data")
    _write(tmp_path / "secret.txt", "outside")
    (src / "alias.py").symlink_to("real.py")  # inside: stored by content, not reported
    (src / "sub/up.txt").symlink_to("../real.py")
    (src / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (src / "dangling.py").symlink_to("missing.py")
    (src / "linkdir").symlink_to("sub", target_is_directory=True)
    (src / "ignored-link").symlink_to(tmp_path / "secret.txt")
    (src / ".trainuiignore").write_text("ignored-link\n")
    os.mkfifo(src / "sub/pipe")
    monkeypatch.chdir(src)  # a relative name: a socket's path must stay under 108 bytes
    listener = socket.socket(socket.AF_UNIX)
    listener.bind("sock")
    try:
        info = zip_directory(src, tmp_path / "p.zip")
    finally:
        listener.close()
    assert info.names == (".trainuiignore", "alias.py", "real.py", "sub/data.txt", "sub/up.txt")
    assert sorted(info.skipped) == [
        ("FIFO", "sub/pipe"),
        ("socket", "sock"),
        ("symlink", "dangling.py"),
        ("symlink", "leak.txt"),
        ("symlink", "linkdir"),
    ]
    assert skipped_warning(info, "proj") == (
        "warning: skipped 3 symlinks, 1 FIFO, 1 socket in proj (only regular files, and "
        "symlinks to files inside it, are zipped): linkdir, dangling.py, leak.txt, sock, "
        "sub/pipe"
    )


def test_the_skipped_warning_names_a_few_and_counts_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    _write(src / "train.py")
    for i in range(7):
        (src / f"link{i}").symlink_to(f"gone{i}")
    info = zip_directory(src, tmp_path / "p.zip")
    assert skipped_warning(info, "proj") == (
        "warning: skipped 7 symlinks in proj (only regular files, and symlinks to files inside "
        "it, are zipped): link0, link1, link2, link3, link4, ... (2 more)"
    )
    _write(tmp_path / "clean/train.py")
    assert skipped_warning(zip_directory(tmp_path / "clean", tmp_path / "c.zip"), "c") is None


def test_zip_directory_skips_its_own_output_inside_src(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    _write(src / "train.py")
    dest = src / "dist" / "proj.zip"
    assert zip_directory(src, dest).names == ("train.py",)
    # A second run finds the first zip in the tree and must still leave it out.
    assert zip_directory(src, dest).names == ("train.py",)


def test_zip_directory_with_nothing_left_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    _write(src / "__pycache__/a.pyc")
    _write(src / "b.pyc")
    dest = tmp_path / "p.zip"
    msg = refused(zip_directory, src, dest)
    assert msg == "proj contains no files to zip (after ignores)"
    assert list(tmp_path.iterdir()) == [src]  # no zip, no temp file


def test_zip_directory_of_a_missing_folder(tmp_path: Path) -> None:
    assert refused(zip_directory, tmp_path / "nope", tmp_path / "p.zip") == "nope is not a folder"


# ------------------------------------------------------------------------------ limits


def test_limits_defaults() -> None:
    assert Limits() == Limits(max_bytes=1 << 30, max_entries=20_000)
    assert Limits.from_env({}) == Limits()
    blank = {"TRAINUI_DEFINITION_MAX_BYTES": " ", "TRAINUI_DEFINITION_MAX_ENTRIES": ""}
    assert Limits.from_env(blank) == Limits()


def test_limits_from_env_good_values() -> None:
    env = {"TRAINUI_DEFINITION_MAX_BYTES": "1_000_000", "TRAINUI_DEFINITION_MAX_ENTRIES": " 50 "}
    assert Limits.from_env(env) == Limits(max_bytes=1_000_000, max_entries=50)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("abc", "a whole number"),
        ("1.5", "a whole number"),
        ("10MB", "a whole number"),
        ("-1", "at least 1"),
        ("0", "at least 1"),
    ],
)
@pytest.mark.parametrize("var", ["TRAINUI_DEFINITION_MAX_BYTES", "TRAINUI_DEFINITION_MAX_ENTRIES"])
def test_limits_from_env_bad_values(var: str, value: str, problem: str) -> None:
    msg = refused(Limits.from_env, {var: value})
    assert msg == f"{var} must be {problem}, not {value!r}"


# ------------------------------------------------------------------------------ hygiene


def test_module_imports_no_ui_or_web_code() -> None:
    src_root = Path(definition.__file__).resolve().parents[2]
    code = (
        "import sys, trainui.core.definition\n"
        "bad = ('textual', 'trainui.tui', 'trainui.service', 'starlette', 'httpx', 'boto3')\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in bad or m.startswith(bad)]\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "PYTHONPATH": str(src_root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=30)
