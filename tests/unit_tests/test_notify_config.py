"""The service's [[notify]] hooks as written: each mistake located and named (service.toml)."""

from __future__ import annotations

import pytest

from trainui.service.notify import ConfigError, load_hooks


def problems(tmp_path, text: str) -> list[str]:
    path = tmp_path / "service.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_hooks({"TRAINUI_SERVICE_CONFIG": str(path)})
    return refused.value.problems


def test_a_mistyped_event_is_named_with_what_was_meant(tmp_path):
    said = problems(tmp_path, '[[notify]]\ncommand = "true"\nevents = ["complete", "failed"]\n')
    assert len(said) == 1
    assert said[0].endswith(
        ":1: [[notify]] #1: events: 'complete' is not one of started, completed, failed,"
        " halted, restarting (did you mean completed?)"
    )


def test_an_empty_command_is_said_to_be_empty(tmp_path):
    (said,) = problems(tmp_path, '[[notify]]\ncommand = "  "\n')
    assert said.endswith(":1: [[notify]] #1: command is empty")
    (said,) = problems(tmp_path, "[[notify]]\ncommand = 3\n")
    assert said.endswith(":1: [[notify]] #1: command must be text")


def test_events_that_are_not_a_list_are_said_so(tmp_path):
    (said,) = problems(tmp_path, '[[notify]]\ncommand = "true"\nevents = "failed"\n')
    assert said.endswith("events must be a list of started, completed, failed, halted, restarting")
