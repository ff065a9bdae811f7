"""The learner reads the command's metric files beneath the run's folders only: never through a
symbolic link (the learner may read what a sandboxed command may not), never waiting on a FIFO,
and a manifest's source outside the folders is refused (SPEC §8, README "What a run can reach")."""

from __future__ import annotations

import errno
import os
import textwrap

import pytest

from trainui.core.manifest import parse_manifest
from trainui.learner.metrics import Tally, open_beneath, open_sources


@pytest.fixture
def work(tmp_path):
    """A run's folders (``work``), and a secret beside them."""
    root = tmp_path / "work"
    (root / "logs" / "sub").mkdir(parents=True)
    (tmp_path / "secret.jsonl").write_text('{"step": 1, "secret": 42}\n')
    return root


def test_a_regular_file_beneath_the_root_is_opened(work):
    (work / "logs" / "m.jsonl").write_text("{}\n")
    fd = open_beneath(str(work), str(work / "logs" / "m.jsonl"))
    try:
        assert os.read(fd, 10) == b"{}\n"
    finally:
        os.close(fd)


@pytest.mark.parametrize("where", ["link", "folder link", "fifo", "folder", "parent"])
def test_links_fifos_folders_and_paths_out_are_refused_at_once(work, where):
    secret = work.parent / "secret.jsonl"
    target = work / "logs" / "m.jsonl"
    if where == "link":
        target.symlink_to(secret)
    elif where == "folder link":
        (work / "logs" / "out").symlink_to(work.parent)
        target = work / "logs" / "out" / "secret.jsonl"
    elif where == "fifo":
        os.mkfifo(target)  # opened for reading, it would wait for a writer
    elif where == "folder":
        target = work / "logs" / "sub"
    else:
        target = work / "logs" / ".." / ".." / "secret.jsonl"
    with pytest.raises(OSError) as raised:
        open_beneath(str(work), os.path.normpath(str(target)))
    assert raised.value.errno in (errno.ELOOP, errno.ENOTDIR, errno.EINVAL, errno.EXDEV)


def test_a_source_outside_the_run_is_said_and_not_read(work):
    said = []
    tally = Tally(said.append)
    variables = {"LOG_DIR": str(work / "logs"), "JOB_STATE_DIR": str(work)}
    specs = [
        {"type": "jsonl", "in": str(work.parent / "secret.jsonl")},
        {"type": "jsonl", "in": "$LOG_DIR/../../secret.jsonl"},
        {"type": "jsonl", "in": "$LOG_DIR/m.jsonl"},
    ]
    sources = open_sources(specs, variables, str(work / "model"), str(work / "log.txt"), tally)
    assert [s.label for s in sources] == ["$LOG_DIR/m.jsonl"]
    assert said == [
        f"the jsonl source {work.parent / 'secret.jsonl'} is outside the run's folders: not read",
        "the jsonl source $LOG_DIR/../../secret.jsonl is outside the run's folders: not read",
    ]


def test_a_source_naming_an_unknown_variable_is_said_when_the_run_starts(work):
    # validate warns of it; a run submitted anyway says it in its log, where the missing
    # metrics are looked for
    said = []
    variables = {"LOG_DIR": str(work / "logs"), "JOB_STATE_DIR": str(work)}
    specs = [{"type": "jsonl", "in": "$LOGDIR/m.jsonl"}, {"type": "jsonl", "in": "${LOG_DIR}/m"}]
    sources = open_sources(specs, variables, str(work), str(work / "log.txt"), Tally(said.append))
    assert [s.label for s in sources] == ["$LOGDIR/m.jsonl", "${LOG_DIR}/m"]  # still read
    assert said == [
        "the jsonl source $LOGDIR/m.jsonl: $LOGDIR is not a run folder (known: $JOB_STATE_DIR, "
        "$LOG_DIR); the path is read as written"
    ]


MANIFEST = textwrap.dedent(
    """\
        model_definition:
          name: m
          framework: {name: python, version: "3"}
          execution: {command: python3 train.py, resource: small}
        training_data: {connection: {}, source: {bucket: data, type: local}}
        training_results: {connection: {}, target: {bucket: results, type: local}}
        evaluation_metrics:
    """
)


def with_sources(sources: str) -> list[str]:
    """What validate says of the manifest whose ``evaluation_metrics`` are ``sources`` (YAML
    list items), at the lines of m.yml (they start at line 8)."""
    text = MANIFEST + textwrap.indent(textwrap.dedent(sources), "  ")
    return parse_manifest(text, "m.yml").formatted()


def test_the_manifest_refuses_a_source_by_an_absolute_path():
    found = with_sources(
        """\
        - {type: jsonl, in: /home/someone/metrics.jsonl}
        - {type: tensorboard, in: ~/tb}
        - {type: jsonl, in: $LOG_DIR/m.jsonl}
        - {type: jsonl, in: logs/m.jsonl}
        """
    )
    assert len(found) == 2, found
    assert found[0].startswith("m.yml:8:23: evaluation_metrics[0].in: a source is read in the run")
    assert found[1].startswith("m.yml:9:29: evaluation_metrics[1].in: a source is read in the run")


def test_the_manifest_refuses_a_source_that_leads_out_of_the_run_with_dots():
    """The learner does not read such a source (the test above): validate says so, located,
    rather than the run going without metrics and one line in its log."""
    found = with_sources(
        """\
        - {type: jsonl, in: $LOG_DIR/../../../../etc/passwd}
        - {type: tensorboard, in: ../../tb}
        - {type: jsonl, in: "${JOB_STATE_DIR}/.."}
        - {type: jsonl, in: $LOG_DIR/../results/m.jsonl}
        - {type: jsonl, in: ../logs/m.jsonl}
        """
    )
    assert found == [
        "m.yml:8:23: evaluation_metrics[0].in: '$LOG_DIR/../../../../etc/passwd' leads out of"
        " the run's folders (..): a source is read in them, nowhere else",
        "m.yml:9:29: evaluation_metrics[1].in: '../../tb' leads out of the run's folders (..):"
        " a source is read in them, nowhere else",
        "m.yml:10:23: evaluation_metrics[2].in: '${JOB_STATE_DIR}/..' leads out of the run's"
        " folders (..): a source is read in them, nowhere else",
    ]
