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


def test_an_experiments_words_are_checked_before_the_service_is_asked(capsys):
    """Each a usage error (2), said before any line of output: the service is not asked (no
    TRAINUI_HOME is needed for them)."""
    for verb in ("show", "delete", "halt", "resume"):
        assert cli.main([verb, "experiment", "experiment-a", "b"]) == cli.EXIT_USAGE
        assert capsys.readouterr() == (
            "",
            f"trainui: usage: trainui {verb} experiment ID (one experiment at a time: 2 given)\n",
        )
        assert cli.main([verb, "experiment", "training-aaaaaaaaa"]) == cli.EXIT_USAGE
        assert capsys.readouterr() == (
            "",
            "trainui: training-aaaaaaaaa is a run's ID, not an experiment's: trainui "
            f"{verb} training-aaaaaaaaa\n",
        )
    assert cli.main(["resume", "experiment", "experiment-a", "--status", "bogus"]) == 2
    assert capsys.readouterr() == (
        "",
        "trainui: --status: 'bogus' is not a state a run resumes from; the states: failed,"
        " halted\n",
    )


@pytest.mark.parametrize("verb", ["show", "delete"])
def test_show_and_delete_say_they_take_one_run_or_one_experiment(verb, capsys):
    with pytest.raises(SystemExit):
        cli.main([verb, "--help"])
    assert f"trainui {verb} [-h]" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main([verb, "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert usage.rstrip().endswith("[trained-models|experiment] ID"), usage
    assert "..." not in usage


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
