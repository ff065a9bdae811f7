"""The run store's migrations: each step once, in order, in one transaction."""

from __future__ import annotations

import sqlite3

import pytest

from trainui.core.lifecycle import Run
from trainui.service import store


def test_a_new_store_gets_every_step_and_no_copy(tmp_path):
    db = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
    assert store.migrate(db, str(tmp_path / "runs.db")) == 0
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
    assert not (tmp_path / "runs.db.v0").exists()  # nothing to keep: it was empty
    assert store.migrate(db, str(tmp_path / "runs.db")) == len(store.MIGRATIONS)  # no-op


def test_a_step_that_adds_a_column_keeps_the_runs_and_one_that_fails_changes_nothing(
    tmp_path, monkeypatch
):
    path = tmp_path / "runs.db"
    first = store.RunStore(str(tmp_path))
    first.save(Run(model_id="training-aaaaaaaaa", seq=1, status="completed"))
    first.close()

    def add_priority(db):
        db.execute("ALTER TABLE runs ADD COLUMN priority INTEGER DEFAULT 1")

    def broken(db):
        db.execute("ALTER TABLE runs ADD COLUMN half INTEGER")
        raise RuntimeError("a step that fails halfway")

    monkeypatch.setattr(store, "MIGRATIONS", [*store.MIGRATIONS, add_priority, broken])
    db = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(RuntimeError):
        store.migrate(db, str(path))
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    assert "priority" not in columns and "half" not in columns  # rolled back whole
    had = len(store.MIGRATIONS) - 2  # before the two steps above
    assert db.execute("PRAGMA user_version").fetchone()[0] == had
    monkeypatch.setattr(store, "MIGRATIONS", store.MIGRATIONS[:-1])
    assert store.migrate(db, str(path)) == had
    assert db.execute("SELECT model_id, status, priority FROM runs").fetchall() == [
        ("training-aaaaaaaaa", "completed", 1)
    ]
    assert (tmp_path / f"runs.db.v{had}").exists()


def test_a_store_of_a_newer_trainui_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
    db.execute(f"PRAGMA user_version = {len(store.MIGRATIONS) + 3}")
    with pytest.raises(store.StoreTooNew, match="written by a newer trainui"):
        store.migrate(db, str(tmp_path / "runs.db"))
