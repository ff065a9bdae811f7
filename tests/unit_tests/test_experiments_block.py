"""The manifest's `experiment:` block (SPEC §9): checked with located errors, expanded into
each run's parameter values (grid: every combination; random: reproducible by its seed)."""

from __future__ import annotations

import textwrap

import msgspec
import pytest

from trainui.core.experiments import MAX_RUNS, as_environment, shadows
from trainui.core.manifest import parse_manifest
from trainui.service.experiments import median_stop, stop_reason
from trainui.service.scheduler import Scheduler, Waiting

BASE = """\
model_definition:
  name: mnist
  framework: {name: tensorflow, version: "2.16"}
  execution:
    command: python3 train.py --lr ${lr}
    resource: small
training_data:
  connection: {}
  source: {bucket: data, type: local}
training_results:
  connection: {}
  target: {bucket: results, type: local}
"""


def check(block: str, extra: str = ""):
    text = BASE + extra + "experiment:\n" + textwrap.indent(textwrap.dedent(block), "  ")
    return parse_manifest(text, "m.yml")


def errors(block: str, extra: str = "") -> list[str]:
    report = check(block, extra)
    return [p.format("m.yml") for p in report.errors]


def experiment(block: str, extra: str = ""):
    report = check(block, extra)
    assert report.ok, report.formatted()
    return report.manifest.experiment


def test_a_manifest_without_the_block_is_a_single_run():
    report = parse_manifest(BASE)
    assert report.ok and report.manifest.experiment is None


def test_a_grid_is_every_combination_the_first_parameter_varying_slowest():
    e = experiment(
        """\
        method: grid
        parameters:
          lr: {values: [0.1, 0.01]}
          layers: [2, 3, 4]
          act: {values: [relu, "tanh"]}
        """
    )
    assert e.name == "mnist"  # the run's name by default
    runs = e.expand()
    assert e.size() == len(runs) == 12
    assert runs[:3] == [
        {"lr": 0.1, "layers": 2, "act": "relu"},
        {"lr": 0.1, "layers": 2, "act": "tanh"},
        {"lr": 0.1, "layers": 3, "act": "relu"},
    ]
    assert len({tuple(r.values()) for r in runs}) == 12


def test_grid_ranges_with_a_step_or_integers_are_lists_of_points():
    e = experiment(
        """\
        method: grid
        parameters:
          batch: {min: 16, max: 64, step: 16, integer: true}
          depth: {min: 1, max: 3, integer: true}
          drop: {min: 0.1, max: 0.3, step: 0.1}
        """
    )
    runs = e.expand()
    assert sorted({r["batch"] for r in runs}) == [16, 32, 48, 64]
    assert sorted({r["depth"] for r in runs}) == [1, 2, 3]
    assert sorted({r["drop"] for r in runs}) == [0.1, 0.2, 0.3]
    assert len(runs) == 4 * 3 * 3


def test_a_stepped_range_of_whole_numbers_gives_whole_numbers_every_one():
    """Not 2, 4.0, 6.0, 8 (the ends as written, the points between as floats): a command's
    ``type=int`` refused the inner ones. A float anywhere in it gives floats."""
    for method in ("method: grid", "method: random\ncount: 50\nseed: 1"):
        e = experiment(f"{method}\nparameters:\n  depth: {{min: 2, max: 8, step: 2}}\n")
        values = [r["depth"] for r in e.expand()]
        assert {type(v) for v in values} == {int} and set(values) <= {2, 4, 6, 8}
        assert [as_environment(v) for v in sorted(set(values))] == ["2", "4", "6", "8"]
    e = experiment("method: grid\nparameters:\n  w: {min: 2, max: 8, step: 2.0}\n")
    assert [r["w"] for r in e.expand()] == [2.0, 4.0, 6.0, 8.0]
    assert {type(r["w"]) for r in e.expand()} == {float}


def test_random_draws_are_in_their_ranges_and_the_same_for_the_same_seed():
    e = experiment(
        """\
        method: random
        count: 200
        seed: 42
        parameters:
          lr: {min: 0.00001, max: 0.1, log: true}
          drop: {min: 0.1, max: 0.5}
          units: {min: 16, max: 512, integer: true}
          opt: [sgd, adam]
        """
    )
    runs = e.expand()
    assert len(runs) == 200 and e.size() == 200
    assert runs == e.expand()  # the seed given: the same draws
    assert runs != e.expand(seed=43)
    assert all(1e-5 <= r["lr"] <= 0.1 and 0.1 <= r["drop"] <= 0.5 for r in runs)
    assert all(isinstance(r["units"], int) and 16 <= r["units"] <= 512 for r in runs)
    assert {r["opt"] for r in runs} == {"sgd", "adam"}
    # log-uniform: about as many draws in each decade
    decades = [sum(10**-k <= r["lr"] < 10 ** (-k + 1) for r in runs) for k in (5, 4, 3, 2)]
    assert min(decades) > 20, decades
    assert e.as_json()["seed"] == 42


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("method: grid\n", "m.yml:14:3: experiment.parameters: required but missing"),
        (
            "method: random\nparameters: {lr: [1]}\n",
            "experiment.count: required for method random",
        ),
        (
            "method: grid\nparameters:\n  lr: []\n",
            "m.yml:16:9: experiment.parameters.lr: an empty list",
        ),
        (
            "method: random\ncount: 3\nparameters:\n  lr: {min: 0.5, max: 0.1}\n",
            "m.yml:17:15: experiment.parameters.lr.min: min (0.5) is greater than max (0.1)",
        ),
        (
            "method: grid\nparameters:\n  lr: {min: 0.1, max: 0.5}\n",
            "experiment.parameters.lr: a grid needs values",
        ),
        (
            "method: grid\nparameters:\n  DATA_DIR: [a]\n",
            "m.yml:16:5: experiment.parameters.DATA_DIR: 'DATA_DIR' would shadow",
        ),
        (
            "method: grid\nparameters:\n  2fast: [a]\n",
            "experiment.parameters.2fast: '2fast' cannot be an environment variable's name",
        ),
        (
            "method: grid\nparameters:\n  a: {min: 1, max: 200, integer: true}\n"
            "  b: {min: 1, max: 100, integer: true}\n",
            "the grid has 20,000 combinations; an experiment has at most 10,000 runs",
        ),
        (
            "method: random\ncount: 20000\nparameters: {lr: [1]}\n",
            "experiment.count: 20,000 runs; an experiment has at most 10,000",
        ),
        ("method: sweep\nparameters: {lr: [1]}\n", "'sweep' is not one of grid, random"),
        (
            "method: grid\nparameters: {lr: [1]}\nobjective: {goal: minimize}\n",
            "experiment.objective.metric: required but missing",
        ),
        (
            "method: grid\nparameters: {lr: [1]}\nearly_stopping: {after_steps: 5}\n",
            "experiment.early_stopping: early stopping compares runs by the objective",
        ),
        (
            "method: grid\nparameters: {lr: [1]}\nmax_paralel: 3\n",
            "unknown key 'max_paralel'; did you mean 'max_parallel'?",
        ),
        (
            "method: random\ncount: 2\nparameters:\n  lr: {min: 0, max: 1, log: true}\n",
            "a log range needs min > 0, not 0",
        ),
        ("method: grid\nparameters: {lr: [1]}\nmax_parallel: 0\n", "0 is less than 1"),
        # a range whose points a float cannot count: said, not an OverflowError
        (
            "method: grid\nparameters:\n  b: {min: 0, max: 1.0e+300, step: 1.0e-300}\n",
            "m.yml:16:8: experiment.parameters.b: the range has more than 10^15 points; a grid "
            "runs each, at most 10,000",
        ),
        (
            "method: random\ncount: 2\nparameters:\n  b: {min: 0, max: 1.0e+300, step: 1.0e-300}\n",
            "experiment.parameters.b: the range has more than 10^15 points, too many to draw from "
            "evenly: widen the step",
        ),
        (  # no step to widen: the range is what is too wide
            "method: random\ncount: 2\nparameters:\n  e: {min: 1, max: 1.0e+30, integer: true}\n",
            "too many to draw from evenly: narrow it, or draw it on a log scale (log: true)",
        ),
        (  # its width is no number: a draw would be inf
            "method: random\ncount: 2\nparameters:\n  b: {min: -1.0e+308, max: 1.0e+308}\n",
            "experiment.parameters.b.max: the range -1e+308 to 1e+308 is wider than a number can "
            "hold",
        ),
        (  # a grid of 1,024 evenly spaced runs is not what log: true asked for
            "method: grid\nparameters:\n  bs: {min: 1, max: 1024, log: true, integer: true}\n",
            "experiment.parameters.bs.log: a grid spaces a range's points evenly",
        ),
        (
            'method: grid\nname: "a\\e[31mb"\nparameters: {lr: [1]}\n',
            "experiment.name: holds the control character U+001B",
        ),
        (
            'method: grid\nparameters: {lr: [1]}\nobjective: {metric: "", goal: minimize}\n',
            "experiment.objective.metric: is empty; name a metric",
        ),
        (
            f"method: grid\nparameters: {{lr: [1, {'v' * 70_000}]}}\n",
            "experiment.parameters.lr[1]: is 70,000 bytes long; a value the command gets in its "
            "environment is at most 65,536",
        ),
        (
            f"method: grid\nname: {'e' * 300}\nparameters: {{lr: [1]}}\n",
            "experiment.name: is 300 characters long; at most 256",
        ),
        (
            'method: grid\nparameters: {lr: ["c\\nd"]}\n',
            "experiment.parameters.lr[0]: holds the control character U+000A",
        ),
        (
            "method: grid\nparameters: {lr: [.inf]}\n",
            "experiment.parameters.lr[0]: expected a number or text, found '.inf', not a finite "
            "number",
        ),
        ("method: random\ncount: 2.5\nparameters: {lr: [1]}\n", "found the number 2.5"),
    ],
)
def test_each_mistake_is_one_located_error(block, expected):
    found = errors(block)
    assert any(expected in line for line in found), found


def test_the_objective_must_be_a_metric_the_log_pattern_reads():
    extra = "evaluation_metrics: {type: log, pattern: 'loss (?P<loss>[0-9.]+)'}\n"
    found = errors(
        "method: grid\nparameters: {lr: [1]}\nobjective: {metric: val_loss}\n", extra=extra
    )
    assert any("'val_loss' is not a metric the log pattern reads (loss)" in e for e in found)
    ok = check("method: grid\nparameters: {lr: [1]}\nobjective: {metric: loss}\n", extra=extra)
    assert ok.ok, ok.formatted()


def test_every_problem_of_a_block_is_said_at_once():
    found = errors(
        """\
        method: grid
        count: 2
        parameters:
          PATH: [1]
          lr: []
        """
    )
    assert len(found) == 3, found
    # a wrong early_stopping block and no objective: both said, not one after the other
    found = errors(
        "method: grid\nparameters: {a: [1, 2]}\n"
        "early_stopping: {rule: median, after_steps: -1, min_runs: 0}\n"
    )
    assert len(found) == 3, found
    assert any("early stopping compares runs by the objective" in e for e in found), found


def test_a_value_given_twice_in_a_grid_is_warned_of_with_where_not_in_a_random_choice():
    report = check("method: grid\nparameters:\n  lr: [0.1, '0.1', 0.01]\n  bs: {values: [8, 8]}\n")
    assert report.ok  # a warning: the runs are made, as written
    said = [p.format("m.yml") for p in report.warnings]
    assert len(said) == 2, said
    assert said[0] == (
        "m.yml:16:15: experiment.parameters.lr[1]: warning: 0.1 again (as [0]): the grid makes "
        "each run with it twice, the same"
    )  # where, in the file: its line and column
    assert "experiment.parameters.bs.values[1]: warning: 8 again (as [0])" in said[1]
    assert report.manifest.experiment.size() == 6
    weighted = check("method: random\ncount: 3\nparameters: {opt: [adam, adam, sgd]}\n")
    assert weighted.ok and not weighted.warnings  # adam drawn twice as often: as meant


def test_the_values_a_command_sees():
    assert [as_environment(v) for v in (0.001, 1e-05, 64, True, "two words", 0.1)] == [
        "0.001",
        "1e-05",
        "64",
        "true",
        "two words",
        "0.1",
    ]
    assert shadows("PATH") and shadows("TRAINUI_HOME") and shadows("LD_PRELOAD")
    assert not shadows("learning_rate") and not shadows("path")


def test_a_name_the_shell_sets_itself_is_refused_as_shadowing():
    """A parameter PPID=123 reached the command as the shell's own PPID: each variable that sh
    or bash sets whatever the environment says is refused (checked against the real shells)."""
    import shutil
    import subprocess

    candidates = (
        "PPID", "LINENO", "SHLVL", "RANDOM", "SRANDOM", "SECONDS", "HISTCMD", "EPOCHSECONDS",
        "EPOCHREALTIME", "SHELLOPTS", "BASHOPTS", "OPTERR", "OPTIND", "IFS", "PWD", "UID",
        "EUID", "GROUPS", "FUNCNAME", "COLUMNS", "LINES", "lr", "hidden",
    )  # fmt: skip
    shells = [s for s in ("sh", "bash") if shutil.which(s)]
    assert shells
    for name in candidates:
        for shell in shells:
            seen = subprocess.run(
                [shell, "-c", f'echo "${{{name}}}"'],
                env={"PATH": "/usr/bin:/bin", name: "zzz"},
                capture_output=True,
                text=True,
            ).stdout.strip()
            if seen != "zzz":
                assert shadows(name), (name, shell, seen)
    assert not shadows("lr") and not shadows("hidden")


def test_every_variable_the_learner_gives_the_command_is_refused_as_a_parameter():
    """A parameter TRAINING_ATTEMPT=7 was accepted, shown as the run's, and the command got
    trainui's 1: every variable of the run's own (those a container is given by name) is
    refused."""
    from trainui.learner.runtime import RUN_VARIABLES

    assert "TRAINING_ATTEMPT" in RUN_VARIABLES
    assert [name for name in RUN_VARIABLES if not shadows(name)] == []


def test_the_schema_describes_the_block():
    from trainui.core.manifest import json_schema

    block = json_schema()["properties"]["experiment"]
    assert block["properties"]["method"]["enum"] == ["grid", "random"]
    assert block["properties"]["count"]["maximum"] == MAX_RUNS


def test_the_median_rule():
    others = [([0, 5, 10], [3.0, 2.0, 1.0]), ([0, 5, 10], [3.0, 1.0, 0.5]), ([0, 5], [3, 4.0])]
    # at step 5: the others have 2.0, 1.0, 4.0 -> median 2.0
    assert median_stop([0, 5], [3.0, 2.5], others, "minimize", 5, 3) == (2.5, 5, 2.0)
    assert median_stop([0, 5], [3.0, 1.5], others, "minimize", 5, 3) is None
    assert median_stop([0, 5], [3.0, 1.5], others, "maximize", 5, 3) == (1.5, 5, 2.0)
    # not yet past after_steps, or too few others that reached the step
    assert median_stop([0, 5], [3.0, 9.0], others, "minimize", 6, 3) is None
    # a run ahead of the others: judged at the latest step 3 of them reached (5), by its
    # last value at or before it (3.0 at step 0), not left alone until they catch up
    assert median_stop([0, 7], [3.0, 9.0], others, "minimize", 5, 3) == (3.0, 5, 2.0)
    assert median_stop([0, 7], [1.0, 9.0], others, "minimize", 5, 3) is None
    assert median_stop([0, 7], [3.0, 9.0], others, "minimize", 6, 3) is None  # 5 < after
    # an other run's value at the step is its last at or before it
    assert median_stop([0, 7], [3.0, 9.0], others, "minimize", 5, 2) == (9.0, 7, 1.5)
    assert stop_reason("val_loss", 0.41, 300, 0.33) == (
        "stopped early: val_loss 0.41 at step 300, median 0.33"
    )


def test_max_parallel_holds_back_an_experiments_runs_without_blocking_others():
    scheduler = Scheduler([0, 1, 2, 3])
    waiting = [Waiting(f"e{i}", 1, 0.0, "exp") for i in range(5)] + [Waiting("solo", 2, 0.0)]
    plan = scheduler.plan(waiting, {"busy": [0]}, 1, 1.0, {"exp": (2, 1)})
    assert [run for run, _ in plan.starts] == ["e0", "solo"]
    assert dict(plan.starts)["solo"] == (2, 3)
    assert "at most 2 at once" in plan.reasons["e1"]
    # without room given, nothing holds it back
    plan = scheduler.plan(waiting, {}, 0, 1.0)
    assert [run for run, _ in plan.starts] == ["e0", "e1", "e2", "e3"]


def test_a_run_held_back_behind_its_experiments_runs_that_wait_for_a_slot_says_the_slot():
    """2 CPU slots, max_parallel 3: two runs going, the third waits for a slot, and those
    after it wait for a slot too, not for max_parallel (raising it would start nothing)."""
    scheduler = Scheduler(None, cpu_slots=2)
    waiting = [Waiting(f"e{i}", 1, 0.0, "exp") for i in range(2, 6)]
    plan = scheduler.plan(waiting, {}, 2, 1.0, {"exp": (3, 2)})
    assert plan.starts == []
    assert plan.reasons == {
        "e2": "waiting for a CPU slot: 0 of 2 free",
        "e3": "waiting for a CPU slot: 0 of 2 free, 1 run ahead",
        "e4": "waiting for a CPU slot: 0 of 2 free, 2 runs ahead",
        "e5": "waiting for a CPU slot: 0 of 2 free, 3 runs ahead",
    }
    # at its limit by runs that go: max_parallel it is
    plan = scheduler.plan(waiting, {}, 2, 1.0, {"exp": (2, 2)})
    assert set(plan.reasons.values()) == {
        "waiting: its experiment runs at most 2 at once (max_parallel)"
    }
    # GPUs: one free and taken by e2; e3 waits on max_parallel 2 (e2 and one going)
    gpus = Scheduler([0, 1])
    plan = gpus.plan(waiting, {"other": [0]}, 0, 1.0, {"exp": (2, 1)})
    assert plan.starts == [("e2", (1,))]
    assert plan.reasons["e3"] == "waiting: its experiment runs at most 2 at once (max_parallel)"
    # max_parallel 4 with one going: e2 starts, e3 and e4 could but no GPU is left
    plan = gpus.plan(waiting, {"other": [0]}, 0, 1.0, {"exp": (4, 1)})
    assert plan.reasons["e3"] == "waiting for 1 GPU: 0 free"
    assert plan.reasons["e5"] == "waiting for 1 GPU: 0 free, 2 runs ahead"


def test_an_empty_block_is_refused_not_taken_for_a_single_run():
    report = parse_manifest(BASE + "experiment:\n", "m.yml")
    assert [p.format("m.yml") for p in report.errors] == [
        "m.yml:13:12: experiment: is empty: give method and parameters (SPEC §9), or leave "
        "experiment: out for a single run"
    ]


def test_a_name_with_a_control_character_is_refused_a_command_may_have_newlines():
    text = BASE.replace("name: mnist", 'name: "mn\\e[2Jist"')
    report = parse_manifest(text, "m.yml")
    assert [p.format("m.yml") for p in report.errors] == [
        "m.yml:2:9: model_definition.name: holds the control character U+001B; a one-line value "
        "may not"
    ]
    lines = BASE.replace("command: python3 train.py --lr ${lr}", "command: |\n      a\n      b")
    assert parse_manifest(lines, "m.yml").ok


def test_numbers_written_as_yaml_1_2_floats_are_numbers():
    # PyYAML (YAML 1.1) reads 1e-5 as text for want of a dot; a learning rate is written so
    found = experiment(
        """\
        method: random
        count: 50
        seed: 3
        parameters:
          lr: {min: 1e-5, max: 1E-1, log: true}
          wd: [1e-5, 3e2, 1.5]
        """
    )
    lr, wd = found.parameters
    assert (lr.low, lr.high, lr.log) == (1e-5, 0.1, True)
    assert wd.values == (1e-5, 300.0, 1.5)
    assert all(1e-5 <= run["lr"] <= 0.1 for run in found.expand())


def test_an_integer_range_draws_each_whole_number_alike():
    # round(uniform(1, 10)) gave 1 and 10 half the chance of the others
    found = experiment(
        "method: random\ncount: 10000\nseed: 7\n"
        "parameters:\n  b: {min: 1, max: 10, integer: true}\n"
    )
    counts = [0] * 11
    for run in found.expand():
        counts[run["b"]] += 1
    assert counts[0] == 0 and all(900 <= n <= 1100 for n in counts[1:]), counts
    logged = experiment(
        "method: random\ncount: 10000\nseed: 7\n"
        "parameters:\n  b: {min: 1, max: 1024, log: true, integer: true}\n"
    )
    drawn = [run["b"] for run in logged.expand()]
    assert min(drawn) == 1 and max(drawn) <= 1024
    # on a log scale, each whole number gets the stretch half a unit either side of it:
    # 1 gets ln(1.5/0.5) = 1.10, 2 and 3 together ln(3.5/1.5) = 0.85
    ratio = drawn.count(1) / (drawn.count(2) + drawn.count(3))
    assert abs(ratio - 1.1 / 0.85) < 0.15, ratio


def test_a_random_sweep_draws_from_ranges_wider_than_a_grid_may_run():
    """A grid runs each point (at most 10,000); a random sweep draws count of them, from a
    hidden size up to 65,536 on a log scale, a seed from 0 to 2^31 - 1, a fine step."""
    e = experiment(
        "method: random\ncount: 50\nseed: 3\nparameters:\n"
        "  hidden: {min: 16, max: 65536, integer: true, log: true}\n"
        "  seed_: {min: 0, max: 2147483647, integer: true}\n"
        "  p: {min: 0, max: 1, step: 0.000001}\n"
    )
    runs = e.expand()
    assert runs == e.expand() and len({r["seed_"] for r in runs}) == 50
    assert all(16 <= r["hidden"] <= 65536 and isinstance(r["hidden"], int) for r in runs)
    assert max(r["hidden"] for r in runs) > 10_016  # beyond what a 10,000-point cap allowed
    assert all(0 <= r["p"] <= 1 and round(r["p"] * 1e6) == r["p"] * 1e6 for r in runs)
    assert len({r["p"] for r in runs}) == 50
    # the same ranges in a grid: each point a run, too many
    said = errors("method: grid\nparameters:\n  seed_: {min: 0, max: 2147483647, integer: true}\n")
    assert "the range has 2,147,483,648 points; a grid runs each, at most 10,000" in said[0]


def test_draws_from_a_narrow_range_stay_in_it_and_apart():
    found = experiment(
        "method: random\ncount: 20\nseed: 1\n"
        "parameters:\n  c: {min: 0.1234567, max: 0.1234569}\n  m: {min: 1000000, max: 1000001}\n"
    )
    runs = found.expand()
    assert all(0.1234567 <= r["c"] <= 0.1234569 and 1e6 <= r["m"] <= 1000001 for r in runs)
    assert len({r["c"] for r in runs}) > 10 and len({r["m"] for r in runs}) > 10
    assert all(len(repr(r["c"])) <= 12 for r in runs)  # still a few digits, not 17


def test_a_run_that_failed_is_ranked_after_the_others_and_is_never_the_best():
    # its last value is where it crashed, not the experiment's answer
    from trainui.core.lifecycle import Run
    from trainui.service.experiments import ExperimentRecord, describe, ranked

    record = ExperimentRecord(
        experiment_id="experiment-AAAAAAAAA", name="e", owner="me", submitted_at="", seq=0,
        spec={"objective": {"metric": "acc", "goal": "maximize"}},
    )  # fmt: skip

    def run(model_id: str, status: str, acc: float | None, seq: int) -> Run:
        metrics = {"acc": {"last": acc, "step": 3}} if acc is not None else None
        return Run(model_id=model_id, status=status, metrics=metrics, seq=seq)

    runs = [
        run("crashed", "failed", 0.9, 1),
        run("fine", "completed", 0.7, 2),
        run("better", "completed", 0.8, 3),
        run("none", "completed", None, 4),
    ]
    assert [r.model_id for r in ranked(record, runs)] == ["better", "fine", "crashed", "none"]
    assert describe(record, runs)["best"]["model_id"] == "better"
    assert describe(record, runs[:1])["best"] is None  # only a failed run: no best


def test_an_experiment_a_user_halted_is_halted_though_some_runs_completed_first():
    from trainui.core.lifecycle import Run
    from trainui.service.experiments import ExperimentRecord, state

    record = ExperimentRecord(
        experiment_id="experiment-AAAAAAAAA", name="e", owner="me", submitted_at="", seq=0,
        spec={},
    )  # fmt: skip
    runs = [Run(model_id="a", status="completed"), Run(model_id="b", status="halted")]
    assert state(record, runs) == "completed"  # halted by its median rule: it ended
    halted = msgspec.structs.replace(record, halted_at="2026-12-07T03:00:00Z")
    assert state(halted, runs) == "halted"
    running = [runs[0], Run(model_id="b", status="running")]
    assert state(halted, running) == "running"  # still halting


def test_every_problem_of_early_stopping_and_of_a_list_is_said_at_once():
    found = errors(
        """\
        method: grid
        parameters:
          a: [null, true, {x: 1}, [1, 2]]
        objective: {metric: loss}
        early_stopping: {rule: foo, after_steps: -1, min_runs: 0}
        """
    )
    said = "\n".join(found)
    for expected in ("a[0]", "a[2]", "a[3]", "'foo' is not a rule", "after_steps: -1 is less",
                     "min_runs: 0 is less"):  # fmt: skip
        assert expected in said, found
    assert "a[1]" not in said  # true is a value


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("max_restarts: true", "expected a whole number from 0 to 100, found the boolean 'true'"),
        ("max_restarts: 101", "'101' is not allowed: a whole number from 0 to 100"),
        ("checkpoint_interval: 1e9", "a number of seconds, 0 to 9999999 (0: no copies while"),
    ],
)
def test_restart_settings_say_what_they_take(line, expected):
    text = BASE.replace("    resource: small\n", f"    resource: small\n    {line}\n")
    found = [p.format("m.yml") for p in parse_manifest(text, "m.yml").errors]
    assert any(expected in f for f in found), found
    assert not any("put it in quotes" in f for f in found)


def test_a_long_list_written_out_is_no_alias_bomb():
    """9,990 seeds, one by one: a grid of 9,990 runs (it was refused as a 'billion laughs'
    bomb, having more than 10,000 values, none through an alias); 12,000: too many runs."""
    seeds = ", ".join(str(i) for i in range(1, 9991))
    e = experiment(f"method: grid\nparameters:\n  seed: [{seeds}]\n")
    assert e.size() == 9990
    more = ", ".join(str(i) for i in range(12_000))
    report = check(f"method: grid\nparameters:\n  seed: [{more}]\n")
    assert [p.format("m.yml") for p in report.errors] == [
        "m.yml:16:11: experiment.parameters.seed: 12,000 values; at most 10,000"
    ]
