"""The persistent outbox (SQLite): every text is written here before any send attempt and stays
until the modem accepted every part of it (at-least-once delivery).

A row is 'pending' until the SMS process takes it ('sending') and the modem accepts it ('sent').
A row found 'sending' after a restart, or whose send timed out after submission, may or may not
have gone out: it is sent again, marked as a repeat. Rows to one recipient go out in id order.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

OUTBOX_DB = "outbox.sqlite"
REPEAT_PREFIX = "[repeat] "

_SCHEMA = """
CREATE TABLE IF NOT EXISTS texts (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,            -- wall time queued
    event_id INTEGER,                 -- the event it reports, if any
    event_time REAL,                  -- wall time of that event's start in the audio
    recipient TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,               -- alert | summary | test | health
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | sending | sent
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    repeat INTEGER NOT NULL DEFAULT 0,  -- a resend after an unknown fate
    sent_at REAL,
    reference TEXT                     -- the modem's message references
);
CREATE INDEX IF NOT EXISTS texts_state ON texts (state, recipient, id);
CREATE TABLE IF NOT EXISTS held (      -- events over the hourly limit, waiting for a summary text
    id INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL,
    event_id INTEGER,
    event_time REAL NOT NULL
);
"""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    created: float
    event_id: int | None
    recipient: str
    text: str
    kind: str
    state: str
    attempts: int
    next_attempt: float
    last_error: str | None
    repeat: bool
    sent_at: float | None
    event_time: float | None = None

    @property
    def text_to_send(self) -> str:
        return REPEAT_PREFIX + self.text if self.repeat else self.text


_COLUMNS = (
    "id, created, event_id, recipient, text, kind, state, attempts, next_attempt, last_error, repeat, sent_at, "
    "event_time"
)


def outbox_path(data_dir: Path) -> Path:
    return Path(data_dir) / OUTBOX_DB


class Outbox:
    def __init__(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed text survives a power cut
        self._db.executescript(_SCHEMA)

    def enqueue(
        self,
        recipient: str,
        text: str,
        kind: str,
        event_id: int | None = None,
        now: float | None = None,
        event_time: float | None = None,
    ) -> int:
        now = time.time() if now is None else now
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO texts (created, event_id, event_time, recipient, text, kind, next_attempt) "
                "VALUES (?,?,?,?,?,?,?)",
                (now, event_id, event_time, recipient, text, kind, now),
            )
        return int(cursor.lastrowid)

    def due(self, now: float) -> list[OutboxRow]:
        """For each recipient, its oldest unsent text if its retry time has come (order is kept)."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM texts WHERE id IN "
            "(SELECT MIN(id) FROM texts WHERE state != 'sent' GROUP BY recipient) AND next_attempt <= ? ORDER BY id",
            (now,),
        ).fetchall()
        return [_row(r) for r in rows]

    def mark_sending(self, row_id: int) -> None:
        with self._db:
            self._db.execute("UPDATE texts SET state='sending', attempts=attempts+1 WHERE id=?", (row_id,))

    def mark_sent(self, row_id: int, references: list, now: float) -> None:
        with self._db:
            self._db.execute(
                "UPDATE texts SET state='sent', sent_at=?, reference=?, last_error=NULL WHERE id=?",
                (now, ",".join(map(str, references)), row_id),
            )

    def mark_retry(self, row_id: int, error: str, retry_at: float, maybe_sent: bool) -> None:
        """Back to pending; `maybe_sent` (a timeout after submission) makes the resend a repeat."""
        with self._db:
            self._db.execute(
                "UPDATE texts SET state='pending', next_attempt=?, last_error=?, repeat=MAX(repeat, ?) WHERE id=?",
                (retry_at, error, int(maybe_sent), row_id),
            )

    def recover(self) -> int:
        """After a crash: texts caught mid-send may have gone out; send them again as repeats."""
        with self._db:
            return self._db.execute(
                "UPDATE texts SET state='pending', repeat=1, next_attempt=0 WHERE state='sending'"
            ).rowcount

    def next_attempt(self) -> float | None:
        """When the next text becomes due (see `due`); None when all are sent."""
        return self._db.execute(
            "SELECT MIN(next_attempt) FROM texts WHERE id IN "
            "(SELECT MIN(id) FROM texts WHERE state != 'sent' GROUP BY recipient)"
        ).fetchone()[0]

    def pending_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM texts WHERE state != 'sent'").fetchone()[0]

    def rows(self, limit: int = 1000) -> list[OutboxRow]:
        return [_row(r) for r in self._db.execute(f"SELECT {_COLUMNS} FROM texts ORDER BY id LIMIT ?", (limit,))]

    def sent_since(self, recipient: str, kinds: tuple[str, ...], since: float) -> int:
        """Texts of these kinds queued for `recipient` since `since` (sent or not)."""
        marks = ",".join("?" * len(kinds))
        return self._db.execute(
            f"SELECT COUNT(*) FROM texts WHERE recipient=? AND kind IN ({marks}) AND created >= ?",
            (recipient, *kinds, since),
        ).fetchone()[0]

    def last_created(self, recipient: str, kind: str) -> float | None:
        return self._db.execute(
            "SELECT MAX(created) FROM texts WHERE recipient=? AND kind=?", (recipient, kind)
        ).fetchone()[0]

    def hold(self, recipient: str, event_id: int | None, event_time: float) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO held (recipient, event_id, event_time) VALUES (?,?,?)", (recipient, event_id, event_time)
            )

    def held(self) -> dict[str, list[float]]:
        """Event times held back per recipient, oldest first."""
        held: dict[str, list[float]] = {}
        for recipient, event_time in self._db.execute("SELECT recipient, event_time FROM held ORDER BY id"):
            held.setdefault(recipient, []).append(event_time)
        return held

    def release_held(self, recipient: str, summary: str, now: float) -> int:
        """Replace a recipient's held events by one summary text, atomically."""
        with self._db:
            self._db.execute("DELETE FROM held WHERE recipient=?", (recipient,))
            cursor = self._db.execute(
                "INSERT INTO texts (created, recipient, text, kind, next_attempt) VALUES (?,?,?,?,?)",
                (now, recipient, summary, "summary", now),
            )
        return int(cursor.lastrowid)

    def prune_sent(self, before: float) -> int:
        """Retention: delete texts sent before `before`; unsent ones are never pruned."""
        with self._db:
            return self._db.execute("DELETE FROM texts WHERE state='sent' AND sent_at < ?", (before,)).rowcount

    def close(self) -> None:
        self._db.close()


def _row(r: tuple) -> OutboxRow:
    return OutboxRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]), r[11], r[12])
