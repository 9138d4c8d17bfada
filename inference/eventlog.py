"""The record of detected events (SQLite) and their evidence clips (FLAC)."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

EVENTS_DB = "events.sqlite"
CLIPS_DIR = "clips"
SECONDS_PER_DAY = 86400.0
MB = 1024 * 1024

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
    state TEXT NOT NULL DEFAULT 'open'  -- open | closed | interrupted (the aggregator restarted)
);
"""

log = logging.getLogger(__name__)


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

    def to_json(self) -> dict:
        return self.__dict__.copy()


class EventLog:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.data_dir / EVENTS_DB, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def mark_interrupted(self) -> int:
        """Events left open by a crashed aggregator: their texts went out, their records stay partial."""
        with self._db:
            return self._db.execute("UPDATE events SET state = 'interrupted' WHERE state = 'open'").rowcount

    def open_event(
        self, start_time: float, confidence: float, votes: dict[str, float], models: dict[str, str], degraded: bool
    ) -> int:
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO events (opened_at, start_time, confidence, votes, models, degraded) VALUES (?,?,?,?,?,?)",
                (time.time(), start_time, confidence, json.dumps(votes), json.dumps(models), int(degraded)),
            )
        return int(cursor.lastrowid)

    def close_event(
        self, event_id: int, end_time: float, confidence: float, votes: dict[str, float], degraded: bool, windows: int
    ) -> None:
        with self._db:
            self._db.execute(
                "UPDATE events SET end_time=?, confidence=?, votes=?, degraded=?, windows=?, state='closed' WHERE id=?",
                (end_time, confidence, json.dumps(votes), int(degraded), windows, event_id),
            )

    def attach_clip(self, event_id: int, samples: np.ndarray, rate: int, min_free_bytes: int = 0) -> bool:
        """Write the evidence clip; False (logged) when the disk refuses or the clip would take it
        below `min_free_bytes` even after deleting older clips. Detection goes on either way."""
        if not self.make_room(min_free_bytes + samples.nbytes):  # FLAC is smaller than the samples
            log.error(
                "evidence clip of event %d not saved: %.0f MB free on %s, below storage.min_free_mb",
                event_id,
                self.free_bytes() / MB,
                self.data_dir,
            )
            return False
        relative = Path(CLIPS_DIR) / f"event-{event_id:06d}.flac"
        path = self.data_dir / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, samples, rate, subtype="PCM_16", format="FLAC")
        except (OSError, soundfile.LibsndfileError) as exc:
            log.error("evidence clip of event %d not saved: %s", event_id, exc)
            path.unlink(missing_ok=True)
            return False
        with self._db:
            self._db.execute("UPDATE events SET clip=? WHERE id=?", (str(relative), event_id))
        return True

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.data_dir).free

    def make_room(self, min_free_bytes: int) -> bool:
        """Delete the oldest clips (their events stay) until `min_free_bytes` are free; False if
        that is not enough."""
        while self.free_bytes() < min_free_bytes:
            oldest = self._db.execute(
                "SELECT id, clip FROM events WHERE clip IS NOT NULL ORDER BY id LIMIT 1"
            ).fetchone()
            if oldest is None:
                return False
            (self.data_dir / oldest[1]).unlink(missing_ok=True)
            with self._db:
                self._db.execute("UPDATE events SET clip = NULL WHERE id = ?", (oldest[0],))
            log.warning("disk space floor: deleted the evidence clip of event %d", oldest[0])
        return True

    def events(self, limit: int = 100) -> list[EventRecord]:
        rows = self._db.execute(
            "SELECT id, opened_at, start_time, end_time, confidence, votes, models, degraded, windows, clip, state "
            "FROM events ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            EventRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]), bool(r[7]), r[8], r[9], r[10])
            for r in reversed(rows)
        ]

    def prune(self, retention_days: float, now: float | None = None) -> int:
        """Delete closed events older than the retention, and their clips."""
        cutoff = (time.time() if now is None else now) - retention_days * SECONDS_PER_DAY
        old = self._db.execute(
            "SELECT id, clip FROM events WHERE state != 'open' AND opened_at < ?", (cutoff,)
        ).fetchall()
        for _, clip in old:
            if clip:
                (self.data_dir / clip).unlink(missing_ok=True)
        with self._db:
            self._db.executemany("DELETE FROM events WHERE id = ?", [(event_id,) for event_id, _ in old])
        return len(old)

    def close(self) -> None:
        self._db.close()
