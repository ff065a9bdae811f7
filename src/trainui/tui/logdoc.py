"""A run's log as the log pane sees it: byte ranges read on demand, line breaks indexed.

The log may be a million lines long and still growing. Opening it reads only its tail; older
parts are read when the user scrolls up, jumps to the top or searches. Line starts are kept in
an ``array('q')`` (8 bytes a line), bytes in a small cache of fixed blocks, so memory stays flat
however long the log is. numpy scans the big chunks and searches, imported only when first
needed (it costs 0.1 to 0.2 s: opening a log does not wait for it). No Textual here: the pane
(``widgets/log_view.py``) draws from it.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import sys
from array import array
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from itertools import accumulate
from operator import sub

# read(offset, limit) -> (data, log size, where the data starts); offset < 0 counts from the end
Reader = Callable[[int, "int | None"], Awaitable[tuple[bytes, int, int]]]

BLOCK = 1 << 18  # bytes are cached in blocks this big, aligned to the log's start
TAIL = 1 << 19  # what opening reads: the last 512 KiB (some 7,000 lines of 70 bytes)
BACK = 1 << 22  # what one step back reads when older lines are wanted
CACHE_BYTES = 16 << 20
MAX_LINE = 4096  # bytes of a line that are shown; the rest is said to be trimmed
MAX_LINES = 50_000_000  # lines indexed at most (400 MB of index); older ones are dropped
NUMPY_FROM = 1 << 20  # chunks this big are scanned with numpy (imported then, not at start)


def newlines(data: bytes, offset: int) -> array:
    """Where the lines after each line break of ``data`` (found at ``offset``) begin."""
    if len(data) >= NUMPY_FROM or "numpy" in sys.modules:
        import numpy as np

        found = np.flatnonzero(np.frombuffer(data, np.uint8) == 10).astype(np.int64)
        found += offset + 1
        out = array("q")
        out.frombytes(found.tobytes())
        return out
    parts = data.split(b"\n")
    parts.pop()  # what follows the last break
    # accumulate yields offset, then the start of each next line: loops that run in C
    return array("q", accumulate(map((1).__add__, map(len, parts)), initial=offset))[1:]


def _matching_lines(pattern: re.Pattern[bytes], data: bytes, offset: int, starts: array) -> bytes:
    """The starts of the lines of ``data`` (at ``offset``) that match, as int64 bytes;
    ``starts``: the line starts from the line holding ``offset`` on (sorted)."""
    import numpy as np

    hits = np.fromiter((m.start() for m in pattern.finditer(data)), np.int64)
    if not len(hits):
        return b""
    line_starts = np.frombuffer(starts, np.int64) if len(starts) else np.zeros(1, np.int64)
    lines = line_starts[np.searchsorted(line_starts, hits + offset, side="right") - 1]
    return np.unique(lines).tobytes()


class LineStarts:
    """Line starts in an ``array('q')`` (8 bytes a line): lines are added at the end as the
    log grows, and before the start as older parts are read (rarely, in big steps)."""

    def __init__(self) -> None:
        self.array = array("q")

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> int:
        return self.array[i]

    def append(self, values: array) -> None:
        self.array.extend(values)

    def prepend(self, values: array) -> None:
        self.array[0:0] = values

    def drop_front(self, n: int) -> None:
        del self.array[:n]

    def position(self, offset: int) -> int:
        """The index of the line holding byte ``offset``."""
        return max(0, bisect.bisect_right(self.array, offset) - 1)

    @property
    def nbytes(self) -> int:
        return self.array.buffer_info()[1] * self.array.itemsize


class LogDocument:
    """The lines of one log, ``starts[i]`` being the byte where line ``i`` begins.

    Lines ``0..count-1`` are those indexed so far, from byte ``start`` to ``size``; ``start`` is
    0 once the whole log is indexed (``complete``). ``line(i)`` gives a line's bytes when they
    are cached, else None and the block is added to ``wanted`` for ``fetch_wanted``.
    """

    def __init__(self, read: Reader, cache_bytes: int = CACHE_BYTES) -> None:
        self.read = read
        self.size = 0
        self.start = 0
        self.starts = LineStarts()
        self.starts.append(array("q", [0]))
        self.trimmed = 0  # lines longer than MAX_LINE bytes (shown cut)
        self.dropped = 0  # lines no longer indexed (more than MAX_LINES)
        self.longest = 0
        self.wanted: set[int] = set()
        self.matches = array("q")  # line starts of the lines that match the search, in order
        self.pattern: re.Pattern[bytes] | None = None
        self._late: array | None = None  # while a search runs: what a follow's lines add
        self._searched_to = 0
        self._blocks: OrderedDict[int, tuple[int, bytearray]] = OrderedDict()
        self._cached = 0
        self._cache_bytes = cache_bytes
        self._head_fragment = False
        self._lock = asyncio.Lock()

    # --- the lines ------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Lines indexed so far (the last one may still be growing)."""
        n = len(self.starts)
        return n - 1 if self.starts[n - 1] >= self.size else n

    @property
    def complete(self) -> bool:
        return self.start == 0 and not self.dropped

    def span(self, i: int) -> tuple[int, int]:
        """Bytes of line ``i``, without its line break."""
        s = self.starts[i]
        e = self.starts[i + 1] - 1 if i + 1 < len(self.starts) else self.size
        return s, max(s, e)

    def line(self, i: int) -> tuple[bytes, int] | None:
        """Line ``i`` (at most MAX_LINE bytes) and how many bytes were cut; None if not cached."""
        s, e = self.span(i)
        shown = min(e, s + MAX_LINE)
        data = self.get(s, shown)
        if data is None:
            return None
        return data, e - shown

    def line_of(self, offset: int) -> int:
        """The index of the line holding byte ``offset``."""
        return self.starts.position(offset)

    # --- reading --------------------------------------------------------------------------

    async def open(self, tail: int = TAIL, first: Awaitable | None = None) -> None:
        """Read the log's last ``tail`` bytes and index them; ``first``: that read, already
        under way (what ``read(-tail, None)`` returns)."""
        data, _size, start = await (first if first is not None else self.read(-tail, None))
        self._store(start, data)
        self.start = start
        if start > 0:
            newline = data.find(b"\n")
            if newline >= 0:
                self.start = start + newline + 1
                data = data[newline + 1 :]
            else:  # the tail is part of one very long line
                self._head_fragment = True
        self.starts = LineStarts()
        self.starts.append(array("q", [self.start]))
        self.size = self.start
        self.append(data)

    def append(self, data: bytes) -> None:
        """Bytes that the log grew by (from a follow), indexed and cached."""
        if not data:
            return
        offset = self.size
        self._store(offset, data)
        new = newlines(data, offset)
        if new:
            self._measure(self.starts[-1], new)
            self.starts.append(new)
        self.size = offset + len(data)
        self._cap()
        if self.pattern is not None:
            self._search_new()

    async def extend_back(self, step: int = BACK) -> int:
        """Index older lines (about ``step`` bytes of them); the number of lines added."""
        async with self._lock:
            if self.start == 0 or self.dropped:
                return 0
            hi = self.start
            while True:
                lo = max(0, hi - step)
                data, _size, got = await self.read(lo, hi - lo)
                if got != lo or len(data) < hi - lo:
                    raise OSError("the log is shorter than it was: it was replaced")
                data = data[: hi - lo]
                if len(data) <= self._cache_bytes // 4:
                    self._store(lo, data)
                breaks = newlines(data, lo)
                if lo == 0:
                    breaks.insert(0, 0)
                while breaks and breaks[-1] >= self.start:
                    breaks.pop()
                if breaks:
                    break
                hi = lo  # no line break in that part: the line started earlier still
            added = len(breaks)
            if self._head_fragment:  # the first "line" was the end of the last one found
                self.starts.drop_front(1)
                self._head_fragment = False
                added -= 1
            following = self.starts[0] if len(self.starts) else self.size
            self._measure(breaks[0], breaks[1:] + array("q", [following]))
            self.starts.prepend(breaks)
            self.start = breaks[0]
            return added

    async def extend_to_start(self, progress: Callable[[float], None] | None = None) -> None:
        """Index the whole log (for the top, and for searching all of it)."""
        total = max(1, self.start)
        while self.start > 0 and not self.dropped:
            await self.extend_back(BACK)
            if progress:
                progress(1 - self.start / total)

    async def fetch_wanted(self) -> bool:
        """Read the blocks that drawing asked for; True if any was read."""
        wanted, self.wanted = sorted(self.wanted), set()
        for block in wanted:
            data, _size, got = await self.read(block * BLOCK, BLOCK)
            self._store(got, data)
        return bool(wanted)

    # --- search ---------------------------------------------------------------------------

    async def search(
        self,
        pattern: re.Pattern[bytes],
        progress: Callable[[float], None] | None = None,
        found: Callable[[float], None] | None = None,
    ) -> int:
        """Find the lines that match, in the whole log; the number of matching lines.

        ``progress``: how much of the log is read; ``found``: how much of it is searched, each
        time more matches are in ``matches`` (they grow in order, from the top, as the search
        goes: a filtered view shows them while the rest is searched)."""
        self.clear_search()
        await self.extend_to_start(progress)
        self.pattern = pattern
        end = self._searched_to = self.size
        await self._search_range(pattern, 0, end, found)
        return len(self.matches)

    def clear_search(self) -> None:
        self.pattern = None
        self.matches = array("q")
        self._late = None

    async def _search_range(
        self,
        pattern: re.Pattern[bytes],
        lo: int,
        hi: int,
        found: Callable[[float], None] | None = None,
    ) -> None:
        merged = self.matches = array("q")
        self._late = array("q")  # matches in what a follow adds meanwhile (after ``hi``)
        try:
            position = lo
            while position < hi:
                end = min(hi, position + BACK)
                if end < hi:  # cut at a line start, so that no match is split
                    cut = self.starts[self.line_of(end)]
                    end = cut if cut > position else end
                data = self.get(position, end, want=False)
                if data is None:
                    data, _size, _got = await self.read(position, end - position)
                    data = data[: end - position]
                starts = self._starts_between(position, end)
                lines = await asyncio.to_thread(_matching_lines, pattern, data, position, starts)
                if pattern is not self.pattern:
                    return
                merged.frombytes(lines)
                position = end
                if found is not None:
                    found(position / max(1, hi))
        finally:
            if pattern is self.pattern and self.matches is merged:
                late, self._late = self._late, None
                last = merged[-1] if merged else -1
                merged.extend(m for m in late if m > last)

    def _starts_between(self, lo: int, hi: int) -> array:
        """A copy of the line starts from the line holding byte ``lo`` to the one holding
        ``hi`` (a copy: a follow may grow the index while a thread reads it)."""
        return self.starts.array[self.line_of(lo) : self.line_of(hi) + 1]

    def _search_new(self) -> None:
        """Search what a follow added: the complete lines not searched yet."""
        complete_to = self.starts[-1]
        if complete_to <= self._searched_to:
            return
        data = self.get(self._searched_to, complete_to, want=False)
        if data is not None and self.pattern is not None:
            lines = array("q")
            starts = self._starts_between(self._searched_to, complete_to)
            lines.frombytes(_matching_lines(self.pattern, data, self._searched_to, starts))
            into = self._late if self._late is not None else self.matches  # searching: later
            last = into[-1] if into else -1
            into.extend(line for line in lines if line > last)
        self._searched_to = complete_to

    def match_index(self, line: int, forward: bool = True) -> int | None:
        """The match nearest after (or before) line ``line``, as an index into ``matches``."""
        if not self.matches:
            return None
        start = self.starts[line] if line < len(self.starts) else self.size
        if forward:
            i = bisect.bisect_right(self.matches, start)
            return i if i < len(self.matches) else 0
        i = bisect.bisect_left(self.matches, start) - 1
        return i if i >= 0 else len(self.matches) - 1

    # --- the byte cache -------------------------------------------------------------------

    def get(self, s: int, e: int, want: bool = True) -> bytes | None:
        """Bytes ``s..e`` when they are all cached; else None (and, with ``want``, the
        missing blocks are noted for ``fetch_wanted``)."""
        if e <= s:
            return b""
        parts = []
        missing = False
        for block in range(s // BLOCK, (e - 1) // BLOCK + 1):
            entry = self._blocks.get(block)
            lo = max(s, block * BLOCK)
            hi = min(e, (block + 1) * BLOCK)
            if entry is None or entry[0] > lo or entry[0] + len(entry[1]) < hi:
                missing = True
                if want:
                    self.wanted.add(block)
                continue
            self._blocks.move_to_end(block)
            begin, data = entry
            parts.append(bytes(data[lo - begin : hi - begin]))
        return None if missing else b"".join(parts)

    def _store(self, offset: int, data: bytes) -> None:
        position = 0
        while position < len(data):
            absolute = offset + position
            block = absolute // BLOCK
            take = min(len(data) - position, (block + 1) * BLOCK - absolute)
            self._put(block, absolute, data[position : position + take])
            position += take
        self._evict()

    def _put(self, block: int, begin: int, piece: bytes) -> None:
        """Cache ``piece`` (bytes from ``begin``, all inside ``block``), merged with what the
        block holds when the two touch; else the longer of the two is kept."""
        end = begin + len(piece)
        entry = self._blocks.get(block)
        if entry is None:
            self._blocks[block] = (begin, bytearray(piece))
            self._cached += len(piece)
            return
        old_begin, old = entry
        old_end = old_begin + len(old)
        before = len(old)
        if begin >= old_begin and end <= old_end:
            return
        if end < old_begin or begin > old_end:
            if len(piece) <= len(old):
                return
            merged, new_begin = bytearray(piece), begin
        elif begin <= old_begin and end >= old_end:
            merged, new_begin = bytearray(piece), begin
        elif begin < old_begin:
            merged, new_begin = bytearray(piece) + old[end - old_begin :], begin
        else:  # the usual case: a follow appends
            old += piece[old_end - begin :]
            merged, new_begin = old, old_begin
        self._blocks[block] = (new_begin, merged)
        self._cached += len(merged) - before

    def _evict(self) -> None:
        if self._cached <= self._cache_bytes:
            return
        last = self.size // BLOCK  # the growing end of the log stays
        for block in list(self._blocks):
            if self._cached <= self._cache_bytes:
                break
            if block >= last:
                continue
            _begin, data = self._blocks.pop(block)
            self._cached -= len(data)

    @property
    def cached_bytes(self) -> int:
        return self._cached

    # --- bookkeeping ----------------------------------------------------------------------

    def _measure(self, first: int, starts: array) -> None:
        """Note the longest line, and how many are trimmed, among the lines beginning at
        ``first`` and at each of ``starts`` but the last (where the next line begins)."""
        if not starts:
            return
        previous = array("q", [first])
        previous.extend(starts[:-1])
        longest = max(map(sub, starts, previous)) - 1  # loops in C: ~20 ns a line
        self.longest = max(self.longest, longest)
        if longest > MAX_LINE:  # rare: count them
            self.trimmed += sum(
                1 for b, a in zip(starts, previous, strict=True) if b - a > MAX_LINE + 1
            )

    def _cap(self) -> None:
        excess = len(self.starts) - MAX_LINES
        if excess > 0:
            self.starts.drop_front(excess)
            self.dropped += excess
            self.start = self.starts[0]
