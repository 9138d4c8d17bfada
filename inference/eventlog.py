"""The record of detected events, near misses and background samples (SQLite), their clips (FLAC)
and their labels, and the site's window scores (inference/score_log.py).

A label (gunshot or other, set by `python cli.py label`) keeps a record and its clip from the
retention: labelled clips are training data (`python cli.py export-labels`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

EVENTS_DB = "events.sqlite"
CLIPS_DIR = "clips"
SECONDS_PER_DAY = 86400.0
SECONDS_PER_HOUR = 3600
MB = 1024 * 1024
EVENTS, NEAR_MISSES, SAMPLES = "events", "near_misses", "samples"  # the tables with clips
TABLES = (EVENTS, NEAR_MISSES, SAMPLES)
KEPT_WINDOWS = (NEAR_MISSES, SAMPLES)  # kept to be labelled: inference/near_miss.py, background_sample.py
CLIP_PREFIX = {EVENTS: "event", NEAR_MISSES: "near-miss", SAMPLES: "sample"}
GIVEN_UP_FIRST = (SAMPLES, NEAR_MISSES, EVENTS)  # whose clips make room first under the disk-space floor
LABELS = ("gunshot", "other")  # the manifest's labels (models/training/data.py)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    opened_at REAL NOT NULL,      -- wall time the event was decided (text queued)
    start_time REAL NOT NULL,     -- wall time of the start of its first positive window
    end_time REAL,                -- wall time of the end of its last positive window
    confidence REAL NOT NULL,     -- highest ensemble confidence (mean model probability) of its windows
    votes TEXT NOT NULL,          -- JSON {model id: probability} in that window
    models TEXT NOT NULL,         -- JSON {model id: version}
    degraded INTEGER NOT NULL,    -- decided without every model
    windows INTEGER NOT NULL DEFAULT 1,
    clip TEXT,                    -- evidence clip path, relative to the data folder
    clip_lost REAL,               -- s of the clip where silence stands in for audio lost before it was saved
    state TEXT NOT NULL DEFAULT 'open',  -- open | closed | interrupted (the aggregator restarted)
    label TEXT,                   -- gunshot | other, set by a person (cli.py label); NULL: not labelled
    category TEXT                 -- what it is, in the person's words (e.g. rifle, door_slam)
);
"""
_SCORES_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_sets (
    id INTEGER PRIMARY KEY,
    models TEXT NOT NULL UNIQUE   -- JSON {model id: version}
);
CREATE TABLE IF NOT EXISTS window_scores (
    start_time REAL NOT NULL,     -- wall time of the start of a window whose fused score reached SCORE_FLOOR
    score REAL NOT NULL,          -- its fused probability (every model voted)
    model_set INTEGER NOT NULL    -- model_sets.id: the models that scored it
);
CREATE INDEX IF NOT EXISTS window_scores_by_time ON window_scores (start_time);
CREATE TABLE IF NOT EXISTS listened (
    hour REAL NOT NULL,           -- wall time of the start of the hour
    model_set INTEGER NOT NULL,
    seconds REAL NOT NULL,        -- of windows starting in it with every model's vote
    PRIMARY KEY (hour, model_set)
);
"""
_KEPT_WINDOW_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    id INTEGER PRIMARY KEY,
    start_time REAL NOT NULL,     -- wall time of the start of the window
    confidence REAL NOT NULL,     -- the vote's confidence in the window
    votes TEXT NOT NULL,          -- JSON {{model id: probability}}
    models TEXT NOT NULL,         -- JSON {{model id: version}}
    clip TEXT,
    clip_lost REAL,
    label TEXT,
    category TEXT
);
"""
# Columns added since the first release: a data folder made by it gets them when opened.
# alert_queued: 0 from an event's record until its alert is in an outbox (1 for events of older logs)
_ADDED_COLUMNS = {
    EVENTS: {"label": "TEXT", "category": "TEXT", "alert_queued": "INTEGER NOT NULL DEFAULT 1", "clip_lost": "REAL"},
    NEAR_MISSES: {"clip_lost": "REAL"},
    SAMPLES: {"clip_lost": "REAL"},
}
PART = ".part"  # suffix of a clip being written in pieces (a long event's): filed without it once whole

log = logging.getLogger(__name__)


def first_whole_hour(since: float) -> float:
    """The first whole hour at or after `since`: listening time is kept per hour, so a replay of the
    log starts there (its windows, its hours and its labelled shots alike)."""
    return math.ceil(since / SECONDS_PER_HOUR) * SECONDS_PER_HOUR


@dataclass(frozen=True)
class EventRecord:
    id: int
    opened_at: float
    start_time: float
    end_time: float | None
    confidence: float
    votes: dict[str, float]
    models: dict[str, str]
    degraded: bool
    windows: int
    clip: str | None
    state: str
    label: str | None = None
    category: str | None = None
    clip_lost: float | None = None  # s of the clip where silence stands in for audio lost before it was saved

    def to_json(self) -> dict:
        return self.__dict__.copy()


@dataclass(frozen=True)
class WindowRecord:
    """A near miss or a background sample."""

    id: int
    start_time: float
    confidence: float
    votes: dict[str, float]
    models: dict[str, str]
    clip: str | None
    label: str | None
    category: str | None
    clip_lost: float | None = None  # as EventRecord's

    def to_json(self) -> dict:
        return self.__dict__.copy()


@dataclass(frozen=True)
class LabelledClip:
    table: str
    id: int
    start_time: float
    clip: str  # relative to the data folder
    label: str
    category: str | None


class EventLog:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.data_dir / EVENTS_DB, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        kept_windows = "".join(_KEPT_WINDOW_SCHEMA.format(table=t) for t in KEPT_WINDOWS)
        self._db.executescript(_SCHEMA + kept_windows + _SCORES_SCHEMA)
        self._add_missing_columns()
        self._writing: dict[tuple[str, int], tuple[soundfile.SoundFile, Path]] = {}  # clips written in pieces

    def _add_missing_columns(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            with self._db:
                for name, kind in columns.items():
                    if name not in present:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def mark_interrupted(self, but: int = 0) -> int:
        """Events left open by a crashed aggregator: their records stay partial. Not the event `but`,
        which a restarted aggregator takes up (0: none)."""
        with self._db:
            query = "UPDATE events SET state = 'interrupted' WHERE state = 'open' AND id != ?"
            return self._db.execute(query, (but,)).rowcount

    def open_record(self, event_id: int) -> EventRecord | None:
        """The event `event_id` if it is still open."""
        records = self._event_records("WHERE id = ? AND state = 'open'", (event_id,))
        return records[0] if records else None

    def remove_unfiled_clips(self) -> None:
        """At an aggregator's start: the clip a stopped one was writing in pieces, and a clip written
        just before it was killed that no record points at (retention and the disk floor find clips
        through their records only: it would stay for good)."""
        referenced = {
            clip for table in (EVENTS, *KEPT_WINDOWS) for (clip,) in self._db.execute(f"SELECT clip FROM {table}")
        }
        folder = self.data_dir / CLIPS_DIR
        unfiled = [
            *folder.glob(f"*.flac{PART}"),
            *(c for c in folder.glob("*.flac") if f"{CLIPS_DIR}/{c.name}" not in referenced),
        ]
        for clip in unfiled:
            try:
                clip.unlink(missing_ok=True)
            except OSError as exc:  # a cleanup: the event log works without it
                log.warning("unfiled clip %s not deleted: %s", clip, exc)

    def mark_alert_queued(self, event_id: int) -> None:
        with self._db:
            self._db.execute("UPDATE events SET alert_queued = 1 WHERE id = ?", (event_id,))

    def alerts_not_queued(self) -> list[EventRecord]:
        """Events whose alert never reached an outbox: the aggregator was stopped (a kill, a crash, a
        shutdown while the outbox refused it) between recording the event and queueing its alert."""
        return self._event_records("WHERE alert_queued = 0 ORDER BY id", ())

    def open_event(
        self, start_time: float, confidence: float, votes: dict[str, float], models: dict[str, str], degraded: bool
    ) -> int:
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO events (opened_at, start_time, confidence, votes, models, degraded, alert_queued) "
                "VALUES (?,?,?,?,?,?,0)",
                (time.time(), start_time, confidence, json.dumps(votes), json.dumps(models), int(degraded)),
            )
        return int(cursor.lastrowid)

    def close_event(
        self,
        event_id: int,
        span: tuple[float, float],
        confidence: float,
        votes: dict[str, float],
        degraded: bool,
        windows: int,
    ) -> None:
        """Complete an event's record; `span` (start, end): a window decided late may have moved its start."""
        with self._db:
            self._db.execute(
                "UPDATE events SET start_time=?, end_time=?, confidence=?, votes=?, degraded=?, windows=?, "
                "state='closed' WHERE id=?",
                (*span, confidence, json.dumps(votes), int(degraded), windows, event_id),
            )

    def add_window(
        self, table: str, start_time: float, confidence: float, votes: dict[str, float], models: dict[str, str]
    ) -> int:
        """Record a near miss or a background sample (`table`: one of KEPT_WINDOWS)."""
        with self._db:
            cursor = self._db.execute(
                f"INSERT INTO {table} (start_time, confidence, votes, models) VALUES (?,?,?,?)",
                (start_time, confidence, json.dumps(votes), json.dumps(models)),
            )
        return int(cursor.lastrowid)

    def add_scores(self, scores: list[tuple[float, float]], listened: dict[float, float], models: str) -> None:
        """Window scores (start time, fused score) and seconds listened per hour, of the model set
        `models` (JSON {model id: version})."""
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO model_sets (models) VALUES (?)", (models,))
            (model_set,) = self._db.execute("SELECT id FROM model_sets WHERE models = ?", (models,)).fetchone()
            self._db.executemany(
                "INSERT INTO window_scores (start_time, score, model_set) VALUES (?,?,?)",
                [(start, score, model_set) for start, score in scores],
            )
            self._db.executemany(
                "INSERT INTO listened (hour, model_set, seconds) VALUES (?,?,?) "
                "ON CONFLICT (hour, model_set) DO UPDATE SET seconds = seconds + excluded.seconds",
                [(hour, model_set, seconds) for hour, seconds in listened.items()],
            )

    def window_scores(self, since: float, models: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Start times and fused scores (time order) of the model set's windows from the first whole
        hour at or after `since`, and the seconds it listened from then on. Read as flat float
        arrays: a noisy month is millions of rows on a 1 GB Pi."""
        hour = first_whole_hour(since)
        in_set = "model_set = (SELECT id FROM model_sets WHERE models = ?)"
        cursor = self._db.execute(
            f"SELECT start_time, score FROM window_scores WHERE start_time >= ? AND {in_set} ORDER BY start_time",
            (hour, models),
        )
        flat = np.fromiter(itertools.chain.from_iterable(cursor), dtype=np.float64).reshape(-1, 2)
        (seconds,) = self._db.execute(
            f"SELECT TOTAL(seconds) FROM listened WHERE hour >= ? AND {in_set}", (hour, models)
        ).fetchone()
        return flat[:, 0], flat[:, 1], seconds

    def labelled_gunshots(self, since: float) -> list[tuple[float, float | None]]:
        """(start time, end time or None) of every record labelled gunshot from `since` on."""
        rows = self._db.execute(
            "SELECT start_time, end_time FROM events WHERE label = 'gunshot' AND start_time >= ?", (since,)
        ).fetchall()
        for table in KEPT_WINDOWS:
            rows += self._db.execute(
                f"SELECT start_time, NULL FROM {table} WHERE label = 'gunshot' AND start_time >= ?", (since,)
            ).fetchall()
        return rows

    def attach_clip(
        self,
        table: str,
        record_id: int,
        samples: np.ndarray,
        rate: int,
        min_free_bytes: int = 0,
        more: bool = False,
        lost: float = 0.0,
    ) -> bool:
        """Write the clip of a record; False (logged) when the disk refuses or the clip
        would take it below `min_free_bytes` even after deleting older clips. Detection goes on
        either way.

        With `more`, `samples` are a piece of the clip, kept in an unfiled PART file that the next
        call appends to; the call without `more` appends the last piece and files the clip. A
        failed piece gives up the whole clip. `lost`: seconds of it where silence stands in for
        audio lost before it was saved (recorded in clip_lost)."""
        what = f"{CLIP_PREFIX[table]} {record_id}"
        writer, part = self._writing.pop((table, record_id), (None, None))
        try:
            room = self.make_room(min_free_bytes + samples.nbytes, table)  # FLAC is smaller than the samples
        except BaseException:  # the database or the disk refused: the clip is given up, its file closed
            _give_up(writer, part)
            raise
        if not room:
            log.error(
                "clip of %s not saved: %.0f MB free on %s, below storage.min_free_mb",
                what,
                self.free_bytes() / MB,
                self.data_dir,
            )
            _give_up(writer, part)
            return False
        relative = Path(CLIPS_DIR) / f"{CLIP_PREFIX[table]}-{record_id:06d}.flac"
        path = self.data_dir / relative
        try:
            if writer is None:
                part = path.with_name(path.name + PART)
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = soundfile.SoundFile(part, "w", rate, 1, subtype="PCM_16", format="FLAC")
            writer.write(samples)
            if more:
                self._writing[table, record_id] = (writer, part)
                return True
            writer.close()
            part.replace(path)
        except (OSError, soundfile.LibsndfileError) as exc:
            log.error("clip of %s not saved: %s", what, exc)
            _give_up(writer, part)
            return False
        try:
            with self._db:
                self._db.execute(
                    f"UPDATE {table} SET clip=?, clip_lost=? WHERE id=?", (str(relative), lost or None, record_id)
                )
        except sqlite3.Error:
            path.unlink(missing_ok=True)  # no record points at it: nothing would ever delete it
            raise
        return True

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.data_dir).free

    def make_room(self, min_free_bytes: int, for_table: str) -> bool:
        """Delete the oldest clips (their records stay) until `min_free_bytes` are free; False, with
        nothing deleted, if their sizes say that deleting every clip it may give up would not be
        enough (something else filled the disk). It gives up unlabelled clips only, and none more important than the one
        that needs the room: samples first, then near misses, then events."""
        needed = min_free_bytes - self.free_bytes()
        if needed <= 0:
            return True
        chosen, freed = [], 0
        for table, record_id, clip in self._clips_to_give_up(for_table):
            if freed >= needed:
                break
            with contextlib.suppress(OSError):
                freed += (self.data_dir / clip).stat().st_size
            chosen.append((table, record_id, clip))
        if freed < needed:
            return False
        for table, record_id, clip in chosen:
            (self.data_dir / clip).unlink(missing_ok=True)
            with self._db:
                self._db.execute(f"UPDATE {table} SET clip = NULL WHERE id = ?", (record_id,))
            log.warning("disk space floor: deleted the clip of %s %d", CLIP_PREFIX[table], record_id)
        return self.free_bytes() >= min_free_bytes

    def _clips_to_give_up(self, for_table: str) -> Iterator[tuple[str, int, str]]:
        """(table, record id, clip path) of the unlabelled clips `for_table`'s may replace, in order."""
        for table in GIVEN_UP_FIRST[: GIVEN_UP_FIRST.index(for_table) + 1]:
            rows = self._db.execute(
                f"SELECT id, clip FROM {table} WHERE clip IS NOT NULL AND label IS NULL ORDER BY id"
            ).fetchall()
            yield from ((table, record_id, clip) for record_id, clip in rows)

    def set_label(self, table: str, record_id: int, label: str, category: str | None) -> bool:
        """Label a record (False: no such record)."""
        if label not in LABELS:
            raise ValueError(f"label {label!r} must be one of {', '.join(LABELS)}")
        with self._db:
            cursor = self._db.execute(
                f"UPDATE {table} SET label = ?, category = ? WHERE id = ?", (label, category, record_id)
            )
        return cursor.rowcount == 1

    def labelled_clips(self) -> list[LabelledClip]:
        return [
            LabelledClip(table, *row)
            for table in TABLES
            for row in self._db.execute(
                f"SELECT id, start_time, clip, label, category FROM {table} "
                "WHERE label IS NOT NULL AND clip IS NOT NULL ORDER BY id"
            )
        ]

    def labelled_without_clip(self) -> int:
        """Labelled records whose clip is gone (the disk space floor) or was never saved."""
        return sum(
            self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE label IS NOT NULL AND clip IS NULL").fetchone()[0]
            for table in TABLES
        )

    def events(self, limit: int = 100) -> list[EventRecord]:
        return list(reversed(self._event_records("ORDER BY id DESC LIMIT ?", (limit,))))

    def _event_records(self, condition: str, params: tuple) -> list[EventRecord]:
        rows = self._db.execute(
            "SELECT id, opened_at, start_time, end_time, confidence, votes, models, degraded, windows, clip, state, "
            f"label, category, clip_lost FROM events {condition}",
            params,
        ).fetchall()
        return [EventRecord(*r[:5], json.loads(r[5]), json.loads(r[6]), bool(r[7]), *r[8:]) for r in rows]

    def windows(self, table: str, limit: int = 100) -> list[WindowRecord]:
        """The latest near misses or background samples (`table`: one of KEPT_WINDOWS)."""
        rows = self._db.execute(
            f"SELECT id, start_time, confidence, votes, models, clip, label, category, clip_lost FROM {table} "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [WindowRecord(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), *r[5:]) for r in reversed(rows)]

    def prune(self, retention_days: float, now: float | None = None) -> int:
        """Delete unlabelled closed events, near misses and samples older than the retention, and
        their clips."""
        cutoff = (time.time() if now is None else now) - retention_days * SECONDS_PER_DAY
        old_events = "SELECT id, clip FROM events WHERE state != 'open' AND opened_at < ? AND label IS NULL"
        old_windows = "SELECT id, clip FROM {table} WHERE start_time < ? AND label IS NULL"
        queries = [(EVENTS, old_events)] + [(table, old_windows.format(table=table)) for table in KEPT_WINDOWS]
        with self._db:
            self._db.execute("DELETE FROM window_scores WHERE start_time < ?", (cutoff,))
            self._db.execute("DELETE FROM listened WHERE hour < ?", (cutoff,))
        return sum(self._delete(table, query, cutoff) for table, query in queries)

    def remove_window(self, table: str, record_id: int) -> None:
        """A near miss or sample that turned out an event (a late model's yes): one record and clip
        of that audio, not two to label."""
        self._delete(table, f"SELECT id, clip FROM {table} WHERE id = ?", record_id)
        writer, part = self._writing.pop((table, record_id), (None, None))
        _give_up(writer, part)

    def _delete(self, table: str, query: str, parameter: float | int) -> int:
        old = self._db.execute(query, (parameter,)).fetchall()
        for _, clip in old:
            if clip:
                (self.data_dir / clip).unlink(missing_ok=True)
        with self._db:
            self._db.executemany(f"DELETE FROM {table} WHERE id = ?", [(record_id,) for record_id, _ in old])
        return len(old)

    def close(self) -> None:
        for writer, part in self._writing.values():  # clips left unfinished: not filed
            _give_up(writer, part)
        self._writing.clear()
        self._db.close()


def _give_up(writer: soundfile.SoundFile | None, part: Path | None) -> None:
    """Close and delete a clip being written (nothing to do when none is)."""
    if writer is not None:
        with contextlib.suppress(OSError, RuntimeError, soundfile.LibsndfileError):
            writer.close()
    if part is not None:
        part.unlink(missing_ok=True)
