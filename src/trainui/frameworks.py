"""The frameworks catalogue (SPEC §10): which ``framework`` names and versions a box supports,
and the runtime each runs in (a container image, a venv, a conda environment, or the host).

The service reads it (``$XDG_CONFIG_HOME/trainui/frameworks.toml``, or ``TRAINUI_FRAMEWORKS``);
with none, every framework runs on the host, as before. A catalogue with errors is refused with
every error located (``FILE:LINE: [[framework]] #N: ...``), as a manifest is."""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Mapping

RUNTIMES = ("container", "venv", "conda", "host")
GPU_PASSING = ("auto", "cdi", "gpus-flag")
CONTAINER_COMMANDS = ("podman", "docker")
_KEYS = {
    "name": "the framework's name, as manifests write it (framework.name)",
    "versions": 'the versions it supports: a list ("2.4", "2.*", or "*" for any)',
    "runtime": "container | venv | conda | host",
    "image": "container: the image ({version} expands)",
    "path": "venv / conda: the environment's folder ({version} expands)",
    "runtime_command": "container: podman or docker (a name or a path); found when unset",
    "options": "container: more arguments for `podman run` (e.g. --shm-size=8g)",
    "gpus": "container: how GPUs are passed: auto, cdi (podman) or gpus-flag (docker --gpus)",
    "pull": "container: missing (pull when the image is not here, the default) or never",
    "description": "what users read in `trainui frameworks`",
}
_REQUIRED = {"container": ("image",), "venv": ("path",), "conda": ("path",), "host": ()}
_ONLY_FOR = {
    "image": ("container",),
    "path": ("venv", "conda"),
    "runtime_command": ("container",),
    "options": ("container",),
    "gpus": ("container",),
    "pull": ("container",),
}


class CatalogueError(ValueError):
    """A catalogue that cannot be used: ``problems`` are located sentences."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"the frameworks catalogue is not valid: {problems[0]}{more}")


class Framework:
    """One ``[[framework]]`` entry."""

    __slots__ = ("name", "versions", "runtime", "settings", "line", "index", "description")

    def __init__(self, name, versions, runtime, settings, line, index, description="") -> None:
        self.name: str = name
        self.versions: list[str] = versions
        self.runtime: str = runtime
        self.settings: dict = settings  # image, path, runtime_command, options, gpus, pull
        self.line: int = line
        self.index: int = index
        self.description: str = description

    def supports(self, version: str) -> bool:
        return _plain(version) and any(
            v == "*" or fnmatch.fnmatchcase(version, v) for v in self.versions
        )

    def describe(self) -> dict:
        out = {"name": self.name, "versions": list(self.versions), "runtime": self.runtime}
        for key in ("image", "path", "runtime_command", "options", "gpus", "pull"):
            if key in self.settings:
                out[key] = self.settings[key]
        if self.description:
            out["description"] = self.description
        return out

    def runtime_spec(self, version: str) -> dict:
        """What the learner needs to run a command of this framework and version."""
        spec = {"runtime": self.runtime, "framework": f"{self.name} {version}"}
        for key, value in self.settings.items():
            spec[key] = value.replace("{version}", version) if isinstance(value, str) else value
        return spec


class Catalogue:
    """The frameworks a box supports; ``path`` None: no catalogue (everything on the host)."""

    def __init__(self, path: str | None, frameworks: list[Framework], mtime: float = 0.0):
        self.path = path
        self.frameworks = frameworks
        self.mtime = mtime

    @property
    def present(self) -> bool:
        return self.path is not None

    def describe(self) -> dict:
        """``GET /v3/frameworks`` and ``trainui frameworks --json``."""
        if not self.present:
            return {
                "catalogue": None,
                "frameworks": [],
                "message": "no frameworks catalogue: every framework runs on the host",
            }
        return {
            "catalogue": self.path,
            "frameworks": [f.describe() for f in self.frameworks],
            "message": f"{len(self.frameworks)} framework"
            f"{'s' if len(self.frameworks) != 1 else ''} in {self.path}",
        }

    def find(self, name: str, version: str) -> Framework | None:
        """The entry a manifest's framework runs with; None when unsupported. An entry that
        names the version as it is wins over a pattern (``"*"``, ``"2.*"``) of an earlier one.
        Without a catalogue, nothing is found and nothing is refused (check says so)."""
        named = [f for f in self.frameworks if f.name.lower() == name.strip().lower()]
        exact = [f for f in named if version in f.versions and _plain(version)]
        if exact:
            return exact[0]
        for framework in named:
            if framework.supports(version):
                return framework
        return None

    def check(self, name: str, version: str) -> str | None:
        """Why ``name`` ``version`` is not supported here (a sentence, with the supported list
        and a "did you mean"), or None when it is (or when there is no catalogue)."""
        if not self.present or self.find(name, version) is not None:
            return None
        return unsupported(name, version, [f.describe() for f in self.frameworks])


_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _plain(version: str) -> bool:
    """Is ``version`` a version (``2.16``, ``1.2-py3``), not a path or a tag's end (``2/../..``,
    ``1:latest``)? It becomes part of a venv's folder or an image's name."""
    return bool(_VERSION.match(version))


def unsupported(name: str, version: str, frameworks: list[dict]) -> str | None:
    """The C104 sentence for a framework not in ``frameworks`` (``describe()``'s entries), or
    None when one of them supports it."""
    if not _plain(version):  # it names a venv's folder or an image's tag: never a path
        return f"framework version {version!r} is not a version: letters, digits and . _ + - only"
    names: dict[str, list[str]] = {}
    for entry in frameworks:
        versions = [str(v) for v in entry.get("versions") or ()]
        if entry.get("name", "").lower() == name.strip().lower() and any(
            v == "*" or fnmatch.fnmatchcase(version, v) for v in versions
        ):
            return None
        names.setdefault(entry.get("name", ""), []).extend(versions)
    supported = "; ".join(f"{n} {', '.join(v)}" for n, v in names.items()) or "none"
    known = {n.lower(): n for n in names}
    if name.strip().lower() in known:
        own = names[known[name.strip().lower()]]
        close = difflib.get_close_matches(version, [v for v in own if "*" not in v], n=1)
        hint = f" (did you mean {known[name.strip().lower()]} {close[0]}?)" if close else ""
        return (
            f"framework {name} {version} is not supported here: {known[name.strip().lower()]}"
            f" versions {', '.join(own)}{hint}. Supported: {supported}"
        )
    close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.5)
    hint = f" (did you mean {known[close[0]]}?)" if close else ""
    return f"framework {name} is not supported here{hint}. Supported: {supported}"


def manifest_problem(manifest, frameworks: list[dict]) -> tuple[str, int, int] | None:
    """A checked manifest's framework against ``frameworks``: (the C104 sentence, line,
    column) located at the version when the name is supported, else at the name; None when
    supported."""
    why = unsupported(manifest.framework_name, manifest.framework_version, frameworks)
    if why is None:
        return None
    name = manifest.framework_name.strip().lower()
    known = any(entry.get("name", "").lower() == name for entry in frameworks)
    at = (manifest.framework_at or {}).get("version" if known else "name", (1, 1))
    return why, at[0], at[1]


def catalogue_path(environ: Mapping[str, str] = os.environ) -> str:
    """``TRAINUI_FRAMEWORKS``, else ``$XDG_CONFIG_HOME/trainui/frameworks.toml``."""
    from trainui.config import config_file

    return config_file(environ, "TRAINUI_FRAMEWORKS", "frameworks.toml")[0]


def load(environ: Mapping[str, str] = os.environ) -> Catalogue:
    """The catalogue the environment names; an empty one (``present`` False) when the default
    file does not exist. Raises CatalogueError with every problem located."""
    path = catalogue_path(environ)
    explicit = bool((environ.get("TRAINUI_FRAMEWORKS") or "").strip())
    try:
        with open(path, "rb") as f:
            raw = f.read((1 << 20) + 1)
            mtime = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        if explicit:
            raise CatalogueError(path, [f"{path}: no such file (TRAINUI_FRAMEWORKS)"]) from None
        return Catalogue(None, [])
    except OSError as error:
        raise CatalogueError(path, [f"{path}: cannot be read: {error.strerror}"]) from None
    return Catalogue(path, parse(raw, path), mtime)


def parse(raw: bytes, path: str) -> list[Framework]:
    """The entries of a catalogue's text; CatalogueError listing every problem, located."""
    if len(raw) > 1 << 20:
        raise CatalogueError(path, [f"{path}: larger than 1 MiB: not a catalogue"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CatalogueError(path, [f"{path}: not UTF-8 text (byte {error.start})"]) from None
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CatalogueError(path, [f"{path}: {error}"]) from None
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if _HEADER.match(line)]
    problems: list[str] = []
    for key in document:
        if key != "framework":
            hint = " (did you mean [[framework]]?)" if key.lower().startswith("framework") else ""
            problems.append(f"{path}: unknown table or key {key!r}{hint}")
    entries = document.get("framework", [])
    if not isinstance(entries, list):
        problems.append(f"{path}: framework must be written [[framework]] (a list of tables)")
        entries = []
    frameworks: list[Framework] = []
    seen: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(entries, 1):
        line = lines[index - 1] if index - 1 < len(lines) else 1
        where = f"{path}:{line}: [[framework]] #{index}"
        framework = _entry(entry, index, line, where, problems)
        if framework is None:
            continue
        for version in framework.versions:
            key = (framework.name.lower(), version)
            if key in seen:
                problems.append(
                    f"{where}: {framework.name} {version} is already in [[framework]]"
                    f" #{seen[key]}: each version has one runtime"
                )
            seen.setdefault(key, index)
        frameworks.append(framework)
    if problems:
        raise CatalogueError(path, problems)
    return frameworks


_HEADER = re.compile(r"^\s*\[\[\s*framework\s*\]\]")


def _entry(entry, index: int, line: int, where: str, problems: list[str]) -> Framework | None:
    before = len(problems)
    if not isinstance(entry, dict):
        problems.append(f"{where}: not a table")
        return None
    for key in entry:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, list(_KEYS), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{where}: unknown key {key!r}{hint}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f'{where}: name is required (text, e.g. name = "pytorch")')
    runtime = entry.get("runtime")
    if runtime not in RUNTIMES:
        got = f" (got {runtime!r})" if runtime is not None else ""
        problems.append(f"{where}: runtime must be one of {', '.join(RUNTIMES)}{got}")
    raw_versions = entry.get("versions")
    versions: list[str] = []
    if isinstance(raw_versions, (str, int, float)) and not isinstance(raw_versions, bool):
        raw_versions = [raw_versions]
    if not isinstance(raw_versions, list) or not raw_versions:
        problems.append(f'{where}: versions is required: a list, e.g. versions = ["2.4", "2.5"]')
    else:
        for v in raw_versions:
            if isinstance(v, float):  # TOML reads 1.20 as the number 1.2: the text is lost
                problems.append(
                    f"{where}: versions: {v!r} is a number (1.20 would read 1.2): write it in "
                    f'quotes, "{v}"'
                )
            elif isinstance(v, bool) or not isinstance(v, (str, int)) or not str(v).strip():
                problems.append(f"{where}: versions: {v!r} is not a version")
            else:
                versions.append(str(v).strip())
    settings: dict = {}
    if runtime in RUNTIMES:
        for key in _REQUIRED[runtime]:
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                problems.append(f"{where}: a {runtime} runtime needs {key} ({_KEYS[key]})")
        for key, runtimes in _ONLY_FOR.items():
            if key in entry and runtime not in runtimes:
                problems.append(
                    f"{where}: {key} is for a {' or '.join(runtimes)} runtime, not {runtime}"
                )
    for key in ("image", "path", "runtime_command", "description"):
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{where}: {key} must be text")
    path = entry.get("path")
    if isinstance(path, str) and path.strip() and not os.path.isabs(os.path.expanduser(path)):
        problems.append(f"{where}: path must be absolute (got {path!r})")
    options = entry.get("options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        problems.append(f'{where}: options must be a list of text, e.g. ["--shm-size=8g"]')
    gpus = entry.get("gpus", "auto")
    if gpus not in GPU_PASSING:
        problems.append(f"{where}: gpus must be one of {', '.join(GPU_PASSING)} (got {gpus!r})")
    pull = entry.get("pull", "missing")
    if pull not in ("missing", "never"):
        problems.append(f"{where}: pull must be missing or never (got {pull!r})")
    if len(problems) > before:
        return None
    for key in ("image", "runtime_command", "gpus", "pull"):
        if key in entry:
            settings[key] = entry[key].strip()
    if "path" in entry:
        settings["path"] = os.path.expanduser(entry["path"].strip())
    if options:
        settings["options"] = list(options)
    return Framework(
        name.strip(), versions, runtime, settings, line, index, entry.get("description", "")
    )
