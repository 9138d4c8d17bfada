"""The persistent outbox (SQLite, `<data_dir>/outbox.sqlite`): every text is committed here before
any send attempt and stays until the modem accepted every part of it (at-least-once delivery).

A row is 'pending' until the SMS process takes it ('sending', committed before the modem is asked)
and the modem accepts it ('sent'). A row found 'sending' after a crash, or whose send failed in a
way that may have reached the network, is sent again marked as a repeat. Rows to one recipient go
out in id order. Events over the hourly limit wait in `held` until a summary text reports them.
An alert that goes out more than LATE_AFTER after its event says how late it is, and so does a
summary, counted from when it was queued (it holds events by design, and says when they were).
Unsent texts are never pruned.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from alerting.clock import UNSYNCHRONISED_NOTE
from alerting.phone import validate_e164

OUTBOX_DB = "outbox.sqlite"
REPEAT_PREFIX = "[sent again] "  # it may have gone before: a plain "[repeat]" read as "repeated shots"
LATE_AFTER = 60.0  # s: a text handed to the modem later than this after its event says how late it is
TAKEN_OVER_NOTE = "sent from the in-memory outbox (the data folder could not be written)"
KINDS = ("alert", "summary", "update", "test", "health")
LOCK_WAIT = 30.0  # s: longest wait for another process's write transaction (they last milliseconds)
WAL_RETRY = 0.05  # s between tries to switch a new outbox file to WAL
ROWS_LIMIT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS texts (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,              -- wall time queued
    event_id INTEGER,                   -- the event it reports, if any
    event_time REAL,                    -- wall time of that event's start in the audio
    recipient TEXT NOT NULL,            -- E.164
    text TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- alert | summary | update | test | health
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | sending | sent
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,         -- wall time it may be tried (again)
    last_error TEXT,
    repeat INTEGER NOT NULL DEFAULT 0,  -- 1: a resend after an unknown fate, sent with REPEAT_PREFIX
    sent_at REAL,
    reference TEXT                      -- the modem's message references, one per part
);
CREATE TABLE IF NOT EXISTS held (       -- events over the hourly limit, reported by a summary text
    id INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL,
    event_id INTEGER,
    event_time REAL NOT NULL,
    created REAL,
    summary_id INTEGER                  -- the summary text that reported it; NULL: still waiting
);
"""
# Every pass of the SMS process (each second) and every alert reads the unsent texts, the texts of
# the last hour and the unreported events; sent ones are kept storage.retention_days. Without these
# partial and time indexes each read scanned the whole table: measured 22 ms a pass at 100k texts
# kept (x86), which a site over the hourly limit all day reaches within a retention period.
_INDEXES = """
DROP INDEX IF EXISTS texts_state;
DROP INDEX IF EXISTS held_waiting;
CREATE INDEX IF NOT EXISTS texts_unsent ON texts (recipient, id) WHERE state != 'sent';
CREATE INDEX IF NOT EXISTS texts_by_time ON texts (recipient, created);
CREATE INDEX IF NOT EXISTS held_unreported ON held (id) WHERE summary_id IS NULL;
CREATE INDEX IF NOT EXISTS texts_alerts_by_time ON texts (created, event_id, event_time) WHERE kind = 'alert';
CREATE INDEX IF NOT EXISTS texts_alerts_by_event ON texts (event_id) WHERE kind = 'alert';
CREATE INDEX IF NOT EXISTS held_by_time ON held (created);
"""
_ADDED_COLUMNS = {"held": {"created": "REAL", "summary_id": "INTEGER"}}  # files from before these columns
_COLUMNS = (
    "id, created, event_id, recipient, text, kind, state, attempts, next_attempt, last_error, repeat, "
    "sent_at, reference, event_time"
)
# Each recipient's oldest unsent text.
_HEADS = "SELECT MIN(id) FROM texts WHERE state != 'sent' GROUP BY recipient"
_HELD_COLUMNS = "id, recipient, event_id, event_time, summary_id"
_TAKEN = (
    "created", "event_id", "event_time", "recipient", "text", "kind", "state", "attempts", "next_attempt",
    "last_error", "repeat", "sent_at", "reference",
)  # fmt: skip
_TAKEN_COLUMNS = ", ".join(_TAKEN)
_TAKEN_VALUES = ", ".join("?" * len(_TAKEN))


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
    reference: str | None = None
    event_time: float | None = None

    def text_to_send(self, now: float, synchronised_now: bool = False) -> str:
        """The text as it goes out at wall time `now`: an alert sent more than LATE_AFTER after its
        event, or a summary after it was queued, says how late (it would read as fresh news); a
        resend after an unknown fate, that it may be a repeat. Not how late when the clock was
        synchronised since the text was written (`synchronised_now`, and the text says its time is
        unverified): NTP may have stepped it by days, and a shot a minute old read "[sent 72 h late]"."""
        text = self.text
        since = self.created if self.kind == "summary" else self.event_time
        stepped = synchronised_now and text.endswith(UNSYNCHRONISED_NOTE)
        if since is not None and now - since > LATE_AFTER and not stepped:
            text = late_prefix(now - since) + text
        return REPEAT_PREFIX + text if self.repeat else text


def late_prefix(late: float) -> str:
    """E.g. "[sent 5 min late] " for `late` s (minutes rounded down, at least 1), "[sent 3 h late] " from
    120 min."""
    minutes = max(1, int(late // 60))
    return f"[sent {minutes // 60} h late] " if minutes >= 120 else f"[sent {minutes} min late] "


# The most a text may be given before it goes (the config's length checks count it): a repeat,
# over a year late.
LONGEST_PREFIX = REPEAT_PREFIX + late_prefix(9999 * 3600.0)


@dataclass(frozen=True)
class HeldEvent:
    id: int
    recipient: str
    event_id: int | None
    event_time: float
    summary_id: int | None


def outbox_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / OUTBOX_DB


def wal_path(database: Path) -> Path:
    """SQLite's write-ahead log of `database`: new rows land there while a connection is open."""
    return database.with_name(database.name + "-wal")


class Outbox:
    """One connection to the outbox file; every write is committed (and synced) before it returns."""

    def __init__(self, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=LOCK_WAIT, isolation_level=None)
        self._use_wal()
        self._db.execute("PRAGMA synchronous=FULL")  # a committed text survives a power cut
        self._db.executescript(_SCHEMA)  # each statement is idempotent: no transaction needed
        self._migrate()
        self._db.executescript(_INDEXES)

    def _use_wal(self) -> None:
        """SQLite's first switch of a new file to WAL fails at once ("database is locked"), without
        its busy wait, while other processes open the file too (the detector's first start)."""
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(WAL_RETRY)

    # --- transactions ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together (or not at all); nests (inner ones join the outer)."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")  # take the write lock now: check-then-insert is atomic
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- texts ------------------------------------------------------------------------------------
    def enqueue(
        self,
        recipient: str,
        text: str,
        kind: str,
        event_id: int | None = None,
        now: float | None = None,
        event_time: float | None = None,
    ) -> int:
        """Queue one text to one recipient, due at once; its id."""
        validate_e164(recipient)
        if kind not in KINDS:
            raise ValueError(f"unknown text kind {kind!r} (one of {', '.join(KINDS)})")
        now = time.time() if now is None else now
        with self.transaction():
            cursor = self._db.execute(
                "INSERT INTO texts (created, event_id, event_time, recipient, text, kind, next_attempt) "
                "VALUES (?,?,?,?,?,?,?)",
                (now, event_id, event_time, recipient, text, kind, now),
            )
        return int(cursor.lastrowid)

    def enqueue_to_all(self, recipients: Iterable[str], text: str, kind: str, now: float | None = None) -> None:
        """Queue `text` to every recipient in one commit: a retry after a failure sends nobody it twice."""
        with self.transaction():
            for recipient in recipients:
                self.enqueue(recipient, text, kind, now=now)

    def due(self, now: float, recipients: Iterable[str] | None = None) -> list[OutboxRow]:
        """Each recipient's oldest unsent text, if its time has come (a later text never overtakes it)."""
        query = f"SELECT {_COLUMNS} FROM texts WHERE id IN ({_HEADS}) AND next_attempt <= ? ORDER BY id"
        rows = [_row(r) for r in self._db.execute(query, (now,))]
        if recipients is not None:
            wanted = set(recipients)
            rows = [r for r in rows if r.recipient in wanted]
        return rows

    def next_attempt(self) -> float | None:
        """When the next text becomes due (see `due`); None when all are sent."""
        return self._db.execute(f"SELECT MIN(next_attempt) FROM texts WHERE id IN ({_HEADS})").fetchone()[0]

    def mark_sending(self, row_id: int) -> None:
        """Committed before the modem is asked: a crash from here on means "maybe sent"."""
        with self.transaction():
            self._db.execute("UPDATE texts SET state='sending', attempts=attempts+1 WHERE id=?", (row_id,))

    def mark_sent(self, row_id: int, references: Iterable[int], now: float) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE texts SET state='sent', sent_at=?, reference=?, last_error=NULL WHERE id=?",
                (now, ",".join(map(str, references)), row_id),
            )

    def mark_retry(self, row_id: int, error: str, retry_at: float, maybe_sent: bool) -> None:
        """Back to pending until `retry_at`; `maybe_sent` makes the resend a repeat (for good)."""
        with self.transaction():
            self._db.execute(
                "UPDATE texts SET state='pending', next_attempt=?, last_error=?, repeat=MAX(repeat, ?) WHERE id=?",
                (retry_at, error, int(maybe_sent), row_id),
            )

    def recover(self) -> int:
        """At start: texts caught mid-send by a crash may have gone out; send them again as repeats."""
        with self.transaction():
            return self._db.execute(
                "UPDATE texts SET state='pending', repeat=1, next_attempt=0 WHERE state='sending'"
            ).rowcount

    def make_due(self, recipient: str, now: float) -> int:
        """Retry `recipient`'s waiting texts now, whatever their backoff (a person is testing)."""
        with self.transaction():
            return self._db.execute(
                "UPDATE texts SET next_attempt=? WHERE recipient=? AND state='pending' AND next_attempt > ?",
                (now, recipient, now),
            ).rowcount

    def clamp_next_attempt(self, latest: float) -> int:
        """No text waits past `latest` (after the wall clock was set back, backoffs look too long)."""
        late = "FROM texts WHERE state != 'sent' AND next_attempt > ?"
        if self._db.execute(f"SELECT 1 {late} LIMIT 1", (latest,)).fetchone() is None:
            return 0  # the usual case: a read, no write (called every second)
        with self.transaction():
            update = f"UPDATE texts SET next_attempt=? WHERE id IN (SELECT id {late})"
            return self._db.execute(update, (latest, latest)).rowcount

    def can_record_sends(self) -> bool:
        """Whether the waiting texts' sends can still be recorded here: a card remounted read-only
        refuses the write (its texts would wait for ever); a folder made immutable, or another
        user's, still takes it."""
        try:
            with self.transaction():
                self._db.execute("UPDATE texts SET state = state WHERE state != 'sent'")
        except sqlite3.Error:
            return False
        return True

    def pending_count(self, recipient: str | None = None) -> int:
        """Texts not yet accepted by the modem (to `recipient`, or to anyone)."""
        if recipient is None:
            return self._db.execute("SELECT COUNT(*) FROM texts WHERE state != 'sent'").fetchone()[0]
        return self._db.execute(
            "SELECT COUNT(*) FROM texts WHERE state != 'sent' AND recipient=?", (recipient,)
        ).fetchone()[0]

    def rows(self, limit: int = ROWS_LIMIT) -> list[OutboxRow]:
        """The first `limit` texts, in id order."""
        query = f"SELECT {_COLUMNS} FROM texts ORDER BY id LIMIT ?"
        return [_row(r) for r in self._db.execute(query, (limit,))]

    def row(self, row_id: int) -> OutboxRow | None:
        found = self._db.execute(f"SELECT {_COLUMNS} FROM texts WHERE id=?", (row_id,)).fetchone()
        return None if found is None else _row(found)

    def count_between(self, recipient: str, kinds: Iterable[str], since: float, now: float) -> int:
        """Texts of these kinds queued for `recipient` after `since` and up to `now` (sent or not).
        Texts stamped after `now` were queued before the clock was set back: they do not count."""
        kinds = tuple(kinds)
        marks = ",".join("?" * len(kinds))
        return self._db.execute(
            f"SELECT COUNT(*) FROM texts WHERE recipient=? AND kind IN ({marks}) AND created > ? AND created <= ?",
            (recipient, *kinds, since, now),
        ).fetchone()[0]

    def has_unsent(self, recipient: str, kind: str, event_id: int) -> bool:
        """Whether a text of `kind` about event `event_id` to `recipient` waits to be sent."""
        query = "SELECT 1 FROM texts WHERE recipient=? AND state != 'sent' AND kind=? AND event_id=? LIMIT 1"
        return self._db.execute(query, (recipient, kind, event_id)).fetchone() is not None

    def incidents_between(self, since: float, now: float) -> int:
        """Events whose alert was queued, or that were held for a summary, after `since` and up to
        `now` (as `count_between`): one an event, whatever the recipients and texts (its "still
        going" and end texts are not counted). An event is told apart by its id, or without one (the
        event log failed) by the time its texts state; a text with neither (not the aggregator's)
        counts alone."""
        query = """SELECT COUNT(*) FROM (
            SELECT event_id, CASE WHEN event_id IS NULL THEN event_time END,
                CASE WHEN event_id IS NULL AND event_time IS NULL THEN id END
            FROM texts WHERE kind = 'alert' AND created > ? AND created <= ?
            UNION
            SELECT event_id, CASE WHEN event_id IS NULL THEN event_time END, NULL
            FROM held WHERE created > ? AND created <= ?
        )"""
        return self._db.execute(query, (since, now, since, now)).fetchone()[0]

    # --- events held for a summary ------------------------------------------------------------------
    def alerted(self, event_id: int) -> list[str]:
        """The recipients queued an alert for event `event_id` (not those it was held for), in order."""
        query = "SELECT recipient FROM texts WHERE event_id=? AND kind='alert' ORDER BY id"
        return [recipient for (recipient,) in self._db.execute(query, (event_id,))]

    def hold(self, recipient: str, event_id: int | None, event_time: float, now: float) -> int:
        """Record an event that the hourly limit keeps from its own text."""
        with self.transaction():
            cursor = self._db.execute(
                "INSERT INTO held (recipient, event_id, event_time, created) VALUES (?,?,?,?)",
                (recipient, event_id, event_time, now),
            )
        return int(cursor.lastrowid)

    def waiting_held(self) -> dict[str, list[HeldEvent]]:
        """Events not yet reported, per recipient, oldest first."""
        held: dict[str, list[HeldEvent]] = {}
        query = f"SELECT {_HELD_COLUMNS} FROM held WHERE summary_id IS NULL ORDER BY id"
        for r in self._db.execute(query):
            held.setdefault(r[1], []).append(HeldEvent(*r))
        return held

    def has_waiting_held(self, recipient: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM held WHERE recipient=? AND summary_id IS NULL LIMIT 1", (recipient,)
            ).fetchone()
            is not None
        )

    def reported_by(self, summary_id: int) -> list[HeldEvent]:
        """The events a summary text reports."""
        query = f"SELECT {_HELD_COLUMNS} FROM held WHERE summary_id=? ORDER BY id"
        return [HeldEvent(*r) for r in self._db.execute(query, (summary_id,))]

    def release_held(self, recipient: str, held_ids: Iterable[int], summary: str, now: float) -> int:
        """Queue the summary text and link the events it reports to it, in one commit; its id."""
        with self.transaction():
            summary_id = self.enqueue(recipient, summary, "summary", now=now)
            self._db.executemany(
                "UPDATE held SET summary_id=? WHERE id=?", [(summary_id, held_id) for held_id in held_ids]
            )
        return summary_id

    # --- another outbox's texts -------------------------------------------------------------------
    def take_over(self, other: Outbox, sent_since: float) -> list[tuple[int, int]]:
        """Copy `other`'s unsent texts (one caught mid-send becomes a repeat, due now), the texts it
        sent since wall time `sent_since` (for the hourly limit) and its events still held for a
        summary, in one commit; each unsent text's id in `other` and here."""
        rows = other._db.execute(
            f"SELECT id, {_TAKEN_COLUMNS} FROM texts WHERE state != 'sent' OR sent_at >= ? ORDER BY id", (sent_since,)
        ).fetchall()
        held = other._db.execute(
            "SELECT recipient, event_id, event_time, created FROM held WHERE summary_id IS NULL ORDER BY id"
        ).fetchall()
        pairs = []
        with self.transaction():
            for other_id, *text in rows:
                cursor = self._db.execute(
                    f"INSERT INTO texts ({_TAKEN_COLUMNS}) VALUES ({_TAKEN_VALUES})", _as_repeat_if_sending(tuple(text))
                )
                if text[_TAKEN.index("state")] != "sent":
                    pairs.append((other_id, int(cursor.lastrowid)))
            self._db.executemany("INSERT INTO held (recipient, event_id, event_time, created) VALUES (?,?,?,?)", held)
        return pairs

    def sent_among(self, row_ids: Iterable[int]) -> set[int]:
        """Those of `row_ids` that are sent."""
        return self._ids_where("state='sent'", row_ids)

    def maybe_sent_among(self, row_ids: Iterable[int]) -> set[int]:
        """Those of `row_ids` not sent that may have gone out (caught mid-send, or a repeat)."""
        return self._ids_where("state!='sent' AND (state='sending' OR repeat=1)", row_ids)

    def _ids_where(self, condition: str, row_ids: Iterable[int]) -> set[int]:
        ids = list(row_ids)
        query = f"SELECT id FROM texts WHERE {condition} AND id IN ({','.join('?' * len(ids))})"
        return {row[0] for row in self._db.execute(query, ids)} if ids else set()

    def mark_repeat(self, row_ids: Iterable[int]) -> None:
        """Texts that may have gone out from elsewhere: sent again as repeats."""
        with self.transaction():
            self._db.executemany("UPDATE texts SET repeat=1 WHERE id=?", [(row_id,) for row_id in row_ids])

    def mark_taken_over(self, row_ids: Iterable[int], now: float) -> None:
        """Texts the other outbox sends (Outbox.take_over, pipeline.storage.give_back): not from here."""
        with self.transaction():
            self._db.executemany(
                "UPDATE texts SET state='sent', sent_at=?, last_error=? WHERE id=? AND state!='sent'",
                [(now, TAKEN_OVER_NOTE, row_id) for row_id in row_ids],
            )

    # --- retention ----------------------------------------------------------------------------------
    def prune_sent(self, older_than: float) -> int:
        """Retention: delete texts sent before wall time `older_than` (and the events they reported).
        Unsent texts are never pruned."""
        with self.transaction():
            removed = self._db.execute("DELETE FROM texts WHERE state='sent' AND sent_at < ?", (older_than,)).rowcount
            self._db.execute(
                "DELETE FROM held WHERE summary_id IS NOT NULL AND summary_id NOT IN (SELECT id FROM texts)"
            )
        return removed

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            present = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            with self.transaction():
                for name, kind in columns.items():
                    if name not in present:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _as_repeat_if_sending(row: tuple) -> tuple:
    """A text caught mid-send may have gone out: pending again, due now, marked as a repeat."""
    if row[_TAKEN.index("state")] != "sending":
        return row
    values = dict(zip(_TAKEN, row, strict=True)) | {"state": "pending", "repeat": 1, "next_attempt": 0.0}
    return tuple(values[name] for name in _TAKEN)


def _row(r: tuple) -> OutboxRow:
    values = list(r)
    values[10] = bool(values[10])  # repeat
    return OutboxRow(*values)
