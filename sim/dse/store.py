"""The results store of a study: one SQLite file, one row per finished point.

Why SQLite rather than Parquet: every finished point is one committed transaction (SQLite's
journal makes a commit atomic), so a run killed at any instant leaves every earlier row
intact and at most the row being written absent; resume is one query on the primary key;
it is one file in the standard library, readable by any language. Parquet files are
immutable once written, so appending a point means one file per point (10,000 small files
for a cluster-sized study) or rewriting; ``bitline dse report --parquet`` exports the rows
for analysis tools instead (pyarrow).

Only the client process writes (results come back to it from the workers), so there is
one writer. Tables: ``meta`` (``key``, ``value``: the study digest, the study as JSON, the
bitline version that created the store) and ``points`` (``id`` primary key, ``axes`` and
``metrics`` as JSON, ``error``, ``seed``, ``config_digest``, ``bitline_version``,
``seconds``, ``worker``, ``finished_at``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

__all__ = ["ResultStore", "StoreMismatch"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    id TEXT PRIMARY KEY, axes TEXT NOT NULL, metrics TEXT NOT NULL, error TEXT,
    seed INTEGER NOT NULL, config_digest TEXT, bitline_version TEXT NOT NULL,
    seconds REAL, worker TEXT, finished_at REAL NOT NULL);
"""


class StoreMismatch(ValueError):
    """A store holds another study (another digest) than the one being run."""


class ResultStore:
    """An open results store (a context manager; :meth:`open` creates or checks it)."""

    def __init__(self, path: str | Path, connection: sqlite3.Connection):
        self.path = Path(path)
        self._db = connection

    @classmethod
    def open(cls, path: str | Path, study: dict | None = None, *,
             version: str | None = None) -> ResultStore:
        """Open ``path``; with ``study`` create it or check that it holds that study.

        Parameters
        ----------
        path:
            The SQLite file.
        study:
            The study's :meth:`~bitline.sw.flow.study.Study.to_dict` (with ``digest``).
            ``None`` opens an existing store read-only (reports).
        version:
            The bitline version recorded when the store is created.

        Raises
        ------
        StoreMismatch
            If the store records another study digest.
        ValueError
            If ``study`` is ``None`` and the file is missing or not a results store.
        """
        path = Path(path)
        if study is None and not path.is_file():
            raise ValueError(f"{path}: results store not found")
        try:
            db = sqlite3.connect(path)
            if study is not None:
                db.executescript(_SCHEMA)
            meta = dict(db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{path}: not a bitline results store ({error})") from None
        if study is not None:
            if not meta:
                with db:
                    db.executemany("INSERT INTO meta VALUES (?, ?)", [
                        ("study_digest", study["digest"]), ("study", json.dumps(study)),
                        ("created_version", version or ""), ("created_at", str(time.time()))])
            elif meta.get("study_digest") != study["digest"]:
                db.close()
                old = json.loads(meta.get("study", "{}"))
                raise StoreMismatch(
                    f"{path} holds study {old.get('name', '?')!r} (digest "
                    f"{meta.get('study_digest', '?')[:16]}), not {study['name']!r} (digest "
                    f"{study['digest'][:16]}): the studies differ in their settings, axes, "
                    f"metrics or base config; use another --store or --overwrite")
        elif "study_digest" not in meta:
            raise ValueError(f"{path}: not a bitline results store (no study recorded)")
        return cls(path, db)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close the connection (every appended row is already committed)."""
        self._db.close()

    @property
    def study(self) -> dict:
        """The study the store was created for (its ``to_dict``)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
        return json.loads(row[0])

    def finished(self) -> set[str]:
        """The ids of the points already stored."""
        return {row[0] for row in self._db.execute("SELECT id FROM points")}

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM points").fetchone()[0]

    def append(self, row: dict) -> None:
        """Store one finished point and commit (``row``: :func:`~.point.run_point`'s)."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row["id"], json.dumps(row["axes"], sort_keys=True),
                 json.dumps(row["metrics"], sort_keys=True), row.get("error"), row["seed"],
                 row.get("config_digest"), row["bitline_version"], row.get("seconds"),
                 row.get("worker"), time.time()))

    def rows(self) -> list[dict]:
        """Every stored point as a dict (axes and metrics decoded), ordered by id."""
        cursor = self._db.execute(
            "SELECT id, axes, metrics, error, seed, config_digest, bitline_version, seconds, "
            "worker, finished_at FROM points ORDER BY id")
        names = [column[0] for column in cursor.description]
        rows = []
        for values in cursor:
            row = dict(zip(names, values))
            row["axes"], row["metrics"] = json.loads(row["axes"]), json.loads(row["metrics"])
            rows.append(row)
        return rows
