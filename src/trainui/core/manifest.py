"""The training manifest: one schema, from which come the validator, the JSON Schema and redaction.

``parse_manifest`` reads YAML text into a typed ``Manifest`` or reports every problem at once,
each located at its line and column with the dotted path of the key (SPEC §2).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from types import MappingProxyType

from trainui.core.record import Record
from trainui.core.runs import NAME_LONGEST
from trainui.core.urls import has_userinfo, mask_urls, masked_url
from trainui.core.yamlnodes import Node, YamlError, compose, mapping_of

MAX_MANIFEST_BYTES = 1 << 20
RESOURCE_GPUS = MappingProxyType({"small": 1, "medium": 2, "large": 4})
STORE_TYPES = ("s3", "bluemix_objectstore", "local")
REDACTED = "********"

_PLACEHOLDER = re.compile(r"^<[^<>\n]+>$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# what botocore takes (botocore.handlers.VALID_BUCKET, botocore.utils.validate_region_name):
# a name it refuses fails at submit, or at the run's start, in botocore's words
REFERENCE_KEYS = ("training_data_reference", "training_results_reference")
_S3_BUCKET = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")
_S3_REGION = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?$")


# --- the schema: the one description of what a manifest may hold ------------------------------


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MULTILINE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # \t and \n allowed


class Text(Record):
    """A text value. Numbers are accepted and kept as written (``1.2`` stays ``"1.2"``).
    ``pattern`` is a regular expression the whole value must match (also in the schema),
    ``pattern_hint`` says what it means in words."""

    __slots__ = (
        "description", "required", "secret", "choices", "pattern", "pattern_hint", "multiline",
        "longest",
    )  # fmt: skip
    _defaults = {
        "required": False,
        "secret": False,
        "choices": (),
        "pattern": "",
        "pattern_hint": "",
        "multiline": False,  # may hold newlines and tabs (a command, a description)
        "longest": None,  # the most characters it may hold (None: no limit)
    }


class Section(Record):
    """A mapping with fixed keys. ``aliases`` maps another accepted spelling to its key;
    ``one_or_list``: a single mapping, or a list holding exactly one."""

    __slots__ = ("description", "fields", "required", "aliases", "one_or_list")
    _defaults = {"required": False, "aliases": MappingProxyType({}), "one_or_list": False}


class Connection(Record):
    """A store's connection: which keys are allowed depends on the sibling ``type``."""

    __slots__ = ("description", "required")
    _defaults = {"required": True}


CONNECTION_KEYS: Mapping[str, Mapping[str, Text]] = MappingProxyType(
    {
        "s3": {
            # every key optional: without keys, botocore's standard chain on the machine that
            # runs the learner (environment, shared files and profiles, instance roles)
            "endpoint_url": Text("URL of the S3 server, http(s)://host[:port] (default: AWS S3)"),
            "aws_access_key_id": Text("access key ID (default: botocore's credential chain)"),
            "aws_secret_access_key": Text("secret access key", secret=True),
            "aws_session_token": Text("session token of temporary credentials", secret=True),
            "region": Text("region name (default: the profile's, or us-east-1)"),
            "profile": Text("profile of the AWS shared config and credentials files"),
            "addressing_style": Text(
                "bucket in the path or in the host name (default: path with endpoint_url,"
                " auto for AWS)",
                choices=("path", "virtual", "auto"),
            ),
        },
        "bluemix_objectstore": {
            "auth_url": Text(
                "OpenStack Swift auth URL (ending in /auth/v1.0 for v1 / tempauth, "
                "otherwise Keystone v3)",
                required=True,
            ),
            "user_name": Text("user name", required=True),
            "password": Text("password", required=True, secret=True),
            "region": Text("region name"),
            "domain_name": Text("Keystone v3 domain name"),
            "project_id": Text("Keystone v3 project ID"),
        },
        "local": {
            "path": Text("folder holding the buckets (default: <home>/buckets)"),
        },
    }
)
# where a store type's credentials go (a URL's user-info is refused, pointing here)
_CREDENTIAL_KEYS = MappingProxyType(
    {
        "s3": ("aws_access_key_id", "aws_secret_access_key"),
        "bluemix_objectstore": ("user_name", "password"),
    }
)
# keys that mean nothing alone: each needs the keys it names (botocore takes a key pair whole)
_NEEDS = MappingProxyType(
    {
        "s3": {
            "aws_access_key_id": ("aws_secret_access_key",),
            "aws_secret_access_key": ("aws_access_key_id",),
            "aws_session_token": ("aws_access_key_id", "aws_secret_access_key"),
        },
    }
)
SECRET_KEYS = frozenset(
    key for keys in CONNECTION_KEYS.values() for key, spec in keys.items() if spec.secret
)


class MetricSources(Record):
    """``evaluation_metrics`` (SPEC §8): one source (a mapping of ``fields``) or a list of
    them; the rules that tie a source's keys together are checked beside the fields'."""

    __slots__ = ("description", "fields", "required")
    _defaults = {"required": False}


class ExperimentBlock(Record):
    """``experiment:`` (SPEC §9): checked by ``trainui.core.experiments.check``."""

    __slots__ = ("description", "required")
    _defaults = {"required": False}


EXPERIMENT = ExperimentBlock(
    "a sweep: many runs of this manifest, each with its own values of the parameters (SPEC §9)"
)

METRIC_TYPES = ("jsonl", "tensorboard", "log")
# the run's folders a metrics source's ``in`` may name ($LOG_DIR/tb, ${RESULT_DIR}/m.jsonl)
METRIC_VARIABLES = (
    "LOG_DIR", "RESULT_DIR", "MODEL_DIR", "DATA_DIR", "CHECKPOINT_DIR", "JOB_STATE_DIR",
    "TRAINING_ID",
)  # fmt: skip
_METRIC_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _within_run(where: str) -> bool:
    """Whether a source's ``in`` stays in the run's folders, each of which is a folder of
    JOB_STATE_DIR (``$LOG_DIR/../results`` does, ``$LOG_DIR/../../x`` does not): the learner
    reads nothing outside them (learner/metrics.py)."""

    def folder(match: re.Match) -> str:  # a variable first is a folder, later a name
        name = match.group(1) or match.group(2)
        if match.start():
            return name
        return "/run" if name == "JOB_STATE_DIR" else f"/run/{name}"

    text = _METRIC_VARIABLE.sub(folder, where.strip())
    path = posixpath.normpath(posixpath.join("/run/MODEL_DIR", text))
    return path == "/run" or path.startswith("/run/")


METRIC_SOURCE = MetricSources(
    "where the run's evaluation metrics are read while it trains (one source or a list)",
    {
        "type": Text(
            "jsonl: one JSON object a line; tensorboard: a folder of event files; "
            "log: lines of the run's log matched by pattern",
            required=True,
            choices=METRIC_TYPES,
        ),
        "in": Text(
            "jsonl: a file (default $LOG_DIR/metrics.jsonl); tensorboard: a folder, searched "
            "recursively; log: a file (default: the run's log). $LOG_DIR etc. expand; a "
            "relative path is in MODEL_DIR"
        ),
        "pattern": Text(
            "log: a Python regular expression; each named group is a metric, except "
            "(?P<step>...), the step"
        ),
    },
)


def _store_section(role: str, place: str, one_or_list: bool = False) -> Section:
    return Section(
        f"where the {role} are",
        {
            "connection": Connection(f"how to reach the store holding the {role}"),
            place: Section(
                f"the bucket of the {role}",
                {
                    "bucket": Text(
                        "bucket (S3), container (Swift) or folder (local)",
                        required=True,
                        pattern=r"^(?!\.\.?$)[^/\\]+$",
                        pattern_hint="a bucket name is one name: no '/', '\\', '.' or '..'",
                    ),
                    "type": Text("store type", required=True, choices=STORE_TYPES),
                },
                required=True,
            ),
        },
        required=True,
        one_or_list=one_or_list,
    )


SCHEMA = Section(
    "A trainui training manifest",
    {
        "model_definition": Section(
            "what to train and how",
            {
                "name": Text(
                    "a name for the run; need not be unique", required=True, longest=NAME_LONGEST
                ),
                "description": Text("what the run is", multiline=True),
                "author": Section(
                    "who wrote the model", {"name": Text("author name"), "email": Text("e-mail")}
                ),
                "framework": Section(
                    "the deep-learning framework",
                    {
                        "name": Text("framework name, e.g. tensorflow", required=True),
                        "version": Text("framework version, e.g. 1.2-py3", required=True),
                    },
                    required=True,
                ),
                "execution": Section(
                    "how to start training",
                    {
                        "command": Text(
                            "shell command run in MODEL_DIR; ${DATA_DIR} etc. expand",
                            required=True,
                            multiline=True,
                        ),
                        "resource": Text(
                            "GPUs: small = 1, medium = 2, large = 4",
                            required=True,
                            choices=tuple(RESOURCE_GPUS),
                        ),
                        "max_restarts": Text(
                            "times a failed run is started again (SPEC §11), 0 to 100",
                            pattern=r"^(100|[0-9]{1,2})$",
                            pattern_hint="a whole number from 0 to 100",
                        ),
                        "checkpoint_interval": Text(
                            "seconds between copies of CHECKPOINT_DIR to the results bucket",
                            pattern=r"^[0-9]{1,7}(\.[0-9]+)?$",
                            pattern_hint="a number of seconds, 0 to 9999999 (0: no copies while "
                            "it runs)",
                        ),
                    },
                    required=True,
                ),
            },
            required=True,
        ),
        "training_data_reference": _store_section("training data", "source", one_or_list=True),
        "training_results_reference": _store_section("training results", "target"),
        "evaluation_metrics": METRIC_SOURCE,
        "experiment": EXPERIMENT,
    },
    aliases={
        "training_data": "training_data_reference",
        "training_results": "training_results_reference",
    },
)


# --- the typed result -------------------------------------------------------------------------


class Store(Record):
    """An object store location: ``type``, ``bucket`` and the ``connection`` mapping."""

    __slots__ = ("type", "bucket", "connection")

    @property
    def endpoint(self) -> str:
        """Where the store is, in words safe to show (never a secret)."""
        c = self.connection
        where = c.get("endpoint_url") or c.get("auth_url") or c.get("path") or ""
        return masked_url(where) if where or self.type != "s3" else "AWS S3"

    def describe(self) -> dict[str, str]:
        return {"type": self.type, "bucket": self.bucket, "endpoint": self.endpoint}


class MetricSource(Record):
    """One ``evaluation_metrics`` source: ``type``, ``in`` and ``pattern`` as written ("" when
    not given)."""

    __slots__ = ("type", "path", "pattern")
    _defaults = {"path": "", "pattern": ""}

    def as_spec(self) -> dict[str, str]:
        """The source as the learner takes it (learner.json's ``evaluation_metrics`` items)."""
        spec = {"type": self.type}
        if self.path:
            spec["in"] = self.path
        if self.pattern:
            spec["pattern"] = self.pattern
        return spec


class Manifest(Record):
    """A checked manifest; every value is text as written, ``data``/``results`` are Stores,
    ``metrics`` the ``evaluation_metrics`` sources (empty: the default, SPEC §8)."""

    __slots__ = (
        "name", "description", "author_name", "author_email", "framework_name",
        "framework_version", "command", "resource", "data", "results", "metrics", "experiment",
        "framework_at", "max_restarts", "checkpoint_interval",
    )  # fmt: skip
    # framework_at: where framework.name and .version are written ((line, column), 1-based)
    # max_restarts: 0 (SPEC §11); checkpoint_interval: seconds (300 when max_restarts > 0)
    _defaults = {
        "metrics": (), "experiment": None, "framework_at": None, "max_restarts": 0,
        "checkpoint_interval": None,
    }  # fmt: skip

    @property
    def gpus(self) -> int:
        return RESOURCE_GPUS[self.resource]


class Problem(Record):
    """One problem: 1-based ``line`` and ``column``, the dotted ``path`` with the user's
    spelling of keys ("" for the whole file), a ``message`` and ``severity`` (error, warning)."""

    __slots__ = ("line", "column", "path", "message", "severity")
    _defaults = {"severity": "error"}

    def format(self, filename: str) -> str:
        where = f"{filename}:{self.line}:{self.column}:"
        path = f" {self.path}:" if self.path else ""
        kind = " warning:" if self.severity == "warning" else ""
        return f"{where}{path}{kind} {self.message}"


class ManifestReport:
    """What reading a manifest gave: the manifest when there are no errors, and every problem."""

    def __init__(
        self,
        filename: str,
        text: str,
        manifest: Manifest | None,
        problems: list[Problem],
        secret_spans: list[tuple[int, int, str | None]] | None = None,
        framework: Manifest | None = None,
    ) -> None:
        self.filename = filename
        self.text = text
        self.manifest = manifest
        self.problems = problems
        # the framework as written (``framework_name``, ``_version``, ``_at``), also when other
        # parts have errors: a framework this box does not run is said with them (SPEC §2)
        self.framework = manifest if manifest is not None else framework
        # where the secret values are in the text; None when it could not be parsed
        self._secret_spans = secret_spans

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return self.manifest is not None and not self.errors

    def formatted(self) -> list[str]:
        return [p.format(self.filename) for p in self.problems]

    def redacted_text(self) -> str:
        """The manifest as the user wrote it, every secret value replaced (and the user-info
        of any URL in it, which is refused in an endpoint but may be in a command)."""
        return mask_urls(redact_text(self.text, self._secret_spans))


# --- reading ----------------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike, env: Mapping[str, str] | None = None) -> ManifestReport:
    """Read and check the manifest file at ``path`` (see ``parse_manifest``)."""
    filename = os.fspath(path)
    try:
        with open(filename, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
            size = os.fstat(f.fileno()).st_size
    except IsADirectoryError:
        return _file_problem(filename, "is a directory, not a manifest file")
    except FileNotFoundError:
        return _file_problem(filename, "no such file")
    except OSError as error:
        return _file_problem(filename, f"cannot be read: {error.strerror}")
    if len(raw) > MAX_MANIFEST_BYTES:
        return _file_problem(
            filename,
            f"is {_human(size)}; a manifest may be at most {_human(MAX_MANIFEST_BYTES)}",
        )
    return parse_manifest_bytes(raw, filename, env)


def parse_manifest_bytes(
    raw: bytes, filename: str = "manifest.yml", env: Mapping[str, str] | None = None
) -> ManifestReport:
    """Decode manifest bytes (UTF-8, or UTF-16 with a byte-order mark) and check them."""
    if len(raw) > MAX_MANIFEST_BYTES:
        # the service reads one byte more than the most, not the rest: its size is unknown
        most = _human(MAX_MANIFEST_BYTES)
        if len(raw) == MAX_MANIFEST_BYTES + 1:
            return _file_problem(filename, f"is over {most}, the most a manifest may be")
        return _file_problem(filename, f"is {_human(len(raw))}; a manifest may be at most {most}")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError:
            return _file_problem(filename, "is not valid UTF-16 text")
    else:
        nul = raw.find(b"\0")
        if nul >= 0:
            line, col = _line_col_bytes(raw, nul)
            return _file_problem(
                filename,
                "is a binary file (a NUL byte), not YAML text",
                line,
                col,
            )
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line, col = _line_col_bytes(raw, error.start)
            return _file_problem(
                filename,
                f"is not UTF-8 text (byte 0x{raw[error.start]:02x})",
                line,
                col,
            )
    return parse_manifest(text, filename, env)


def parse_manifest(
    text: str, filename: str = "manifest.yml", env: Mapping[str, str] | None = None
) -> ManifestReport:
    """Check manifest text. With ``env``, ``${NAME}`` in connection values is expanded from it
    (an unset variable is an error); without, references are kept as written."""
    if len(text) > MAX_MANIFEST_BYTES:
        return _file_problem(filename, f"is longer than {_human(MAX_MANIFEST_BYTES)}")
    try:
        root = compose(text)
    except YamlError as error:
        return _file_problem(filename, error.message, error.line + 1, error.column + 1, text)
    if root is None:
        return _file_problem(filename, "is empty; a manifest is a YAML mapping", text=text)
    checker = _Checker(env)
    values = checker.section(SCHEMA, root, "", (root.line, root.column))
    if "experiment" in values:
        values["experiment"] = checker.experiment(values)
    checker.same_bucket(values)
    manifest = None if checker.has_errors else _build(values)
    framework = _framework_only(values) if manifest is None else None
    return ManifestReport(
        filename, text, manifest, checker.problems, checker.secret_spans, framework
    )


def _file_problem(
    filename: str, message: str, line: int = 1, column: int = 1, text: str = ""
) -> ManifestReport:
    return ManifestReport(filename, text, None, [Problem(line, column, "", message)])


class _Checker:
    def __init__(self, env: Mapping[str, str] | None) -> None:
        self.env = env
        self.store_paths: dict[str, str] = {}  # "source"/"target": its section's path
        self.problems: list[Problem] = []
        self.secret_spans: list[tuple[int, int, str | None]] = []

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems)

    def error(self, at: Node | tuple[int, int], path: str, message: str) -> None:
        self._add(at, path, message, "error")

    def warn(self, at: Node | tuple[int, int], path: str, message: str) -> None:
        self._add(at, path, message, "warning")

    def _add(self, at: Node | tuple[int, int], path: str, message: str, severity: str) -> None:
        line, col = (at.line, at.column) if isinstance(at, Node) else at
        self.problems.append(Problem(line + 1, col + 1, path, message, severity))

    # A mapping's entries, with duplicate keys reported and YAML merge keys (<<) applied.
    def entries(self, node: Node, path: str) -> list[tuple[str, Node, Node]]:
        explicit: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key, value in node.items:
            if key.kind != "scalar":
                self.error(key, path, "a key must be plain text, not a mapping or a list")
                continue
            if key.plain and key.value == "<<":
                for source in value.items if value.kind == "seq" else [value]:
                    if source.kind != "map":
                        self.error(value, path, "a merge key (<<) must refer to a mapping")
                        continue
                    for mk, mv in source.items:
                        if mk.kind == "scalar":
                            merged.setdefault(mk.value, (mk, mv))
                continue
            if key.value in explicit:
                first = explicit[key.value][0]
                self.error(
                    key,
                    _join(path, key.value),
                    f"duplicate key '{key.value}' (first at line {first.line + 1}); "
                    "YAML would silently keep only the last one",
                )
                continue
            explicit[key.value] = (key, value)
        for name, pair in merged.items():
            explicit.setdefault(name, pair)
        return [(name, k, v) for name, (k, v) in explicit.items()]

    def section(
        self, spec: Section, node: Node, path: str, where: tuple[int, int]
    ) -> dict[str, object]:
        if node.kind != "map":
            if path == "":
                found = "a list" if node.kind == "seq" else f"the text '{_short(node.value)}'"
                self.error(node, path, f"a manifest must be a YAML mapping, but this is {found}")
            else:
                self.error(node, path, f"expected a mapping, found {_kind_name(node)}")
            return {}
        values: dict[str, object] = {}
        spelled: dict[str, str] = {}
        connection: tuple[Node, Node] | None = None
        suggested: set[str | None] = set()  # a misspelt key already says what is missing
        for name, key, value in self.entries(node, path):
            canonical = spec.aliases.get(name, name)
            if canonical not in spec.fields:
                meant = self.unknown_key(key, path, name, [*spec.fields, *spec.aliases])
                suggested.add(spec.aliases.get(meant, meant))
                continue
            if canonical in spelled:
                self.error(
                    key,
                    _join(path, name),
                    f"'{name}' and '{spelled[canonical]}' are two spellings of the same "
                    "section; give only one",
                )
                continue
            spelled[canonical] = name
            child = spec.fields[canonical]
            child_path = _join(path, name)
            if isinstance(child, Text):
                text = self.text(child, value, child_path)
                if text is not None:
                    values[canonical] = (text, value)
            elif isinstance(child, Section):
                values[canonical] = self.subsection(child, key, value, child_path)
            elif isinstance(child, MetricSources):
                values[canonical] = self.metric_sources(child, value, child_path)
            elif isinstance(child, ExperimentBlock):
                values[canonical] = (key, value)  # checked last: it names the run's name
            else:  # checked below, once the sibling store type is known
                connection = (key, value)
        for canonical, child in spec.fields.items():
            if isinstance(child, (MetricSources, ExperimentBlock)):
                continue
            if isinstance(child, Connection):
                self.connection(spec, connection, path, where, values)
            elif canonical not in spelled and canonical not in suggested and child.required:
                other = [a for a, c in spec.aliases.items() if c == canonical]
                also = f" (also spelled '{other[0]}')" if other else ""
                self.error(where, _join(path, canonical), f"required but missing{also}")
        return values

    def subsection(self, spec: Section, key: Node, value: Node, path: str) -> dict[str, object]:
        where = (key.line, key.column)
        if spec.one_or_list and value.kind == "seq":
            if len(value.items) != 1:
                found = "none" if not value.items else f"{len(value.items)}"
                at = value.items[1] if len(value.items) > 1 else value
                self.error(at, path, f"exactly one data reference is supported, found {found}")
                if not value.items:
                    return {}
            item = value.items[0]
            return self.section(spec, item, f"{path}[0]", (item.line, item.column))
        if value.kind == "scalar" and value.scalar_type == "null" and not spec.required:
            return {}
        return self.section(spec, value, path, where)

    def metric_sources(self, spec: MetricSources, node: Node, path: str) -> list[MetricSource]:
        """``evaluation_metrics``: one source or a list of them, each checked whole."""
        if node.kind == "scalar" and node.scalar_type == "null":
            return []
        if node.kind == "seq":
            items = [(item, f"{path}[{i}]") for i, item in enumerate(node.items)]
            if not items:
                self.error(node, path, "an empty list; give a source, or leave the key out")
        else:
            items = [(node, path)]
        as_section = Section(spec.description, spec.fields)
        sources = []
        for item, item_path in items:
            if item.kind != "map":
                self.error(item, item_path, f"expected a mapping, found {_kind_name(item)}")
                continue
            before = len(self.problems)
            values = self.section(as_section, item, item_path, (item.line, item.column))
            source = self.metric_source(item, item_path, values)
            if source is not None and len(self.problems) == before:
                sources.append(source)
        return sources

    def metric_source(self, node: Node, path: str, values: dict) -> MetricSource | None:
        def given(key: str) -> tuple[str, Node] | None:
            entry = values.get(key)
            return (entry[0], entry[1]) if entry else None

        kind, where, pattern = given("type"), given("in"), given("pattern")
        if kind is None:
            return None  # said: missing, or not one of the types
        where_at = (node.line, node.column)
        if kind[0] == "log" and pattern is None:
            self.error(
                where_at,
                _join(path, "pattern"),
                "required for type log: a regular expression with a named group per metric,"
                " e.g. 'loss (?P<loss>[0-9.eE+-]+)'",
            )
        if kind[0] == "tensorboard" and where is None:
            self.error(
                where_at,
                _join(path, "in"),
                "required for type tensorboard: the folder of the event files, e.g. $LOG_DIR/tb",
            )
        if pattern is not None:
            if kind[0] != "log":
                self.error(pattern[1], _join(path, "pattern"), "only a log source takes a pattern")
            else:
                self.metric_pattern(pattern[0], pattern[1], _join(path, "pattern"))
        if where is not None and where[0].strip().startswith(("/", "~")):
            self.error(
                where[1], _join(path, "in"), "a source is read in the run's folders: start it "
                "with $LOG_DIR, $RESULT_DIR, $CHECKPOINT_DIR or $MODEL_DIR (or give a path "
                "relative to MODEL_DIR)"
            )  # fmt: skip
        elif where is not None and not _within_run(where[0]):
            self.error(
                where[1], _join(path, "in"), f"'{_short(where[0])}' leads out of the run's "
                "folders (..): a source is read in them, nowhere else"
            )  # fmt: skip
        elif where is not None:
            for m in _METRIC_VARIABLE.finditer(where[0]):
                name = m.group(1) or m.group(2)
                if name not in METRIC_VARIABLES:
                    close = _close(name, METRIC_VARIABLES, n=1, cutoff=0.6)
                    hint = (
                        f"did you mean ${close[0]}?"
                        if close
                        else f"known: {', '.join('$' + v for v in METRIC_VARIABLES)}"
                    )
                    self.warn(where[1], _join(path, "in"), f"${name} is not a run folder; {hint}")
        return MetricSource(kind[0], where[0] if where else "", pattern[0] if pattern else "")

    def experiment(self, values: dict):
        """``experiment:`` checked, once the rest is: its default name is the run's, its
        objective a metric the runs may have."""
        from trainui.core.experiments import check

        key, node = values["experiment"]
        if node.kind == "scalar" and node.scalar_type == "null":
            # a forgotten block, not a single run: the user meant a sweep
            self.error(
                node, key.value, "is empty: give method and parameters (SPEC §9), or leave "
                "experiment: out for a single run"
            )  # fmt: skip
            return None
        md = values.get("model_definition")
        name = md.get("name") if isinstance(md, dict) else None
        experiment = check(self, node, key.value, name[0] if name else "")
        metric = experiment.objective_metric if experiment else None
        sources = values.get("evaluation_metrics") or []
        if metric and sources and all(s.type == "log" for s in sources):
            import regex  # the learner's engine (learner/metrics.py)

            named = {n for s in sources for n in regex.compile(s.pattern).groupindex if n != "step"}
            if metric not in named:
                self.error(
                    _objective_node(node),
                    f"{key.value}.objective.metric",
                    f"'{metric}' is not a metric the log pattern reads "
                    f"({', '.join(sorted(named))})",
                )
                return None
        return experiment

    def metric_pattern(self, pattern: str, node: Node, path: str) -> None:
        import regex  # the learner's engine (learner/metrics.py): what it compiles, checked

        try:
            compiled = regex.compile(pattern)
        except regex.error as error:
            at = f" at position {error.pos}" if error.pos is not None else ""
            self.error(node, path, f"does not compile: {error.msg}{at}")
            return
        if not [name for name in compiled.groupindex if name != "step"]:
            self.error(
                node,
                path,
                "has no named group for a metric: write (?P<name>...) around each value,"
                " e.g. 'loss (?P<loss>[0-9.eE+-]+)'",
            )

    def unknown_key(self, key: Node, path: str, name: str, allowed: list[str]) -> str | None:
        """Report an unknown key; return the key it probably meant, if any."""
        close = _close(name, allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed here: {', '.join(allowed)}"
        self.error(key, _join(path, name), f"unknown key '{name}'; {hint}")
        return close[0] if close else None

    def text(self, spec: Text, node: Node, path: str) -> str | None:
        if node.kind != "scalar":
            self.error(node, path, f"expected text, found {_kind_name(node)}")
            return None
        kind = node.scalar_type
        if kind == "null" or (kind == "str" and not node.value.strip()):
            if spec.required:
                self.error(node, path, "is empty; a value is required")
            return None
        if kind == "bool":
            shown = "" if spec.secret else f" '{node.value}'"
            if spec.pattern:  # a number field: quotes would not make it one
                self.error(node, path, f"expected {spec.pattern_hint}, found the boolean{shown}")
            else:
                self.error(node, path, f"expected text, found the boolean{shown}; put it in quotes")
            return None
        if kind not in ("str", "int", "float", "timestamp"):
            self.error(node, path, f"expected text, found a value of YAML type '{kind}'")
            return None
        value = node.value
        control = (_MULTILINE_CONTROL if spec.multiline else _CONTROL).search(value)
        if control is not None:
            # an escape sequence would recolour or clear the terminals that show the run, a
            # newline forge lines of its log and split the tables it is listed in
            self.error(
                node, path, f"holds the control character U+{ord(control.group()):04X}; "
                + ("only newlines and tabs may" if spec.multiline else "a one-line value may not")
            )  # fmt: skip
            return None
        if spec.longest is not None and len(value) > spec.longest:
            self.error(
                node, path, f"is {len(value):,} characters long; at most {spec.longest}"
            )  # fmt: skip
            return None
        if spec.choices and value not in spec.choices:
            close = _close(value, spec.choices, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            self.error(
                node, path, f"'{_short(value)}' is not one of {', '.join(spec.choices)}{hint}"
            )
            return None
        if spec.pattern and not re.match(spec.pattern, value):
            self.error(node, path, f"'{_short(value)}' is not allowed: {spec.pattern_hint}")
            return None
        if _PLACEHOLDER.match(value.strip()):
            shown = "the value" if spec.secret else f"'{value}'"
            self.warn(node, path, f"{shown} looks like a placeholder; put the real value here")
        return value

    def connection(
        self,
        spec: Section,
        entry: tuple[Node, Node] | None,
        path: str,
        where: tuple[int, int],
        values: dict[str, object],
    ) -> None:
        """Check ``connection`` against the keys of the store type given beside it."""
        place = "source" if "source" in spec.fields else "target"
        self.store_paths[place] = path  # as written (training_data or its other spelling)
        store = values.get(place)
        type_entry = store.get("type") if isinstance(store, dict) else None
        store_type = type_entry[0] if type_entry else None
        conn_path = _join(path, "connection")
        if entry is None:
            self.error(where, conn_path, "required but missing (write 'connection: {}' for none)")
            return
        key, conn = entry
        if conn.kind == "scalar" and conn.scalar_type == "null":
            conn_entries: list[tuple[str, Node, Node]] = []
        elif conn.kind != "map":
            self.error(conn, conn_path, f"expected a mapping, found {_kind_name(conn)}")
            return
        else:
            conn_entries = self.entries(conn, conn_path)
        bucket = store.get("bucket") if isinstance(store, dict) else None
        if (
            store_type == "s3"
            and bucket
            and not _S3_BUCKET.match(bucket[0])
            and not _PLACEHOLDER.match(bucket[0].strip())  # warned of as a placeholder
        ):
            self.error(
                bucket[1],
                _join(_join(path, place), "bucket"),
                f"'{_short(bucket[0])}' is not an S3 bucket name: letters, digits, '.', '-' and"
                " '_' (on AWS: 3 to 63 lowercase letters, digits, '.' and '-')",
            )
        keys = CONNECTION_KEYS.get(store_type) if store_type else None
        result: dict[str, str] = {}
        for name, k, v in conn_entries:
            value_path = _join(conn_path, name)
            if keys is None:  # unknown type, reported elsewhere: still check that it is text
                self.text(Text(""), v, value_path)
                continue
            if name not in keys:
                owner = [t for t, ks in CONNECTION_KEYS.items() if name in ks]
                if owner and store_type not in owner:
                    self.error(
                        k,
                        value_path,
                        f"'{name}' is a key of {' and '.join(owner)} connections; "
                        f"{store_type} connections take {', '.join(keys)}",
                    )
                else:
                    self.unknown_key(k, conn_path, name, list(keys))
                continue
            text = self.text(keys[name], v, value_path)
            if keys[name].secret and v.kind == "scalar":
                kept = None if _ENV_REF.sub("", v.value).strip() else v.value
                self.secret_spans.append((v.start, v.end, kept))
            if text is None:
                continue
            text = self.expand(text, v, value_path)
            if text is not None:
                self.check_connection_value(store_type, name, text, v, value_path)
                result[name] = text
        if keys is not None:
            for name, spec_key in keys.items():
                if spec_key.required and name not in {n for n, _, _ in conn_entries}:
                    self.error(key, conn_path, f"'{name}' is required for {store_type} stores")
            given = {n: k for n, k, _ in conn_entries}
            for name, needed in _NEEDS.get(store_type or "", {}).items():
                lacking = [n for n in needed if n not in given]
                if name in given and lacking:
                    self.error(
                        given[name],
                        _join(conn_path, name),
                        f"'{name}' needs {' and '.join(repr(n) for n in lacking)} beside it"
                        " (or give no keys: botocore's credential chain applies)",
                    )
        values["connection"] = result

    def same_bucket(self, values: dict[str, object]) -> None:
        """A warning when the results go to the training data's bucket: each run stores under
        its run ID there, and the next runs stage those results as data."""
        data, results = (values.get(k) for k in REFERENCE_KEYS)
        if not isinstance(data, dict) or not isinstance(results, dict):
            return
        source, target = data.get("source"), results.get("target")
        if not isinstance(source, dict) or not isinstance(target, dict):
            return

        def where(section: dict, store: dict) -> tuple:
            return (
                *(store[k][0] if store.get(k) else None for k in ("type", "bucket")),
                tuple(sorted((section.get("connection") or {}).items())),
            )

        bucket = target.get("bucket")
        if bucket and where(data, source) == where(results, target):
            self.warn(
                bucket[1],
                _join(
                    _join(self.store_paths.get("target", "training_results"), "target"), "bucket"
                ),
                f"'{_short(bucket[0])}' is also the training data's bucket: the results of each"
                " run (under its run ID) are staged as data by the runs after it",
            )

    def expand(self, text: str, node: Node, path: str) -> str | None:
        if self.env is None or "${" not in text:
            return text
        missing = [m.group(1) for m in _ENV_REF.finditer(text) if m.group(1) not in self.env]
        if missing:
            names = ", ".join(f"${{{n}}}" for n in missing)
            self.error(node, path, f"environment variable {names} is not set")
            return None
        empty = [m.group(1) for m in _ENV_REF.finditer(text) if not self.env[m.group(1)].strip()]
        if empty and not _ENV_REF.sub(lambda m: self.env[m.group(1)], text).strip():
            names = ", ".join(f"${{{n}}}" for n in dict.fromkeys(empty))
            self.error(node, path, f"environment variable {names} is set but empty")
            return None
        return _ENV_REF.sub(lambda m: self.env[m.group(1)], text)

    def check_connection_value(
        self, store_type: str | None, name: str, text: str, node: Node, path: str
    ) -> None:
        if _PLACEHOLDER.match(text.strip()) or "${" in text:
            return
        if name in ("endpoint_url", "auth_url"):
            if has_userinfo(text):  # never shown: the part before '@' is a password
                self.error(
                    node,
                    path,
                    "credentials in a URL are not accepted; put them in "
                    + " / ".join(_CREDENTIAL_KEYS.get(store_type or "", ())),
                )
            elif not re.match(r"^https?://[^/\s]+", text):
                self.error(node, path, f"'{_short(text)}' is not an http:// or https:// URL")
        if store_type == "s3" and name == "region" and not _S3_REGION.match(text):
            self.error(
                node, path, f"'{_short(text)}' is not a region name (like us-east-1 or eu-west-3)"
            )
        if store_type == "local" and name == "path" and not text.startswith(("/", "~")):
            self.error(node, path, f"'{_short(text)}' must be an absolute path")


def _build(values: dict[str, object]) -> Manifest:
    def text(section: object, key: str) -> str:
        entry = section.get(key) if isinstance(section, dict) else None
        return entry[0] if entry else ""

    md = values["model_definition"]
    author = md.get("author", {})

    def store(section: dict, place: str) -> Store:
        return Store(
            type=text(section[place], "type"),
            bucket=text(section[place], "bucket"),
            connection=MappingProxyType(dict(section.get("connection", {}))),
        )

    return Manifest(
        name=text(md, "name"),
        description=text(md, "description"),
        author_name=text(author, "name"),
        author_email=text(author, "email"),
        framework_name=text(md["framework"], "name"),
        framework_version=text(md["framework"], "version"),
        command=text(md["execution"], "command"),
        resource=text(md["execution"], "resource"),
        max_restarts=int(text(md["execution"], "max_restarts") or 0),
        checkpoint_interval=float(text(md["execution"], "checkpoint_interval") or 0) or None,
        data=store(values["training_data_reference"], "source"),
        results=store(values["training_results_reference"], "target"),
        metrics=tuple(values.get("evaluation_metrics") or ()),
        experiment=values.get("experiment"),
        framework_at=_framework_at(md["framework"]),
    )


def _framework_at(framework: dict) -> dict[str, tuple[int, int]]:
    """Where framework.name and .version are written: (line, column), 1-based."""
    return {
        key: (entry[1].line + 1, entry[1].column + 1)
        for key in ("name", "version")
        if (entry := framework.get(key)) and getattr(entry[1], "line", None) is not None
    }


def _framework_only(values: dict[str, object]) -> Manifest | None:
    """A manifest with errors elsewhere: its framework alone (None when it has errors too)."""
    md = values.get("model_definition")
    framework = md.get("framework") if isinstance(md, dict) else None
    if not isinstance(framework, dict) or not framework.get("name") or not framework.get("version"):
        return None
    fields = dict.fromkeys(Manifest.__slots__, "")
    fields.update(
        framework_name=framework["name"][0],
        framework_version=framework["version"][0],
        framework_at=_framework_at(framework),
    )
    return Manifest(**fields)


def _objective_node(node: Node) -> Node:
    """The ``objective.metric`` value under an ``experiment:`` mapping (where to point)."""
    for key, value in node.items:
        if key.kind == "scalar" and key.value == "objective" and value.kind == "map":
            for k, v in value.items:
                if k.kind == "scalar" and k.value == "metric":
                    return v
            return value
    return node


def metric_sources(text: str) -> list[dict[str, str]] | None:
    """The ``evaluation_metrics`` of manifest text, as the learner takes them (``type``,
    ``in``, ``pattern``); None when it has none (or is not readable YAML). Only that key is
    checked; a source with a problem is left out."""
    root = mapping_of(text)
    if root is None:
        return None
    checker = _Checker(None)
    for key, value in root.items:
        if key.kind == "scalar" and key.value == "evaluation_metrics":
            sources = checker.metric_sources(METRIC_SOURCE, value, "evaluation_metrics")
            return [source.as_spec() for source in sources]
    return None


# --- redaction --------------------------------------------------------------------------------


def redact_text(text: str, spans: list[tuple[int, int, str | None]] | None = None) -> str:
    """``text`` with secret values replaced. ``spans`` come from a parse; without them (text
    that is not valid YAML), the rest of every line whose key is a secret key is replaced."""
    if spans is None:
        keys = "|".join(sorted(SECRET_KEYS))
        pattern = re.compile(rf"^(\s*(?:-\s+)?[\"']?(?:{keys})[\"']?\s*:).*$", re.MULTILINE)
        return pattern.sub(rf"\1 '{REDACTED}'", text)
    out = text
    for start, end, kept in sorted(spans, reverse=True):
        if kept is not None:  # only ${NAME} references: not a secret, and useful to see
            continue
        anchor = re.match(r"&\S+\s+", out[start:end])
        out = out[:start] + (anchor.group(0) if anchor else "") + f"'{REDACTED}'" + out[end:]
    return out


# --- JSON Schema ------------------------------------------------------------------------------


def json_schema() -> dict:
    """The manifest's JSON Schema (draft-07, for editors' YAML language servers)."""
    schema = _section_schema(SCHEMA)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["$id"] = "https://trainui.invalid/schema/manifest.json"
    schema["title"] = "trainui training manifest"
    data_key, data_alias = "training_data_reference", "training_data"
    results_key, results_alias = "training_results_reference", "training_results"
    schema["required"] = [k for k in schema["required"] if k not in (data_key, results_key)]
    schema["allOf"] = [
        {"oneOf": [{"required": [data_key]}, {"required": [data_alias]}]},
        {"oneOf": [{"required": [results_key]}, {"required": [results_alias]}]},
    ]
    return schema


def _text_schema(spec: Text) -> dict:
    out: dict = {"description": spec.description}
    if spec.choices:
        out["enum"] = list(spec.choices)
    else:
        out["type"] = ["string", "number"]
        if spec.required:
            out["minLength"] = 1
        if spec.pattern:
            out["pattern"] = spec.pattern
        if spec.longest is not None:
            out["maxLength"] = spec.longest
    return out


def _connection_schema(place: str) -> dict:
    """Per store type, the allowed connection keys (draft-07 if/then on the sibling type)."""
    branches = []
    for store_type, keys in CONNECTION_KEYS.items():
        branches.append(
            {
                "if": {
                    "properties": {place: {"properties": {"type": {"const": store_type}}}},
                    "required": [place],
                },
                "then": {
                    "properties": {
                        "connection": {
                            "type": ["object", "null"],
                            "properties": {k: _text_schema(s) for k, s in keys.items()},
                            "required": [k for k, s in keys.items() if s.required],
                            "dependencies": {
                                k: list(v) for k, v in _NEEDS.get(store_type, {}).items()
                            },
                            "additionalProperties": False,
                        }
                    }
                },
            }
        )
    return {"allOf": branches}


def _metrics_schema(spec: MetricSources) -> dict:
    """One source or a list; ``log`` needs ``pattern``, ``tensorboard`` needs ``in``."""
    source = _section_schema(Section(spec.description, spec.fields))
    source["allOf"] = [
        {
            "if": {"properties": {"type": {"const": "log"}}},
            "then": {"required": ["pattern"]},
            "else": {"not": {"required": ["pattern"]}},
        },
        {
            "if": {"properties": {"type": {"const": "tensorboard"}}},
            "then": {"required": ["in"]},
        },
    ]
    return {
        "description": spec.description,
        "oneOf": [source, {"type": "array", "items": source, "minItems": 1}, {"type": "null"}],
    }


def _experiment_schema(spec: ExperimentBlock) -> dict:
    number = {"type": "number"}
    scalar = {"type": ["number", "string", "boolean"]}
    parameter = {
        "oneOf": [
            {"type": "array", "items": scalar, "minItems": 1},
            {
                "type": "object",
                "properties": {"values": {"type": "array", "items": scalar, "minItems": 1}},
                "required": ["values"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {
                    "min": number,
                    "max": number,
                    "step": number,
                    "log": {"type": "boolean"},
                    "integer": {"type": "boolean"},
                },
                "required": ["min", "max"],
                "additionalProperties": False,
            },
        ]
    }
    whole = {"type": "integer", "minimum": 1}
    return {
        "description": spec.description,
        "type": ["object", "null"],
        "properties": {
            "name": {"type": "string", "description": "default: model_definition.name"},
            "method": {"type": "string", "enum": ["grid", "random"]},
            "count": {**whole, "maximum": 10_000, "description": "random: how many runs"},
            "max_parallel": {**whole, "description": "at most this many of its runs active"},
            "seed": {"type": "integer", "minimum": 0, "description": "random: the draws' seed"},
            "parameters": {
                "type": "object",
                "description": "each a list of values, or a range (min, max; log, integer, step)",
                "additionalProperties": parameter,
                "minProperties": 1,
            },
            "objective": {
                "type": "object",
                "properties": {
                    "metric": {"type": "string"},
                    "goal": {"type": "string", "enum": ["minimize", "maximize"]},
                },
                "required": ["metric"],
                "additionalProperties": False,
            },
            "early_stopping": {
                "type": "object",
                "properties": {
                    "rule": {"type": "string", "enum": ["median"]},
                    "after_steps": {"type": "integer", "minimum": 0},
                    "min_runs": whole,
                },
                "additionalProperties": False,
            },
        },
        "required": ["method", "parameters"],
        "additionalProperties": False,
    }


def _section_schema(spec: Section) -> dict:
    properties: dict[str, dict] = {}
    required: list[str] = []
    place = None
    for name, child in spec.fields.items():
        if isinstance(child, Text):
            properties[name] = _text_schema(child)
        elif isinstance(child, Section):
            properties[name] = _section_schema(child)
            if child.one_or_list:
                properties[name] = {
                    "description": child.description,
                    "oneOf": [
                        properties[name],
                        {"type": "array", "items": properties[name], "minItems": 1, "maxItems": 1},
                    ],
                }
        elif isinstance(child, MetricSources):
            properties[name] = _metrics_schema(child)
        elif isinstance(child, ExperimentBlock):
            properties[name] = _experiment_schema(child)
        else:
            properties[name] = {"description": child.description, "type": ["object", "null"]}
            place = "source" if "source" in spec.fields else "target"
        if child.required:
            required.append(name)
    for alias, canonical in spec.aliases.items():
        properties[alias] = properties[canonical]
    out = {
        "type": "object",
        "description": spec.description,
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if place:
        out.update(_connection_schema(place))
    return out


# --- small helpers ----------------------------------------------------------------------------


def _close(word: str, choices, n: int = 1, cutoff: float = 0.6) -> list[str]:
    import difflib  # only needed when something is misspelt

    return difflib.get_close_matches(word, choices, n=n, cutoff=cutoff)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind_name(node: Node) -> str:
    if node.kind == "map":
        return "a mapping"
    if node.kind == "seq":
        return "a list"
    return f"the text '{_short(node.value)}'"


def _short(text: str, limit: int = 40) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _human(size: int) -> str:
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _line_col_bytes(raw: bytes, index: int) -> tuple[int, int]:
    line = raw.count(b"\n", 0, index)
    return line + 1, index - (raw.rfind(b"\n", 0, index) + 1) + 1
