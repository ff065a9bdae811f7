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
    errors = sum(p.severity == "error" for p in problems) + (definition_error is not None)
    warnings = sum(p.severity == "warning" for p in problems)
    if args.json:
        import json

        out = {
            "valid": errors == 0,
            "manifest": report.filename,
            "problems": [p.as_dict() for p in problems],
        }
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
        print(f"{args.model_definition}: {definition_error}")
    summary = _plural(errors, "error") + ", " + _plural(warnings, "warning")
    if errors:
        print(f"{report.filename}: not valid ({summary})")
        return EXIT_FAILED
    what = report.filename
    if info is not None:
        what += f" and {args.model_definition} ({_plural(info.entries, 'file')})"
    print(f"{what}: valid" + (f" ({_plural(warnings, 'warning')})" if warnings else ""))
    return EXIT_OK


def _check_definition(path: str, definition):  # -> DefinitionInfo
    limits = definition.Limits.from_env(os.environ)
    if os.path.isdir(path):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="trainui-") as tmp:
            return definition.zip_directory(path, os.path.join(tmp, "model.zip"))
    return definition.check_zip(path, limits)


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
        script = next((w for w in words[1:] if not w.startswith("-")), None)
    elif words and words[0].startswith("./"):
        script = words[0]
    if not script or "$" in script or os.path.isabs(script):
        return []
    script = os.path.normpath(script)
    if script in names or words[1:2] == ["-m"]:
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


# --- parsing ----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence and the usage, exit 2: no traceback
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trainui",
        description="Submit, watch and manage deep-learning training runs on your own GPUs.",
    )
    parser.add_argument("--version", action="version", version=f"trainui {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str):
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        return sub

    sub = command("validate", cmd_validate, "check a manifest (and a model definition)")
    sub.add_argument("manifest", metavar="MANIFEST.yml")
    sub.add_argument("model_definition", nargs="?", metavar="MODEL.zip|DIR")
    sub.add_argument("--json", action="store_true", help="print the result as JSON")

    command("schema", cmd_schema, "print the manifest's JSON Schema")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except UserError as error:
        print(f"trainui: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `trainui schema | head`
        sys.stderr.close()
        return EXIT_FAILED


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


if __name__ == "__main__":
    sys.exit(main())
