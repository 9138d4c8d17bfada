"""The aggregator: votes -> decisions -> events; the text is queued the moment an event opens.

An opening event goes first to the event log and the persistent outbox (so a crash after this
point loses nothing), then the SMS process is woken. Closing completes the record and saves the
evidence clip from the audio ring once its post-roll has been captured (an event outlasting the
ring has its clip saved in pieces while it lasts, so that it keeps the start). A window that a model
called a gunshot but the vote turned down is kept as a near miss, with its clip
(inference/near_miss.py); a few windows a day are kept as background samples
(inference/background_sample.py). Both are there to be labelled. The fused score of each window
that every model voted on and that reaches 0.5 is logged, without audio, for choosing a site's own
threshold (inference/score_log.py).

A full or failing disk must not cost an alert: a failed event-log write is logged and counted (the
text goes out without an event id); a failed outbox write gives up the outbox reserve and tries
again, then queues the alert in the in-memory outbox (pipeline/storage.py); an alert that still
cannot be queued is kept in memory and tried again after 1, 2, 4 ... QUEUE_RETRY_MAX s (at once
when another is added).

An aggregator restarted in the middle of an event (killed as hung, crashed) takes it up again from
this run's stats row, where each decision leaves the open event: the rest of its shots join it and
are not texted a second time (before, they opened a new event, and every recipient got a second alert).
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as StopEvent
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from alerting.clock import ForwardStep, clock_synchronised, wall_offset
from alerting.compose import (
    EventAlert,
    EventEnd,
    EventOngoing,
    queue_event_alert,
    queue_event_end,
    queue_event_ongoing,
)
from alerting.outbox import Outbox, outbox_path
from alerting.reserve import DiskReserve
from inference.background_sample import BackgroundSampler
from inference.eventlog import CLIP_PREFIX, EVENTS, MB, NEAR_MISSES, SAMPLES, SECONDS_PER_DAY, EventLog, EventRecord
from inference.events import Event, EventTracker
from inference.frontend import hop_samples
from inference.model import Ensemble, load_ensemble
from inference.near_miss import NearMissPicker
from inference.score_log import ScoreLog, model_set
from inference.vote import ABSENT_AFTER, DECIDED_KEPT, Decision, VoteBox, votes_text
from pipeline.config import Config
from pipeline.layout import AUDIO_SHAPE, Layout
from pipeline.messages import OutboxChanged, Vote
from pipeline.metrics import LatencyTracker, StatsSlot, StatsTable
from pipeline.process import process_setup
from pipeline.ring import Lapped, NotWritten, Ring
from pipeline.storage import private_dir, queue_durably, volatile_data_dir

PRUNE_INTERVAL = 3600.0  # s between retention passes
# s without new audio (the microphone is away): the open event is closed and every pending clip is
# saved from what the ring holds, before the silence standing in for the gap overwrites it.
AUDIO_STALL = 5.0
IDLE_WAIT = 1.0  # s: longest wait for a vote (heartbeat, stop event and due clips are checked as often)
ONSET_LEVEL = 0.5  # a loud sound: frames at half its window's peak (-6 dB) or more
ONSET_FRAME = 0.01  # s: the frames of that envelope (a shot's waveform swings through zero within one)
SOUND_GAP = 0.25  # s below that level that part two loud sounds (a shot's own dips are shorter)
LONG_EVENT = 30.0  # s of gunfire from which an event's end is texted too (its alert told only its start)
# s of gunfire between "still going" texts, from its alert: soon enough that nobody goes near an
# incident half an hour on believing it over, few enough (6 an hour per event, outside the hourly
# limit, on top of up to max_per_hour alerts) not to drown the alerts of other incidents or the credit.
UPDATE_INTERVAL = 600.0
# s between tries to queue texts that neither outbox took (a full card, and no room in memory either),
# doubling from the first: each try logs why, and every loop logged 8 lines a second (log audit)
QUEUE_RETRY_FIRST = 1.0
QUEUE_RETRY_MAX = 60.0
# The stats row's fields (pipeline/metrics.py) that keep the open event for a restarted aggregator,
# besides "event", its record id
OPEN_EVENT = ("event_start", "event_end", "event_update", "event_heard_at", "event_clock")

log = logging.getLogger(__name__)
T = TypeVar("T")


def wall_time(monotonic_time: float) -> float:
    return time.time() - (time.monotonic() - monotonic_time)


@dataclass
class _ClipDue:
    table: str  # EVENTS, NEAR_MISSES or SAMPLES
    record_id: int
    first: int  # audio rows of the clip not saved yet
    stop: int  # one past its last row; while its event is open, as far as known (_close sets it)
    event: Event | None = None  # its event while open: the clip reaches at least its end so far
    saved: bool = False  # its first pieces are saved (a long event's clip)
    lost: int = 0  # rows of it lost before they were saved


class Aggregator:
    """Decisions and their side effects, without the process loop (tests drive it directly)."""

    def __init__(self, config: Config, ensemble: Ensemble, audio: Ring, slot: StatsSlot, layout: Layout) -> None:
        self.config = config
        self.audio = audio
        self.slot = slot
        self.layout = layout
        self.rate = ensemble.sample_rate
        self.versions = {m.id: m.version for m in ensemble.models}
        rule = ensemble.rule(config.detector.votes_required, config.detector.fused_threshold)
        self.box = VoteBox(rule, config.detector.vote_timeout)
        hop = hop_samples(config, ensemble)
        merge_gap = round(config.detector.merge_gap * self.rate)
        self.tracker = EventTracker(ensemble.window_samples, hop, merge_gap)
        self.near_misses = NearMissPicker(
            self.box.rule, ensemble.window_samples, hop, merge_gap, self.rate, config.storage.near_misses_per_hour
        )
        self.samples = BackgroundSampler(hop, self.rate, config.storage.background_samples_per_day)
        self.score_log = ScoreLog(len(ensemble.models), hop / self.rate, time.monotonic())
        self.model_set = model_set(ensemble)
        data_dir = Path(config.storage.data_dir)
        self.events = _open_event_log(data_dir, taken_up=int(slot.get("event")))
        self.keep_clips = config.storage.clips and self.events.data_dir == data_dir  # none in memory
        self.data_dir = data_dir
        self.clips: list[_ClipDue] = []
        self.kept: dict[int, tuple[str, int]] = {}  # window -> (table, record id) of recent near misses and samples
        self.last_prune = 0.0
        self.clock_step = ForwardStep(data_dir)  # retention does not count a step NTP set the clock forward by
        self.window = ensemble.window_samples
        self.hop = hop
        self.latency = LatencyTracker(slot)
        self.unqueued: list[EventAlert | EventEnd | EventOngoing] = []
        self.queue_retry_at = 0.0  # monotonic: when to try the unqueued texts again
        self.queue_retry_wait = QUEUE_RETRY_FIRST
        self.queue_tried = 0  # texts unqueued at the last failed try: another one added is tried at once
        self.reserve = DiskReserve(data_dir)
        self.min_free = round(config.storage.min_free_mb * MB)
        self.audio_pos, self.audio_moved = audio.write_pos, time.monotonic()
        self.present = set(self.box.present())
        self._take_up_open_event()
        if lost := self.events.alerts_not_queued():
            self.unqueued = [_recovered_alert(event) for event in lost]
            self.queue_alerts()

    def take(self, votes: list[Vote], now: float) -> None:
        """Votes in, due decisions handled (timed in the stats row as this process's items)."""
        for message in votes:
            self.box.add(message.index, message.model_id, message.probability, now)
            self.log_vote(message)
        decisions = self.box.decide(now)
        if decisions:
            since = self.slot.busy()
            for decision in decisions:
                self.handle(decision)
            self.slot.done(since, items=sum(not d.late for d in decisions))  # a late one was counted before
            self.slot.set("cursor", self.box.next_index)  # every window before it decided (the supervisor's drains)
        self._note_presence()

    def _note_presence(self) -> None:
        """A model that stops voting is logged once, and once when it votes again: while it is
        away every window is decided without it (counted in the stats as `partial_votes`)."""
        present = set(self.box.present())
        for model_id in sorted(self.present - present):
            log.warning(
                "model %s is absent (no vote for %d windows in a row): windows are decided by the other"
                " models, degraded, until it votes again",
                model_id,
                ABSENT_AFTER,
            )
        for model_id in sorted(present - self.present):
            log.info("model %s votes again", model_id)
        self.present = present

    def handle(self, decision: Decision) -> None:
        if decision.late:
            self._handle_late(decision)
        else:
            self._handle_in_order(decision)
        self._remember_open_event()

    def _handle_in_order(self, decision: Decision) -> None:
        window_end = self.audio.time_of(decision.index * self.hop + self.window)
        self.latency.add((time.monotonic() - window_end) * 1000.0)
        lost_audio = self._holds_lost_audio(decision.index)
        if decision.positive and lost_audio:
            log.warning("window %d holds silence standing in for lost audio: not taken as a shot", decision.index)
            decision = dataclasses.replace(decision, positive=False)
        if decision.degraded:
            self.slot.add("partial_votes")
        update = self.tracker.update(decision)
        if update.closed is not None:
            self._close(update.closed)
        if update.opened is not None:
            self._open(update.opened)
        elif decision.positive and self.tracker.current is not None:
            self._still_going(self.tracker.current, decision.index)
        in_event = self.tracker.current is not None
        if not lost_audio and self.near_misses.pick(decision, in_event):
            self._keep_window(NEAR_MISSES, decision)
        elif self.samples.pick(decision, kept_or_lost=in_event or lost_audio):
            self._keep_window(SAMPLES, decision)

    def _handle_late(self, decision: Decision) -> None:
        """A window decided "no" that a late model's votes made "yes" (weighed for near misses and
        samples, and counted, when it was first decided)."""
        if self._holds_lost_audio(decision.index):
            return
        log.warning(
            "window %d is a shot after all: a late model's votes make it %s", decision.index, votes_text(decision.votes)
        )
        self._forget_kept(decision.index)
        update = self.tracker.update(decision)
        if update.opened is not None:
            self._open(update.opened)
        if update.late is not None:
            self._open(update.late)
            self._close(update.late)

    def _remember_open_event(self) -> None:
        """The open event whose alert went, in this run's stats row, for a restarted aggregator to take
        up (_take_up_open_event). Its id is cleared first and set last: a kill in between leaves no
        event to take up, which costs a second alert for its shots, never a lost one."""
        event = self.tracker.current
        self.slot.set("event", 0)
        if event is None or event.record_id is None or event.heard_at is None or event.next_update is None:
            return  # none, or its alert went without an event id: nothing to tie the rest of it to
        for name, value in zip(
            OPEN_EVENT, (event.start, event.end, event.next_update, event.heard_at, event.clock_offset), strict=True
        ):
            self.slot.set(name, value)
        self.slot.set("event", event.record_id)

    def _take_up_open_event(self) -> None:
        """The event the last aggregator of this run left open goes on: a positive window within the
        merge gap of its end joins it as it would have before the restart, and its "still going" and
        end texts keep their times. Its record's confidence and window count go on from those written at
        its alert: windows the stopped aggregator joined to it after that are not counted. A new run's
        stats row holds no event: audio rows of another ring mean nothing here."""
        record_id = int(self.slot.get("event"))
        record = self._record("open event", self.events.open_record, record_id) if record_id else None
        if record is None:
            return
        start, end, update, heard_at, clock_offset = (self.slot.get(name) for name in OPEN_EVENT)
        event = Event(
            start=int(start),
            end=int(end),
            first_window=int(start) // self.hop,
            confidence=record.confidence,
            votes=record.votes,
            degraded=record.degraded,
            windows=record.windows,
            heard_at=heard_at,
            clock_offset=clock_offset,
            next_update=int(update),
            record_id=record_id,
        )
        self.tracker.current = event
        log.warning("event %d was open when the aggregator last stopped: taken up again, not texted again", record_id)
        self._clip_due(EVENTS, record_id, event.start, event.end, event)

    def _open(self, event: Event) -> None:
        self._forget_overlapping(event.start)
        start = wall_time(self.audio.time_of(event.start))
        event.record_id = self._record(
            "event", self.events.open_event, start, event.confidence, event.votes, self.versions, event.degraded
        )
        event.clock_offset = wall_offset()
        event.heard_at = self._stated_time(event, self._loud_row(event.start, event.start + self.window))
        event.next_update = event.start + round(UPDATE_INTERVAL * self.rate)
        alert = EventAlert(event.record_id, event.heard_at, event.confidence, event.degraded, clock_synchronised())
        self.unqueued.append(alert)
        self.queue_alerts()
        log.warning(
            "GUNSHOT event %s: confidence %.2f, votes %s%s%s",
            event.record_id,
            event.confidence,
            votes_text(event.votes),
            " (degraded)" if event.degraded else "",
            " (heard late)" if event.late else "",
        )
        if event.record_id is not None:
            self._clip_due(EVENTS, event.record_id, event.start, event.end, event)  # in pieces if it outlasts the ring

    def _still_going(self, event: Event, index: int) -> None:
        """A positive window that reaches UPDATE_INTERVAL of audio past the event's first one (or past
        the window of its last "still going" text): text that the gunfire goes on, at the last loud
        sound in that window, to those its alert went to. Counted in audio rows, as its times are: a
        wall clock set by NTP meanwhile, or an aggregator behind on its votes, does not bunch them up
        (at most one per UPDATE_INTERVAL of audio), nor does a restarted aggregator, which takes the
        open event up with the row its next text waits for (_take_up_open_event)."""
        start = index * self.hop
        if event.record_id is None or event.heard_at is None or event.next_update is None:
            return  # its alert went without an event id (the event log failed): nothing to tie a text to
        if start + self.window < event.next_update:
            return
        event.next_update = start + self.window + round(UPDATE_INTERVAL * self.rate)
        still = self._stated_time(event, self._loud_row(start, start + self.window, last=True))
        self.unqueued.append(EventOngoing(event.record_id, event.heard_at, still, clock_synchronised()))
        self.queue_alerts()

    def _loud_row(self, start: int, stop: int, last: bool = False) -> int:
        """The row a text states the time of: where the first (or `last`) loud sound in rows
        [start, stop) began. An event's first window starts 0.9-1.6 s before the shot that made it
        positive (measured over 20 positions), and a time cut to the second could then show the
        minute before."""
        try:
            samples = self.audio.read(start, stop - start)
        except (Lapped, NotWritten):  # not held any more (an event heard late): the edge
            return stop if last else start
        frame = round(ONSET_FRAME * self.rate)
        envelope = np.abs(samples[: len(samples) // frame * frame].astype(np.int32)).reshape(-1, frame).max(axis=1)
        loud = np.flatnonzero(envelope >= ONSET_LEVEL * envelope.max())
        onsets = loud[np.diff(loud, prepend=-len(envelope)) > SOUND_GAP / ONSET_FRAME]  # where each sound begins
        return start + frame * int(onsets[-1] if last else onsets[0])

    def _stated_time(self, event: Event, row: int) -> float:
        """When `row` was heard, to the second, on the wall clock as it read at the event's alert:
        its texts' times and durations stay true if NTP steps the clock during the gunfire (17 s of
        it read as 4320 min)."""
        return round(self.audio.time_of(row) + event.clock_offset)

    def _keep_window(self, table: str, decision: Decision) -> None:
        """A near miss or background sample: its record, and its clip once the post-roll is in."""
        start = decision.index * self.hop
        what = CLIP_PREFIX[table]
        record_id = self._record(
            what,
            self.events.add_window,
            table,
            wall_time(self.audio.time_of(start)),
            decision.confidence,
            decision.votes,
            self.versions,
        )
        if record_id is None:
            return
        log.info("%s %d kept for labelling: %s", what, record_id, votes_text(decision.votes))
        self._clip_due(table, record_id, start, start + self.window)
        self.kept[decision.index] = (table, record_id)
        if len(self.kept) > DECIDED_KEPT:
            del self.kept[next(iter(self.kept))]  # the oldest: no late vote comes for it any more

    def _forget_overlapping(self, event_start: int) -> None:
        """Near misses and samples kept from windows that overlap an event's first one: their audio is
        in the event's clip (measured by an audit: 143 of 146 near misses were the window before an
        event's onset, which spent the hourly budget on shots already heard)."""
        overlapping = range(event_start - self.window + 1, event_start + self.window)  # window starts
        for index in [i for i in self.kept if i * self.hop in overlapping]:
            if self.kept[index][0] == NEAR_MISSES:
                self.near_misses.forget(index * self.hop)
            self._forget_kept(index)

    def _forget_kept(self, index: int) -> None:
        """A window kept as a near miss or sample that late votes made an event, or that overlaps
        one: its record and clip go."""
        if (kept := self.kept.pop(index, None)) is None:
            return
        table, record_id = kept
        self.clips = [c for c in self.clips if (c.table, c.record_id) != kept]
        self._record(CLIP_PREFIX[table], self.events.remove_window, table, record_id)

    def _clip_due(self, table: str, record_id: int, start: int, end: int, event: Event | None = None) -> None:
        """Save audio from pre-roll before `start` to post-roll after `end` once it is captured;
        with an open `event`, after its end once it has closed (_close)."""
        if self.keep_clips:
            self.clips.append(_ClipDue(table, record_id, max(0, start - self.pre), end + self.post, event))

    @property
    def pre(self) -> int:
        """storage.clip_pre_roll in audio rows."""
        return round(self.config.storage.clip_pre_roll * self.rate)

    @property
    def post(self) -> int:
        """storage.clip_post_roll in audio rows."""
        return round(self.config.storage.clip_post_roll * self.rate)

    def _holds_lost_audio(self, index: int) -> bool:
        """Silence stood in for lost audio (an overrun, a device outage, a capture restart) inside
        this window: the jump into it or back out of it is a sound no microphone heard."""
        start = index * self.hop
        return self.audio.holds_loss(start, start + self.window)

    def queue_alerts(self, now: float | None = None) -> None:
        """Queue the alerts (and the "still going" and end texts of long events) not yet in the outbox
        (the usual case: the one just decided); after a failed try, again when it is due (`now`:
        monotonic) or another text was added."""
        now = time.monotonic() if now is None else now
        if not self.unqueued or (now < self.queue_retry_at and len(self.unqueued) <= self.queue_tried):
            return
        if (exc := queue_durably(self.unqueued, self._queue_alert, self.data_dir)) is None:
            self.queue_retry_wait, self.queue_tried = QUEUE_RETRY_FIRST, 0
            return
        log.critical(
            "%d text(s) of events NOT queued yet (%s): trying again in %.0f s",
            len(self.unqueued),
            exc,
            self.queue_retry_wait,
        )
        self.slot.add("errors")
        self.queue_retry_at, self.queue_tried = now + self.queue_retry_wait, len(self.unqueued)
        self.queue_retry_wait = min(2 * self.queue_retry_wait, QUEUE_RETRY_MAX)

    def _queue_alert(self, outbox: Outbox, alert: EventAlert | EventEnd | EventOngoing) -> None:
        if isinstance(alert, EventEnd):
            queue_event_end(outbox, self.config, alert, now=time.time())
        elif isinstance(alert, EventOngoing):
            queue_event_ongoing(outbox, self.config, alert, now=time.time())
        else:
            queue_event_alert(outbox, self.config, alert, now=time.time())
            self._record("alert queued", self.events.mark_alert_queued, alert.event_id)  # else sent again at restart
        self.layout.outbox.send(OutboxChanged())

    def _record(self, what: str, write: Callable[..., T], *args: Any) -> T | None:
        """An event-log write that a full or broken disk may refuse: logged and counted, not fatal."""
        try:
            return write(*args)
        except (sqlite3.Error, OSError) as exc:
            log.error("%s record not written to the event log: %s", what, exc)
            self.slot.add("errors")
            return None

    def _close(self, event: Event) -> None:
        if event.record_id is None:
            return  # its opening was not recorded (disk full): nothing to complete, no clip to file
        span = (wall_time(self.audio.time_of(event.start)), wall_time(self.audio.time_of(event.end)))
        self._record(
            "event end",
            self.events.close_event,
            event.record_id,
            span,
            event.confidence,
            event.votes,
            event.degraded,
            event.windows,
        )
        for clip in self.clips:
            if (clip.table, clip.record_id) == (EVENTS, event.record_id):
                clip.stop, clip.event = event.end + self.post, None
                if not clip.saved:  # a window decided late may have joined before the event's start
                    clip.first = min(clip.first, max(0, event.start - self.pre))
        if event.heard_at is not None:
            # the last positive window may start after the last shot (its tail made it positive)
            last_sound = self._loud_row(max(event.start, event.end - 2 * self.window), event.end, last=True)
            ended = self._stated_time(event, last_sound)
            if ended - event.heard_at >= LONG_EVENT:
                self.unqueued.append(EventEnd(event.record_id, event.heard_at, ended, clock_synchronised()))
                self.queue_alerts()

    def watch_audio(self, now: float) -> None:
        """No new audio for AUDIO_STALL s: close the open event and save the pending clips now, once
        every window of the audio there is was decided (a late positive one would open a new event
        and text again), or after the longest a decision may take on top."""
        if self.audio.write_pos != self.audio_pos:
            self.audio_pos, self.audio_moved = self.audio.write_pos, now
            return
        stalled = now - self.audio_moved
        if stalled < AUDIO_STALL or not (self.clips or self.tracker.current):
            return
        if not self._all_decided() and stalled < AUDIO_STALL + self.config.detector.vote_timeout:
            return
        log.warning(
            "no audio for %.0f s: closing the open event, saving its clips with the audio there is",
            now - self.audio_moved,
        )
        if (event := self.tracker.finish()) is not None:
            self._close(event)
            self._remember_open_event()
        self.write_due_clips(final=True)

    def _all_decided(self) -> bool:
        """Every complete window of the audio in the ring decided, none waiting for votes."""
        decided_up_to = self.box.next_index or 0
        return self.box.next_deadline() is None and decided_up_to * self.hop + self.window > self.audio.write_pos

    def write_due_clips(self, final: bool = False) -> None:
        """Clips whose post-roll has been captured; with `final` (shutdown, no audio), all, cut at
        what is there. A clip not yet due whose unsaved audio is half a ring old (a long event's)
        has what is known of it saved now, as a piece of its file, before the ring overwrites it."""
        for clip in list(self.clips):
            write_pos = self.audio.write_pos
            if clip.event is None and (final or write_pos >= clip.stop):
                self.clips.remove(clip)
                self._save(clip, min(clip.stop, write_pos), more=False)
            elif clip.first <= write_pos - self.audio.capacity // 2:
                known = min(write_pos, clip.stop if clip.event is None else clip.event.end + self.post)
                if known > clip.first and not self._save(clip, known, more=True):
                    self.clips.remove(clip)

    def _save(self, clip: _ClipDue, stop: int, more: bool) -> bool:
        """Rows up to `stop` of the clip to its file (with `more`, as a piece: the rest comes later).
        Rows the ring no longer holds are logged and counted, silence stands in for them and the
        record says for how long; a clip none of whose audio is left is lost (logged, counted)."""
        held = min(max(clip.first, self.audio.oldest()), stop)
        try:
            if held == stop and not clip.saved:
                raise Lapped(f"its audio, rows {clip.first}-{stop}, is no longer in the ring")
            samples = self.audio.read(held, stop - held)
        except (Lapped, NotWritten) as exc:
            if not clip.saved:
                log.error("clip of %s %d lost: %s", clip.table, clip.record_id, exc)
                self.slot.add("errors")
                return False
            held, samples = stop, np.zeros(0, self.audio.shape.dtype)  # overwritten while read
        if held > clip.first:
            log.warning(
                "clip of %s %d cut short: %.1f s of its audio were overwritten before they were saved"
                " (silence stands in for them)",
                clip.table,
                clip.record_id,
                (held - clip.first) / self.rate,
            )
            self.slot.add("errors")
            clip.lost += held - clip.first
            samples = np.concatenate((np.zeros(held - clip.first, samples.dtype), samples))
        clip.first, clip.saved = stop, True
        args = (clip.table, clip.record_id, samples, self.rate, self.min_free, more, clip.lost / self.rate)
        if self._record("clip", self.events.attach_clip, *args):
            return True
        self.slot.add("errors")
        return False

    def log_vote(self, vote: Vote) -> None:
        """Every vote goes to the score log, whether or not its window is decided already."""
        votes = self.score_log.add_vote(vote.index, vote.model_id, vote.probability)
        if votes is not None and not self._holds_lost_audio(vote.index):
            self.score_log.add(wall_time(self.audio.time_of(vote.index * self.hop)), votes)

    def write_scores(self, now: float, final: bool = False) -> None:
        """The score log's windows and listening time, once a minute (or at shutdown)."""
        if (taken := self.score_log.take(now, final)) is not None:
            self._record("window scores", self.events.add_scores, *taken, self.model_set)

    def prune(self, now: float) -> None:
        """Retention: clips, closed events, near misses, samples, window scores and sent texts older
        than storage.retention_days (labelled ones are kept). Their age does not count a step NTP set
        the clock forward by since the first start in this boot (alerting.clock.ForwardStep, also
        across a restart): 40 days of it deleted an event recorded a second before it, with its
        clip and texts."""
        if now - self.last_prune < PRUNE_INTERVAL:
            return
        self.last_prune = now
        self._record("outbox reserve", self.reserve.ensure)
        now -= self.clock_step.seconds()
        days = self.config.storage.retention_days
        removed = self._record("retention", self.events.prune, days, now)
        texts = self._record("retention", self._prune_sent, now - days * SECONDS_PER_DAY)
        if removed or texts:
            log.info("retention: removed %d records with their clips, %d sent texts", removed, texts)

    def shutdown(self) -> None:
        """Decide what is pending and close the open event, so its record is complete."""
        for decision in self.box.flush():
            self.handle(decision)
        if (event := self.tracker.finish()) is not None:
            self._close(event)
            self._remember_open_event()
        self.write_due_clips(final=True)
        self.write_scores(time.monotonic(), final=True)
        self.queue_alerts()
        for alert in self.unqueued:
            log.critical("alert for event %s LOST: the outbox could not be written", alert.event_id)
        self.events.close()

    def _prune_sent(self, older_than: float) -> int:
        """In the data folder's outbox and in the in-memory one that took the texts the card refused
        (a full disk keeps the card: what memory sent would otherwise stay in RAM until a reboot)."""
        removed = 0
        for folder in (self.data_dir, private_dir(volatile_data_dir(self.data_dir))):
            if folder == self.data_dir or outbox_path(folder).exists():
                with Outbox(outbox_path(folder)) as outbox:
                    removed += outbox.prune_sent(older_than)
        return removed


def _open_event_log(data_dir: Path, taken_up: int) -> EventLog:
    """The data folder's event log; in memory (pipeline/storage.py) when a failed card cannot open
    it: restarted on such a card, the aggregator must still decide and text, not crash again. Events
    left open are marked interrupted, but the one `taken_up` (Aggregator._take_up_open_event)."""
    try:
        events = EventLog(data_dir)
        events.remove_unfiled_clips()
        if interrupted := events.mark_interrupted(but=taken_up):
            log.warning("%d events were open when the aggregator last stopped: marked interrupted", interrupted)
    except (sqlite3.Error, OSError) as exc:
        memory = private_dir(volatile_data_dir(data_dir), create=True)
        log.critical("the event log in %s cannot be opened (%s): events are kept in memory (%s)", data_dir, exc, memory)
        events = EventLog(memory)
    return events


def _recovered_alert(event: EventRecord) -> EventAlert:
    log.critical("the alert for event %d had not reached the outbox when the aggregator stopped: queued now", event.id)
    return EventAlert(event.id, event.start_time, event.confidence, event.degraded, clock_synchronised())


def run_aggregator(config: Config, layout: Layout, stop: StopEvent) -> int:
    process_setup("aggregator", supervisor_pid=layout.supervisor_pid)
    ensemble = load_ensemble(config.detector.models_dir)
    audio = Ring.attach(layout.audio_ring, AUDIO_SHAPE)
    slot = StatsTable.attach(layout.stats, layout.process_names).slot("aggregator")
    aggregator = Aggregator(config, ensemble, audio, slot, layout)
    while not stop.is_set():
        slot.beat()
        deadline = aggregator.box.next_deadline()
        wait = IDLE_WAIT if deadline is None else min(IDLE_WAIT, max(0.0, deadline - time.monotonic()))
        vote = layout.votes.receive(wait)
        now = time.monotonic()
        aggregator.take([vote, *layout.votes.drain()] if vote is not None else [], now)
        slot.set("queue_hwm", layout.votes.high_water)
        aggregator.queue_alerts()
        aggregator.watch_audio(now)
        aggregator.write_due_clips()
        aggregator.write_scores(time.monotonic())
        aggregator.prune(time.time())
    aggregator.shutdown()
    return 0
