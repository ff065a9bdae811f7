"""The command line's parser: built for the command named alone (the others' parsers are not
built), the same as when every command is built."""

from __future__ import annotations

import argparse

import pytest

from trainui import cli


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["train", "m.zip", "m.yml"], "train"),
        (["--url", "http://h:8470", "--token=T", "list", "--json"], "list"),
        (["--readonly", "--experiments", "--theme", "dark"], None),  # the TUI
        (["-h", "train"], None),
        (["--ur", "http://h:8470", "list"], None),  # an abbreviation: argparse decides
        ([], None),
    ],
)
def test_the_command_named_is_found_only_when_plain(argv, named):
    assert cli.command_named(argv) == named


def test_each_command_built_alone_is_the_same_as_built_with_the_others():
    every = _commands(cli.build_parser())
    assert {"train", "list", "show", "delete", "token", "serve"} <= set(every)
    for name, full in every.items():
        alone = _commands(cli.build_parser(only=name))
        assert list(alone) == [name]
        assert alone[name].format_help() == full.format_help()
        assert alone[name].get_default("func") is full.get_default("func")


def test_help_and_a_mistaken_command_still_name_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["-h"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("train", "list", "show", "delete", "token", "gpus"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["trian", "m.zip", "m.yml"])
    assert exit_.value.code == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert "invalid choice: 'trian'" in error and "'train'" in error and "'token'" in error


def test_train_with_its_arguments_swapped_says_which_comes_first(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    manifest = tmp_path / "manifest.yml"
    manifest.write_text("model_definition: {}\n")
    assert cli.main(["train", str(manifest), str(model)]) == cli.EXIT_USAGE
    said = capsys.readouterr().err
    assert f"cannot read {model}: Is a directory" in said
    assert "the model definition comes first: trainui train MODEL MANIFEST" in said


def test_a_second_run_id_is_said_to_be_one_too_many(capsys):
    assert cli.main(["show", "training-aaaaaaaaa", "training-bbbbbbbbb"]) == cli.EXIT_USAGE
    said = capsys.readouterr().err
    assert said == "trainui: usage: trainui show [trained-models] ID (one run at a time: 2 given)\n"


def test_resume_of_two_runs_or_of_a_run_by_state_says_the_usage(capsys):
    assert cli.main(["resume", "training-aaaaaaaaa", "training-bbbbbbbbb"]) == cli.EXIT_USAGE
    assert "usage: trainui resume ID | resume experiment ID" in capsys.readouterr().err
    assert cli.main(["resume", "training-aaaaaaaaa", "--status", "failed"]) == cli.EXIT_USAGE
    said = capsys.readouterr().err
    assert "trainui resume experiment ID --status failed" in said
    assert cli.main(["resume", "experiment"]) == cli.EXIT_USAGE
    assert "usage: trainui resume experiment ID (the experiment's ID is missing)" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("code", "words"),
    [(0, "exit 0"), (3, "exit 3"), (-15, "killed by SIGTERM"), (-9, "killed by SIGKILL")],
)
def test_an_attempts_exit_is_said_in_words(code, words):
    assert cli._exit_words(code) == words


@pytest.mark.parametrize("verb", ["halt", "resume"])
def test_halt_and_resume_say_they_take_one_run_or_one_experiment(verb, capsys):
    with pytest.raises(SystemExit):
        cli.main([verb, "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert usage.rstrip().endswith("[experiment] ID"), usage
    assert "ID ..." not in usage
