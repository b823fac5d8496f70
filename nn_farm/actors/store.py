"""The result store: every measurement the farm takes, durable as it arrives.

One SQLite file in WAL mode. A result is keyed by (device class, model digest,
policy hash, runtime version): the same model measured the same way on the same
kind of device is the same result, so a rerun of a job set skips what is done.
Each result is committed on its own, so a driver killed with SIGKILL loses only
measurements that were still in flight. Raw samples are kept in the stored
measurement (``measurement_json``), so any statistic can be recomputed.

Tables:
    results       one row per finished job (the key above is unique)
    failures      every failed attempt, with its error kind and message;
                  ``final`` = 1 for the attempt that ended the job
    job_names     job name -> digest, so finished generator jobs are skipped
                  before their model is generated again
    calibrations  the reference model's latency per device over time
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import threading
import time
from typing import Iterable, Iterator

from nn_farm.actors.jobs import ErrorKind, JobResult
from nn_farm.farm.measurement import Measurement

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    device_class TEXT NOT NULL,
    model_digest TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    runtime_version TEXT NOT NULL,
    job_name TEXT NOT NULL,
    job_group TEXT NOT NULL DEFAULT 'models',
    device_id TEXT NOT NULL,
    runtime TEXT NOT NULL,
    mean_ms REAL, std_ms REAL, median_ms REAL, min_ms REAL,
    speed_factor REAL,
    attempts INTEGER NOT NULL DEFAULT 1,
    measurement_json TEXT NOT NULL,
    meta_json TEXT NOT NULL DEFAULT '{}',
    created_unix_s REAL NOT NULL,
    flag TEXT,
    UNIQUE (device_class, model_digest, policy_hash, runtime_version)
);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY,
    device_class TEXT NOT NULL,
    model_digest TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    job_name TEXT NOT NULL,
    device_id TEXT NOT NULL,
    error_kind INTEGER NOT NULL,
    error_name TEXT NOT NULL,
    message TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    final INTEGER NOT NULL,
    created_unix_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_key ON failures (device_class, policy_hash, job_name);
CREATE TABLE IF NOT EXISTS job_names (
    job_name TEXT NOT NULL,
    device_class TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    model_digest TEXT NOT NULL,
    PRIMARY KEY (job_name, device_class, policy_hash)
);
CREATE TABLE IF NOT EXISTS calibrations (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_class TEXT NOT NULL,
    runtime_version TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    speed_factor REAL NOT NULL,
    drift REAL NOT NULL,
    flagged INTEGER NOT NULL,
    created_unix_s REAL NOT NULL
);
"""


class ResultStore:
    """A SQLite result store (WAL mode), safe to share between threads of one process.

    Args:
        path: the database file; created with its tables if missing.

    Example:
        >>> store = ResultStore("results.db")          # doctest: +SKIP
        >>> store.is_done("cls", "ab12...", "policyhash", ["1.31.1"])  # doctest: +SKIP
        False
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        pathlib.Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        # WAL + synchronous=NORMAL: a committed row survives the process being
        # killed (not a power cut), at a fraction of FULL's fsync cost per result.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._db:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------
    def add_result(self, result: JobResult, policy_hash: str, meta: dict | None = None,
                   flag: str | None = None) -> bool:
        """Commit one successful result.

        Returns:
            True if stored; False if the store already held a result for this key
            (the first one is kept: nothing stored is overwritten silently).
        """
        m = result.measurement
        assert m is not None, "add_result needs a measurement"
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT INTO results (device_class, model_digest, policy_hash, runtime_version, job_name,"
                " job_group, device_id, runtime, mean_ms, std_ms, median_ms, min_ms, speed_factor, attempts,"
                " measurement_json, meta_json, created_unix_s, flag) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT DO NOTHING",
                (result.device_class, result.model_digest, policy_hash, m.runtime_version, result.job_name,
                 result.group, m.device_id, m.runtime, m.mean_ms, m.std_ms, m.median_ms, m.min_ms,
                 m.speed_factor, result.attempts, json.dumps(m.to_dict()), json.dumps(meta or {}),
                 time.time(), flag))
            return cur.rowcount == 1

    def add_failure(self, result: JobResult, policy_hash: str, *, final: bool) -> None:
        """Record one failed attempt (``final``: the job gives up with it)."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO failures (device_class, model_digest, policy_hash, job_name, device_id,"
                " error_kind, error_name, message, attempt, final, created_unix_s)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (result.device_class, result.model_digest, policy_hash, result.job_name, result.device_id,
                 int(result.error_kind), result.error_kind.name, result.error, result.attempts,
                 int(final), time.time()))

    def remember_name(self, job_name: str, device_class: str, policy_hash: str, digest: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO job_names VALUES (?,?,?,?)",
                             (job_name, device_class, policy_hash, digest))

    def add_calibration(self, device_id: str, device_class: str, runtime_version: str,
                        latency_ms: float, speed_factor: float, drift: float, flagged: bool) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO calibrations (device_id, device_class, runtime_version, latency_ms,"
                " speed_factor, drift, flagged, created_unix_s) VALUES (?,?,?,?,?,?,?,?)",
                (device_id, device_class, runtime_version, latency_ms, speed_factor, drift,
                 int(flagged), time.time()))

    def flag_results(self, device_id: str, since_unix_s: float, reason: str) -> int:
        """Mark a device's results stored since ``since_unix_s``; returns how many."""
        with self._lock, self._db:
            cur = self._db.execute(
                "UPDATE results SET flag = ? WHERE device_id = ? AND created_unix_s >= ? AND flag IS NULL",
                (reason, device_id, since_unix_s))
            return cur.rowcount

    # -- reading ---------------------------------------------------------
    def is_done(self, device_class: str, digest: str, policy_hash: str,
                runtime_versions: Iterable[str]) -> bool:
        """Whether a result exists for the key under any of ``runtime_versions``."""
        versions = list(runtime_versions)
        marks = ",".join("?" * len(versions))
        with self._lock:
            row = self._db.execute(
                f"SELECT 1 FROM results WHERE device_class=? AND model_digest=? AND policy_hash=?"
                f" AND runtime_version IN ({marks}) LIMIT 1",
                (device_class, digest, policy_hash, *versions)).fetchone()
        return row is not None

    def finally_failed(self, device_class: str, digest: str, policy_hash: str) -> tuple[int, str] | None:
        """The (error kind, message) of a job that failed for good with a model error, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT error_kind, message FROM failures WHERE device_class=? AND model_digest=?"
                " AND policy_hash=? AND final=1 ORDER BY id DESC LIMIT 1",
                (device_class, digest, policy_hash)).fetchone()
        if row and ErrorKind(row[0]).is_model_error:
            return row[0], row[1]
        return None

    def final_failure_of(self, job_name: str, device_class: str, policy_hash: str) -> tuple[int, str] | None:
        """Like :meth:`finally_failed`, by job name (a generator job that never made a model)."""
        with self._lock:
            row = self._db.execute(
                "SELECT error_kind, message FROM failures WHERE job_name=? AND device_class=?"
                " AND policy_hash=? AND final=1 ORDER BY id DESC LIMIT 1",
                (job_name, device_class, policy_hash)).fetchone()
        if row and ErrorKind(row[0]).is_model_error:
            return row[0], row[1]
        return None

    def digest_for_name(self, job_name: str, device_class: str, policy_hash: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT model_digest FROM job_names WHERE job_name=? AND device_class=? AND policy_hash=?",
                (job_name, device_class, policy_hash)).fetchone()
        return row[0] if row else None

    def measurement(self, device_class: str, digest: str, policy_hash: str) -> Measurement | None:
        """The stored measurement for a key (any runtime version), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT measurement_json FROM results WHERE device_class=? AND model_digest=?"
                " AND policy_hash=? ORDER BY id LIMIT 1", (device_class, digest, policy_hash)).fetchone()
        return Measurement.from_dict(json.loads(row[0])) if row else None

    def rows(self, table: str = "results", **where: object) -> list[dict]:
        """Rows of a table as dicts, filtered by equality on columns (for reports and tests)."""
        if table not in ("results", "failures", "job_names", "calibrations"):
            raise ValueError(f"unknown table {table!r}")
        clause = " AND ".join(f"{k}=?" for k in where) or "1"
        with self._lock:
            cur = self._db.execute(f"SELECT * FROM {table} WHERE {clause} ORDER BY rowid", tuple(where.values()))
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def count(self, table: str = "results") -> int:
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def device_stats(self) -> list[dict]:
        """Per device: results, failures, mean device time per job and latest calibration."""
        with self._lock:
            rows = self._db.execute(
                "SELECT device_class, device_id, COUNT(*), MIN(created_unix_s), MAX(created_unix_s)"
                " FROM results GROUP BY device_class, device_id").fetchall()
            fails = dict(self._db.execute(
                "SELECT device_id, COUNT(*) FROM failures GROUP BY device_id").fetchall())
            cal = {r[0]: r[1:] for r in self._db.execute(
                "SELECT device_id, latency_ms, speed_factor, drift, flagged FROM calibrations"
                " WHERE id IN (SELECT MAX(id) FROM calibrations GROUP BY device_id)").fetchall()}
        out = []
        for cls, dev, n, first, last in rows:
            span = max(last - first, 1e-9)
            c = cal.get(dev)
            out.append({"device_class": cls, "device_id": dev, "results": n, "failures": fails.get(dev, 0),
                        "jobs_per_s": (n - 1) / span if n > 1 else 0.0,
                        "reference_ms": c[0] if c else None, "speed_factor": c[1] if c else None,
                        "drift": c[2] if c else None, "flagged": bool(c[3]) if c else False})
        return out

    # -- export ----------------------------------------------------------
    def iter_results(self, device_class: str | None = None) -> Iterator[dict]:
        query = "SELECT * FROM results" + (" WHERE device_class=?" if device_class else "") + " ORDER BY id"
        with self._lock:
            cur = self._db.execute(query, (device_class,) if device_class else ())
            names = [c[0] for c in cur.description]
            rows = cur.fetchall()
        for r in rows:
            yield dict(zip(names, r))

    def export_nnmeter(self, path: str | os.PathLike | None = None, *, device_class: str | None = None) -> dict:
        """nn-Meter's profiled-results JSON: ``{group: {job_name: {"latency": "mean +- std", ...}}}``.

        Args:
            path: write the JSON here too (optional).
            device_class: only this class (default: all; a name measured on two
                classes keeps the first).

        Returns:
            The nested dict; latency strings are in ms, flagged results carry a
            "flag" entry.
        """
        out: dict[str, dict[str, dict]] = {}
        for row in self.iter_results(device_class):
            entry = dict(json.loads(row["meta_json"]))
            entry["latency"] = f"{row['mean_ms']} +- {row['std_ms']}"
            entry["model_digest"] = row["model_digest"]
            entry["device_class"] = row["device_class"]
            if row["flag"]:
                entry["flag"] = row["flag"]
            out.setdefault(row["job_group"], {}).setdefault(row["job_name"], entry)
        if path is not None:
            pathlib.Path(path).write_text(json.dumps(out, indent=2))
        return out
