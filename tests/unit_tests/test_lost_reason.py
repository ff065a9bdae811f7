"""Why a vanished learner's run failed: the last line its learner wrote to
learner-errors.txt, never a line an earlier attempt's learner wrote."""

from __future__ import annotations

from trainui.core.runs import LEARNER_ERRORS_FILE
from trainui.service.launchers import lost_reason, mark_attempt


def test_the_reason_names_this_attempts_traceback_only(tmp_path):
    errors = tmp_path / LEARNER_ERRORS_FILE
    errors.write_text("Traceback (most recent call last):\nNameError: name 're' is not defined\n")
    said = lost_reason(str(tmp_path), "killed by signal SIGKILL")
    assert said == (
        "the learner process ended unexpectedly (killed by signal SIGKILL): NameError: name "
        f"'re' is not defined (see {errors})"
    )
    mark_attempt(str(tmp_path), 2)  # the next attempt's learner starts, and is killed
    said = lost_reason(str(tmp_path), "killed by signal SIGKILL")
    assert said == "the learner process ended unexpectedly (killed by signal SIGKILL)"
    with errors.open("a") as f:  # this attempt's own traceback
        f.write("Traceback (most recent call last):\nOSError: [Errno 5] Input/output error\n")
    said = lost_reason(str(tmp_path), None)
    assert said.endswith(f": OSError: [Errno 5] Input/output error (see {errors})")
    assert errors.read_text().count("trainui: attempt 2 starts\n") == 1
