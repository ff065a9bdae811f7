"""Experiments (SPEC §9): a manifest's ``experiment:`` block, checked and expanded into runs.

An experiment is tens to hundreds of runs of one model definition and one manifest, each with
its own values of the ``parameters``: every combination (``grid``) or ``count`` draws
(``random``, seeded: the same seed gives the same runs). Each run gets its values as
environment variables of its command, under the parameters' names.

This module is pure (no I/O, no clock): the manifest's checker calls ``check`` with the
``experiment:`` node, the service calls ``Experiment.expand`` with the seed it recorded.
It is imported only when a manifest has the block (``trainui validate``'s start-up stays lean).
"""

from __future__ import annotations

import itertools
import math
import re

from trainui.core.record import Record
from trainui.core.runs import NAME_LONGEST, is_id, new_id

ID_PREFIX = "experiment-"
METHODS = ("grid", "random")
GOALS = ("minimize", "maximize")
RULES = ("median",)
MAX_RUNS = 10_000  # an experiment of more runs is refused at validation
# a parameter's value, in bytes: Linux takes at most 128 KiB a variable (MAX_ARG_STRLEN), and a
# sandboxed command's variables are arguments of bubblewrap's too
LONGEST_VALUE = 65_536
DEFAULT_MIN_RUNS = 3  # early stopping compares a run with at least this many others
KEYS = (
    "name", "method", "count", "max_parallel", "seed", "parameters", "objective",
    "early_stopping",
)  # fmt: skip
PARAMETER_KEYS = ("values", "min", "max", "log", "integer", "step")
OBJECTIVE_KEYS = ("metric", "goal")
EARLY_STOPPING_KEYS = ("rule", "after_steps", "min_runs")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# the variables a run's command gets from trainui (SPEC §3) or relies on from the system:
# a parameter of one of these names would shadow it
RESERVED = frozenset(
    {
        "DATA_DIR", "RESULT_DIR", "LOG_DIR", "MODEL_DIR", "CHECKPOINT_DIR", "JOB_STATE_DIR",
        "TRAINING_ID", "EXPERIMENT_ID", "TRAINING_ATTEMPT", "GPU_COUNT", "CUDA_VISIBLE_DEVICES",
        "LEARNER_ID", "NUM_LEARNERS", "PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD",
        "OLDPWD", "IFS", "LANG", "LANGUAGE", "TERM", "TMPDIR", "TZ", "HOSTNAME", "MAIL", "ENV",
        "CDPATH", "PS1", "PS2", "PS4", "OPTIND", "OPTARG", "VIRTUAL_ENV", "CONDA_PREFIX",
        "HOSTTYPE",
        # set by sh or bash itself whatever the environment says
        "PPID", "LINENO", "SHLVL", "RANDOM", "SRANDOM", "SECONDS", "HISTCMD", "EPOCHSECONDS",
        "EPOCHREALTIME", "SHELLOPTS", "OPTERR",
    }
)  # fmt: skip
RESERVED_PREFIXES = ("TRAINUI_", "PYTHON", "LD_", "LC_", "CUDA_", "NVIDIA_", "BASH", "RAY_")


def new_experiment_id() -> str:
    """``experiment-`` + 9 characters of [A-Za-z0-9]."""
    return new_id(ID_PREFIX)


def is_experiment_id(text: str) -> bool:
    return is_id(text, ID_PREFIX)


def shadows(name: str) -> bool:
    """Would a parameter called ``name`` shadow a variable the command relies on?"""
    return name in RESERVED or name.startswith(RESERVED_PREFIXES)


def as_environment(value) -> str:
    """A parameter's value as its command sees it: ``0.001``, ``1e-05``, ``64``, ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class Parameter(Record):
    """One parameter: ``values`` (a tuple, grid or random choice) or a range ``low``..``high``
    (uniform, ``log``-uniform, ``integer``; a ``step`` makes it a list of points)."""

    __slots__ = ("name", "values", "low", "high", "log", "integer", "step")
    _defaults = {"values": None, "low": None, "high": None, "log": False, "integer": False,
                 "step": None}  # fmt: skip

    def points(self) -> tuple | None:
        """Every value the parameter takes in a grid; None for a continuous range."""
        if self.values is not None:
            return self.values
        if self.step is not None:
            return tuple(self._point(i) for i in range(self.count()))
        if self.integer:
            return tuple(range(int(self.low), int(self.high) + 1))
        return None

    def count(self) -> int | None:
        """How many values a grid gives, without listing them (None: a continuous range);
        a range of more points than a float can count gives ``TOO_MANY``."""
        if self.values is not None:
            return len(self.values)
        if self.step is not None:
            steps = (self.high - self.low) / self.step
            return math.floor(steps + 1e-9) + 1 if steps < TOO_MANY else TOO_MANY
        if self.integer:
            return int(self.high) - int(self.low) + 1
        return None

    def _point(self, i: int):
        """The ``i``-th point of a stepped range: whole numbers where its ``min``, ``max`` and
        ``step`` are (``{min: 16, max: 128, step: 16}`` gives 32, never 32.0: a command's
        ``type=int`` takes every point alike)."""
        if self.integer or all(type(v) is int for v in (self.low, self.high, self.step)):
            return int(self.low + i * self.step)
        return _round(self.low + i * self.step, self.low, self.high, self.step)

    def draw(self, rng):
        """One random value: of the values or points, each alike (a range's points are not
        listed: a random sweep may step through millions); of a range, uniform (on a log
        scale with ``log``), an integer range giving each whole number alike."""
        if self.values is not None:
            return self.values[rng.randrange(len(self.values))]
        if self.step is not None:
            return self._point(rng.randrange(self.count()))
        low, high = self.low, self.high
        if self.integer and not self.log:
            return rng.randint(int(low), int(high))
        if self.integer:  # each whole number gets the stretch of the log scale nearest it
            value = math.exp(rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
            return min(int(high), max(int(low), round(value)))
        if self.log:
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        return _round(value, low, high, high - low)

    def as_json(self) -> dict:
        if self.values is not None:
            return {"values": list(self.values)}
        spec: dict = {"min": self.low, "max": self.high}
        if self.log:
            spec["log"] = True
        if self.integer:
            spec["integer"] = True
        if self.step is not None:
            spec["step"] = self.step
        return spec


TOO_MANY = 10**15  # a range's points, where there are more than can be counted


def _round(value: float, low: float, high: float, scale: float) -> float:
    """``value`` with six significant digits (what a user reads, writes back, and what the
    command gets), or as many more as tell apart values ``scale`` apart near it (a narrow
    range, a fine step); never outside ``low``..``high``."""
    digits = 6
    size = max(abs(value), abs(low), abs(high))
    if scale > 0 and size > 0:
        digits = min(17, max(6, math.ceil(math.log10(size / scale)) + 3))
    return float(min(high, max(low, float(f"{value:.{digits}g}"))))  # an end: 2.0, not 2


def _points(count: int) -> str:
    """A count of points as said: ``12,000``, or ``more than 10^15``."""
    return f"{count:,}" if count < TOO_MANY else "more than 10^15"


class Experiment(Record):
    """A checked ``experiment:`` block."""

    __slots__ = (
        "name", "method", "count", "max_parallel", "seed", "parameters", "objective_metric",
        "goal", "early_stopping",
    )  # fmt: skip
    _defaults = {"name": "", "count": None, "max_parallel": None, "seed": None,
                 "objective_metric": None, "goal": "minimize", "early_stopping": None}  # fmt: skip

    def size(self) -> int:
        """How many runs the experiment has."""
        if self.method == "random":
            return self.count
        return math.prod(p.count() for p in self.parameters)

    def expand(self, seed: int | None = None) -> list[dict]:
        """Each run's parameter values, in order: every combination (grid, the first
        parameter varying slowest) or ``count`` draws of a generator seeded with ``seed``."""
        names = [p.name for p in self.parameters]
        if self.method == "grid":
            grids = [p.points() for p in self.parameters]
            return [dict(zip(names, values, strict=True)) for values in itertools.product(*grids)]
        import random

        rng = random.Random(self.seed if seed is None else seed)
        return [{p.name: p.draw(rng) for p in self.parameters} for _ in range(self.count)]

    def as_json(self) -> dict:
        """The block as the API shows it (``seed``: the one given, or None)."""
        objective = (
            {"metric": self.objective_metric, "goal": self.goal} if self.objective_metric else None
        )
        return {
            "name": self.name,
            "method": self.method,
            "count": self.size(),
            "max_parallel": self.max_parallel,
            "seed": self.seed,
            "parameters": {p.name: p.as_json() for p in self.parameters},
            "objective": objective,
            "early_stopping": dict(self.early_stopping) if self.early_stopping else None,
        }


# --- checking the block (called by the manifest's checker) -----------------------------------


def check(checker, node, path: str, default_name: str) -> Experiment | None:
    """The ``experiment:`` mapping ``node`` checked; every problem reported through
    ``checker`` (``error``/``warn``/``entries``/``unknown_key``), located. None when it has
    problems."""
    if node.kind != "map":
        checker.error(node, path, f"expected a mapping, found {_kind(node)}")
        return None
    before = len([p for p in checker.problems if p.severity == "error"])
    given = _given(checker, node, path, KEYS)
    where = (node.line, node.column)

    def sub(name: str) -> str:
        return f"{path}.{name}"

    name = default_name
    if "name" in given:
        value = given["name"][1]
        if value.kind != "scalar" or not value.value.strip() or value.scalar_type == "null":
            checker.error(value, sub("name"), "expected a name (text)")
        elif len(value.value) > NAME_LONGEST:
            checker.error(
                value, sub("name"), f"is {len(value.value):,} characters long; at most "
                f"{NAME_LONGEST}"
            )  # fmt: skip
        elif not _control(checker, value, sub("name"), value.value):
            name = value.value
    method = None
    if "method" not in given:
        checker.error(where, sub("method"), "required but missing: grid or random")
    else:
        value = given["method"][1]
        if value.kind == "scalar" and value.value in METHODS:
            method = value.value
        else:
            shown = f"'{value.value}'" if value.kind == "scalar" else _kind(value)
            checker.error(value, sub("method"), f"{shown} is not one of grid, random")
    count = _integer(checker, given, "count", sub("count"), minimum=1)
    if count is not None and count > MAX_RUNS:
        checker.error(
            given["count"][1], sub("count"), f"{count:,} runs; an experiment has at most "
            f"{MAX_RUNS:,}"
        )  # fmt: skip
        count = None
    if method == "random" and "count" not in given:
        checker.error(where, sub("count"), "required for method random: how many runs to draw")
    if method == "grid" and "count" in given:
        checker.error(
            given["count"][0],
            sub("count"),
            "a grid runs every combination of the values; count is for method random",
        )
    max_parallel = _integer(checker, given, "max_parallel", sub("max_parallel"), minimum=1)
    seed = _integer(checker, given, "seed", sub("seed"), minimum=0)
    if seed is not None and method == "grid":
        checker.warn(given["seed"][0], sub("seed"), "a grid draws nothing: the seed is not used")
    parameters = _parameters(checker, given.get("parameters"), sub("parameters"), where, method)
    objective = _objective(checker, given.get("objective"), sub("objective"))
    early = _early_stopping(checker, given.get("early_stopping"), sub("early_stopping"))
    # said whether or not the block itself is right (all the problems at once)
    if "early_stopping" in given and "objective" not in given:
        checker.error(
            given["early_stopping"][0],
            sub("early_stopping"),
            "early stopping compares runs by the objective: give objective: {metric: NAME}",
        )
    if method == "grid" and parameters:
        size = 1
        for p in parameters:
            size *= p.count() or 1
        if size > MAX_RUNS:
            checker.error(
                given["parameters"][0],
                sub("parameters"),
                f"the grid has {_points(size)} combinations; an experiment has at most "
                f"{MAX_RUNS:,} "
                "runs (fewer values, or method random with a count)",
            )
    errors = len([p for p in checker.problems if p.severity == "error"])
    if errors > before or method is None or not parameters:
        return None
    return Experiment(
        name=name,
        method=method,
        count=count,
        max_parallel=max_parallel,
        seed=seed,
        parameters=tuple(parameters),
        objective_metric=objective[0] if objective else None,
        goal=objective[1] if objective else "minimize",
        early_stopping=early,
    )


def _given(checker, node, path: str, keys) -> dict:
    """A mapping's entries by name (key node, value node); an unknown key is said."""
    given = {}
    for name, key, value in checker.entries(node, path):
        if name not in keys:
            checker.unknown_key(key, path, name, list(keys))
            continue
        given[name] = (key, value)
    return given


def _kind(node) -> str:
    if node.kind == "map":
        return "a mapping"
    if node.kind == "seq":
        return "a list"
    kind = node.scalar_type if node.plain else "str"
    if kind == "null":
        return "an empty value"
    if kind in ("int", "float"):
        return f"the number {node.value[:40]}"
    if kind == "bool":
        return f"the boolean {node.value}"
    return f"the text '{node.value[:40]}'"


def _not_a_number(node) -> str:
    """What a node that should have been a finite number is, in words."""
    if node.kind == "scalar" and node.plain and node.scalar_type in ("int", "float"):
        return f"'{node.value[:40]}', not a finite number"  # .inf, .nan, 1.0e+400
    return _kind(node)


# control characters (a newline, a tab, an escape sequence): in a name or a value they would
# forge lines of a run's log and redraw or recolour the terminals that show them
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _control(checker, node, path: str, text: str) -> bool:
    """Say so (located) when ``text`` holds a control character."""
    found = _CONTROL.search(text)
    if found is None:
        return False
    checker.error(
        node, path, f"holds the control character U+{ord(found.group()):04X}; names and "
        "values are one line of printable text"
    )  # fmt: skip
    return True


# a float as YAML 1.2 writes it: YAML 1.1 (PyYAML) reads 1e-5 as text, for want of a dot
_FLOAT_12 = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")


def _number(node) -> float | int | None:
    """A YAML scalar's number (int or float), None when it is not a finite number."""
    if node.kind == "scalar" and node.plain and node.scalar_type == "str":
        if _FLOAT_12.match(node.value):  # min: 1e-5, as people write a learning rate
            value = float(node.value)
            return value if math.isfinite(value) else None
        return None
    if node.kind != "scalar" or not node.plain or node.scalar_type not in ("int", "float"):
        return None
    text = node.value.replace("_", "")
    try:
        if node.scalar_type == "int":
            try:
                return int(text, 10)
            except ValueError:
                return int(text, 0)  # 0x1f, 0o17, 0b101
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _scalar(node):
    """A parameter value as JSON: int, float, bool or text; None for what is not a value."""
    if node.kind != "scalar":
        return None
    if node.plain and node.scalar_type == "bool":
        return node.value.lower() in ("true", "yes", "on", "y")
    if node.plain and (node.scalar_type in ("int", "float") or _FLOAT_12.match(node.value)):
        return _number(node)
    if node.plain and node.scalar_type == "null":
        return None
    return node.value


def _integer(checker, given: dict, name: str, path: str, minimum: int) -> int | None:
    if name not in given:
        return None
    node = given[name][1]
    value = _number(node)
    if not isinstance(value, int) or isinstance(value, bool):
        checker.error(node, path, f"expected a whole number, found {_kind(node)}")
        return None
    if value < minimum:
        checker.error(node, path, f"{value} is less than {minimum}")
        return None
    return value


def _parameters(checker, entry, path: str, where, method: str | None) -> list[Parameter]:
    if entry is None:
        checker.error(where, path, "required but missing: the values to sweep")
        return []
    _key, node = entry
    if node.kind != "map" or not node.items:
        found = "an empty mapping" if node.kind == "map" else _kind(node)
        checker.error(
            node, path, f"expected a mapping of parameters (name: {{values: [...]}}), found {found}"
        )
        return []
    parameters = []
    for name, pkey, value in checker.entries(node, path):
        ppath = f"{path}.{name}"
        if not _NAME.match(name):
            checker.error(
                pkey, ppath, f"'{name}' cannot be an environment variable's name: use letters, "
                "digits and _, not starting with a digit"
            )  # fmt: skip
            continue
        if shadows(name):
            checker.error(
                pkey, ppath, f"'{name}' would shadow the variable of that name that the "
                "command relies on; give the parameter another name"
            )  # fmt: skip
            continue
        parameter = _parameter(checker, name, value, ppath, method)
        if parameter is not None:
            parameters.append(parameter)
    return parameters


def _parameter(checker, name: str, node, path: str, method: str | None) -> Parameter | None:
    if node.kind == "seq":  # a plain list: its values
        return _values(checker, name, node, path, method)
    if node.kind != "map":
        checker.error(
            node, path, f"expected {{values: [...]}} or {{min: ..., max: ...}}, found {_kind(node)}"
        )
        return None
    given = {}
    for key_name, key, value in checker.entries(node, path):
        if key_name not in PARAMETER_KEYS:
            checker.unknown_key(key, path, key_name, list(PARAMETER_KEYS))
            return None
        given[key_name] = (key, value)
    if "values" in given:
        extra = [k for k in given if k != "values"]
        if extra:
            checker.error(
                given[extra[0]][0], f"{path}.{extra[0]}", "a parameter has values or a range "
                "(min, max), not both"
            )  # fmt: skip
            return None
        return _values(checker, name, given["values"][1], f"{path}.values", method)
    if "min" not in given or "max" not in given:
        missing = "min" if "min" not in given else "max"
        checker.error(
            (node.line, node.column), f"{path}.{missing}", "required but missing: a parameter "
            "is {values: [...]} or a range {min: ..., max: ...}"
        )  # fmt: skip
        return None
    low, high = (_number(given[k][1]) for k in ("min", "max"))
    for k, v in (("min", low), ("max", high)):
        if v is None:
            checker.error(
                given[k][1], f"{path}.{k}", f"expected a number, found {_not_a_number(given[k][1])}"
            )
    if low is None or high is None:
        return None
    flags = {}
    for flag in ("log", "integer"):
        if flag in given:
            value = given[flag][1]
            if value.kind != "scalar" or not value.plain or value.scalar_type != "bool":
                checker.error(
                    value, f"{path}.{flag}", f"expected true or false, found {_kind(value)}"
                )
                return None
            flags[flag] = value.value.lower() in ("true", "yes", "on", "y")
    step = None
    if "step" in given:
        step = _number(given["step"][1])
        if step is None or step <= 0:
            checker.error(given["step"][1], f"{path}.step", "expected a positive number")
            return None
    if low > high:
        checker.error(given["min"][1], f"{path}.min", f"min ({low}) is greater than max ({high})")
        return None
    if flags.get("log") and low <= 0:
        checker.error(given["min"][1], f"{path}.min", f"a log range needs min > 0, not {low}")
        return None
    if flags.get("log") and step is not None:
        checker.error(given["step"][0], f"{path}.step", "a log range takes no step")
        return None
    if flags.get("log") and method == "grid":
        checker.error(
            given["log"][0], f"{path}.log", "a grid spaces a range's points evenly, not on a "
            "log scale: list the values instead (values: [0.001, 0.01, 0.1])"
        )  # fmt: skip
        return None
    if not math.isfinite(high - low):
        checker.error(
            given["max"][1], f"{path}.max", f"the range {low:g} to {high:g} is wider than a "
            "number can hold; narrow it"
        )  # fmt: skip
        return None
    integer = flags.get("integer", False)
    if integer and (low != int(low) or high != int(high)):
        checker.error(given["min"][1], f"{path}", "an integer range needs whole min and max")
        return None
    if integer and step is not None and step != int(step):
        checker.error(given["step"][1], f"{path}.step", "an integer range needs a whole step")
        return None
    parameter = Parameter(
        name=name,
        low=int(low) if integer else low,
        high=int(high) if integer else high,
        log=flags.get("log", False),
        integer=integer,
        step=(int(step) if integer else step) if step is not None else None,
    )
    if method == "grid" and parameter.count() is None:
        checker.error(
            (node.line, node.column), path, "a grid needs values: give values: [...], a step, "
            "or integer: true (a continuous range is for method random)"
        )  # fmt: skip
        return None
    # a grid runs each point; a random sweep draws count of them, from however many
    count = parameter.count()
    if count is not None and count > MAX_RUNS and method != "random":
        checker.error(
            (node.line, node.column), path, f"the range has {_points(count)} points; a grid "
            f"runs each, at most {MAX_RUNS:,}"
        )  # fmt: skip
        return None
    if count is not None and count >= TOO_MANY:
        checker.error(
            (node.line, node.column), path, f"the range has {_points(count)} points, too "
            "many to draw from evenly: "
            + ("widen the step" if parameter.step is not None
               else "narrow it, or draw it on a log scale (log: true)")
        )  # fmt: skip
        return None
    return parameter


def _values(checker, name: str, node, path: str, method: str | None = None) -> Parameter | None:
    if node.kind != "seq":
        checker.error(node, path, f"expected a list of values, found {_kind(node)}")
        return None
    if not node.items:
        checker.error(node, path, "an empty list: a parameter needs at least one value")
        return None
    if len(node.items) > MAX_RUNS:
        checker.error(node, path, f"{len(node.items):,} values; at most {MAX_RUNS:,}")
        return None
    values = []
    for i, item in enumerate(node.items):  # every problem said, not only the first
        value = _scalar(item)
        if value is None:
            what = _not_a_number(item)
            checker.error(item, f"{path}[{i}]", f"expected a number or text, found {what}")
        elif isinstance(value, str) and _control(checker, item, f"{path}[{i}]", value):
            value = None
        elif isinstance(value, str) and len(value.encode()) > LONGEST_VALUE:
            checker.error(
                item, f"{path}[{i}]", f"is {len(value.encode()):,} bytes long; a value the "
                f"command gets in its environment is at most {LONGEST_VALUE:,} (pass a file's "
                "name instead)"
            )  # fmt: skip
            value = None
        values.append(value)
    if any(value is None for value in values):
        return None
    if method == "grid":  # (random: a value given twice is drawn twice as often, as meant)
        first: dict[str, int] = {}
        for i, (item, value) in enumerate(zip(node.items, values, strict=True)):
            text = as_environment(value)  # 0.1 and "0.1": the same to the command
            if text in first:
                checker.warn(
                    item, f"{path}[{i}]", f"{text} again (as [{first[text]}]): the grid makes each "
                    "run with it twice, the same"
                )  # fmt: skip
            else:
                first[text] = i
    return Parameter(name=name, values=tuple(values))


def _objective(checker, entry, path: str) -> tuple[str, str] | None:
    if entry is None:
        return None
    _, node = entry
    if node.kind != "map":
        checker.error(node, path, f"expected {{metric: NAME, goal: minimize}}, found {_kind(node)}")
        return None
    metric, goal = None, "minimize"
    seen = set()
    for name, key, value in checker.entries(node, path):
        if name not in OBJECTIVE_KEYS:
            checker.unknown_key(key, path, name, list(OBJECTIVE_KEYS))
            continue
        seen.add(name)
        if value.kind == "scalar" and value.scalar_type == "str" and not value.value.strip():
            wanted = "name a metric" if name == "metric" else "minimize or maximize"
            checker.error(value, f"{path}.{name}", f"is empty; {wanted}")
        elif value.kind != "scalar" or not value.value.strip() or value.scalar_type == "null":
            checker.error(value, f"{path}.{name}", f"expected text, found {_kind(value)}")
        elif name == "metric":
            metric = value.value
        elif value.value not in GOALS:
            checker.error(
                value, f"{path}.goal", f"'{value.value}' is not one of minimize, maximize"
            )
        else:
            goal = value.value
    if "metric" not in seen:
        checker.error(
            (node.line, node.column), f"{path}.metric", "required but missing: the metric that "
            "ranks the runs (a name the runs' metrics have, SPEC §8)"
        )  # fmt: skip
    return (metric, goal) if metric else None


def _early_stopping(checker, entry, path: str) -> dict | None:
    if entry is None:
        return None
    _, node = entry
    if node.kind != "map":
        checker.error(node, path, f"expected {{rule: median, after_steps: N}}, found {_kind(node)}")
        return None
    given = _given(checker, node, path, EARLY_STOPPING_KEYS)
    rule = "median"
    known = True
    if "rule" in given:
        value = given["rule"][1]
        if value.kind != "scalar" or value.value not in RULES:
            shown = f"'{value.value}'" if value.kind == "scalar" else _kind(value)
            checker.error(value, f"{path}.rule", f"{shown} is not a rule trainui knows: median")
            known = False  # the other keys are checked all the same: every problem at once
    after = _integer(checker, given, "after_steps", f"{path}.after_steps", minimum=0)
    min_runs = _integer(checker, given, "min_runs", f"{path}.min_runs", minimum=1)
    if not known or ("after_steps" in given and after is None):
        return None
    if "min_runs" in given and min_runs is None:
        return None
    return {
        "rule": rule,
        "after_steps": after or 0,
        "min_runs": min_runs or DEFAULT_MIN_RUNS,
    }


def one_run_manifest(text: str, parameters: dict, name: str = "", objective=None) -> str | None:
    """A run's manifest ``text`` with its ``experiment:`` block replaced by a grid of that run's
    own ``parameters`` alone: what cloning one run of an experiment submits (the run again,
    not the whole sweep). None when the text has no such block (or cannot be read)."""
    import json

    from trainui.core.yamlnodes import mapping_of

    root = mapping_of(text)
    if root is None:
        return None
    block = next(
        ((k, v) for k, v in root.items if k.kind == "scalar" and k.value == "experiment"), None
    )
    if block is None:
        return None
    key, value = block
    lines = ["experiment:"]
    if name:
        lines.append(f"  name: {json.dumps(name)}")
    lines += ["  method: grid", "  parameters:"]
    lines += [f"    {k}: [{json.dumps(v)}]" for k, v in parameters.items()]
    if objective and objective.get("metric"):
        goal = objective.get("goal", "minimize")
        lines.append(f"  objective: {{metric: {json.dumps(objective['metric'])}, goal: {goal}}}")
    end = value.end
    tail = text[end:]
    return text[: key.start] + "\n".join(lines) + ("\n" if not tail.startswith("\n") else "") + tail
