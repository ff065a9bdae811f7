"""The log pane's document: tail first, older parts on demand, a compact index, search."""

from __future__ import annotations

import asyncio
import re
from array import array

import pytest

from trainui.tui import logdoc
from trainui.tui.logdoc import MAX_LINE, LogDocument, newlines


class Log:
    """A log that grows, read by byte ranges the way ``Client.read_log`` reads one."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.reads: list[tuple[int, int | None]] = []

    async def read(self, offset: int, limit: int | None):
        self.reads.append((offset, limit))
        size = len(self.data)
        start = max(0, size + offset) if offset < 0 else offset
        end = size if limit is None else min(size, start + limit)
        return bytes(self.data[start:end]), size, start


def lines_of(n: int, width: int = 60) -> list[bytes]:
    return [f"{i:>8} {'x' * (i % width)}".encode() for i in range(n)]


def run(coro):
    return asyncio.run(coro)


async def text_of(doc: LogDocument, i: int) -> bytes:
    got = doc.line(i)
    if got is None:
        await doc.fetch_wanted()
        got = doc.line(i)
    return got[0]


def test_newlines_finds_every_line_start_with_or_without_numpy():
    data = b"a\nbb\n\nccc"
    assert list(newlines(data, 100)) == [102, 105, 106]
    big = b"x" * 10 + b"\n" + b"y" * (logdoc.NUMPY_FROM + 5) + b"\n"
    assert list(newlines(big, 0)) == [11, len(big)]
    assert list(newlines(b"no break", 0)) == []


def test_opening_reads_only_the_tail_and_the_last_line_is_whole():
    lines = lines_of(200_000)
    log = Log(b"\n".join(lines) + b"\n")
    doc = LogDocument(log.read)
    run(doc.open(tail=1 << 16))
    assert log.reads == [(-(1 << 16), None)]
    assert doc.size == len(log.data)
    assert not doc.complete and doc.start > 0
    assert doc.line(doc.count - 1) == (lines[-1], 0)
    first_shown = run(text_of(doc, 0))
    assert first_shown in lines  # a whole line, not the end of a cut one


def test_older_lines_are_indexed_on_demand_up_to_the_first():
    lines = lines_of(50_000)
    log = Log(b"\n".join(lines) + b"\n")
    doc = LogDocument(log.read)
    run(doc.open(tail=1 << 14))
    shown = doc.count
    added = run(doc.extend_back(1 << 15))
    assert added > 0 and doc.count == shown + added
    run(doc.extend_to_start())
    assert doc.complete and doc.count == len(lines)
    for i in (0, 1, 12_345, len(lines) - 1):
        assert run(text_of(doc, i)) == lines[i]
    assert doc.starts.array.typecode == "q"  # 8 bytes a line
    assert doc.starts.nbytes < 9 * len(lines)


def test_a_growing_log_appends_whole_and_partial_lines():
    log = Log(b"first\n")
    doc = LogDocument(log.read)
    run(doc.open())
    assert doc.count == 1
    doc.append(b"half")
    assert doc.count == 2 and doc.line(1) == (b"half", 0)
    doc.append(b" done\nnext\n")
    assert doc.count == 3
    assert [doc.line(i)[0] for i in range(3)] == [b"first", b"half done", b"next"]


def test_long_lines_are_cut_and_counted():
    long = b"L" * (MAX_LINE + 500)
    log = Log(b"short\n" + long + b"\nend\n")
    doc = LogDocument(log.read)
    run(doc.open())
    data, cut = doc.line(1)
    assert len(data) == MAX_LINE and cut == 500
    assert doc.trimmed == 1


def test_a_tail_inside_one_huge_line_joins_it_when_read_back():
    log = Log(b"b" * 300_000 + b"\nlast\n")
    doc = LogDocument(log.read)
    run(doc.open(tail=1 << 12))
    assert doc.count == 1 and doc.line(0)[0] == b"last"
    log2 = Log(b"c" * 300_000)  # no line break at all
    doc2 = LogDocument(log2.read)
    run(doc2.open(tail=1 << 12))
    run(doc2.extend_to_start())
    assert doc2.count == 1 and doc2.span(0) == (0, 300_000)


def test_search_covers_the_whole_log_and_new_lines():
    pytest.importorskip("numpy")
    lines = lines_of(30_000)
    log = Log(b"\n".join(lines) + b"\n")
    doc = LogDocument(log.read)
    run(doc.open(tail=1 << 12))
    found = run(doc.search(re.compile(rb"^ {4}12\d\d ", re.M)))
    assert found == 100
    assert doc.complete
    assert doc.line_of(doc.matches[0]) == 1200
    doc.append(b"    1299 again\n")
    assert len(doc.matches) == 101
    first = doc.match_index(0, forward=True)
    assert doc.line_of(doc.matches[first]) == 1200
    last = doc.match_index(0, forward=False)
    assert last == len(doc.matches) - 1  # wraps around


def test_matches_grow_in_order_while_the_search_goes_and_a_follow_adds_after_them():
    """A filtered view shows the matches found so far: ``matches`` grows chunk by chunk, from
    the top, and lines a follow adds meanwhile come after all of them."""
    pytest.importorskip("numpy")
    lines = lines_of(200_000)  # some 9 MB: three chunks
    log = Log(b"\n".join(lines) + b"\n")
    doc = LogDocument(log.read)
    run(doc.open(tail=1 << 12))
    seen: list[int] = []

    def found(fraction: float) -> None:
        assert list(doc.matches) == sorted(doc.matches)
        seen.append(len(doc.matches))
        if len(seen) == 1:  # the log grows while the search is under way
            doc.append(b"   zzz 7 x appended\n")

    total = run(doc.search(re.compile(rb"7 x"), found=found))
    assert len(seen) >= 2 and seen == sorted(seen) and seen[0] < total
    assert list(doc.matches) == sorted(set(doc.matches))
    assert doc.line_of(doc.matches[-1]) == 200_000  # the appended line, last
    assert total == len(doc.matches) == sum(1 for line in lines if b"7 x" in line) + 1


def test_the_byte_cache_stays_within_its_budget():
    lines = lines_of(100_000)
    log = Log(b"\n".join(lines) + b"\n")
    doc = LogDocument(log.read, cache_bytes=1 << 20)
    run(doc.open())
    run(doc.extend_to_start())
    for i in range(0, doc.count, 997):
        run(text_of(doc, i))
    assert doc.cached_bytes <= (1 << 20) + logdoc.BLOCK
    assert isinstance(doc.matches, array)
