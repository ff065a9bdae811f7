"""The command line: parse arguments, call the client (or pure core logic), print.

Imports are made inside the commands, so that light commands (`validate`, `schema`,
`--version`) start as fast as a bare Python with PyYAML.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from trainui import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """A mistake or a refusal to tell the user in one sentence, with the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# --- commands ---------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from trainui.core.manifest import read_manifest

    if _swapped(args.manifest, args.model_definition):  # `train`'s order: MODEL MANIFEST
        args.manifest, args.model_definition = args.model_definition, args.manifest
    report = read_manifest(args.manifest, env=os.environ)
    problems = list(report.problems)
    info = None
    definition_error = None
    if args.model_definition:
        from trainui.core import definition

        try:
            info = _check_definition(args.model_definition, definition)
        except definition.DefinitionError as error:
            definition_error = str(error)
        if info is not None and report.manifest is not None:
            problems.extend(_command_warnings(report, info.names))
    checked = None  # what the framework was checked against (SPEC §10)
    if report.framework is not None:  # said with the other errors, if any
        checked, problem = _check_framework(args, report.framework)
        if problem is not None:
            problems.append(problem)
            problems.sort(key=lambda p: (p.line, p.column))
    errors = sum(p.severity == "error" for p in problems) + (definition_error is not None)
    warnings = sum(p.severity == "warning" for p in problems)
    if args.json:
        import json

        out = {
            "valid": errors == 0,
            "manifest": report.filename,
            "problems": [p.as_dict() for p in problems],
            "frameworks_checked": checked,
        }
        if report.manifest is not None and report.manifest.experiment is not None:
            block = report.manifest.experiment
            out["experiment"] = block.as_json()
        if args.model_definition:
            out["model_definition"] = {
                "path": args.model_definition,
                "error": definition_error,
                "files": info.entries if info else None,
                "bytes": info.total_bytes if info else None,
            }
        print(json.dumps(out, indent=2))
        return EXIT_OK if errors == 0 else EXIT_FAILED
    for problem in problems:
        print(problem.format(report.filename))
    if definition_error:
        print(_definition_problem(args.model_definition, definition_error))
    # the verdict right after the errors, naming what is not valid; the notes after it
    manifest_errors = errors - (definition_error is not None)
    said_warnings = f" ({_plural(warnings, 'warning')})" if warnings else ""
    if manifest_errors:
        verdict = f"{report.filename}: not valid ({_plural(manifest_errors, 'error')}, "
        verdict += f"{_plural(warnings, 'warning')})"
        if definition_error:
            verdict += f"; model definition {args.model_definition}: not valid"
    elif definition_error:
        verdict = f"model definition {args.model_definition}: not valid; "
        verdict += f"{report.filename}: valid{said_warnings}"
    else:
        verdict = report.filename
        if info is not None:
            verdict += f" and {args.model_definition} ({_plural(info.entries, 'file')})"
        verdict += f": valid{said_warnings}"
    print(verdict)
    block = report.manifest.experiment if not errors else None
    if block is not None:  # what `train` will submit
        print(
            f"an experiment of {_plural(block.size(), 'run')} ({block.method}, "
            f"{_plural(len(block.parameters), 'parameter')}: "
            f"{', '.join(p.name for p in block.parameters)})"
        )
    if checked is not None:
        print(f"framework: {checked}")
    return EXIT_OK if errors == 0 else EXIT_FAILED


def _swapped(manifest: str, model: str | None) -> bool:
    """Were `validate`'s two paths given in `train`'s order (MODEL.zip|DIR MANIFEST.yml)?"""
    if not model or os.path.isdir(model):
        return False
    looks_like_model = os.path.isdir(manifest) or manifest.lower().endswith(".zip")
    return looks_like_model and model.lower().endswith((".yml", ".yaml"))


def _definition_problem(path: str, error: str) -> str:
    """The line saying why the model definition at ``path`` is refused: its sentence names the
    file already, most often (said once, not as `model.zip: model.zip is not a zip file`)."""
    name = os.path.basename(os.path.normpath(path))
    if path in error or name in error:
        return f"model definition: {error}"
    return f"model definition {path}: {error}"


def _check_framework(args: argparse.Namespace, manifest):
    """The manifest's framework against the service's catalogue when a service answers (it
    is not started for this), else against this machine's catalogue file: (what it was checked
    against, a Problem or None)."""
    from trainui import frameworks
    from trainui.client import BlockingClient, ClientError
    from trainui.core.manifest import Problem

    answer = None
    try:
        with BlockingClient(autostart=False, **_remote(args)) as client:
            answer = client.frameworks()
        where = f"checked against the service's catalogue ({answer.get('message', '')})"
    except ClientError as error:
        answer = None
        reason = str(error)
    if answer is None:
        if _remote(args) or os.environ.get("TRAINUI_URL"):
            return f"checked the manifest only: {reason}", None
        try:
            catalogue = frameworks.load(os.environ)
        except frameworks.CatalogueError as error:
            return f"checked the manifest only: {error}", None
        if not catalogue.present:
            return (
                "checked the manifest only: no service answered, and this machine has no "
                f"frameworks catalogue ({frameworks.catalogue_path(os.environ)})",
                None,
            )
        answer = catalogue.describe()
        where = f"checked against {catalogue.path} (no service answered)"
    if answer.get("catalogue") is None:  # a service without one (this machine's is said above)
        return (
            "not checked: the service has no frameworks catalogue, so every framework runs on "
            "the host",
            None,
        )
    if answer.get("problem"):  # the service refuses every submission until it is fixed
        return "not checked: the service's catalogue has errors (above)", Problem(
            line=1,
            column=1,
            path="",
            message=f"the service's frameworks catalogue has errors, and it takes no run until "
            f"its owner fixes them: {answer['problem']}",
        )
    problem = frameworks.manifest_problem(manifest, answer.get("frameworks") or [])
    if problem is None:
        return where, None
    why, line, column = problem
    return where, Problem(
        line=line, column=column, path="model_definition.framework", message=f"C104 {why}"
    )


def cmd_notify(args: argparse.Namespace) -> int:
    """``trainui notify test``: one event to each of the service's hooks."""
    answer = _call(args, lambda client: client.notify_test())
    hooks = answer.get("hooks") or []
    problems = answer.get("problems") or []
    if problems:  # the file changed and has errors: the service kept the hooks before
        print(
            "trainui: the service's config changed and has errors; its hooks are those before:",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    if not hooks and not problems:
        from trainui.service.notify import config_path

        print(f"No notification hooks: write [[notify]] in {config_path(os.environ)}.")
        return EXIT_OK
    for hook in hooks:
        mark = "OK" if hook["ok"] else f"FAILED: {hook['problem']}"
        print(f"{hook['hook']}: {hook['to']}: {mark}")
    return EXIT_OK if all(h["ok"] for h in hooks) and not problems else EXIT_FAILED


def cmd_frameworks(args: argparse.Namespace) -> int:
    """The frameworks this box runs (SPEC §10), as the service's catalogue says."""
    answer = _call(args, lambda client: client.frameworks())
    if args.json:
        import json

        print(json.dumps(answer, indent=2))
        return EXIT_OK
    if answer.get("problem"):
        print(
            "warning: the catalogue changed and has errors: the service takes no run until "
            f"they are fixed (what it held before is listed below): {answer['problem']}"
        )
    entries = answer.get("frameworks") or []
    if answer.get("catalogue") is None:
        where = answer.get("looked_in")  # the service's path (a service before 0.1 said none)
        if not where:
            from trainui.frameworks import catalogue_path

            where = catalogue_path(os.environ)
        print(
            "No frameworks catalogue: every framework runs on the host, with the service's "
            f"environment.\nWrite one in {where} on the service's machine (or name it in its "
            "TRAINUI_FRAMEWORKS) to choose a container, venv or conda environment per "
            "framework and version."
        )
        return EXIT_OK
    rows = [
        (
            e["name"],
            ", ".join(e.get("versions") or ()),
            e["runtime"],
            e.get("image") or e.get("path") or "-",
        )
        for e in entries
    ]
    head = ("Name", "Versions", "Runtime", "Image or path")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(3)]
    for row in [head, *rows]:
        print(
            "  ".join(str(v).ljust(w) for v, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
    print(f"\n{_plural(len(entries), 'framework')} in {answer['catalogue']}.")
    return EXIT_OK


def _check_definition(path: str, definition):  # -> DefinitionInfo
    limits = definition.Limits.from_env(os.environ)
    if os.path.isdir(path):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="trainui-") as tmp:
            info = definition.zip_directory(path, os.path.join(tmp, "model.zip"))
        _warn_skipped(info, path, definition)
        return info
    return definition.check_zip(path, limits)


def _warn_skipped(info, folder: str, definition) -> None:
    """One line on stderr naming what zipping ``folder`` left out unasked."""
    warning = definition.skipped_warning(info, folder)
    if warning:
        print(warning, file=sys.stderr, flush=True)


# options of an interpreter that take the next word as their argument (python -O does not)
_TAKES_ARGUMENT = {"python": ("-W", "-X"), "bash": ("-o", "-O"), "sh": ("-o",)}


def _command_warnings(report, names: Sequence[str]) -> list:
    """A warning when the command starts a script that the model definition does not hold."""
    import shlex

    from trainui.core.manifest import Problem

    try:
        words = shlex.split(report.manifest.command)
    except ValueError:
        return []
    interpreters = {"python", "python3", "bash", "sh", "th", "Rscript", "julia", "perl"}
    script = None
    if words and (words[0] in interpreters or words[0].startswith("python")):
        given = iter(words[1:])
        for word in given:
            if word in ("-c", "-m", "-e", "-E", "--command"):  # code or a module, no file
                return []
            if word in _TAKES_ARGUMENT.get(words[0].rstrip("0123456789."), ()):
                next(given, None)  # an option and its argument
            elif not word.startswith("-"):
                script = word
                break
    elif words and words[0].startswith("./"):
        script = words[0]
    if not script or "$" in script or os.path.isabs(script):
        return []
    script = os.path.normpath(script)
    if script in names:
        return []
    return [
        Problem(
            *_command_location(report),
            "model_definition.execution.command",
            f"runs '{script}', which is not in the model definition",
            "warning",
        )
    ]


def _command_location(report) -> tuple[int, int]:
    for number, line in enumerate(report.text.splitlines(), 1):
        stripped = line.lstrip()
        if stripped.startswith("command:"):
            return number, len(line) - len(stripped) + len("command: ") + 1
    return 1, 1


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from trainui.core.manifest import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


# --- runs (through the client) ----------------------------------------------------------------


def _calling(command: Callable):
    """Run a command that calls the service; the client's refusals become one sentence on
    stderr."""
    from trainui.client import ClientError
    from trainui.config import ConfigError

    try:
        return command()
    except ClientError as error:
        raise UserError(_not_a_run(error) or str(error)) from None
    except ConfigError as error:
        raise UserError(str(error), EXIT_USAGE) from None


def _not_a_run(error) -> str | None:
    """A run ID not found that is something else, said so: an experiment's ID, an SI No."""
    text = str(error)
    if error.status != 404 or not text.startswith("run ") or not text.endswith(" not found"):
        return None
    given = text[4 : -len(" not found")]
    if given.startswith("experiment-"):
        return (
            f"{given} is an experiment's ID, not a run's: trainui show experiment {given} "
            f"shows its runs, trainui list --experiment {given} lists them"
        )
    if given.isdigit():
        return (
            f"run {given} not found: an SI No of trainui list numbers the rows it printed; give "
            "the run's guid (training-...)"
        )
    return None


def _run(args: argparse.Namespace, command) -> int:
    """Run ``command(client)``, a coroutine function, on the async client: for a command that
    streams (a log followed, downloads)."""

    async def run() -> int:
        from trainui.client import Client

        async with Client(**_remote(args)) as client:
            return await command(client)

    import asyncio

    return _calling(lambda: asyncio.run(run()))


def _call(args: argparse.Namespace, command: Callable):
    """Run ``command(client)`` on the blocking client: for a command of a few requests, which
    then starts without an event loop."""

    def run() -> int:
        from trainui.client import BlockingClient

        with BlockingClient(**_remote(args)) as client:
            return command(client)

    return _calling(run)


def _remote(args: argparse.Namespace) -> dict[str, str]:
    """--url, --token, --cacert of this command line (else the client reads TRAINUI_*)."""
    return {o: getattr(args, o) for o in ("url", "token", "cacert") if getattr(args, o, None)}


def _time(stamp: str | None) -> str:
    """RFC 3339 without the milliseconds, as the seed prints it: 2017-10-26T11:16:51Z."""
    if not stamp:
        return "-"
    return stamp[:19] + "Z" if len(stamp) > 20 and stamp[19] == "." else stamp


def _check_run_id(words: Sequence[str], verb: str) -> str:
    """`show ID` and the seed's `show trained-models ID` both work."""
    if len(words) == 2 and words[0] in ("trained-models", "trained-model"):
        words = words[1:]
    if len(words) != 1:
        given = [w for w in words if w not in ("trained-models", "trained-model")]
        many = f" (one run at a time: {len(given)} given)" if len(given) > 1 else ""
        raise UserError(f"usage: trainui {verb} [trained-models] ID{many}", EXIT_USAGE)
    return words[0]


def cmd_train(args: argparse.Namespace) -> int:
    import re

    try:
        with open(args.manifest, "rb") as f:
            manifest = f.read()
    except OSError as error:
        hint = ""
        if os.path.isdir(args.manifest) and args.model_definition.endswith((".yml", ".yaml")):
            hint = " (the model definition comes first: trainui train MODEL MANIFEST)"
        raise UserError(
            f"cannot read {args.manifest}: {error.strerror}{hint}", EXIT_USAGE
        ) from None
    names = set(re.findall(rb"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", manifest))
    environment = {n.decode(): os.environ[n.decode()] for n in names if n.decode() in os.environ}
    print("Starting to train ...", flush=True)

    def submit(zip_path: str) -> str:
        return _call(args, lambda client: _submit(client, args, zip_path, manifest, environment))

    if os.path.isdir(args.model_definition):  # zipped here first (a .zip is sent as it is)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="trainui-") as tmp:
            model_id = submit(_zipped(args.model_definition, tmp))
    elif os.path.isfile(args.model_definition):
        model_id = submit(args.model_definition)
    elif os.path.exists(args.model_definition):  # a pipe, a device: read for ever, or sized 0
        raise UserError(
            f"{args.model_definition}: not a file or a folder (a pipe?); give the model "
            "definition as a .zip file or a folder",
            EXIT_USAGE,
        )
    else:
        raise UserError(f"{args.model_definition}: no such file or directory", EXIT_USAGE)
    if not args.follow:
        return EXIT_OK
    if model_id.startswith("experiment-"):
        return _call(args, lambda client: _follow_experiment(client, model_id))
    return _run(args, lambda client: _follow_to_end(client, model_id))


def _zipped(folder: str, tmp: str) -> str:
    """The model definition in ``folder`` zipped into ``tmp``: the zip's path."""
    from trainui.core import definition

    zip_path = os.path.join(tmp, definition.zipped_name(folder))
    try:
        info = definition.zip_directory(folder, zip_path)
    except definition.DefinitionError as error:
        raise UserError(str(error)) from None
    _warn_skipped(info, folder, definition)
    return zip_path


def _follow_experiment(client, experiment_id: str) -> int:
    """A line as each run of the experiment ends, then the experiment's best run; 0 when at
    least one run completed."""
    import time

    said: set[str] = set()
    _following.update(kind="experiment", id=experiment_id)
    while True:
        experiment = client.get_experiment(experiment_id, EXPERIMENT_RUN_FIELDS)
        metric = (experiment.get("objective") or {}).get("metric")
        for run in sorted(experiment["runs"], key=lambda r: r.get("finished_at") or ""):
            if run["model_id"] in said or run["status"] not in ENDED:
                continue
            said.add(run["model_id"])
            value = ((run.get("metrics") or {}).get(metric) or {}).get("last") if metric else None
            score = f" {metric} {_number(value)}" if value is not None else ""
            if run["status"] == "failed":  # why, in short: `trainui show ID` says the rest
                why = run.get("error_code") or "failed"
                if run.get("exit_code") is not None:
                    why += f", {_exit_words(run['exit_code'])}"
                score = f": {why}{score}"
            print(
                f"{run['model_id']} {run['status']}{score} "
                f"({_parameters_text(run.get('parameters'))})",
                flush=True,
            )
        if experiment["status"] in ENDED:
            break
        time.sleep(1.0)
    best = experiment.get("best")
    if best:
        print(f"Best: {best['model_id']} {metric} {_number(best['value'])} "
              f"({_parameters_text(best.get('parameters'))})")  # fmt: skip
    by = experiment["runs_by_status"]
    states = ", ".join(f"{n} {s}" for s, n in by.items() if n)
    print(f"Experiment {experiment_id} {experiment['status']} ({states})", file=sys.stderr)
    # as a run's: 0 once it completed (some runs may have failed: it has its answer); halted
    # by a user, as a halted run, 1, though its best run stays (what a script goes on with)
    return EXIT_OK if experiment["status"] == "completed" else EXIT_FAILED


ENDED = ("completed", "failed", "halted")


def _parameters_text(parameters: dict | None) -> str:
    from trainui.core.experiments import as_environment

    return ", ".join(f"{k}={as_environment(v)}" for k, v in (parameters or {}).items())


def _submit(client, args, zip_path: str, manifest: bytes, environment) -> str:
    """Submit the run (once: a lost answer is said, never sent again); its ID."""
    from trainui.client import ClientError

    try:
        answer = client.submit(zip_path, manifest, environment, check=not args.no_check)
    except ClientError as error:
        _refused_submission(args, str(error), error.errors)
    print("OK")
    if "experiment_id" in answer:  # a sweep (SPEC §9): the experiment, then each run
        lines = [f"Experiment-ID is '{answer['experiment_id']}'"]
        lines += [f"Model-ID is '{model_id}'" for model_id in answer["model_ids"]]
        print("\n".join(lines), flush=True)
        return answer["experiment_id"]
    print(f"Model-ID is '{answer['model_id']}'", flush=True)
    return answer["model_id"]


def _refused_submission(args, message: str, errors: list) -> None:
    """A refused submission: the manifest's problems located in the user's file, or the one
    sentence."""
    located = [e for e in errors if isinstance(e, dict) and e.get("line")]
    for e in located:  # as `trainui validate` says it (a problem of the whole file: no path)
        path = f"{e['path']}: " if e.get("path") else ""
        print(f"{args.manifest}:{e['line']}:{e['column']}: {path}{e['message']}", file=sys.stderr)
    if located:
        raise UserError(f"{args.manifest} is not a valid manifest")
    raise UserError(message)


# what a command follows (a run's or an experiment's ID), for what ctrl-c says
_following: dict[str, str] = {}
WAITING_NOTICE = 1.0  # seconds of a log without a byte before a follow says why the run waits


async def _follow_to_end(client, model_id: str, offset: int = 0, data: bytes = b"") -> int:
    """Print the log (``data``, then from ``offset``) as it grows; when the run ends, its
    final state on stderr. 0 if it completed. A run that waits (for a GPU, its next attempt)
    is said on stderr when its log is quiet for a second."""
    import asyncio

    _following.update(kind="run", id=model_id)
    out = sys.stdout.buffer
    if data:
        out.write(data)
        out.flush()
    waiting = asyncio.create_task(_say_waiting(client, model_id))
    try:
        async for chunk in client.follow_log(model_id, offset, _connection_notices(client)):
            waiting.cancel()
            out.write(chunk)
            out.flush()
    finally:
        waiting.cancel()
    return _outcome(await client.get_run(model_id))


def _outcome(run: dict) -> int:
    """A followed run's end, said on stderr (``Run ID halted: ...``); 0 if it completed (a
    script can chain on it, as on ``train --follow``)."""
    message = run.get("status_message") or run["status"]
    if not message.startswith(run["status"]):
        message = f"{run['status']}: {message}"
    print(f"Run {run['model_id']} {message}", file=sys.stderr)
    return EXIT_OK if run["status"] == "completed" else EXIT_FAILED


async def _say_waiting(client, model_id: str) -> None:
    """After ``WAITING_NOTICE`` seconds (cancelled by the log's first bytes): why the run has
    not started, if it waits."""
    import asyncio

    await asyncio.sleep(WAITING_NOTICE)
    try:
        run = await client.get_run(model_id)
    except Exception:  # the follow says what went wrong
        return
    if run["status"] in ("pending", "restarting"):
        print(
            f"trainui: {model_id} is {run['status']}: {run.get('status_message') or 'waiting'}"
            "; its log follows when it starts",
            file=sys.stderr,
            flush=True,
        )


def _stopped_following() -> str | None:
    """What ctrl-c during a follow says: the run (or experiment) goes on."""
    if not _following:
        return None
    what = _following["id"]
    if _following["kind"] == "experiment":
        return (
            f"stopped following; the experiment {what} goes on (trainui show experiment "
            f"{what}; trainui halt experiment {what} halts it)"
        )
    return (
        f"stopped following; {what} goes on (trainui logs {what} --follow follows it again; "
        f"trainui halt {what} halts it)"
    )


def _connection_notices(client):
    """What a follow says on stderr when its connection is lost, and when it is back."""
    from trainui.client import RECONNECT_FOR

    def say(state: str) -> None:
        if state == "lost":
            print(
                f"trainui: lost the connection to {client.where}; trying again for "
                f"{RECONNECT_FOR / 60:g} minutes (ctrl-c to stop)",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(f"trainui: connected to {client.where} again", file=sys.stderr, flush=True)

    return say


def cmd_list(args: argparse.Namespace) -> int:
    if args.what in ("experiments", "experiment"):
        given = [f"--{o}" for o in ("experiment", "metric") if getattr(args, o)]
        if given:  # of runs, not of experiments: said, not ignored
            raise UserError(
                f"usage: trainui list experiments [--status S,...] [--json]; {', '.join(given)} "
                "is of runs (trainui list --experiment ID shows an experiment's runs)",
                EXIT_USAGE,
            )
        if args.status:
            from trainui.core.runs import EXPERIMENT_STATES

            _check_states(args.status, EXPERIMENT_STATES, "an experiment's state")
        return _call(args, lambda client: _list_experiments(client, args.json, args.status))
    if args.what not in (None, "trained-models", "trained-model"):
        raise UserError(
            f"usage: trainui list [trained-models | experiments], not '{args.what}'", EXIT_USAGE
        )
    if args.status:
        from trainui.core.runs import STATES

        _check_states(args.status, STATES, "a state")
    return _call(args, lambda client: _list(client, args))


def _check_states(given: str, states: Sequence[str], what: str) -> None:
    """``--status a,b``: each one of ``states``, else a usage error that names them."""
    unknown = [s for s in given.split(",") if s.strip() not in states]
    if unknown:
        raise UserError(
            f"--status: '{unknown[0]}' is not {what}; the states: {', '.join(states)}",
            EXIT_USAGE,
        )


def _list_experiments(client, as_json: bool, status: str | None = None) -> int:
    answer = client.list_experiments(status)
    experiments = answer["experiments"]
    if as_json:
        import json

        print(json.dumps(experiments, indent=1))
        return EXIT_OK
    names, name_width = _name_column([e["name"] for e in experiments], 20)
    lines = [
        f"{'SI No':<8}{'Name':<{name_width}} {'guid':<22} {'status':<11} {'runs':>5} "
        f"{'done':>5}  {'best':<32} submitted-at"
    ]
    for number, (e, name) in enumerate(zip(experiments, names, strict=True), 1):
        by = e["runs_by_status"]
        done = by.get("completed", 0) + by.get("failed", 0) + by.get("halted", 0)
        best = e.get("best")
        metric = (e.get("objective") or {}).get("metric")
        best_text = f"{metric} {_number(best['value'])}" if best else "-"
        lines.append(
            f"{number:<8}{name} {e['experiment_id']:<22} {e['status']:<11} "
            f"{e['count']:>5} {done:>5}  {best_text:<32} {_time(e['submitted_at'])}"
        )
    print("\n".join(lines))
    print(f"\n{answer['count']} records found.")
    print("OK")
    return EXIT_OK


LIST_FIELDS = ("name", "model_id", "status", "submitted_at")  # the table's columns


def _list(client, args: argparse.Namespace) -> int:
    if args.json:
        # the service's JSON of each run, unparsed, as it arrives: one run a line, each but
        # the last with a comma (the last byte is held back: the end may follow); valid JSON,
        # greppable
        sys.stdout.flush()
        out = sys.stdout.buffer
        held = None  # None: nothing came yet, "[" not written (an error may come instead)

        def write(chunk: bytes) -> None:
            nonlocal held
            if held is None:
                out.write(b"[\n")
                held = b""
            data = held + chunk
            out.write(data[:-1].replace(b"\n", b",\n"))
            held = data[-1:]

        client.list_runs_ndjson(write, status=args.status, experiment=args.experiment)
        if held is None:
            _experiment_exists(client, args.experiment)
            out.write(b"[\n")
        out.write(b"\n]\n")  # after the last run's line end, if any
        out.flush()
        return EXIT_OK
    print("Fetching the list of trained models ...")
    metrics = args.metric or []
    fields = (*LIST_FIELDS, "metrics") if metrics else LIST_FIELDS
    runs, count = client.list_runs(
        status=args.status, fields=fields, shared=False, experiment=args.experiment
    )
    if not runs:
        _experiment_exists(client, args.experiment)
    if metrics:
        _beyond_the_record(client, runs, metrics)
    return _print_list(runs, count, metrics)


def _beyond_the_record(client, runs: list[dict], metrics: Sequence[str]) -> None:
    """A run's record sums up its first RECORD_METRICS metrics: one that wrote more (per-layer
    statistics before its loss) is asked for the named ones it lacks."""
    from trainui.core.runs import RECORD_METRICS

    for run in runs:
        have = run.get("metrics") or {}
        if len(have) >= RECORD_METRICS and any(m not in have for m in metrics):
            answer = client.metrics(run["model_id"])
            every = {m["name"]: m for m in answer.get("metrics") or ()}
            run["metrics"] = {**have, **{m: every[m] for m in metrics if m in every}}


def _experiment_exists(client, experiment_id: str | None) -> None:
    """No run listed for ``--experiment ID``: a missing experiment is said (not found), not
    listed as empty."""
    if experiment_id:
        client.get_experiment(experiment_id, ("model_id",))


NAME_CELLS = 40  # a longer name is cut with "…" in a table (whole in show and --json)


def _name_column(names: list[str], least: int) -> tuple[list[str], int]:
    """A table's names, each cut to ``NAME_CELLS`` terminal cells and padded to the column's
    width by cells (a CJK character takes two), and that width."""
    if all(name.isascii() and name.isprintable() for name in names):  # the usual: no import
        width = max([least, *(min(len(n), NAME_CELLS) + 1 for n in names)])
        cut = NAME_CELLS - 1
        return [
            n.ljust(width) if len(n) <= NAME_CELLS else (n[:cut].rstrip() + "…").ljust(width)
            for n in names
        ], width
    from rich.cells import cell_len, set_cell_size

    fitted = []
    for name in names:
        name = "".join(c if c.isprintable() else " " for c in name)
        if cell_len(name) > NAME_CELLS:
            name = set_cell_size(name, NAME_CELLS - 1).rstrip() + "…"
        fitted.append(name)
    width = max([least, *(cell_len(n) + 1 for n in fitted)])
    return [set_cell_size(n, width) for n in fitted], width


def _print_list(runs: list[dict], count: int, metrics: Sequence[str] = ()) -> int:
    names, name_width = _name_column([r["name"] for r in runs], 26)
    # a column a metric: its last value, "-" when the run has none
    widths = [max(12, len(m)) for m in metrics]
    head = "".join(f" {m:>{w}}" for m, w in zip(metrics, widths, strict=True))
    lines = [
        f"{'SI No':<8}{'Name':<{name_width}} {'guid':<20} {'status':<11} {'submitted-at':<20}"
        + head
        if metrics
        else f"{'SI No':<8}{'Name':<{name_width}} {'guid':<20} {'status':<11} submitted-at"
    ]
    # one format a row: 10,000 rows in ~6 ms, not 11 (the name is padded by cells already)
    row = "%-8d%s %-20s %-11s %-20s" if metrics else "%-8d%s %-20s %-11s %s"
    lines += [
        row % (number, name, run["model_id"], run["status"], _time(run["submitted_at"]))
        for number, (run, name) in enumerate(zip(runs, names, strict=True), 1)
    ]
    if metrics:
        for i, run in enumerate(runs, 1):
            have = run.get("metrics") or {}
            cells = (_number(have[m]["last"]) if m in have else "-" for m in metrics)
            lines[i] += "".join(f" {c:>{w}}" for c, w in zip(cells, widths, strict=True))
    lines.append("")  # one write for 10,000 lines, not a print each (a third of the time)
    sys.stdout.write("\n".join(lines))
    print(f"\n{count} records found.")
    print("OK")
    print("List all trained-models successful")
    return EXIT_OK


def _number(value: float) -> str:
    """A metric's value in a table: 6 significant digits."""
    return f"{value:.6g}"


def cmd_metrics(args: argparse.Namespace) -> int:
    if args.follow:
        return _run(args, lambda client: _follow_metrics(client, args))
    return _call(args, lambda client: _metrics(client, args))


def _chosen(summary: dict, args: argparse.Namespace, ended: bool = True) -> list[dict]:
    """The metrics of the summary that ``--metric`` names (all without it); a name the run
    does not have is a mistake said at once (followed, once the run has ended: till then it
    may come)."""
    metrics = summary["metrics"]
    if not args.metric:
        return metrics
    by_name = {m["name"]: m for m in metrics}
    missing = [name for name in args.metric if name not in by_name]
    if missing and (ended or not args.follow):
        known = ", ".join(list(by_name)[:10]) or "none yet"
        raise UserError(f"run {summary['model_id']} has no metric '{missing[0]}' (it has: {known})")
    return [by_name[name] for name in args.metric if name in by_name]


def _metrics(client, args: argparse.Namespace) -> int:
    summary = client.metrics(args.model_id)
    chosen = _chosen(summary, args)
    out = sys.stdout
    if not (args.json or args.csv):
        if not chosen:
            status = client.get_run(args.model_id)["status"]
            said = f"it {status} without writing any" if status in ENDED else "yet"
            print(f"Run {args.model_id} has no metric points ({said}).")
            return EXIT_OK
        width = max(6, *(len(m["name"]) for m in chosen))
        lines = [f"{'metric':<{width}} {'last':>12} {'min':>12} {'max':>12} {'steps':>8}"]
        lines += [
            f"{m['name']:<{width}} {_number(m['last']):>12} {_number(m['min']):>12} "
            f"{_number(m['max']):>12} {m['steps']:>8}"
            for m in chosen
        ]
        out.write("\n".join(lines) + "\n")
        return EXIT_OK
    write = _point_writer(args)
    for m in chosen:
        points = client.metric_points(args.model_id, m["name"], offset=0)
        write(m["name"], points)
    out.flush()
    return EXIT_OK


def _point_writer(args: argparse.Namespace):
    """What prints a metric's points as the format asks: JSON lines (the metrics file's
    format), CSV (metric,step,value,time; a header first) or, followed, a line a point."""
    import json

    out = sys.stdout
    if args.csv:
        import csv
        import io

        out.write("metric,step,value,time\n")

        def quoted(name: str) -> str:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="").writerow([name])
            return buffer.getvalue()

    def write(name: str, points: dict) -> None:
        rows = zip(points["steps"], points["values"], points["times"], strict=True)
        if args.json:  # repr of a finite float is its JSON
            head = '{"metric":' + json.dumps(name) + ',"step":'
            text = "".join(f'{head}{s},"value":{v!r},"time":{t!r}}}\n' for s, v, t in rows)
        elif args.csv:
            head = quoted(name) + ","
            text = "".join(f"{head}{s},{v!r},{t!r}\n" for s, v, t in rows)
        else:
            text = "".join(f"{name}  step {s}  {_number(v)}\n" for s, v, t in rows)
        out.write(text)

    return write


async def _follow_metrics(client, args: argparse.Namespace) -> int:
    """Print every point as it comes, until the run has ended. The service is asked again
    every FOLLOW_METRICS seconds, each metric from the point it reached (points are counted
    in the order written, which a restarted service reads the same): after a restart of the
    service, nothing is printed twice or left out."""
    import asyncio
    import time

    from trainui.client import RECONNECT_DELAYS, RECONNECT_FOR, ServiceUnreachable
    from trainui.core.runs import FINAL_STATES

    write = _point_writer(args)
    printed: dict[str, int] = {}
    failures = 0
    lost_since: float | None = None
    notice = _connection_notices(client)
    while True:
        try:
            run = await client.get_run(args.model_id)
            summary = await client.metrics(args.model_id)
            for m in _chosen(summary, args, ended=run["status"] in FINAL_STATES):
                have = printed.get(m["name"], 0)
                if m["steps"] > have:
                    points = await client.metric_points(args.model_id, m["name"], offset=have)
                    write(m["name"], points)
                    printed[m["name"]] = have + len(points["steps"])
            sys.stdout.flush()
            failures = 0
            if lost_since is not None:
                lost_since = None
                notice("restored")
            if run["status"] in FINAL_STATES:  # every point printed: how it ended
                return _outcome(run)
        except ServiceUnreachable:
            client.forget_service()  # it may have died: look again, start it if needed
            if lost_since is None:
                lost_since = time.monotonic()
                notice("lost")
            elif time.monotonic() - lost_since > RECONNECT_FOR:
                raise
            await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
            failures += 1
            continue
        await asyncio.sleep(FOLLOW_METRICS)


FOLLOW_METRICS = 0.5  # seconds between two looks of `trainui metrics --follow`


def _experiment_words(words: Sequence[str], verb: str) -> str | None:
    """``experiment ID`` (or an experiment's ID alone): the ID; None for a run's words."""
    if len(words) == 2 and words[0] in ("experiment", "experiments"):
        if words[1].startswith("training-"):  # a run's ID: said, not "not found"
            raise UserError(f"{words[1]} is a run's ID, not an experiment's: trainui {verb} "
                            f"{words[1]}", EXIT_USAGE)  # fmt: skip
        return words[1]
    if len(words) > 2 and words[0] in ("experiment", "experiments"):
        raise UserError(f"usage: trainui {verb} experiment ID (one experiment at a time: "
                        f"{len(words) - 1} given)", EXIT_USAGE)  # fmt: skip
    if list(words) in (["experiment"], ["experiments"]):  # no run is called that
        listing = "; trainui list experiments lists them" if verb == "show" else ""
        raise UserError(f"usage: trainui {verb} experiment ID (the experiment's ID is missing"
                        f"{listing})", EXIT_USAGE)  # fmt: skip
    if len(words) == 1 and words[0].startswith("experiment-"):
        return words[0]
    return None


def cmd_show(args: argparse.Namespace) -> int:
    experiment_id = _experiment_words(args.words, "show")
    if experiment_id is not None:
        return _call(args, lambda client: _show_experiment(client, experiment_id, args.json))
    model_id = _check_run_id(args.words, "show")
    return _call(args, lambda client: _show(client, model_id, args.json))


# the keys of each run that `show experiment` and `train --follow` print
EXPERIMENT_RUN_FIELDS = (
    "model_id", "status", "parameters", "metrics", "finished_at", "error_code", "exit_code",
)  # fmt: skip


def _show_experiment(client, experiment_id: str, as_json: bool) -> int:
    experiment = client.get_experiment(experiment_id, None if as_json else EXPERIMENT_RUN_FIELDS)
    if as_json:
        sys.stdout.write(_json_with_rows(experiment, "runs"))
        return EXIT_OK
    sys.stdout.write(_experiment_text(experiment))
    return EXIT_OK


def _json_with_rows(obj: dict, rows: str) -> str:
    """``obj`` as JSON text: a key a line, and each item of its list ``rows`` on a line of
    its own, as ``list --json`` prints runs (greppable). Python's json encodes with its C
    encoder only without ``indent``: indenting a 1,000-run experiment took 50 ms more than
    the whole of ``show experiment`` otherwise."""
    import json

    lines = []
    for key, value in obj.items():
        head = f" {json.dumps(key)}: "
        if key == rows and isinstance(value, list) and value:
            items = ",\n  ".join(json.dumps(item) for item in value)
            lines.append(f"{head}[\n  {items}\n ]")
        else:
            lines.append(head + json.dumps(value))
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _experiment_text(e: dict) -> str:
    """``show experiment``: the experiment, then its runs ranked by the objective (the best
    marked ``*``), a column per parameter."""
    by = e["runs_by_status"]
    states = ", ".join(f"{n} {s}" for s, n in by.items() if n)
    objective = e.get("objective") or {}
    metric = objective.get("metric")
    best = e.get("best")
    method = f"{e['method']}, {e['count']} runs"
    if e.get("max_parallel"):
        method += f", at most {e['max_parallel']} at once"
    if e["method"] == "random":
        method += f", seed {e.get('seed')}"
    fields = [
        ("Experiment-ID", e["experiment_id"]),
        ("url", e["url"]),
        ("Name", e["name"]),
        ("State", f"{e['status']} ({states})" if states else e["status"]),
        ("Method", method),
        ("Submitted_at", _time(e["submitted_at"])),
        ("Finished_at", _time(e.get("finished_at"))),
    ]
    if metric:
        text = f"{metric} ({objective.get('goal', 'minimize')})"
        if best:
            text += f"; best {best['model_id']}: {_number(best['value'])}"
            if best.get("step") is not None:
                text += f" at step {best['step']}"
        elif (by.get("completed") or by.get("failed")) and not any(
            metric in (run.get("metrics") or {}) for run in e.get("runs") or ()
        ):
            # runs ended and none has the metric: a misspelt name, or metrics not written
            text += f"; no run has reported {metric} (trainui metrics RUN_ID lists what one did)"
        fields.append(("Objective", text))
    stopping = e.get("early_stopping")
    if stopping:
        fields.append(
            (
                "Early_stopping",
                f"{stopping['rule']} rule after step {stopping['after_steps']}, with at least "
                f"{stopping['min_runs']} other runs",
            )
        )
    lines = [f"{label:<15}{value}" for label, value in fields]
    from trainui.core.experiments import as_environment

    names = list(e.get("parameters") or {})
    runs = e.get("runs") or []
    best_id = best["model_id"] if best else None
    # column by column, one format for every row: 1,000 runs in about 2 ms (cell by cell, 6)
    columns = [
        [f"{'*' if run['model_id'] == best_id else ' '}{rank}" for rank, run in enumerate(runs, 1)],
        [run["model_id"] for run in runs],
        [run["status"] for run in runs],
        *(
            [
                "-" if (value := (run.get("parameters") or {}).get(name)) is None
                else as_environment(value)
                for run in runs
            ]
            for name in names
        ),
        [_objective_cell(run, metric) for run in runs],
    ]  # fmt: skip
    head = ["Rank", "Model-ID", "status", *names, metric or "objective"]
    last = len(head) - 1
    if all(cell.isascii() for column in columns[3:last] for cell in column):
        widths = [max([len(h), *map(len, col)]) for h, col in zip(head, columns, strict=True)]
        row = "  ".join(
            f"{{:{'>' if i in (0, last) else '<'}{w}}}" for i, w in enumerate(widths)
        ).format
    else:  # a parameter's value in CJK (two cells a character): padded by cells
        from rich.cells import cell_len

        widths = [max([len(h), *map(cell_len, col)]) for h, col in zip(head, columns, strict=True)]

        def row(*cells: str) -> str:
            return "  ".join(
                f"{' ' * (w - cell_len(c))}{c}"
                if i in (0, last)
                else f"{c}{' ' * (w - cell_len(c))}"
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

    lines.append(row(*head).rstrip())
    lines.extend(row(*cells).rstrip() for cells in zip(*columns, strict=True))
    lines[len(fields)] = "\n" + lines[len(fields)]
    lines += ["", f"{len(runs)} runs.", "OK", ""]
    return "\n".join(lines)


def _objective_cell(run: dict, metric: str | None) -> str:
    value = ((run.get("metrics") or {}).get(metric) or {}).get("last") if metric else None
    return "-" if value is None else _number(value)


def _show(client, model_id: str, as_json: bool) -> int:
    if not as_json:
        print(f"Fetching the trained model details with MODEL-ID '{model_id}' ...")
    run = client.get_run(model_id)
    cpu_mode = None
    if not as_json:  # where a pending run will run: on the CPU when the service has no GPU
        import contextlib

        with contextlib.suppress(Exception):  # not said: where a pending run will run
            cpu_mode = client.health().get("cpu_mode")
    if as_json:
        import json

        print(json.dumps(run, indent=1))
        return EXIT_OK
    for label, value in _show_fields(run, cpu_mode):
        # a description's own lines under its first, in the value's column (tabs as spaces)
        value = value.expandtabs(4).replace("\n", "\n" + " " * 15)
        print(f"{label:<15}{value}")
    print("OK")
    print("Show trained-models details successful")
    return EXIT_OK


def _show_fields(run: dict, cpu_mode: bool | None = None) -> list[tuple[str, str]]:
    from trainui.core.runs import resource_placement

    framework = run.get("framework") or {}
    gpus = ",".join(str(i) for i in run.get("gpu_ids") or []) or "-"
    progress = run.get("progress") or {}
    fields = [
        ("ModelId", run["model_id"]),
        ("url", run["url"]),
        ("Name", run["name"]),
        ("State", run["status"]),
        ("Submitted_at", _time(run["submitted_at"])),
        ("Description", run.get("description") or "-"),
        ("Framework", f"{framework.get('name', '')} {framework.get('version', '')}".strip()),
        ("Resource", resource_placement(run, cpu_mode)),
        ("GPUs", gpus),
        ("Started_at", _time(run.get("started_at"))),
        ("Finished_at", _time(run.get("finished_at"))),
        ("Status", run.get("status_message") or "-"),
        ("Exit_code", _exit_code_text(run.get("exit_code"))),
        ("Error_code", run.get("error_code") or "-"),
        ("Owner", run.get("owner") or "-"),
    ]
    for label, key in (("Data", "data"), ("Results", "results")):
        where = run.get(key) or {}
        text = f"{where.get('type')} bucket '{where.get('bucket')}'"
        if where.get("endpoint"):
            text += f" at {where['endpoint']}"
        if where.get("prefix"):
            text += f", under {where['prefix']}"
        fields.append((label, text))
    if progress.get("phase"):
        fields.append(
            (
                "Progress",
                f"{progress['phase']}: {progress['objects_done']}/{progress['objects_total']} "
                f"objects, {_bytes(progress['bytes_done'])} of {_bytes(progress['bytes_total'])}",
            )
        )
    if run.get("max_restarts") or run.get("attempts"):  # SPEC §11: each attempt, how it ended
        from trainui.core.runs import last_attempt

        attempt = run.get("attempt", 1)
        fields.append(
            (
                "Attempt",
                f"{attempt} of {last_attempt(attempt, run['max_restarts'], run.get('attempts'))}",
            )
        )
        for a in run.get("attempts") or ():
            code = a.get("error_code") or ""
            if a.get("exit_code") is not None:
                code += f" {_exit_words(a['exit_code'])}"
            fields.append(
                (
                    f"  attempt {a['attempt']}",
                    f"{a['status']} {code.strip()} at {_time(a.get('finished_at'))}: "
                    f"{a.get('status_message') or '-'}".replace("  ", " "),
                )
            )
    if run.get("experiment_id"):
        fields.append(("Experiment", run["experiment_id"]))
        fields.append(("Parameters", _parameters_text(run.get("parameters")) or "-"))
    metrics = run.get("metrics") or {}
    if metrics:  # the last values of the first few; `trainui metrics ID` has them all
        from trainui.core.runs import RECORD_METRICS

        shown = [f"{name} {_number(m['last'])}" for name, m in list(metrics.items())[:4]]
        more = f" (+{len(metrics) - 4} more)" if len(metrics) > 4 else ""
        if len(metrics) >= RECORD_METRICS:  # the record sums up the first ones only
            more = f" (+{len(metrics) - 4} more or over: trainui metrics {run['model_id']})"
        fields.append(("Metrics", ", ".join(shown) + more))
    return fields


def _bytes(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def cmd_delete(args: argparse.Namespace) -> int:
    experiment_id = _experiment_words(args.words, "delete")
    if experiment_id is not None:
        print(f"Deleting the experiment '{experiment_id}' and its runs ...")
        _call(args, lambda client: client.delete_experiment(experiment_id))
        print("OK")
        return EXIT_OK
    model_id = _check_run_id(args.words, "delete")
    print(f"Deleting the trained model '{model_id}' ...")
    _call(args, lambda client: client.delete_run(model_id))
    print("OK")
    print("Delete trained-models successful")
    return EXIT_OK


def cmd_halt(args: argparse.Namespace) -> int:
    experiment_id = _experiment_words(args.words, "halt")
    if experiment_id is not None:
        print(f"Halting the experiment '{experiment_id}' ...")
        e = _call(args, lambda client: client.halt_experiment(experiment_id))
        by = e["runs_by_status"]
        print("OK")
        print(f"State {e['status']}: " + ", ".join(f"{n} {s}" for s, n in by.items() if n))
        return EXIT_OK
    if len(args.words) != 1:
        raise UserError("usage: trainui halt ID | halt experiment ID", EXIT_USAGE)
    args.model_id = args.words[0]
    print(f"Halting the training run '{args.model_id}' ...")
    run = _call(args, lambda client: client.halt_run(args.model_id))
    print("OK")
    print(f"State {run['status']}: {run['status_message']}")
    return EXIT_OK


def _exit_code_text(code: int | None) -> str:
    """show's Exit_code: the number, and the signal's name when one killed the command."""
    if code is None:
        return "-"
    return str(code) if code >= 0 else f"{code} ({_exit_words(code)})"


def _exit_words(code: int) -> str:
    """An exit code as `show` says it: ``exit 3``, or ``killed by SIGTERM`` (-15)."""
    if code >= 0:
        return f"exit {code}"
    from trainui.core.runs import signal_name

    return f"killed by {signal_name(-code)}"


def cmd_resume(args: argparse.Namespace) -> int:
    experiment_id = _experiment_words(args.words, "resume")
    if experiment_id is not None:
        return _resume_experiment(args, experiment_id)
    if args.status:
        raise UserError("--status chooses an experiment's runs: trainui resume experiment ID "
                        f"--status {args.status}", EXIT_USAGE)  # fmt: skip
    if len(args.words) != 1:
        raise UserError("usage: trainui resume ID | resume experiment ID", EXIT_USAGE)
    args.model_id = args.words[0]
    print(f"Resuming the training run '{args.model_id}' ...")
    run = _call(args, lambda client: client.resume_run(args.model_id))
    print("OK")
    print(f"State {run['status']}: {run['status_message']}")
    return EXIT_OK


RESUME_LEFT_SHOWN = 10  # runs left as they are, named one a line; then how many more


def _resume_experiment(args: argparse.Namespace, experiment_id: str) -> int:
    """``resume experiment ID``: its halted or failed runs (``--status``: only those in these
    states) started again; the runs left as they are, and why."""
    if args.status:  # a usage error, the service not asked (as list experiments --status)
        _check_states(args.status, ("failed", "halted"), "a state a run resumes from")
    status = [s.strip() for s in (args.status or "").split(",") if s.strip()]
    print(f"Resuming the experiment '{experiment_id}' ...")
    e = _call(args, lambda client: client.resume_experiment(experiment_id, status))
    resumed, left = e.get("resumed") or [], e.get("not_resumed") or []
    print("OK")
    print(f"Resumed {len(resumed)} run{'s' if len(resumed) != 1 else ''}: "
          "each waits for its turn, to start from its last checkpoint")  # fmt: skip
    if left:
        print(f"Left as they are: {len(left)} run{'s' if len(left) != 1 else ''} "
              "(trainui resume ID resumes one)")  # fmt: skip
        for item in left[:RESUME_LEFT_SHOWN]:
            print(f"  {item['model_id']}: {item['reason']}")
        if len(left) > RESUME_LEFT_SHOWN:
            print(f"  ... and {len(left) - RESUME_LEFT_SHOWN} more")
    by = e["runs_by_status"]
    print(f"State {e['status']}: " + ", ".join(f"{n} {s}" for s, n in by.items() if n))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    offset, data = args.offset, None
    if offset < 0 or not args.follow:
        offset, data = _call(args, lambda client: _read_log(client, args.model_id, offset))
    if not args.follow:
        sys.stdout.buffer.write(data)
        return EXIT_OK

    # as `train --follow`: the outcome on stderr, 0 only if the run completed (a script can
    # wait for a run with it)
    return _run(args, lambda client: _follow_to_end(client, args.model_id, offset, data or b""))


def _read_log(client, model_id: str, offset: int) -> tuple[int, bytes]:
    """The log from ``offset``; a negative one: the last -offset bytes, from the first line
    that starts in them. Where what was read ends, and what it is."""
    if offset >= 0:
        data, _size, start = client.read_log(model_id, offset)
        return start + len(data), data
    data, _size, start = client.read_log(model_id, offset - 1)
    begin = 0
    if start > 0:  # one byte more was read: whether the range starts a line
        newline = data.find(b"\n")
        begin = newline + 1 if newline >= 0 else 1  # one long line: the bytes asked
    return start + len(data), data[begin:]


def cmd_download(args: argparse.Namespace) -> int:
    if args.results:
        return _run(args, lambda client: _download_results(client, args))
    dest = args.output or f"{args.model_id}.zip"
    if os.path.isdir(dest):
        dest = os.path.join(dest, f"{args.model_id}.zip")
    folder = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        what = "does not exist" if not os.path.isdir(folder) else "is not writable"
        raise UserError(f"cannot write {dest}: the folder {folder} {what}", EXIT_USAGE)
    try:
        size = _call(args, lambda client: client.download_definition(args.model_id, dest))
    except OSError as error:  # the file could not be written (a full disk, /proc)
        raise UserError(f"cannot write {dest}: {error.strerror or error}") from None
    print(f"Downloaded the model definition of {args.model_id} to {dest} ({_bytes(size)})")
    return EXIT_OK


async def _download_results(client, args: argparse.Namespace) -> int:
    """The run's ``<id>/`` folder of its results bucket into a folder, through the service."""
    import asyncio

    from trainui.client import ClientError, kept_said
    from trainui.storage import StoreError, safe_key_path

    model_id = args.model_id
    dest = args.output or os.path.join(".", model_id)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise UserError(f"{dest} is a file: --results writes a folder", EXIT_USAGE)
    listing = await client.list_results(model_id)
    objects = listing["objects"]
    if listing.get("bucket_problem"):  # only what the box kept: said before it comes
        print(
            f"trainui: {listing['bucket_problem']}; downloading what the box kept",
            file=sys.stderr,
        )
    for item in objects:  # refuse the lot before writing anything
        try:
            safe_key_path(dest, item["key"])
        except StoreError as error:
            raise UserError(f"refused to download the results of {model_id}: {error}") from None
    created = not os.path.exists(dest)
    with _DownloadBar(model_id, len(objects), listing["bytes"]) as bar:
        try:
            await client.download_results(
                model_id, objects, dest, bar.advance, lambda _key: bar.file_done()
            )
        except (ClientError, asyncio.CancelledError):
            if created and not bar.files_done:
                _remove_empty_folders(dest)
            raise
    print(
        f"Downloaded {_plural(len(objects), 'file')} ({_bytes(listing['bytes'])}) "
        f"of {model_id} to {dest}{kept_said(listing)}"
    )
    return EXIT_OK


class _DownloadBar:
    """A progress bar on stderr (bytes and files) when it is a terminal; nothing otherwise."""

    def __init__(self, model_id: str, files: int, total: int) -> None:
        self.files, self.files_done = files, 0
        self.progress = None
        if not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[count]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task(model_id, total=total, count=self._count())

    def _count(self) -> str:
        return f"{self.files_done}/{self.files} files"

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def file_done(self) -> None:
        self.files_done += 1
        if self.progress is not None:
            self.progress.update(self.task, count=self._count())

    def __enter__(self) -> _DownloadBar:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _remove_empty_folders(top: str) -> None:
    """Remove ``top`` and the folders under it, if they hold no file."""
    for folder, _subfolders, files in os.walk(top, topdown=False):
        if not files:
            try:
                os.rmdir(folder)
            except OSError:
                return


def cmd_demo(args: argparse.Namespace) -> int:
    return _run(args, lambda client: _demo(client, args))


async def _demo(client, args: argparse.Namespace) -> int:
    """Put the demo's data in a local bucket, submit the demo run and follow it."""
    import shutil
    import tempfile

    from trainui.core import definition

    demo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo")
    if client.remote:
        raise UserError(
            "the demo puts its data in a local bucket of this machine's service; "
            "run it on the GPU box (without --url)"
        )
    bucket = os.path.join(client.home, "buckets", "demo-data")
    os.makedirs(bucket, exist_ok=True)
    for name in os.listdir(os.path.join(demo, "data")):
        shutil.copyfile(os.path.join(demo, "data", name), os.path.join(bucket, name))
    print(f"Demo data in the local bucket 'demo-data' ({bucket})")
    with open(os.path.join(demo, "manifest.yml"), "rb") as f:
        manifest = f.read()
    with tempfile.TemporaryDirectory(prefix="trainui-") as tmp:
        zip_path = definition.zip_directory(
            os.path.join(demo, "model"), os.path.join(tmp, "model.zip")
        ).path
        answer = await client.submit(zip_path, manifest, {})
    model_id = answer["model_id"]
    print(f"Model-ID is '{model_id}'", flush=True)
    results = os.path.join(client.home, "buckets", "demo-results", model_id)
    if args.no_follow:
        print(f"Results and logs will be in {results}")
        return EXIT_OK
    code = await _follow_to_end(client, model_id)
    print(f"Results and logs: {results}")
    return code


def cmd_gpus(args: argparse.Namespace) -> int:
    snapshot = _call(args, lambda client: client.gpus())
    if args.json:
        import json

        print(json.dumps(snapshot, indent=2))
    else:
        from trainui.gpu import format_table

        print(
            format_table(snapshot, use_color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
        )
    # no GPU is an answer (runs go to the CPU); a failing driver is not
    return EXIT_FAILED if snapshot.get("state") == "error" else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from trainui.config import ConfigError, connection_limits, load_settings
    from trainui.service.auth import TokenError
    from trainui.service.server import AlreadyRunning, ServeRefused, serve
    from trainui.service.store import StoreUnreadable

    try:
        settings = load_settings(
            os.environ,
            launcher=args.launcher,
            ray_address=args.ray_address,
            isolation="off" if args.no_isolation else None,
        )
        limits = connection_limits(settings)
    except ConfigError as error:
        raise UserError(str(error), EXIT_USAGE) from None
    try:
        return serve(
            settings,
            args.socket,
            idle_exit=args.idle_exit,
            host=None if args.no_tcp else args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            limits=limits,
        )
    except (AlreadyRunning, ServeRefused, StoreUnreadable, TokenError) as error:
        raise UserError(str(error)) from None


def cmd_token(args: argparse.Namespace) -> int:
    from trainui.config import ensure_home, home_dir
    from trainui.service.auth import TokenError, Tokens

    home = home_dir()
    if getattr(args, "url", None):  # tokens are the files of a home: there is no remote way
        raise UserError(
            f"token manages the tokens of the service on this machine (its home {home}), not "
            "one at --url: run it on the service's machine (e.g. ssh BOX trainui token list)",
            EXIT_USAGE,
        )
    if os.environ.get("TRAINUI_URL"):
        print(
            f"note: the tokens of the home {home} on this machine, not of TRAINUI_URL's service",
            file=sys.stderr,
        )
    tokens = Tokens(ensure_home(home))
    try:
        if args.action == "add":
            token = tokens.add(args.name, admin=args.admin, unix_user=args.unix_user)
            role = "an admin" if args.admin else "a user"
            print(f"Token for {args.name} ({role}); it is shown only now:", file=sys.stderr)
            print(token)
        elif args.action == "revoke":
            tokens.revoke(args.name)
            print(f"Revoked the token of {args.name}")
        else:
            entries = tokens.entries()
            if args.json:
                import json

                keys = ("name", "admin", "created_at", "unix_user")
                shown = [{k: e.get(k) for k in keys} for e in entries]
                print(json.dumps(shown, indent=1))
                return EXIT_OK
            print(f"{'Name':<24} {'Role':<6} {'Unix user':<12} Created")
            for e in entries:
                role = "admin" if e.get("admin") else "user"
                unix = e.get("unix_user") or "-"
                print(f"{e['name']:<24} {role:<6} {unix:<12} {e.get('created_at', '-')}")
            print(f"\n{_plural(len(entries), 'token')}.")
    except TokenError as error:
        raise UserError(str(error)) from None
    return EXIT_OK


def cmd_tui(args: argparse.Namespace) -> int:
    """`trainui` alone: the TUI, on the same client as every other command."""
    if not sys.stdout.isatty():
        raise UserError("the TUI needs a terminal; see `trainui --help` for the commands")
    from trainui.tui import main as tui_main

    view = "experiments" if args.experiments else "runs"
    return tui_main(readonly=args.readonly, theme=args.theme, remote=_remote(args), view=view)


# --- parsing ----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence and the usage, exit 2: no traceback
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _Unbuilt:
    """A command's parser left unbuilt (``build_parser(only=...)``): whatever is asked of it is
    not done."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self


GLOBAL_FLAGS = ("--readonly", "--experiments")  # the options before a command, with no value
GLOBAL_OPTIONS = ("--theme", "--url", "--token", "--cacert")  # ... and with one


def command_named(argv: Sequence[str]) -> str | None:
    """The command that the command line names, when it is plain: the first word after the
    options before it, each written in full; None when there is none or any option is not
    plain (-h, an abbreviation, a mistake: argparse, given every command, says what it is)."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in GLOBAL_FLAGS or ("=" in word and word.split("=", 1)[0] in GLOBAL_OPTIONS):
            i += 1
        elif word in GLOBAL_OPTIONS:
            i += 2
        elif word.startswith("-"):
            return None
        else:
            return word
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser. ``only``: of that command alone, the others left out (the
    parser of every command takes 5 to 10 ms to build, each command line's start); ignored
    when no command has that name."""
    found = False
    parser = _Parser(
        prog="trainui",
        description="Submit, watch and manage deep-learning training runs on your own GPUs.",
    )
    parser.add_argument("--version", action="version", version=f"trainui {__version__}")
    parser.add_argument(
        "--readonly", action="store_true", help="TUI: hide every action that changes state"
    )
    parser.add_argument("--theme", metavar="NAME", help="TUI: colour theme")
    parser.add_argument(
        "--experiments", action="store_true", help="TUI: start on the experiments (e switches)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    remote = argparse.ArgumentParser(add_help=False)
    group = remote.add_argument_group("remote service")
    group.add_argument("--url", default=argparse.SUPPRESS, help="service URL (TRAINUI_URL)")
    group.add_argument("--token", default=argparse.SUPPRESS, help="token (TRAINUI_TOKEN)")
    group.add_argument(
        "--cacert", default=argparse.SUPPRESS, help="CA certificate to trust (TRAINUI_CACERT)"
    )
    for action in remote._actions:  # the same options before the command: trainui --url U list
        parser._add_action(action)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str):
        nonlocal found
        if only is not None and name != only:
            return _Unbuilt()
        found = True
        sub = commands.add_parser(name, help=help, description=help, parents=[remote])
        sub.set_defaults(func=func)
        return sub

    sub = command("validate", cmd_validate, "check a manifest (and a model definition)")
    sub.add_argument("manifest", metavar="MANIFEST.yml")
    sub.add_argument("model_definition", nargs="?", metavar="MODEL.zip|DIR")
    sub.add_argument("--json", action="store_true", help="print the result as JSON")

    command("schema", cmd_schema, "print the manifest's JSON Schema")

    sub = command("notify", cmd_notify, "the service's notification hooks: `notify test`")
    sub.add_argument("action", choices=("test",), help="send a test event to every hook")

    sub = command(
        "frameworks", cmd_frameworks, "the frameworks this machine runs, and their runtimes"
    )
    sub.add_argument("--json", action="store_true", help="print the catalogue as JSON")

    sub = command("train", cmd_train, "submit a training run")
    sub.add_argument("model_definition", metavar="MODEL.zip|DIR")
    sub.add_argument("manifest", metavar="MANIFEST.yml")
    sub.add_argument("--follow", "-f", action="store_true", help="follow the log to the end")
    sub.add_argument(
        "--no-check",
        action="store_true",
        help="do not check that both buckets are reachable at submit (for stores only the "
        "GPU box reaches)",
    )

    sub = command("list", cmd_list, "list training runs (or experiments)")
    sub.add_argument("what", nargs="?", metavar="trained-models|experiments")
    sub.add_argument("--status", help="only runs in these states (comma-separated)")
    sub.add_argument("--experiment", metavar="ID", help="only the runs of this experiment")
    sub.add_argument("--json", action="store_true", help="print the runs as JSON")
    sub.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help="a column with the last value of this metric (repeatable)",
    )

    sub = command("show", cmd_show, "show one training run (or experiment ID)")
    sub.add_argument("words", nargs="+", metavar="[trained-models|experiment] ID")
    sub.add_argument("--json", action="store_true", help="print the run as JSON")
    sub.usage = (
        "%(prog)s [-h] [--url URL] [--token TOKEN] [--cacert CACERT] [--json] "
        "[trained-models|experiment] ID"
    )  # one run or one experiment, not several

    sub = command(
        "delete",
        cmd_delete,
        "delete a run (or experiment ID and its runs) from the history, halting it first",
    )
    sub.add_argument("words", nargs="+", metavar="[trained-models|experiment] ID")
    sub.usage = (
        "%(prog)s [-h] [--url URL] [--token TOKEN] [--cacert CACERT] [trained-models|experiment] ID"
    )

    sub = command(
        "halt",
        cmd_halt,
        "stop a run (or experiment ID: its runs); logs and results are still stored",
    )
    sub.add_argument("words", nargs="+", metavar="[experiment] ID")
    sub.usage = "%(prog)s [-h] [--url URL] [--token TOKEN] [--cacert CACERT] [experiment] ID"

    sub = command(
        "resume",
        cmd_resume,
        "start a halted or failed run (or experiment ID: each of its runs) again, as its next "
        "attempt, from its last checkpoint",
    )
    sub.add_argument("words", nargs="+", metavar="[experiment] ID")
    sub.usage = (
        "%(prog)s [-h] [--url URL] [--token TOKEN] [--cacert CACERT] [--status S,...] "
        "[experiment] ID"
    )  # one run or one experiment, not several
    sub.add_argument(
        "--status",
        metavar="S,...",
        help="of an experiment, only its runs in these states (failed, halted; both by default)",
    )

    sub = command("metrics", cmd_metrics, "a run's metrics: each one's summary, or the points")
    sub.add_argument("model_id", metavar="ID")
    sub.add_argument(
        "--follow", "-f", action="store_true", help="print the points as they come, to the end"
    )
    form = sub.add_mutually_exclusive_group()
    form.add_argument(
        "--json", action="store_true", help="every point, a JSON object a line (metrics.jsonl's)"
    )
    form.add_argument(
        "--csv", action="store_true", help="every point as CSV: metric,step,value,time"
    )
    sub.add_argument(
        "--metric", action="append", metavar="NAME", help="only this metric (repeatable)"
    )

    sub = command("logs", cmd_logs, "print a run's log")
    sub.add_argument("model_id", metavar="ID")
    sub.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    sub.add_argument(
        "--offset",
        type=int,
        default=0,
        help="start at this byte (negative: that many from the end, from the next line start)",
    )

    sub = command("download", cmd_download, "download a run's model definition, or what it stored")
    sub.add_argument("model_id", metavar="ID")
    what = sub.add_mutually_exclusive_group()
    what.add_argument(
        "--definition", action="store_true", help="the model definition as a .zip (default)"
    )
    what.add_argument(
        "--results",
        action="store_true",
        help="the run's ID/ folder of its results bucket (the trained model, its log, ...), "
        "fetched by the service",
    )
    sub.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="the file or folder to write to; with --results the folder (default ./ID), "
        "where files of the same name are overwritten",
    )

    sub = command("demo", cmd_demo, "run the demo: example data, an example run, its log")
    sub.add_argument(
        "--no-follow", action="store_true", help="submit it and return (watch it in the TUI)"
    )

    sub = command("gpus", cmd_gpus, "the GPUs: utilisation, memory, temperature, power, run")
    sub.add_argument("--json", action="store_true", help="print the readings as JSON")

    sub = command("serve", cmd_serve, "run the service in the foreground")
    sub.add_argument("--host", default="127.0.0.1", help="TCP address (default 127.0.0.1)")
    sub.add_argument("--port", type=_port, default=8470, help="TCP port (default 8470)")
    sub.add_argument("--certfile", help="TLS certificate (PEM), with --keyfile")
    sub.add_argument("--keyfile", help="TLS private key (PEM)")
    sub.add_argument("--no-tcp", action="store_true", help="only the home's Unix socket")
    sub.add_argument(
        "--launcher",
        choices=("local", "ray"),
        help="where runs execute: this machine's processes (default) or a Ray cluster "
        "(TRAINUI_LAUNCHER)",
    )
    sub.add_argument(
        "--ray-address",
        metavar="URL",
        help="the Ray dashboard / Job API, e.g. http://127.0.0.1:8265 (TRAINUI_RAY_ADDRESS)",
    )
    sub.add_argument("--socket", metavar="PATH", help="Unix socket (default <home>/trainui.sock)")
    sub.add_argument(
        "--idle-exit", action="store_true", help="exit when idle for TRAINUI_IDLE_EXIT seconds"
    )
    sub.add_argument(
        "--no-isolation",
        action="store_true",
        help="run commands unsandboxed, even where several users share the service "
        "(TRAINUI_ISOLATION=off)",
    )

    sub = command("token", cmd_token, "manage the tokens of the service over TCP")
    actions = sub.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a token; its last line is the token alone")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--admin", action="store_true", help="sees and manages every user's runs")
    add.add_argument(
        "--unix-user",
        metavar="LOGIN",
        help="the Unix account whose uid runs this user's commands (a service run as root)",
    )
    listing = actions.add_parser("list", help="list the tokens (never the tokens themselves)")
    listing.add_argument("--json", action="store_true")
    revoke = actions.add_parser("revoke", help="revoke a token; it stops working at once")
    revoke.add_argument("name", metavar="NAME")
    if only is not None and not found:
        return build_parser()
    return parser


def _port(text: str) -> int:
    """A TCP port, 1 to 65535 (argparse says the error with the option's name)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1 to 65535)")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=command_named(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args.func = cmd_tui
    _following.clear()
    try:
        return args.func(args)
    except UserError as error:
        print(f"trainui: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        said = _stopped_following()
        if said:
            print(f"\ntrainui: {said}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `trainui schema | head`
        sys.stderr.close()
        return EXIT_FAILED


SLOW_TO_END = (None, "serve", "demo")  # command_named: the TUI, the service (they end as Python)


def run() -> None:
    """The ``trainui`` command: ``main``; then a command that asks the service and prints its
    answer ends at once, its output flushed: Python's own end (the teardown of every module
    that httpx imported) takes 10 to 20 ms more and does nothing such a command needs (its
    files are closed and its asyncio loop ended before ``main`` returns). The TUI and the
    service end as Python does."""
    argv = sys.argv[1:]
    code = main(argv)
    if command_named(argv) in SLOW_TO_END:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # `trainui list | head`, or a closed stream
        pass
    os._exit(code or 0)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


if __name__ == "__main__":
    sys.exit(main())
