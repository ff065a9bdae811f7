"""The run store: every run's record in SQLite (WAL) in the home.

The service keeps all records in memory too (reads never touch the disk); this module is the
durable copy, written on every change, and read once at start-up. It also holds the files of
runs that have not started yet (``unwritten``): the model definition when small, the redacted
manifest and the specs with the stores' secrets. They go to the run's folder when it starts (or
when something asks for them); the database is 0600 like those files. Once they leave it, no
copy of them stays in the database's files: deleted content is overwritten (``secure_delete``)
and the write-ahead log, which still holds the rows as written, is emptied (``scrub``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator

from trainui.core.lifecycle import INTERNAL, Run, public
from trainui.core.runs import is_disk_full
from trainui.core.shared import REPEATED_TEXT, shared_json
from trainui.core.urls import masked_url

# SQLite's answers to a write that a full disk refused ("database or disk is full"; the WAL
# index that could not grow)
_FULL_CODES = frozenset({sqlite3.SQLITE_FULL, getattr(sqlite3, "SQLITE_IOERR_SHMSIZE", -1)})

# Columns that hold JSON values; every other column holds a plain value.
_JSON_COLUMNS = (
    "framework", "gpu_ids", "data", "results", "progress", "metrics", "parameters", "attempts",
)  # fmt: skip
_COLUMNS = (
    "model_id", "seq", "owner", "name", "description", "framework", "resource", "gpus",
    "gpu_ids", "status", "status_message", "error_code", "exit_code", "submitted_at",
    "started_at", "finished_at", "data", "results", "progress", "metrics", "experiment_id",
    "parameters", "attempt", "max_restarts", "attempts", "resumed_at",
    # internal: not part of the API object
    "queued_epoch", "learner_pid", "learner_start", "finished_epoch", "deleted",
)  # fmt: skip
_JSON_INDEXES = tuple(_COLUMNS.index(c) for c in _JSON_COLUMNS)
__all__ = ["INTERNAL", "MIGRATIONS", "RunStore", "StoreTooNew", "disk_full", "migrate", "public"]

# The schema's history, one function a step (``PRAGMA user_version`` says how many were
# applied): an existing home is brought up to date when the service opens it, in one
# transaction, its runs.db copied first to runs.db.vN (N: the version it had), mode 0600.
# A step never changes what an earlier one means; new columns come with their defaults.


def _v1_runs_and_unwritten(db: sqlite3.Connection) -> None:
    """The schema trainui had when versions began (stop 11): a home made then has these
    tables with user_version 0, which this step leaves as they are."""
    columns = (
        "model_id", "seq", "owner", "name", "description", "framework", "resource", "gpus",
        "gpu_ids", "status", "status_message", "error_code", "exit_code", "submitted_at",
        "started_at", "finished_at", "data", "results", "progress",
        "queued_epoch", "learner_pid", "learner_start", "finished_epoch", "deleted",
    )  # fmt: skip
    db.execute(
        "CREATE TABLE IF NOT EXISTS runs ("
        + ", ".join(c + (" TEXT PRIMARY KEY" if c == "model_id" else "") for c in columns)
        + ")"
    )
    db.execute("CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished_epoch)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS unwritten (model_id TEXT NOT NULL, name TEXT NOT NULL, "
        "data BLOB NOT NULL, PRIMARY KEY (model_id, name))"
    )


def _v2_metrics(db: sqlite3.Connection) -> None:
    """Issue 16: a run's metrics' summary (JSON, ``Run.metrics``); null for the runs before."""
    db.execute("ALTER TABLE runs ADD COLUMN metrics")


def _v3_experiments(db: sqlite3.Connection) -> None:
    """Issue 17: experiments (SPEC §9), and a run's experiment and parameter values."""
    db.execute("ALTER TABLE runs ADD COLUMN experiment_id")
    db.execute("ALTER TABLE runs ADD COLUMN parameters")
    db.execute("CREATE INDEX IF NOT EXISTS runs_experiment ON runs (experiment_id)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS experiments (experiment_id TEXT PRIMARY KEY, seq INTEGER, "
        "owner TEXT, name TEXT, submitted_at TEXT, spec TEXT NOT NULL, halted_at TEXT, "
        "deleted INTEGER NOT NULL DEFAULT 0)"
    )


def _v4_attempts(db: sqlite3.Connection) -> None:
    """Issue 19: restarts (SPEC §11): a run's attempt, its max_restarts, its ended attempts."""
    db.execute("ALTER TABLE runs ADD COLUMN attempt INTEGER")
    db.execute("ALTER TABLE runs ADD COLUMN max_restarts INTEGER")
    db.execute("ALTER TABLE runs ADD COLUMN attempts")


_ESCAPED = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPED_MULTILINE = {c: e for c, e in _ESCAPED.items() if c not in (0x09, 0x0A)}


def _escaped(value, table: dict[int, str] = _ESCAPED):
    """``value`` with its control characters written as ``\\xNN``; in a list or an object, its
    texts and keys alike."""
    if isinstance(value, str):
        return value if value.isprintable() else value.translate(table)
    if isinstance(value, list):
        return [_escaped(v, table) for v in value]
    if isinstance(value, dict):
        return {_escaped(k, table): _escaped(v, table) for k, v in value.items()}
    return value


def _v5_no_control_characters(db: sqlite3.Connection) -> None:
    """Names, descriptions and parameters have refused control characters since stop 27, and
    metric names since stop 28 (an escape sequence in a run's name rewrote the terminal of
    whoever listed it, the TUI's too); those recorded before are written as ``\\xNN`` (a
    description keeps its tabs and line ends)."""

    def changed(row: tuple, columns: tuple[str, ...], tables: tuple) -> tuple | None:
        new, differs = [], False
        for value, column, table in zip(row, columns, tables, strict=True):
            if value is not None and column in ("parameters", "metrics", "spec"):
                parsed = json.loads(value)
                escaped = _escaped_json(parsed, column)
                new.append(json.dumps(escaped) if escaped != parsed else value)
                differs = differs or escaped != parsed
            else:
                new.append(_escaped(value, table))
                differs = differs or new[-1] != value
        return tuple(new) if differs else None

    for table_name, key, columns, tables in (
        ("runs", "model_id", ("name", "description", "parameters", "metrics"),
         (_ESCAPED, _ESCAPED_MULTILINE, _ESCAPED, _ESCAPED)),
        ("experiments", "experiment_id", ("name", "spec"), (_ESCAPED, _ESCAPED)),
    ):  # fmt: skip
        query = f"SELECT {key}, {', '.join(columns)} FROM {table_name}"
        for row_key, *row in db.execute(query).fetchall():
            new = changed(tuple(row), columns, tables)
            if new is not None:
                assignments = ", ".join(f"{c} = ?" for c in columns)
                db.execute(
                    f"UPDATE {table_name} SET {assignments} WHERE {key} = ?", (*new, row_key)
                )


def _escaped_json(value, column: str):
    """A run's parameters (names and values) or its metrics' names, or an experiment's spec:
    its name, its parameters' names and values and its objective's metric; nothing else."""
    if column == "metrics" and isinstance(value, dict):
        return {_escaped(k): v for k, v in value.items()}
    if column == "parameters" or not isinstance(value, dict):
        return _escaped(value)
    spec = dict(value)
    for key in ("name", "parameters"):
        if key in spec:
            spec[key] = _escaped(spec[key])
    if isinstance(spec.get("objective"), dict):
        spec["objective"] = _escaped(spec["objective"])
    return spec


def _v6_resumed_at(db: sqlite3.Connection) -> None:
    """When a run was last resumed (``Run.resumed_at``): a run halted before it ever started,
    then resumed, waits from then, not from its submission; null for the runs before."""
    db.execute("ALTER TABLE runs ADD COLUMN resumed_at")


MIGRATIONS = [
    _v1_runs_and_unwritten, _v2_metrics, _v3_experiments, _v4_attempts, _v5_no_control_characters,
    _v6_resumed_at,
]  # fmt: skip


class StoreTooNew(Exception):
    """The home's run store was written by a newer trainui, in one sentence."""


def migrate(db: sqlite3.Connection, path: str | None = None) -> int:
    """Bring the run store up to ``len(MIGRATIONS)``; return the version it had. ``path``:
    the database's file, copied aside before an existing store is changed."""
    had = db.execute("PRAGMA user_version").fetchone()[0]
    if had > len(MIGRATIONS):
        raise StoreTooNew(
            f"{path or 'the run store'} was written by a newer trainui (schema version {had}; "
            f"this one knows up to {len(MIGRATIONS)}): upgrade trainui to open this home"
        )
    if had == len(MIGRATIONS):
        return had
    existing = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone()
    if existing and path is not None:
        _copy_aside(db, f"{path}.v{had}")
    db.execute("BEGIN IMMEDIATE")
    try:
        for step in MIGRATIONS[had:]:
            step(db)
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return had


def _copy_aside(db: sqlite3.Connection, target: str) -> None:
    """A whole copy of the store (SQLite's backup API: consistent, WAL included), 0600."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    copy = sqlite3.connect(target)
    try:
        db.backup(copy)
    finally:
        copy.close()


class StoreUnreadable(Exception):
    """The run store cannot be opened (a damaged file), in a sentence that says what to do."""


class RunStore:
    def __init__(self, home: str) -> None:
        path = os.path.join(home, "runs.db")
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            os.chmod(path, 0o600)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
            # deleted rows are overwritten with zeros, not left in free space (some builds of
            # SQLite do it by default, not all)
            self.db.execute("PRAGMA secure_delete=ON")
            self.migrated_from = migrate(self.db, path)
            self.db.execute("SELECT count(*) FROM runs").fetchone()  # a damaged page says so
        except sqlite3.DatabaseError as error:
            self.db.close()
            raise StoreUnreadable(
                f"the run store {path} cannot be read: {error}. Move it aside (mv {path} "
                f"{path}.damaged) to start with an empty history; the runs' folders, logs and "
                "results stay where they are"
            ) from None
        self._secrets_removed = False  # since the last scrub

    def load(self) -> list[Run]:
        """Every run, in submission order."""
        cursor = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs ORDER BY seq")
        return [self._decode(row) for row in cursor]

    def save(self, run: Run) -> None:
        values = [getattr(run, c) for c in _COLUMNS]
        for i in _JSON_INDEXES:
            values[i] = json.dumps(values[i])
        self.db.execute(
            f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})",
            values,
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def save_many(self, runs: Iterable[Run]) -> None:
        with self._transaction():
            for run in runs:
                self.save(run)

    def save_new(self, run: Run, files: dict[str, bytes]) -> None:
        """A run just submitted and the files its folder will get when it starts, in one
        transaction: a queued run costs no file of its own (creating files is what a
        submission cost most on these disks)."""
        with self._transaction():
            self.save(run)
            self.db.executemany(
                "INSERT OR REPLACE INTO unwritten (model_id, name, data) VALUES (?, ?, ?)",
                [(run.model_id, name, data) for name, data in files.items()],
            )

    def save_experiment(self, row: dict, runs: Iterable[Run] = (), files=None) -> None:
        """An experiment's record (``row``: the experiments table's columns, ``spec`` an
        object), with its runs and the files its runs share (``files``: name -> content,
        kept under the experiment's ID until its first run starts), in one transaction."""
        values = dict(row, spec=json.dumps(row["spec"]))
        with self._transaction():
            self.db.execute(
                f"INSERT OR REPLACE INTO experiments ({', '.join(values)}) "
                f"VALUES ({', '.join('?' * len(values))})",
                list(values.values()),
            )
            for run in runs:
                self.save(run)
            if files:
                self.db.executemany(
                    "INSERT OR REPLACE INTO unwritten (model_id, name, data) VALUES (?, ?, ?)",
                    [(row["experiment_id"], name, data) for name, data in files.items()],
                )

    def load_experiments(self) -> list[dict]:
        """Every experiment's row (``spec`` decoded), in submission order."""
        cursor = self.db.execute(
            "SELECT experiment_id, seq, owner, name, submitted_at, spec, halted_at, deleted "
            "FROM experiments ORDER BY seq"
        )
        names = [d[0] for d in cursor.description]
        rows = []
        for row in cursor:
            item = dict(zip(names, row, strict=True))
            item["spec"] = json.loads(item["spec"])
            rows.append(item)
        return rows

    def delete_experiment(self, experiment_id: str) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM experiments WHERE experiment_id = ?", (experiment_id,))
            self.db.execute("DELETE FROM unwritten WHERE model_id = ?", (experiment_id,))
        self._secrets_removed = True

    def unwritten(self, model_id: str) -> dict[str, bytes]:
        """The files of a run not written to its folder yet: name -> content."""
        cursor = self.db.execute("SELECT name, data FROM unwritten WHERE model_id = ?", (model_id,))
        return {name: bytes(data) for name, data in cursor}

    def with_unwritten(self) -> set[str]:
        """The runs that have files not written to their folders yet."""
        return {row[0] for row in self.db.execute("SELECT DISTINCT model_id FROM unwritten")}

    def written(self, model_id: str) -> None:
        """The run's files are in its folder now (``scrub`` removes what is left of them)."""
        self.db.execute("DELETE FROM unwritten WHERE model_id = ?", (model_id,))
        self._secrets_removed = True

    def delete(self, model_id: str) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM runs WHERE model_id = ?", (model_id,))
            self.db.execute("DELETE FROM unwritten WHERE model_id = ?", (model_id,))
        self._secrets_removed = True

    def scrub(self) -> None:
        """Leave no copy of removed files (the stores' credentials) in the database's files:
        the write-ahead log holds every row as it was written until a checkpoint empties it
        (TRUNCATE: copied into the database, where deleted rows were zeroed, and cut to 0
        bytes). About a millisecond; called after a batch of removals, not after each."""
        if not self._secrets_removed:
            return
        try:
            busy = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:  # a full disk, say: tried again at the next call
            return
        self._secrets_removed = bool(busy)

    def ended_before(self, epoch: float) -> list[str]:
        cursor = self.db.execute(
            "SELECT model_id FROM runs WHERE finished_epoch IS NOT NULL AND finished_epoch < ?",
            (epoch,),
        )
        return [row[0] for row in cursor]

    def next_seq(self) -> int:
        return (self.db.execute("SELECT MAX(seq) FROM runs").fetchone()[0] or 0) + 1

    def close(self) -> None:
        self.scrub()
        self.db.close()

    @staticmethod
    def _decode(row: tuple) -> Run:
        model_id, *rest = row
        # the url is not stored (it follows from the ID); placed as a new run has it
        run = {"model_id": model_id, "url": f"/v3/models/{model_id}"}
        run.update(zip(_COLUMNS[1:], rest, strict=True))
        for column in REPEATED_TEXT:
            if isinstance(run[column], str):
                run[column] = sys.intern(run[column])
        for column in _JSON_COLUMNS:
            if run[column] is None:
                continue
            if column in ("metrics", "parameters", "attempts"):  # each run's own
                run[column] = json.loads(run[column])
            else:
                run[column] = shared_json(run[column], _masked if column in _PLACES else None)
        if run["deleted"] is None:  # a row of an older store: never deleted
            run["deleted"] = 0
        if run["attempt"] is None:  # a run from before restarts (v4): its one attempt
            run["attempt"] = 1
        if run["max_restarts"] is None:
            run["max_restarts"] = 0
        return Run(**run)


_PLACES = ("data", "results")


def _masked(place):
    # a run recorded before manifests refused credentials in a URL: never shown
    if isinstance(place, dict) and isinstance(place.get("endpoint"), str):
        place["endpoint"] = masked_url(place["endpoint"])
    return place


def disk_full(error: BaseException) -> bool:
    """Was ``error`` a write refused for want of space: ENOSPC or EDQUOT from the system, or
    SQLite's ``database or disk is full``?"""
    if isinstance(error, sqlite3.Error):
        return getattr(error, "sqlite_errorcode", None) in _FULL_CODES or (
            "disk is full" in str(error)
        )
    return is_disk_full(error)
