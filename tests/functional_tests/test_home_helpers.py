"""The suite's own helpers (tests/conftest.py), where a mistake of theirs made tests flaky."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import group_alive, new_home, process_alive, process_state

SYS_EXIT = {"x86_64": 60, "aarch64": 93}.get(os.uname().machine)  # one thread's exit(2)

# A process in the state a SIGKILLed service passes through on a busy machine: its main thread
# ended (a zombie), another thread not yet, so its listening socket still accepts connections,
# to reset them once the last thread is gone.
HALF_DEAD = f"""
import ctypes, socket, sys, threading, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(sys.argv[1])
sock.listen(8)
threading.Thread(target=time.sleep, args=(60,)).start()
print("listening", flush=True)
ctypes.CDLL(None).syscall({SYS_EXIT}, 0)  # the main thread alone ends
"""


def _connect(path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)


@pytest.mark.skipif(SYS_EXIT is None, reason="exit(2)'s number is known for x86_64 and aarch64")
def test_a_service_whose_main_thread_alone_ended_is_killed_and_waited_for(tmp_path):
    """``kill_service`` returned once the service's main thread was a zombie: the next command
    reached the socket, still open in a thread not yet ended, and was reset (CI, under load)."""
    home = new_home(tmp_path / "home")
    home.path.mkdir()
    path = str(home.path / "trainui.sock")
    child = subprocess.Popen(
        [sys.executable, "-c", HALF_DEAD, path],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "listening\n"
        deadline = time.monotonic() + 10
        while process_state(child.pid) != "Z":
            assert time.monotonic() < deadline, process_state(child.pid)
            time.sleep(0.01)
        (home.path / "service.lock").write_text(f"{child.pid}\n")
        _connect(path)  # a zombie's socket, accepting
        assert process_alive(child.pid)
        assert home.service_pid() == child.pid
        assert group_alive(child.pid, wait=0)  # its group's leader
        home.kill_service()
        with pytest.raises(ConnectionRefusedError):  # refused: a command starts a service
            _connect(path)
        assert not process_alive(child.pid) and home.service_pid() is None
    finally:
        child.kill()
        child.wait()
