"""Where trainui keeps its state, and every setting read from the environment (``TRAINUI_*``).

One object, :class:`Settings`, holds them all. Each variable is declared once below: its name,
the type its text becomes, its default and what it means (``trainui settings`` could print the
table; the README documents each). Values are parsed when first read, so a command that needs
three of them pays for three and is not refused over a variable it never uses; the service
checks every one at start (:func:`load_settings`), so a typo stops ``trainui serve`` with one
sentence instead of failing a run later. Code takes a ``Settings``; nothing writes
``os.environ`` to pass a setting on (a command-line option is an override).

This module is on the start-up path of every command: it imports nothing beyond ``os``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from trainui.core.record import Record

DEFAULT_LOG_MAX_BYTES = 1 << 30  # as trainui.core.runs (not imported here: it imports json)


class ConfigError(Exception):
    """A setting with a value that cannot be used, named in one sentence."""


def home_dir(environ: Mapping[str, str] = os.environ) -> str:
    """``$TRAINUI_HOME``, else ``$XDG_DATA_HOME/trainui``, else ``~/.local/share/trainui``."""
    if (environ.get("TRAINUI_HOME") or "").strip():
        return os.path.abspath(os.path.expanduser(environ["TRAINUI_HOME"].strip()))
    data = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "trainui")


def ensure_home(home: str) -> str:
    """Create the home (mode 0700: it holds run logs and, while a run waits, its credentials)."""
    os.makedirs(home, mode=0o700, exist_ok=True)
    os.chmod(home, 0o700)
    return home


def config_file(environ: Mapping[str, str], variable: str, name: str) -> tuple[str, bool]:
    """A config file's path: the one ``variable`` names, else ``name`` in
    ``$XDG_CONFIG_HOME/trainui`` (``~/.config/trainui``); and whether the variable named it."""
    explicit = (environ.get(variable) or "").strip()
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit)), True
    base = (environ.get("XDG_CONFIG_HOME") or "").strip() or os.path.join(
        os.path.expanduser("~"), ".config"
    )
    return os.path.join(base, "trainui", name), False


def socket_path(home: str) -> str:
    return os.path.join(home, "trainui.sock")


# --- how a variable's text becomes a value ------------------------------------------------------

Parser = Callable[[str, str], object]  # (variable name, stripped text) -> value; ConfigError


def _number(kind: type, minimum: float | None = None) -> Parser:
    def parse(name: str, raw: str):
        try:
            value = kind(raw)
        except ValueError:
            whole = " whole" if kind is int else ""
            raise ConfigError(f"{name} must be a{whole} number, not '{raw}'") from None
        if not value == value or (minimum is not None and value < minimum):  # NaN, too small
            raise ConfigError(f"{name} must be at least {minimum}, not '{raw}'")
        return value

    return parse


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(name: str, raw: str) -> int:
    """Bytes, or with a K, M, G or T suffix (powers of 1024; ``KiB``, ``KB`` alike); 0 may mean
    "no limit" or "off", as the variable says."""
    text = raw.upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    try:
        value = float(text[: len(text) - len(unit)].strip()) * _UNITS[unit]
    except ValueError:
        raise ConfigError(f"{name} must be a size like 1G, 500M or 0, not '{raw}'") from None
    if not 0 <= value < float("inf"):  # not negative, infinite or NaN
        raise ConfigError(f"{name} must be a size like 1G, 500M or 0, not '{raw}'")
    return int(value)


def _choice(*allowed: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        value = raw.lower()
        if value not in allowed:
            options = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
            raise ConfigError(f"{name} must be {options}, not '{raw}'")
        return value

    return parse


def _text(_name: str, raw: str) -> str:
    return raw


def _paths(_name: str, raw: str) -> tuple[str, ...]:
    return tuple(os.path.abspath(p) for p in raw.split(os.pathsep) if p.strip())


def _gpu_list(name: str, raw: str) -> tuple[int, ...]:
    if raw.lower() == "none":
        return ()
    try:
        ids = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(
            f"{name} must list GPU indices like 0,1,2,3 or say none, not '{raw}'"
        ) from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise ConfigError(f"{name} lists a negative or repeated index: '{raw}'")
    return ids


class Variable:
    """One ``TRAINUI_*`` variable, read as the attribute of :class:`Settings` it is assigned to.

    Unset or blank: ``default``. A command-line option given to ``Settings(..., attr=value)``
    wins over the environment.
    """

    __slots__ = ("attr", "default", "help", "name", "parse", "scope")

    def __init__(self, name: str, parse: Parser, default: object, help: str, scope: str) -> None:
        self.name, self.parse, self.default, self.help, self.scope = (
            name,
            parse,
            default,
            help,
            scope,
        )
        self.attr = ""

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    def __get__(self, settings: Settings | None, owner: type | None = None):
        if settings is None:
            return self
        values = settings._values
        if self.attr not in values:
            raw = (settings.environ.get(self.name) or "").strip()
            values[self.attr] = self.parse(self.name, raw) if raw else self.default
        return values[self.attr]

    def __set__(self, settings: Settings, value: object) -> None:
        raise AttributeError(f"Settings are read-only; pass {self.attr}= when making them")


def _var(name: str, parse: Parser, default: object, help: str, scope: str = "service"):
    return Variable(name, parse, default, help, scope)


class Settings:
    """Every ``TRAINUI_*`` setting, typed, from an environment mapping plus overrides.

    ``scope`` says who reads a variable: the ``service``, the ``learner`` (it inherits the
    service's environment), or the ``client`` (the CLI and the TUI).
    """

    # the service
    gpus = _var(
        "TRAINUI_GPUS", _gpu_list, None, "GPU indices runs may use (0,1 or none); unset: NVML's"
    )
    cpu_slots = _var(
        "TRAINUI_CPU_SLOTS", _number(int, 1), 1, "runs at once on a machine without GPUs"
    )
    retention_days = _var(
        "TRAINUI_RETENTION_DAYS", _number(float, 0), 7.0, "days a run is kept after it ends"
    )
    idle_exit_seconds = _var(
        "TRAINUI_IDLE_EXIT",
        _number(float, 0),
        600.0,
        "seconds an auto-started service waits idle before it exits",
    )
    halt_grace_seconds = _var(
        "TRAINUI_HALT_GRACE", _number(float, 0), 10.0, "seconds between SIGTERM and SIGKILL on halt"
    )
    starvation_seconds = _var(
        "TRAINUI_STARVATION",
        _number(float, 0),
        600.0,
        "seconds a large run waits before smaller ones stop backfilling",
    )
    max_definition_bytes = _var(
        "TRAINUI_MAX_UPLOAD_BYTES",
        _number(int, 1),
        1 << 30,
        "largest model definition upload, bytes",
    )
    launcher = _var(
        "TRAINUI_LAUNCHER", _choice("local", "ray"), "local", "where runs go: local or ray"
    )
    frameworks = _var(
        "TRAINUI_FRAMEWORKS",
        _text,
        None,
        "the frameworks catalogue (TOML); unset: $XDG_CONFIG_HOME/trainui/frameworks.toml",
    )
    service_config = _var(
        "TRAINUI_SERVICE_CONFIG",
        _text,
        None,
        "the service config ([[notify]] hooks); unset: $XDG_CONFIG_HOME/trainui/service.toml",
    )
    restart_backoff = _var(
        "TRAINUI_RESTART_BACKOFF",
        _number(float, 0),
        5.0,
        "seconds before a failed run's 2nd attempt (SPEC §11), doubled for each next one",
    )
    ray_address = _var(
        "TRAINUI_RAY_ADDRESS", _text, None, "the Ray cluster's dashboard address, http://HEAD:8265"
    )
    ray_grace_seconds = _var(
        "TRAINUI_RAY_GRACE",
        _number(float, 0),
        60.0,
        "seconds a silent Ray cluster is waited for before its runs fail",
    )
    ray_python = _var(
        "TRAINUI_RAY_PYTHON", _text, None, "the Python on Ray's workers that imports trainui"
    )
    isolation = _var(
        "TRAINUI_ISOLATION",
        _choice("auto", "on", "off"),
        "auto",
        "sandbox runs: auto, on (refuse to start without) or off",
    )
    sandbox_paths = _var(
        "TRAINUI_SANDBOX_PATHS",
        _paths,
        (),
        "more folders shown read-only in the sandbox (':'-separated)",
    )
    local_paths = _var(
        "TRAINUI_LOCAL_PATHS",
        _paths,
        (),
        "folders a remote user's local buckets may name as their path (':'-separated; "
        "<home>/buckets always)",
    )
    remote_credentials = _var(
        "TRAINUI_REMOTE_CREDENTIALS",
        _choice("keys", "box"),
        "keys",
        "a remote user's S3 buckets: keys (theirs, in the manifest) or box (also this machine's"
        " own AWS credentials: its environment, profiles, instance role)",
    )
    sandbox_user = _var(
        "TRAINUI_SANDBOX_USER",
        _text,
        None,
        "the Unix user a root service runs commands as (default nobody)",
    )
    header_timeout = _var(
        "TRAINUI_HEADER_TIMEOUT",
        _number(float, 0.1),
        10.0,
        "seconds a request's head (and TLS handshake) may take",
    )
    keep_alive = _var(
        "TRAINUI_KEEP_ALIVE",
        _number(float, 0.1),
        5.0,
        "seconds an idle kept-alive connection stays open",
    )
    max_connections = _var(
        "TRAINUI_MAX_CONNECTIONS", _number(int, 1), 1024, "TCP connections open at once, in all"
    )
    max_per_address = _var(
        "TRAINUI_MAX_CONNECTIONS_PER_ADDRESS",
        _number(int, 1),
        64,
        "TCP connections open at once from one address",
    )
    # the learner (and the service's checks of what it will do)
    log_max_bytes = _var(
        "TRAINUI_LOG_MAX_BYTES",
        _size,
        DEFAULT_LOG_MAX_BYTES,
        "bytes of a command's output kept in its log (0: all)",
        "learner",
    )
    cache_max_bytes = _var(
        "TRAINUI_CACHE_MAX_BYTES",
        _size,
        20 << 30,
        "the dataset cache's size (0: no cache)",
        "learner",
    )
    transfer_threads = _var(
        "TRAINUI_TRANSFER_THREADS", _number(int, 1), 8, "objects moved at once", "learner"
    )
    store_attempts = _var(
        "TRAINUI_STORE_ATTEMPTS", _number(int, 1), 5, "tries per object-store request", "learner"
    )
    swift_segment_bytes = _var(
        "TRAINUI_SWIFT_SEGMENT_BYTES",
        _size,
        256 << 20,
        "segment size of large Swift uploads",
        "learner",
    )
    definition_max_bytes = _var(
        "TRAINUI_DEFINITION_MAX_BYTES",
        _number(int, 1),
        1 << 30,
        "bytes a model definition may unpack to",
        "learner",
    )
    definition_max_entries = _var(
        "TRAINUI_DEFINITION_MAX_ENTRIES",
        _number(int, 1),
        20_000,
        "files a model definition may hold",
        "learner",
    )
    # the client: the CLI and the TUI
    url = _var("TRAINUI_URL", _text, None, "a remote service, https://HOST:8470", "client")
    token = _var("TRAINUI_TOKEN", _text, None, "the token for a remote service", "client")
    cacert = _var(
        "TRAINUI_CACERT", _text, None, "a CA certificate to trust for the remote service", "client"
    )
    tui_config = _var(
        "TRAINUI_TUI_CONFIG",
        _text,
        None,
        "the TUI's config file (default ~/.config/trainui/tui.toml)",
        "client",
    )

    __slots__ = ("_values", "environ")

    def __init__(self, environ: Mapping[str, str] = os.environ, **overrides: object) -> None:
        unknown = [k for k in overrides if not isinstance(type(self).__dict__.get(k), Variable)]
        if unknown:
            raise TypeError(f"Settings has no setting {', '.join(unknown)}")
        object.__setattr__(self, "environ", environ)
        # None: "not given" (an option left out), so the environment decides
        object.__setattr__(self, "_values", {k: v for k, v in overrides.items() if v is not None})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Settings are read-only; pass the value when making them")

    def __repr__(self) -> str:  # never the token
        return f"Settings(home={self.home!r})"

    @property
    def home(self) -> str:
        return home_dir(self.environ)

    @property
    def gpu_ids(self) -> list[int]:
        """The GPU indices runs may use: ``TRAINUI_GPUS``, else those NVML reports (asked once);
        an empty list means CPU mode."""
        if "gpu_ids" not in self._values:
            gpus = self.gpus
            if gpus is None:
                from trainui.gpu import nvml_gpu_ids  # no driver or library: [], CPU mode

                gpus = nvml_gpu_ids()
            self._values["gpu_ids"] = list(gpus)
        return self._values["gpu_ids"]

    @classmethod
    def variables(cls, scope: str | None = None) -> list[Variable]:
        """Every variable, in declaration order (of one ``scope`` if given)."""
        found = [v for v in vars(cls).values() if isinstance(v, Variable)]
        return [v for v in found if scope is None or v.scope == scope]

    def check(self, scopes: tuple[str, ...] = ("service", "learner")) -> Settings:
        """Parse every variable of ``scopes`` now: ConfigError for the first that is wrong."""
        for variable in self.variables():
            if variable.scope in scopes:
                variable.__get__(self)
        if self.launcher == "ray" and not self.ray_address:
            raise ConfigError("the ray launcher needs the cluster's address: TRAINUI_RAY_ADDRESS")
        return self


def load_settings(environ: Mapping[str, str] = os.environ, **overrides: object) -> Settings:
    """The service's settings, every one checked (ConfigError names the first wrong one) and
    its GPUs known. ``overrides``: command-line options, which win over the environment."""
    settings = Settings(environ, **overrides).check()
    settings.gpu_ids  # noqa: B018 (asked once, now, rather than in the first request)
    return settings


def current() -> Settings:
    """The settings of this process's environment as it is now (each parsed as it is read)."""
    return Settings(os.environ)


def gpu_inventory(environ: Mapping[str, str] = os.environ) -> list[int]:
    """The GPU indices runs may use: ``TRAINUI_GPUS`` (``0,1,2,3`` or ``none``), else the
    GPUs NVML reports; an empty list means CPU mode."""
    return Settings(environ).gpu_ids


class ConnectionLimits(Record):
    """How the service treats its clients over TCP; see ``connection_limits``."""

    __slots__ = ("header_timeout", "keep_alive", "max_connections", "max_per_address")


def connection_limits(environ: Mapping[str, str] | Settings = os.environ) -> ConnectionLimits:
    """Seconds a request's head (and a TLS handshake) may take, seconds an idle kept-alive
    connection stays open, and how many TCP connections may be open at once, in all and from
    one client address."""
    s = environ if isinstance(environ, Settings) else Settings(environ)
    return ConnectionLimits(s.header_timeout, s.keep_alive, s.max_connections, s.max_per_address)
