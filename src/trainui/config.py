"""Where trainui keeps its state and the settings read from the environment (TRAINUI_*)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from trainui.core.record import Record

# as trainui.core.runs.DEFAULT_LOG_MAX_BYTES (not imported here: this module is on the path of
# the commands whose start-up is their cost, and that one imports json)
DEFAULT_LOG_MAX_BYTES = 1 << 30


class ConfigError(Exception):
    """A setting with a value that cannot be used, named in one sentence."""


def home_dir(environ: Mapping[str, str] = os.environ) -> str:
    """``$TRAINUI_HOME``, else ``$XDG_DATA_HOME/trainui``, else ``~/.local/share/trainui``."""
    if environ.get("TRAINUI_HOME"):
        return os.path.abspath(os.path.expanduser(environ["TRAINUI_HOME"]))
    data = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "trainui")


def ensure_home(home: str) -> str:
    """Create the home (mode 0700: it holds run logs and, while a run waits, its credentials)."""
    os.makedirs(home, mode=0o700, exist_ok=True)
    os.chmod(home, 0o700)
    return home


def socket_path(home: str) -> str:
    return os.path.join(home, "trainui.sock")


class Settings(Record):
    """The service's settings; see ``load_settings`` for the variables behind them."""

    __slots__ = (
        "home", "gpu_ids", "cpu_slots", "retention_days", "idle_exit_seconds",
        "halt_grace_seconds", "starvation_seconds", "max_definition_bytes", "launcher",
        "ray_address", "ray_grace_seconds", "isolation", "sandbox_paths", "log_max_bytes",
    )  # fmt: skip
    _defaults = {"isolation": "auto", "sandbox_paths": ()}


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    return Settings(
        home=home_dir(environ),
        gpu_ids=gpu_inventory(environ),
        cpu_slots=_number(environ, "TRAINUI_CPU_SLOTS", 1, int, minimum=1),
        retention_days=_number(environ, "TRAINUI_RETENTION_DAYS", 7.0, float, minimum=0),
        idle_exit_seconds=_number(environ, "TRAINUI_IDLE_EXIT", 600.0, float, minimum=0),
        halt_grace_seconds=_number(environ, "TRAINUI_HALT_GRACE", 10.0, float, minimum=0),
        starvation_seconds=_number(environ, "TRAINUI_STARVATION", 600.0, float, minimum=0),
        max_definition_bytes=_number(environ, "TRAINUI_MAX_UPLOAD_BYTES", 1 << 30, int, minimum=1),
        launcher=_launcher(environ),
        ray_address=environ.get("TRAINUI_RAY_ADDRESS") or None,
        ray_grace_seconds=_number(environ, "TRAINUI_RAY_GRACE", 60.0, float, minimum=0),
        log_max_bytes=_bytes(environ, "TRAINUI_LOG_MAX_BYTES", DEFAULT_LOG_MAX_BYTES),
        isolation=_isolation(environ),
        sandbox_paths=tuple(
            os.path.abspath(p)
            for p in (environ.get("TRAINUI_SANDBOX_PATHS") or "").split(os.pathsep)
            if p.strip()
        ),
    )


def _isolation(environ: Mapping[str, str]) -> str:
    """``TRAINUI_ISOLATION``: ``auto`` (runs sandboxed where the machine can), ``on`` (the
    service does not start where it cannot) or ``off``."""
    value = (environ.get("TRAINUI_ISOLATION") or "auto").strip().lower()
    if value not in ("auto", "on", "off"):
        raise ConfigError(f"TRAINUI_ISOLATION must be auto, on or off, not '{value}'")
    return value


class ConnectionLimits(Record):
    """How the service treats its clients over TCP; see ``connection_limits``."""

    __slots__ = ("header_timeout", "keep_alive", "max_connections", "max_per_address")


def connection_limits(environ: Mapping[str, str] = os.environ) -> ConnectionLimits:
    """Seconds a request's head (and a TLS handshake) may take, seconds an idle kept-alive
    connection stays open, and how many TCP connections may be open at once, in all and from
    one client address."""
    return ConnectionLimits(
        header_timeout=_number(environ, "TRAINUI_HEADER_TIMEOUT", 10.0, float, minimum=0.1),
        keep_alive=_number(environ, "TRAINUI_KEEP_ALIVE", 5.0, float, minimum=0.1),
        max_connections=_number(environ, "TRAINUI_MAX_CONNECTIONS", 1024, int, minimum=1),
        max_per_address=_number(environ, "TRAINUI_MAX_CONNECTIONS_PER_ADDRESS", 64, int, minimum=1),
    )


def _launcher(environ: Mapping[str, str]) -> str:
    name = (environ.get("TRAINUI_LAUNCHER") or "local").strip().lower()
    if name not in ("local", "ray"):
        raise ConfigError(f"TRAINUI_LAUNCHER must be local or ray, not '{name}'")
    if name == "ray" and not environ.get("TRAINUI_RAY_ADDRESS"):
        raise ConfigError("the ray launcher needs the cluster's address: TRAINUI_RAY_ADDRESS")
    return name


def gpu_inventory(environ: Mapping[str, str] = os.environ) -> list[int]:
    """The GPU indices runs may use: ``TRAINUI_GPUS`` (``0,1,2,3`` or ``none``), else the
    GPUs NVML reports; an empty list means CPU mode."""
    value = environ.get("TRAINUI_GPUS")
    if value is not None:
        value = value.strip()
        if value.lower() in ("", "none"):
            return []
        try:
            ids = [int(part) for part in value.split(",")]
        except ValueError:
            raise ConfigError(
                f"TRAINUI_GPUS must list GPU indices like 0,1,2,3 or say none, not '{value}'"
            ) from None
        if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
            raise ConfigError(f"TRAINUI_GPUS lists a negative or repeated index: '{value}'")
        return ids
    return _nvml_gpu_ids()


def _nvml_gpu_ids() -> list[int]:
    from trainui.gpu import nvml_gpu_ids  # no driver or library: [], CPU mode, said in runs

    return nvml_gpu_ids()


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _bytes(environ: Mapping[str, str], name: str, default: int) -> int:
    """A size: bytes, or with a K, M, G or T suffix (powers of 1024); 0 may mean "no limit"."""
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    text = raw.upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    try:
        value = float(text[: len(text) - len(unit)].strip()) * _UNITS[unit]
    except ValueError:
        raise ConfigError(f"{name} must be a size like 1G, 500M or 0, not '{raw}'") from None
    if not 0 <= value < float("inf"):  # not negative, infinite or NaN
        raise ConfigError(f"{name} must be a size like 1G, 500M or 0, not '{raw}'")
    return int(value)


def _number(environ: Mapping[str, str], name: str, default, kind, minimum=None):
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not '{raw}'") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not '{raw}'")
    return value
