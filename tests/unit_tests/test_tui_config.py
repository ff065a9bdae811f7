"""The TUI's settings file, its themes, and the one table of actions behind every key."""

from __future__ import annotations

from trainui.tui.config import config_path, load_config, load_themes
from trainui.tui.keymap import ACTIONS, CHANGING, GROUPS, bindings, group_of


def test_no_file_means_the_defaults(tmp_path):
    config = load_config({"XDG_CONFIG_HOME": str(tmp_path)})
    assert config.theme is None and config.keymap == {} and config.refresh == 2.0
    assert config.problems == []
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "trainui" / "tui.toml"


def test_theme_keymap_and_refresh_are_read(tmp_path):
    path = tmp_path / "trainui" / "tui.toml"
    path.parent.mkdir()
    path.write_text('theme = "ansi"\nrefresh = 5\n[keymap]\n"runs.delete" = "x"\n')
    config = load_config({"XDG_CONFIG_HOME": str(tmp_path)})
    assert (config.theme, config.refresh, config.keymap) == ("ansi", 5.0, {"runs.delete": "x"})
    assert config.problems == []


def test_every_mistake_is_reported_and_none_is_fatal(tmp_path):
    path = tmp_path / "tui.toml"
    path.write_text(
        'theme = 3\nrefresh = "fast"\ncolour = "red"\n[keymap]\n"runs.explode" = "x"\n'
        '"runs.halt" = ""\n'
    )
    config = load_config({"TRAINUI_TUI_CONFIG": str(path)})
    assert config.theme is None and config.refresh == 2.0 and config.keymap == {}
    text = "\n".join(config.problems)
    for words in ("theme must be", "refresh must be", "unknown setting 'colour'",
                  "no action 'runs.explode'", "'runs.halt' needs keys"):  # fmt: skip
        assert words in text
    path.write_text("this is = = not toml")
    assert load_config({"TRAINUI_TUI_CONFIG": str(path)}).problems


def test_the_themes_folder_has_an_ansi_theme_using_terminal_colours(tmp_path):
    themes, problems = load_themes({"XDG_CONFIG_HOME": str(tmp_path)})
    assert problems == []
    by_name = {t.name: t for t in themes}
    assert by_name["ansi"].ansi is True
    assert by_name["ansi"].background == "ansi_default"
    assert {"trainui", "trainui-light"} <= set(by_name)


def test_a_users_theme_file_is_loaded_and_a_bad_one_reported(tmp_path):
    folder = tmp_path / "trainui" / "themes"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text('primary = "#ff0000"\n')
    (folder / "broken.toml").write_text('primary = "#ff0000"\nsparkle = true\n')
    themes, problems = load_themes({"XDG_CONFIG_HOME": str(tmp_path)})
    assert "mine" in {t.name for t in themes}
    assert any("broken.toml" in p and "sparkle" in p for p in problems)


def test_every_action_has_an_id_a_group_and_a_binding():
    for action in ACTIONS.values():
        assert group_of(action) in GROUPS, action.id
        assert action.keys and action.description
    for group in GROUPS:
        for binding in bindings(group):
            assert binding.id in ACTIONS
    assert {"new_run", "delete_run", "halt_run", "submit", "clone_run"} <= CHANGING
    assert "open_run" not in CHANGING and "follow" not in CHANGING
    keys = {a.id: a.keys for a in ACTIONS.values()}
    assert keys["runs.new"] == "n" and keys["runs.delete"] == "d" and keys["runs.halt"] == "h"
    assert keys["runs.open"] == "enter" and keys["runs.filter"] == "slash"
    assert keys["run.follow"] == "f" and keys["app.help"].startswith("question_mark")
    assert keys["app.palette"] == "ctrl+p" and keys["app.quit"] == "q"
    assert keys["list.down"].startswith("j") and keys["list.up"].startswith("k")
    assert keys["list.top"].startswith("g") and keys["list.bottom"].startswith("G")
    assert "end" in keys["log.end"] and "G" in keys["log.end"]


def test_metric_columns_picked_in_the_tui_are_remembered_until_the_settings_change(tmp_path):
    from trainui.tui.config import save_metric_columns, save_theme

    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state")}
    settings = tmp_path / "config" / "trainui" / "tui.toml"
    settings.parent.mkdir(parents=True)
    settings.write_text('metric_columns = ["loss"]\n')
    config = load_config(env)
    assert config.metric_columns == ("loss",) and config.problems == []
    config = save_theme(config, "dracula")
    config = save_metric_columns(config, ["loss", "accuracy"])
    again = load_config(env)
    assert again.metric_columns == ("loss", "accuracy")
    assert again.chosen_theme == "dracula"  # both kept in the one state file
    settings.write_text('metric_columns = ["top1"]\n')  # changed since: the file wins
    assert load_config(env).metric_columns == ("top1",)
    settings.write_text("metric_columns = 3\n")
    broken = load_config(env)
    assert broken.metric_columns == () and "metric_columns must be" in broken.problems[0]
