"""A failed run says why when the cause is a known one (SPEC §11): the kernel's OOM killer,
the GPU out of memory, NCCL; through the real CLI, service and learner."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from trainui.learner.causes import cause, oom_kills


def test_cuda_out_of_memory_and_nccl_are_said_with_the_line_that_shows_them(home):
    model = home.model("causes", {"t.py": ""})
    oom = home.submit(
        model,
        home.manifest(
            "echo 'epoch 1'; echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"
            " 2.00 GiB' >&2; exit 1",
            name="cuda",
        ),
    )
    nccl = home.submit(
        model,
        home.manifest(
            "echo 'RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1191, unhandled system"
            " error'; exit 1",
            name="nccl",
        ),
    )
    plain = home.submit(model, home.manifest("echo plain; exit 4", name="plain"))
    run = home.wait(oom, "failed")
    assert run["status_message"] == (
        "the training command exited with code 1: the GPU ran out of memory (a smaller batch,"
        ' or a larger resource, may fit): "torch.OutOfMemoryError: CUDA out of memory. Tried to'
        ' allocate 2.00 GiB"'
    )
    run = home.wait(nccl, "failed")
    assert run["status_message"].startswith(
        "the training command exited with code 1: NCCL, the GPUs' communication, failed or"
        ' timed out: "RuntimeError: NCCL error in:'
    )
    assert home.wait(plain, "failed")["status_message"] == (
        'the training command exited with code 4; the log ends: "plain"'
    )


@pytest.mark.slow  # an OOM kill counts on the whole machine: not beside the quick stage's kills
def test_the_oom_killer_is_named(home, tmp_path):
    """A command that limits its own memory in a cgroup and exceeds it: the kernel kills it,
    and the run says so (where cgroups are writable: as root, not sandboxed)."""
    top = Path("/sys/fs/cgroup/memory")
    if os.geteuid() != 0 or not (top / "cgroup.procs").exists() or not os.access(top, os.W_OK):
        pytest.skip("no writable cgroup v1 memory controller here: a SIGKILL is said as such")
    group = top / f"trainui-test-{uuid.uuid4().hex[:8]}"
    home.env["TRAINUI_ISOLATION"] = "off"  # the command makes a cgroup (the sandbox would not)
    command = (
        f"mkdir -p {group} && echo 40M > {group}/memory.limit_in_bytes && "
        f"echo $$ > {group}/cgroup.procs && exec python3 -c 'b = bytearray(400 << 20)'"
    )
    try:
        model_id = home.submit(home.model("oom", {"t.py": ""}), home.manifest(command))
        run = home.wait(model_id, "failed", "completed", timeout=60)
    finally:
        if group.exists():
            group.rmdir()
    assert run["exit_code"] == -9
    assert run["status_message"] == (
        "the training command was killed by signal SIGKILL: killed by the kernel's OOM killer:"
        " the machine (or the run's memory limit) ran out of memory"
    )


def test_the_causes_read_the_logs_end_and_the_kill_counts(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("x\n" * 10 + "trainui: CUDA out of memory (a line of trainui's own)\nok\n")
    assert cause(1, str(log), oom_kills()) is None  # trainui's own lines do not count
    log.write_text("GPU has fallen off the bus\n" + "y" * 300 + "\n")
    assert (
        cause(1, str(log), oom_kills()) == 'a GPU failed or was lost: "GPU has fallen off the bus"'
    )
    assert cause(1, str(tmp_path / "none.txt"), (None, None)) is None
    # a SIGKILL with no OOM kill counted since the start: no cause
    assert (
        cause(-9, str(log), oom_kills()) == 'a GPU failed or was lost: "GPU has fallen off the bus"'
    )
    assert "OOM killer" in cause(-9, str(log), (None, -1))  # the machine's count went up
