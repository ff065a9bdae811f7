"""The TUI's settings file and its themes.

``$TRAINUI_TUI_CONFIG``, else ``$XDG_CONFIG_HOME/trainui/tui.toml``
(``~/.config/trainui/tui.toml``)::

    theme = "ansi"          # a theme from themes/ or one of Textual's
    refresh = 2.0           # seconds between GPU readings
    metric_columns = ["loss", "accuracy"]   # the run list's metric columns (each run's last)
    notify = "bell"         # when a run shown ends: "bell", "desktop" (OSC 9, and the bell)
                            # or "off" (the default)
    [keymap]                # binding ID = keys (see `?` in the TUI for the IDs)
    "runs.delete" = "x"
    "list.down" = "j,down,ctrl+n"

The theme last chosen in the TUI (ctrl+p, "Theme") is remembered in a state file,
``$XDG_STATE_HOME/trainui/tui-state.toml`` (``~/.local/state/trainui/tui-state.toml``), written
by the TUI and never by hand: the settings file stays as its author wrote it (comments, order,
a dotfiles repository, a read-only file). The newest choice wins: the remembered theme is used
until the settings file's ``theme`` is changed, then that one is. ``--theme`` wins over both.
The run list's metric columns picked in the TUI are remembered there the same way.

Themes: every ``*.toml`` in the repository's ``themes/`` folder and in
``$XDG_CONFIG_HOME/trainui/themes/``, plus Textual's built-in ones. A theme file holds the
fields of ``textual.theme.Theme`` (``name``, ``primary``, ``background``, ..., ``dark``,
``ansi``) and a ``[variables]`` table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from trainui.core.record import Record

DEFAULT_THEME = "textual-dark"
DEFAULT_REFRESH = 2.0
# The repository's themes/ folder (src/trainui/tui/config.py → the repository root).
REPOSITORY_THEMES = Path(__file__).resolve().parents[3] / "themes"


class TuiConfig(Record):
    """``theme`` (None: the default), ``keymap`` (binding ID → keys), ``refresh`` (seconds
    between GPU readings), ``path`` (the file read, if any) and ``problems`` (one sentence each,
    shown in the TUI: a bad setting never stops it); ``chosen_theme``: the theme last chosen in
    the TUI, if the settings file's has not changed since; ``state_path``: where a theme chosen
    is remembered (None: nowhere); ``metric_columns``: the metrics the run list shows as
    columns (the ones picked in the TUI, else the settings file's); ``settings_columns``: the
    settings file's own."""

    __slots__ = (
        "theme", "keymap", "refresh", "path", "problems", "chosen_theme", "state_path",
        "metric_columns", "settings_columns", "notify",
    )  # fmt: skip
    _defaults = {
        "theme": None,
        "keymap": {},
        "refresh": DEFAULT_REFRESH,
        "path": None,
        "chosen_theme": None,
        "state_path": None,
        "metric_columns": (),
        "settings_columns": (),
        "notify": "off",
    }


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "trainui"


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    from trainui.config import Settings

    chosen = Settings(environ).tui_config
    if chosen:
        return Path(chosen).expanduser()
    return config_dir(environ) / "tui.toml"


def state_path(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "trainui" / "tui-state.toml"


def _toml(path: Path) -> dict:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ValueError("reading TOML needs Python 3.11 or the tomli package") from None
    with open(path, "rb") as f:
        return tomllib.load(f)


def load_config(environ: Mapping[str, str] = os.environ) -> TuiConfig:
    """The settings file, if there is one, and the theme last chosen; every problem in them is
    reported, none is fatal."""
    config = _load_settings(environ)
    remembered = state_path(environ)
    chosen = None
    try:
        state = _toml(remembered) if remembered.exists() else {}
    except (OSError, ValueError) as error:
        state = {}
        config.problems.append(f"{remembered}: {error} (the theme chosen last is forgotten)")
    theme = state.get("theme")
    # the settings file's theme when this one was chosen: a change there since then wins
    over = state.get("over", "")
    if isinstance(theme, str) and theme and over == (config.theme or ""):
        chosen = theme
    values = config.as_dict()
    values.update(chosen_theme=chosen, state_path=str(remembered))
    columns = state.get("metric_columns")
    if _names(columns) and state.get("columns_over") == list(config.settings_columns):
        values["metric_columns"] = tuple(columns)
    return TuiConfig(**values)


def _names(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def save_theme(config: TuiConfig, theme: str) -> TuiConfig:
    """Remember ``theme``, chosen in the TUI, for the next start (OSError if it cannot be);
    the config with it."""
    config = TuiConfig(**{**config.as_dict(), "chosen_theme": theme})
    _save_state(config)
    return config


def save_metric_columns(config: TuiConfig, columns) -> TuiConfig:
    """Remember the run list's metric columns picked in the TUI (OSError if they cannot be);
    the config with them."""
    config = TuiConfig(**{**config.as_dict(), "metric_columns": tuple(columns)})
    _save_state(config)
    return config


def _save_state(config: TuiConfig) -> None:
    """Write what the TUI remembers: the theme and the metric columns chosen last, each with
    the settings file's value when it was chosen (a change there since then wins)."""
    if not config.state_path:
        return
    path = Path(config.state_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Written by trainui's TUI: what was chosen in it last.\n"
    if config.chosen_theme:
        text += (
            '# The theme (ctrl+p, Theme); tui.toml\'s theme wins once it changes ("over" is\n'
            "# its value at this choice).\n"
            f"theme = {json.dumps(config.chosen_theme)}\n"
            f"over = {json.dumps(config.theme or '')}\n"
        )
    if config.metric_columns != config.settings_columns:
        text += (
            "# The run list's metric columns (M); tui.toml's metric_columns wins once it\n"
            "# changes.\n"
            f"metric_columns = {json.dumps(list(config.metric_columns))}\n"
            f"columns_over = {json.dumps(list(config.settings_columns))}\n"
        )
    partial = path.with_name(path.name + ".part")
    partial.write_text(text)
    os.replace(partial, path)


def _load_settings(environ: Mapping[str, str]) -> TuiConfig:
    path = config_path(environ)
    if not path.exists():
        return TuiConfig(problems=[])
    problems: list[str] = []
    try:
        data = _toml(path)
    except (OSError, ValueError) as error:
        return TuiConfig(path=str(path), problems=[f"{path}: {error}"])
    theme = data.get("theme")
    if theme is not None and not isinstance(theme, str):
        problems.append(f'{path}: theme must be a name, like "ansi"')
        theme = None
    refresh = data.get("refresh", DEFAULT_REFRESH)
    if isinstance(refresh, bool) or not isinstance(refresh, (int, float)) or refresh < 0.2:
        problems.append(f"{path}: refresh must be a number of seconds, at least 0.2")
        refresh = DEFAULT_REFRESH
    keymap: dict[str, str] = {}
    raw_keymap = data.get("keymap", {})
    if not isinstance(raw_keymap, dict):
        problems.append(f"{path}: [keymap] must be a table of binding ID = keys")
        raw_keymap = {}
    from trainui.tui.keymap import ACTIONS

    for binding_id, keys in raw_keymap.items():
        if binding_id not in ACTIONS:
            problems.append(f"{path}: keymap: no action '{binding_id}' (see ? for the IDs)")
        elif not isinstance(keys, str) or not keys.strip():
            problems.append(f'{path}: keymap: \'{binding_id}\' needs keys, like "x" or "x,y"')
        else:
            keymap[binding_id] = keys
    columns = data.get("metric_columns", [])
    if not _names(columns):
        problems.append(f'{path}: metric_columns must be a list of metric names, like ["loss"]')
        columns = []
    notify = data.get("notify", "off")
    if notify not in ("off", "bell", "desktop"):
        problems.append(f'{path}: notify must be "off", "bell" or "desktop"')
        notify = "off"
    unknown = set(data) - {"theme", "refresh", "keymap", "metric_columns", "notify"}
    problems.extend(f"{path}: unknown setting '{name}'" for name in sorted(unknown))
    return TuiConfig(
        theme=theme,
        keymap=keymap,
        refresh=float(refresh),
        path=str(path),
        problems=problems,
        metric_columns=tuple(columns),
        settings_columns=tuple(columns),
        notify=notify,
    )


def theme_dirs(environ: Mapping[str, str] = os.environ) -> list[Path]:
    return [REPOSITORY_THEMES, config_dir(environ) / "themes"]


def load_themes(environ: Mapping[str, str] = os.environ):
    """The themes in the theme folders, and one sentence per file that could not be used."""
    from textual.theme import Theme

    fields = set(Theme.__dataclass_fields__)
    themes, problems = [], []
    for folder in theme_dirs(environ):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                data = _toml(path)
                unknown = set(data) - fields
                if unknown:
                    raise ValueError(f"unknown field {', '.join(sorted(unknown))}")
                data.setdefault("name", path.stem)
                themes.append(Theme(**data))
            except (OSError, ValueError, TypeError) as error:
                problems.append(f"{path}: {error}")
    return themes, problems
