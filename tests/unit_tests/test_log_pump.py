"""The log pump's cap: the cut comes at the end of a line, whatever the reads look like.

The pump reads the command's pipe with real reads; the test plays the command, writing into
the pipe in pieces that end in the middle of lines (as a block-buffered stdout does)."""

import os
import time

from trainui.learner.process import _LogPump

LINE = b"x" * 99 + b"\n"


def pump_through(tmp_path, pieces, max_bytes):
    log_path = tmp_path / "training-log.txt"
    log_fd = os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    errors = []
    pump = _LogPump(log_fd, str(log_path), max_bytes, lambda error, path: errors.append(error))
    writer = os.dup(pump.write_fd)
    pump.start()
    for piece in pieces:
        view = memoryview(piece)
        while view:
            view = view[os.write(writer, view) :]
        time.sleep(0.05)  # the pump reads each piece on its own
    os.close(writer)
    assert pump.finish(10)
    os.close(log_fd)
    assert errors == []
    return pump, log_path.read_bytes()


def notice(max_bytes):
    return (
        f"trainui: the log is cut here, at {max_bytes:,} bytes of the command's output"
        " (TRAINUI_LOG_MAX_BYTES); the command goes on, its further output is dropped\n"
    ).encode()


def test_a_write_that_ends_in_a_line_just_before_the_cap_is_cut_at_the_line_before(tmp_path):
    cap = 9_980
    stream = LINE * 200  # 20,000 bytes
    # 9,950 bytes, ending half way through the 100th line, then the rest (a read each)
    pump, log = pump_through(tmp_path, [stream[:9_950], stream[9_950:]], cap)
    kept, _, after = log.partition(notice(cap))
    assert after == b""
    assert kept == LINE * 99  # 9,900 bytes: the last whole line under the cap
    assert pump.kept == 9_900
    assert pump.dropped == len(stream) - 9_900


def test_a_stream_under_the_cap_whose_last_line_has_no_end_is_kept_whole(tmp_path):
    stream = LINE * 5 + b"progress 99%"
    pump, log = pump_through(tmp_path, [stream[:250], stream[250:]], 10_000)
    assert log == stream
    assert pump.dropped == 0


def test_a_line_longer_than_what_is_left_under_the_cap_is_dropped_whole(tmp_path):
    cap = 1_000
    stream = LINE * 5 + b"y" * 5_000 + b"\n" + LINE
    pump, log = pump_through(tmp_path, [stream[:510], stream[510:]], cap)
    assert log == LINE * 5 + notice(cap)
    assert pump.kept == 500


def test_with_no_cap_every_byte_is_written_as_it_comes(tmp_path):
    stream = LINE * 3 + b"half"
    pump, log = pump_through(tmp_path, [stream[:150], stream[150:]], 0)
    assert log == stream
    assert (pump.kept, pump.dropped, pump.cut) == (len(stream), 0, False)
