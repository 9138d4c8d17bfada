"""The aggregator's side effects: an opening event goes to the event log and the outbox at once;
closing completes the record and saves the evidence clip from the ring."""

import contextlib
import dataclasses
import shutil
import sqlite3
import time
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile

import inference.aggregator
from alerting.clock import UNSYNCHRONISED_NOTE
from alerting.compose import local_time
from alerting.outbox import Outbox, outbox_path
from cli import _event_line
from inference.aggregator import AUDIO_STALL, LONG_EVENT, UPDATE_INTERVAL, Aggregator
from inference.eventlog import EVENTS, NEAR_MISSES, EventLog
from inference.model import load_ensemble
from inference.vote import ABSENT_AFTER, Decision
from pipeline.channel import Channel
from pipeline.config import CLIP_WRITE_DELAY, Config, override
from pipeline.layout import AUDIO_SHAPE, Layout
from pipeline.messages import OutboxChanged, Vote
from pipeline.metrics import StatsTable
from pipeline.ring import Ring
from pipeline.run import list_events
from pipeline.storage import private_dir, volatile_data_dir
from tests.conftest import own_run_id

RATE, HOP = 16000, 8000
WINDOW = load_ensemble("").window_samples


def windows_until_closed(last_positive: int, config: Config) -> range:
    """Negative windows after the last positive one until the event closes: one starts past its end
    plus the merge gap."""
    end = last_positive * HOP + WINDOW + round(config.detector.merge_gap * RATE)
    return range(last_positive + 1, end // HOP + 2)


RECIPIENTS = ["+447700900123", "+12025550143"]


@contextlib.contextmanager
def built(config: Config) -> Iterator[tuple[Aggregator, Ring, Layout]]:
    """An Aggregator on an in-memory audio ring, with a real stats row and outbox channel."""
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("aggregator",))
    layout = Layout("t", "", stats.segment_name, ("aggregator",), outbox=Channel("outbox"))
    audio = Ring.in_memory(round(config.audio.ring_seconds * RATE), AUDIO_SHAPE, RATE)
    try:
        yield Aggregator(config, load_ensemble(""), audio, stats.slot("aggregator"), layout), audio, layout
    finally:
        stats.close()


@pytest.fixture
def aggregator(tmp_path):
    config = override(
        Config(), {"storage.data_dir": str(tmp_path), "alerts.recipients": RECIPIENTS, "site.name": "Gate"}
    )
    with built(config) as (agg, audio, layout):
        yield agg, audio, layout, tmp_path


def decision(index: int, positive: bool, degraded: bool = False) -> Decision:
    votes = {"wave": 0.9 if positive else 0.1, "mel_fine": 0.8 if positive else 0.2}
    return Decision(index, positive, sum(votes.values()) / 2, votes, degraded, 0.0)


def test_an_event_is_queued_for_every_recipient_the_moment_it_opens(aggregator):
    agg, audio, layout, data = aggregator
    audio.write(np.zeros(RATE * 4, dtype=np.int16))
    agg.handle(decision(0, False))
    agg.handle(decision(1, True, degraded=True))
    outbox = Outbox(outbox_path(data))
    rows = outbox.rows()
    assert [r.recipient for r in rows] == RECIPIENTS
    assert all(r.text.startswith("Gate: possible gunshot at ") and "degraded" in r.text for r in rows)
    assert isinstance(layout.outbox.receive(1.0), OutboxChanged)
    (event,) = EventLog(data).events()
    assert event.state == "open" and event.degraded


def test_the_texts_state_the_time_of_the_shot_not_of_its_window_s_start(aggregator):
    """The first positive window starts 0.9-1.6 s before its shot (measured); the texts say when the
    shot was heard, to the nearest second. The record keeps the window's start (clips, labels)."""
    agg, audio, _, data = aggregator
    sound = np.zeros(RATE * 8, dtype=np.int16)
    shot_at = 6 * HOP / RATE + 1.4  # late in window 6
    sound[round(shot_at * RATE) - 8 : round(shot_at * RATE) + 400] = 12000  # a click, then its tail
    sound[round(shot_at * RATE) - 8 - 40] = 4000  # quieter than half the peak: not the onset
    audio.write(sound)
    agg.handle(decision(6, True))
    (event,) = EventLog(data).events()
    rows = Outbox(outbox_path(data)).rows()
    assert {r.event_time for r in rows} == {rows[0].event_time} and rows[0].event_time == int(rows[0].event_time)
    heard = event.start_time + (shot_at - 6 * HOP / RATE) - 8 / RATE
    assert abs(rows[0].event_time - heard) <= 0.5 + 1e-3
    assert local_time(agg.config, rows[0].event_time) in rows[0].text


@pytest.mark.parametrize("step", [0.0, 3 * 86400.0], ids=["steady clock", "clock stepped"])
@pytest.mark.parametrize("fire_seconds", [LONG_EVENT + 10, LONG_EVENT - 10])
def test_the_end_of_long_gunfire_is_texted_to_those_its_alert_went_to(aggregator, monkeypatch, fire_seconds, step):
    """Two minutes of fire read as one "possible gunshot" (audit): a long event's end is texted too,
    with the times of its first and last shots (not of the last one's tail); a short one's is not.
    The wall clock stepped by NTP during the fire (a Pi without RTC) changes neither: 17 s of it
    read as 4320 min, and a short event got an end text."""
    agg, audio, _, data = aggregator
    sound = np.zeros(RATE * 60, dtype=np.int16)
    first, last = 6 * HOP / RATE + 0.7, 6 * HOP / RATE + 0.7 + fire_seconds
    for shot in np.arange(first, last + 0.01, 2.5):
        at = round(shot * RATE)
        sound[at : at + round(1.2 * RATE)] = 9000  # its tail, above half the peak, with dips below it:
        sound[at + RATE // 2 : at + RATE // 2 + 800] = 0  # (a shot's own, measured on the bundled ones)
        sound[at + RATE : at + RATE + 1600] = 0
        sound[at : at + 200] = 15000
    audio.write(sound)
    last_window = round(last * RATE) // HOP - 1  # the last window the last shot is in, well inside it
    steady = inference.aggregator.wall_time
    for index in range(6, last_window + 1):
        agg.handle(decision(index, True))
        if index == 6 and step:  # NTP, once the alert went
            monkeypatch.setattr(inference.aggregator, "wall_time", lambda t: steady(t) + step)
    for index in windows_until_closed(last_window, agg.config):
        agg.handle(decision(index, False))
    (event,) = EventLog(data).events()
    updates = [r for r in Outbox(outbox_path(data)).rows() if r.kind == "update"]
    if fire_seconds < LONG_EVENT:
        assert updates == []
        return
    assert [r.recipient for r in updates] == RECIPIENTS and {r.event_id for r in updates} == {event.id}
    heard, ended = (event.start_time + at - 6 * HOP / RATE for at in (first, last))
    times = f"heard at {local_time(agg.config, round(heard), '%H:%M:%S')} went on until"
    assert updates[0].text.startswith(f"Gate: the gunfire {times} {local_time(agg.config, round(ended), '%H:%M:%S')}")
    assert f"({fire_seconds:.0f} s)." in updates[0].text


class Gunfire:
    """Audio written to the ring 10 s at a time on a faked capture clock (hours ago, advancing as the
    audio does), each window decided as soon as it is whole: positive when a shot begins in it.
    Shots (a click, its tail below half its peak) come SHOT_EVERY s apart while `firing`. The texts
    queued are marked sent after each chunk (the SMS process with a working modem)."""

    SHOT_EVERY, CHUNK = 2.5, 10

    def __init__(self, agg: Aggregator, audio: Ring) -> None:
        self.agg, self.audio = agg, audio
        self.clock = time.monotonic() - 3 * 3600.0
        self.next_window = 0
        self.onsets: list[int] = []  # rows where shots begin

    def run(self, seconds: float, firing: bool) -> None:
        for _ in range(round(seconds / self.CHUNK)):
            first = self.audio.write_pos
            chunk = np.zeros(self.CHUNK * RATE, dtype=np.int16)
            if firing:
                for at in np.arange(0.7, self.CHUNK, self.SHOT_EVERY) * RATE:
                    chunk[round(at) : round(at) + 200] = 15000
                    chunk[round(at) + 200 : round(at) + RATE // 2] = 3000
                    self.onsets.append(first + round(at))
            self.clock += self.CHUNK
            self.audio.write(chunk, captured_at=self.clock)
            while self.next_window * HOP + WINDOW <= self.audio.write_pos:
                start = self.next_window * HOP
                self.agg.handle(decision(self.next_window, any(start <= o < start + WINDOW for o in self.onsets)))
                self.next_window += 1
            self.agg.write_due_clips()
            with Outbox(outbox_path(self.agg.data_dir)) as outbox:
                while rows := outbox.due(time.time() + 1.0):
                    for row in rows:
                        outbox.mark_sent(row.id, [1], time.time())

    def wall(self, row: int) -> float:
        """The wall time of audio row `row`, as the aggregator reckons it."""
        return round(time.time() - (time.monotonic() - self.audio.time_of(row)))


def texts_of(data, kind: str = "update", recipient: str = RECIPIENTS[0]) -> list[str]:
    return [r.text for r in Outbox(outbox_path(data)).rows() if r.kind == kind and r.recipient == recipient]


def test_gunfire_that_goes_on_is_texted_as_still_going_every_update_interval(aggregator):
    """25 minutes of fire: its alert, "still going" at 10 and 20 min of it (the latest shot heard
    then, by the audio's clock), to every recipient its alert went to; its end at the close."""
    agg, audio, _, data = aggregator
    fire = Gunfire(agg, audio)
    fire.run(20, firing=False)
    fire.run(25 * 60, firing=True)
    (event,) = EventLog(data).events()
    heard = fire.wall(fire.onsets[0])
    updates = texts_of(data)
    assert len(updates) == 2 and texts_of(data, recipient=RECIPIENTS[1]) == updates
    assert {r.event_id for r in Outbox(outbox_path(data)).rows()} == {event.id}
    for n, text in enumerate(updates, start=1):
        # the last shot of the first window that reaches n intervals past the event's first window
        reaching = (event.start_time + n * UPDATE_INTERVAL) - fire.wall(0)
        still = max(o for o in fire.onsets if fire.wall(o) <= fire.wall(0) + reaching)
        expected = (
            f"Gate: the gunfire heard at {local_time(agg.config, heard, '%H:%M:%S')} is still going at "
            f"{local_time(agg.config, fire.wall(still), '%H:%M:%S %Z')} ({10 * n} min so far)."
        )
        assert abs(fire.wall(still) - heard - n * UPDATE_INTERVAL) <= 2 * Gunfire.SHOT_EVERY
        assert text.removesuffix(UNSYNCHRONISED_NOTE) == expected
    fire.run(20, firing=False)
    assert len(texts_of(data)) == 3 and "went on until" in texts_of(data)[-1]  # the end, as before
    assert len(texts_of(data, kind="alert")) == 1


def test_no_still_going_text_before_the_interval_nor_to_a_recipient_the_alert_was_held_for(aggregator):
    """Held for a summary (the hourly limit), a recipient learns of the event there, as of its end."""
    agg, audio, _, data = aggregator
    agg.config = override(agg.config, {"alerts.max_per_hour": 1})
    Outbox(outbox_path(data)).enqueue(RECIPIENTS[1], "Gate: possible gunshot at ...", "alert", now=time.time())
    fire = Gunfire(agg, audio)
    fire.run(20, firing=False)
    fire.run(UPDATE_INTERVAL - 20, firing=True)
    assert texts_of(data) == []
    fire.run(40, firing=True)
    assert len(texts_of(data)) == 1 and "still going" in texts_of(data)[0]
    assert texts_of(data, recipient=RECIPIENTS[1]) == []


def test_an_aggregator_restarted_mid_gunfire_takes_its_event_up_again(aggregator):
    """Killed 9 minutes into the fire and started again: the rest of the fire is the same event (before:
    a new one, with a second alert to every recipient and "still going" texts of its own, 10 minutes
    after that alert); its "still going" texts keep their times, 10 and 20 minutes into the fire (no
    burst of them), and its end is texted."""
    agg, audio, layout, data = aggregator
    fire = Gunfire(agg, audio)
    fire.run(20, firing=False)
    fire.run(9 * 60, firing=True)
    agg.events.close()  # killed: nothing closed, nothing flushed
    fire.agg = Aggregator(agg.config, load_ensemble(""), audio, agg.slot, layout)
    fire.run(12 * 60, firing=True)  # 21 min of fire in all
    (event,) = EventLog(data).events()
    assert event.state == "open" and len(texts_of(data, kind="alert")) == 1
    updates = [t.removesuffix(UNSYNCHRONISED_NOTE) for t in texts_of(data)]
    assert [t.split("(")[-1] for t in updates] == ["10 min so far).", "20 min so far)."]
    fire.run(20, firing=False)
    (event,) = EventLog(data).events()
    assert event.state == "closed" and "went on until" in texts_of(data)[-1]
    assert {r.event_id for r in Outbox(outbox_path(data)).rows()} == {event.id}


CLICK_AT = 3.2  # s


def write_click(audio: Ring) -> None:
    """16 s of silence with a one-sample click at CLICK_AT, to find in a clip."""
    sound = np.zeros(RATE * 16, dtype=np.int16)
    sound[int(RATE * CLICK_AT)] = 20000
    audio.write(sound)


def click_in_clip(first_window: int, pre_roll: float) -> int:
    """Where the click is in a clip that starts `pre_roll` s before `first_window`."""
    return round((CLICK_AT - (first_window * HOP / RATE - pre_roll)) * RATE)


SHOT_WINDOWS = range(4, 7)  # windows that hold write_click's click (its clip starts after the ring's first row)


def restarted(agg: Aggregator, audio: Ring, layout: Layout) -> Aggregator:
    """`agg` killed (nothing closed, nothing flushed) and a new aggregator started in the same run."""
    agg.events.close()
    return Aggregator(agg.config, load_ensemble(""), audio, agg.slot, layout)


def alerts_by_event(data) -> dict[int, list[str]]:
    alerts: dict[int, list[str]] = {}
    for row in Outbox(outbox_path(data)).rows():
        if row.kind == "alert":
            alerts.setdefault(row.event_id, []).append(row.recipient)
    return alerts


def test_an_aggregator_killed_mid_event_takes_it_up_and_texts_its_shot_once(aggregator):
    """Killed (as hung, or a crash) just after a shot's alert, its later windows not yet decided: its
    restart opened a second event with them, and every recipient got a second alert for the same shot
    (measured live, a real detector's aggregator SIGKILLed at the alert: 2 events, 4 alerts). Now the
    restart takes the open event up: one event, its clip whole, one alert each; a later shot is texted."""
    agg, audio, layout, data = aggregator
    write_click(audio)
    agg.handle(decision(SHOT_WINDOWS[0], True))
    agg = restarted(agg, audio, layout)
    for index in SHOT_WINDOWS[1:]:
        agg.handle(decision(index, True))
    closing = windows_until_closed(SHOT_WINDOWS[-1], agg.config)
    for index in closing:
        agg.handle(decision(index, False))
    agg.write_due_clips()
    (event,) = EventLog(data).events()
    assert event.state == "closed" and event.windows == len(SHOT_WINDOWS)
    assert alerts_by_event(data) == {event.id: RECIPIENTS}
    clip, _ = soundfile.read(data / event.clip, dtype="int16")
    assert np.argmax(clip) == click_in_clip(SHOT_WINDOWS[0], agg.config.storage.clip_pre_roll)
    agg.handle(decision(closing[-1] + 1, True))  # the next shot, past the merge gap
    first, second = EventLog(data).events()
    assert alerts_by_event(data) == {first.id: RECIPIENTS, second.id: RECIPIENTS}


def test_a_shot_whose_alert_a_killed_aggregator_had_not_queued_is_texted_once_by_the_next(aggregator, monkeypatch):
    """At least once: the outbox refused the alert (a full disk, a failing card) and the aggregator was
    killed holding it. The next one queues it from the event log, and takes the event up: the rest of
    the shot is not texted again (before: a second event and a second alert each)."""
    agg, audio, layout, data = aggregator
    write_click(audio)
    monkeypatch.setattr(inference.aggregator, "queue_durably", lambda *_: OSError("no space left on device"))
    agg.handle(decision(SHOT_WINDOWS[0], True))
    assert agg.unqueued and not alerts_by_event(data)
    monkeypatch.undo()
    agg = restarted(agg, audio, layout)
    for index in SHOT_WINDOWS[1:]:
        agg.handle(decision(index, True))
    (event,) = EventLog(data).events()
    assert event.state == "open" and alerts_by_event(data) == {event.id: RECIPIENTS}


def test_closing_completes_the_record_and_saves_the_clip_with_pre_and_post_roll(aggregator):
    agg, audio, _, data = aggregator
    write_click(audio)
    agg.handle(decision(6, True))
    agg.handle(decision(7, True))
    for index in windows_until_closed(7, agg.config):
        agg.handle(decision(index, False))
    (event,) = EventLog(data).events()
    assert event.state == "closed" and event.windows == 2
    agg.write_due_clips()
    (event,) = EventLog(data).events()
    clip, rate = soundfile.read(data / event.clip, dtype="int16")
    assert rate == RATE
    pre, post = agg.config.storage.clip_pre_roll, agg.config.storage.clip_post_roll
    assert len(clip) == round((pre + (7 * HOP + WINDOW - 6 * HOP) / RATE + post) * RATE)
    assert np.argmax(clip) == click_in_clip(6, pre)


def test_shots_apart_by_less_than_the_merge_gap_are_one_event_and_one_text(aggregator):
    """Automatic fire, or a shot and its echo: windows that do not overlap but come within
    detector.merge_gap of each other are one event, texted once."""
    agg, audio, _, data = aggregator
    audio.write(np.zeros(RATE * 20, dtype=np.int16))
    gap_windows = round(agg.config.detector.merge_gap * RATE) // HOP
    first, second = 6, 6 + WINDOW // HOP + gap_windows  # starts at the first one's end plus the gap
    for index in range(first, second + 1):
        agg.handle(decision(index, index in (first, second)))
    for index in windows_until_closed(second, agg.config):
        agg.handle(decision(index, False))
    (event,) = EventLog(data).events()
    assert event.state == "closed" and event.windows == 2
    assert len(Outbox(outbox_path(data)).rows()) == len(RECIPIENTS)


@pytest.mark.parametrize("synchronised", [True, False])
def test_an_alert_says_when_its_time_is_unverified(aggregator, monkeypatch, synchronised):
    agg, audio, _, data = aggregator
    monkeypatch.setattr("inference.aggregator.clock_synchronised", lambda: synchronised)
    audio.write(np.zeros(RATE * 4, dtype=np.int16))
    agg.handle(decision(1, True))
    texts = [row.text for row in Outbox(outbox_path(data)).rows()]
    assert texts and all(text.endswith(UNSYNCHRONISED_NOTE) != synchronised for text in texts)


def closed_event_with_its_clip(agg: Aggregator, audio: Ring) -> None:
    """One event (window 6) opened, closed and its clip written: its texts wait in the outbox."""
    audio.write(np.zeros(RATE * 16, dtype=np.int16))
    agg.handle(decision(6, True))
    for index in windows_until_closed(6, agg.config):
        agg.handle(decision(index, False))
    agg.write_due_clips()


def test_retention_removes_old_clips_events_and_sent_texts_but_never_pending_ones(aggregator):
    agg, audio, _, data = aggregator
    closed_event_with_its_clip(agg, audio)
    outbox = Outbox(outbox_path(data))
    first, second = outbox.rows()
    outbox.mark_sent(first.id, [1], now=0.0)  # one text long sent, the other still pending
    agg.prune(time.time() + (agg.config.storage.retention_days + 1) * 86400)
    assert EventLog(data).events() == []
    assert not list((data / "clips").glob("*.flac"))
    assert [r.id for r in outbox.rows()] == [second.id]


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted-after-the-step"])
def test_retention_does_not_count_a_step_ntp_set_the_clock_forward_by(aggregator, monkeypatch, restart):
    """A Pi offline for weeks boots on its saved time; NTP then sets the clock 40 days on: the event
    recorded a moment before, its clip and texts, were deleted at once as 40 days old (clock audit).
    Also when the aggregator (or the whole detector) restarted after the step, before the next
    retention pass: the new one measured the step from its own start, on the stepped clock (clock.json)."""
    agg, audio, _, data = aggregator  # the first start in this boot
    closed_event_with_its_clip(agg, audio)
    outbox = Outbox(outbox_path(data))
    for row in outbox.rows():
        outbox.mark_sent(row.id, [1], now=time.time())
    step = (agg.config.storage.retention_days + 10) * 86400
    stepped = time.time
    monkeypatch.setattr(time, "time", lambda: stepped() + step)
    if restart:
        with built(agg.config) as (restarted, _, _):
            restarted.prune(time.time())
    else:
        agg.prune(time.time())
    assert len(EventLog(data).events()) == 1 and len(list((data / "clips").glob("*.flac"))) == 1
    assert len(outbox.rows()) == len(RECIPIENTS)


def test_retention_also_prunes_the_texts_memory_sent_for_a_card_that_refused_them(aggregator):
    """A full card keeps its place (only its reserve is given up), so the texts it refused went out
    from the in-memory outbox, in RAM: sent ones are pruned there too, pending ones never."""
    agg, _, _, data = aggregator
    volatile = private_dir(volatile_data_dir(data), create=True)
    try:
        with Outbox(outbox_path(volatile)) as outbox:
            sent = outbox.enqueue(RECIPIENTS[0], "sent from memory", "alert", now=0.0)
            pending = outbox.enqueue(RECIPIENTS[1], "still waiting in memory", "alert", now=0.0)
            outbox.mark_sent(sent, [1], now=0.0)
        agg.prune(time.time() + (agg.config.storage.retention_days + 1) * 86400)
        with Outbox(outbox_path(volatile)) as outbox:
            assert [row.id for row in outbox.rows()] == [pending]
    finally:
        shutil.rmtree(volatile, ignore_errors=True)


def test_a_window_holding_silence_for_lost_audio_is_not_a_shot(aggregator):
    """A capture killed and restarted: the lost stretch is silence, so the sound stops dead and
    later comes back at once. The models may take either jump for a shot (the soak saw both), so a
    window holding any of that silence is not decided positive."""
    agg, audio, _, data = aggregator
    audio.write(np.zeros(RATE * 2, dtype=np.int16))
    audio.record_loss(RATE)
    audio.skip(RATE)  # rows 32000..48000 (2.0-3.0 s) stood in by silence
    audio.write(np.zeros(RATE * 8, dtype=np.int16))
    assert audio.losses == [(2 * RATE, 3 * RATE)]
    agg.handle(decision(3, True))  # 1.5-2.5 s: the sound stops dead
    agg.handle(decision(4, False))
    agg.handle(decision(5, True))  # 2.5-3.5 s: it comes back
    assert EventLog(data).events() == []
    agg.handle(decision(6, True))  # 3.0-4.0 s: starts where the silence ends, holds none of it
    assert len(EventLog(data).events()) == 1


def vote(agg: Aggregator, index: int, positive: bool, now: float) -> None:
    """Every model's vote for window `index`, through the vote box, as the live loop does."""
    for model in agg.box.rule.thresholds:
        agg.box.add(index, model, 1.0 if positive else 0.0, now)
    for made in agg.box.decide(now):
        agg.handle(made)


def test_with_the_microphone_away_the_open_event_closes_and_its_clip_is_saved_before_the_gap_overwrites_it(
    aggregator,
):
    """The audio after a long gap starts with a ring of stood-in silence: an event still open when
    the audio stopped must have its clip saved from the ring while it still holds the shot, once
    every window of the audio there is was decided (a late positive one would text again)."""
    agg, audio, _, data = aggregator
    write_click(audio)
    last_window = (audio.write_pos - WINDOW) // HOP
    stalled_at = time.monotonic()
    agg.watch_audio(stalled_at)
    for index in range(last_window):
        vote(agg, index, index >= 6, stalled_at)  # the shot, then a burst of fire to the end
    agg.watch_audio(stalled_at + AUDIO_STALL + 0.1)
    assert EventLog(data).events()[0].state == "open"  # the last window is not decided yet
    vote(agg, last_window, False, stalled_at + AUDIO_STALL + 0.2)
    agg.watch_audio(stalled_at + AUDIO_STALL + 0.3)
    (event,) = EventLog(data).events()
    assert event.state == "closed" and event.clip
    clip, _ = soundfile.read(data / event.clip, dtype="int16")
    assert np.argmax(clip) == click_in_clip(6, agg.config.storage.clip_pre_roll)
    audio.skip(audio.capacity * 2)  # the microphone is back after two rings' time
    agg.handle(decision(last_window + 1, False))
    agg.write_due_clips()
    assert EventLog(data).events()[0].clip == event.clip


def test_audio_that_keeps_coming_slowly_or_undecided_windows_keep_an_event_open_until_the_longest_wait(
    aggregator,
):
    agg, audio, _, data = aggregator
    write_click(audio)
    started = time.monotonic()
    agg.watch_audio(started)
    vote(agg, 6, True, started)  # windows 7 on never decided: a model worker far behind
    for step in range(1, 4):
        audio.write(np.zeros(RATE // 10, dtype=np.int16))  # a trickle, every 4 s
        agg.watch_audio(started + 4.0 * step)
    assert EventLog(data).events()[0].state == "open"
    moved = started + 12.0
    agg.watch_audio(moved + AUDIO_STALL + agg.config.detector.vote_timeout - 0.1)
    assert EventLog(data).events()[0].state == "open"
    agg.watch_audio(moved + AUDIO_STALL + agg.config.detector.vote_timeout + 0.1)
    assert EventLog(data).events()[0].state == "closed"


def test_a_clip_whose_audio_is_gone_is_reported_lost_not_saved_empty(aggregator, caplog):
    agg, audio, _, data = aggregator
    write_click(audio)
    agg.handle(decision(6, True))
    for index in windows_until_closed(6, agg.config):
        agg.handle(decision(index, False))
    audio.skip(audio.capacity * 2)
    agg.write_due_clips()
    (event,) = EventLog(data).events()
    assert event.clip is None and not list((data / "clips").glob("*.flac"))
    assert "is no longer in the ring" in caplog.text


def live(agg: Aggregator, audio: Ring, sound: np.ndarray, shots: range, stalled: range = range(0)) -> None:
    """Feed `sound` to the ring at the pace of a live run (as tests/test_config.py's
    event_clip_seconds): audio.period blocks, each window decided as late as allowed, windows in
    `shots` positive; due clips written after every block but those starting in the `stalled` seconds."""
    config = agg.config
    block = round(config.audio.period * RATE)
    late = (config.detector.vote_timeout + CLIP_WRITE_DELAY) * RATE
    decided = 0
    for first in range(0, len(sound), block):
        audio.write(sound[first : first + block])
        while decided * HOP + WINDOW + late <= audio.write_pos:
            agg.handle(decision(decided, decided in shots))
            decided += 1
        if first // RATE not in stalled:
            agg.write_due_clips()
    agg.shutdown()


@pytest.mark.parametrize("ring_seconds", [12.0, 60.0])
def test_the_clip_of_an_event_longer_than_the_ring_keeps_its_start(tmp_path, ring_seconds):
    """Sustained fire outlasting the ring: the clip was cut once the event closed, and started
    where the ring then did, without the shots that opened the event and sent the text (silently:
    about 50 s of fire at the default 60 s ring). It is saved in pieces while the event lasts."""
    config = override(Config(), {"storage.data_dir": str(tmp_path), "audio.ring_seconds": ring_seconds})
    seconds = ring_seconds + 25
    sound = np.random.default_rng(1).integers(-20000, 20000, round(seconds * RATE), dtype=np.int16)
    shots = range(4, round((ring_seconds + 12) * RATE / HOP))  # windows from 2 s to 13.5 s past the ring
    with built(config) as (agg, audio, _):
        live(agg, audio, sound, shots)
        assert agg.slot.get("errors") == 0
    (event,) = EventLog(tmp_path).events()
    assert event.windows == len(shots)
    clip, _ = soundfile.read(tmp_path / event.clip, dtype="int16")
    pre, post = (round(s * RATE) for s in (config.storage.clip_pre_roll, config.storage.clip_post_roll))
    first, stop = shots[0] * HOP - pre, shots[-1] * HOP + WINDOW + post
    assert len(clip) == stop - first and np.array_equal(clip, sound[first:stop])  # all of it, in order
    assert event.clip_lost is None and not list((tmp_path / "clips").glob("*.part"))


def test_a_clip_cut_short_is_logged_counted_and_recorded_with_silence_for_what_was_lost(tmp_path, caplog):
    """The aggregator held up longer than the ring (while clips are due, nothing saves them): what
    the ring overwrote is not silently left out; silence stands in for it, at its place in the clip."""
    config = override(Config(), {"storage.data_dir": str(tmp_path), "audio.ring_seconds": 12.0})
    sound = np.random.default_rng(2).integers(-20000, 20000, 40 * RATE, dtype=np.int16)
    shots = range(4, 50)  # 2 s to 27 s
    with built(config) as (agg, audio, _):
        live(agg, audio, sound, shots, stalled=range(10, 30))
        assert agg.slot.get("errors") == 1
    (event,) = EventLog(tmp_path).events()
    clip, _ = soundfile.read(tmp_path / event.clip, dtype="int16")
    pre, post = (round(s * RATE) for s in (config.storage.clip_pre_roll, config.storage.clip_post_roll))
    first, stop = shots[0] * HOP - pre, shots[-1] * HOP + WINDOW + post
    assert len(clip) == stop - first
    assert np.array_equal(clip[: pre + WINDOW], sound[first : first + pre + WINDOW])  # saved before the stall
    (differs,) = np.nonzero(clip != sound[first:stop])
    assert not clip[differs].any() and differs[-1] - differs[0] < round(event.clip_lost * RATE)  # the silence
    assert 0 < event.clip_lost < 20
    assert f"clip of events {event.id} cut short: {event.clip_lost:.1f} s" in caplog.text
    (record,) = list_events(config, limit=1)
    assert f"clip clips/event-000001.flac ({event.clip_lost:.1f} s of it lost: silence)" in _event_line(record)


def test_a_clip_being_written_in_pieces_is_filed_whole_or_not_at_all(tmp_path):
    """Its first pieces are in a .part file: a failed piece gives up the clip, and the clip of an
    aggregator that stopped while writing it is deleted at the next start."""
    log = EventLog(tmp_path)
    events = [log.open_event(0.0, 0.9, {}, {}, False) for _ in range(2)]
    piece = np.ones(RATE, dtype=np.int16)
    for event in events:
        assert log.attach_clip(EVENTS, event, piece, RATE, more=True)
    assert not log.attach_clip(EVENTS, events[0], piece, RATE, min_free_bytes=2**62)  # the disk is full
    assert [p.name for p in (tmp_path / "clips").iterdir()] == ["event-000002.flac.part"]
    log.close()
    assert not list((tmp_path / "clips").iterdir()) and EventLog(tmp_path).events()[1].clip is None
    log = EventLog(tmp_path)
    assert log.attach_clip(EVENTS, events[1], piece, RATE, more=True)
    EventLog(tmp_path).remove_unfiled_clips()  # a restarted aggregator's
    log.close()
    assert not list((tmp_path / "clips").iterdir())


def test_a_clip_no_record_points_at_is_deleted_not_kept_for_good(tmp_path):
    """Written, then its record's update refused (the database locked, the disk full) or the
    aggregator killed in between: retention and the disk floor find clips through their records."""
    log = EventLog(tmp_path)
    kept, refused, killed = (log.open_event(0.0, 0.9, {}, {}, False) for _ in range(3))
    piece = np.ones(RATE, dtype=np.int16)
    assert log.attach_clip(EVENTS, kept, piece, RATE)
    log._db.execute("PRAGMA query_only = ON")  # every write refused, as by a locked or full database
    with pytest.raises(sqlite3.Error):
        log.attach_clip(EVENTS, refused, piece, RATE)
    assert not (tmp_path / "clips" / f"event-{refused:06d}.flac").exists()
    log.close()
    soundfile.write(tmp_path / "clips" / f"event-{killed:06d}.flac", piece, RATE)  # killed before its record
    (tmp_path / "clips" / "notes.txt").write_text("not ours to delete")
    (tmp_path / "clips" / "event-000009.flac.part").mkdir()  # cannot be unlinked: a cleanup, not a failure
    EventLog(tmp_path).remove_unfiled_clips()
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == [
        f"event-{kept:06d}.flac",
        "event-000009.flac.part",
        "notes.txt",
    ]


def test_a_clip_whose_room_cannot_be_made_is_given_up_with_its_file_closed(tmp_path, monkeypatch):
    """The database locked by a command, or the disk, refusing the clean-up before a piece: the piece
    writer stayed open, untracked, and its .part file stayed until the next start."""
    log = EventLog(tmp_path)
    event = log.open_event(0.0, 0.9, {}, {}, False)
    piece = np.ones(RATE, dtype=np.int16)
    assert log.attach_clip(EVENTS, event, piece, RATE, more=True)
    (writer, _) = log._writing[EVENTS, event]

    def locked(*_):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(log, "make_room", locked)  # a lock held long enough cannot be timed here
    with pytest.raises(sqlite3.OperationalError):
        log.attach_clip(EVENTS, event, piece, RATE, more=True)
    assert writer.closed and not list((tmp_path / "clips").iterdir()) and not log._writing
    log.close()


def test_a_model_that_stops_voting_is_logged_once_and_its_windows_are_counted(aggregator, caplog):
    """A worker alive but silent (stuck, or too slow for vote_timeout) leaves every window decided
    by the other models: the operator sees it in the log and in the stats, not only in an alert."""
    agg, audio, _layout, _data = aggregator
    audio.write(np.zeros(RATE * 20, dtype=np.int16))
    timeout = agg.config.detector.vote_timeout
    every_model = [m.id for m in load_ensemble("").models]
    silent = every_model[0]

    def window(index: int, models: list[str]) -> None:
        now = index * timeout * 2  # each window decided (or timed out) before the next
        agg.take([Vote(index, m, 0.01, now) for m in models], now)
        agg.take([], now + timeout)
        assert agg.slot.get("cursor") == index + 1  # the first undecided window: the supervisor's drains wait for it

    caplog.set_level("INFO", logger="inference.aggregator")
    for index in range(6):
        window(index, every_model[1:])
    window(6, every_model)
    assert agg.slot.get("processed") == 7
    assert agg.slot.get("partial_votes") == 6
    absent = [r.getMessage() for r in caplog.records if "is absent" in r.getMessage()]
    assert absent == [
        f"model {silent} is absent (no vote for {ABSENT_AFTER} windows in a row): windows are decided by the"
        " other models, degraded, until it votes again"
    ]
    assert f"model {silent} votes again" in caplog.text


def test_a_shot_decided_without_a_stalled_model_is_texted_when_its_late_yes_comes(aggregator, caplog):
    """A worker stalled over a shot (SIGSTOP 6 s, measured live): the shot's windows were decided
    without it, "no", and its catch-up votes that made them "yes" were dropped: no event, no text."""
    agg, audio, _layout, data = aggregator
    audio.write(np.zeros(RATE * 30, dtype=np.int16))
    timeout = agg.config.detector.vote_timeout
    hears, deaf, stalled = (m.id for m in load_ensemble("").models)
    shot = 3
    for index in range(6):  # `stalled` votes on none of them in time
        now = index * timeout * 2
        agg.take([Vote(index, hears, 1.0 if index == shot else 0.0, now), Vote(index, deaf, 0.0, now)], now)
        agg.take([], now + timeout)
    assert not EventLog(data).events()
    caught_up = 6 * timeout * 2
    agg.take([Vote(index, stalled, 1.0 if index == shot else 0.0, caught_up) for index in range(6)], caught_up)
    (event,) = EventLog(data).events()
    assert event.state == "open"
    assert [r.recipient for r in Outbox(outbox_path(data)).rows()] == RECIPIENTS
    assert f"window {shot} is a shot after all" in caplog.text
    assert agg.slot.get("processed") == 6  # each window counted once
    assert EventLog(data).windows(NEAR_MISSES) == []  # kept as a near miss at first: one record of it, not two
    for index in windows_until_closed(5, agg.config):
        now = caught_up + index
        agg.take([Vote(index, m, 0.0, now) for m in (hears, deaf, stalled)], now)
    (event,) = EventLog(data).events()
    assert event.state == "closed" and event.windows == 1


def test_a_window_decided_late_before_the_event_s_start_joins_it_clip_and_all(aggregator):
    agg, audio, _, data = aggregator
    write_click(audio)
    agg.handle(decision(8, True))
    agg.handle(dataclasses.replace(decision(6, True), late=True))  # within the merge gap before it
    for index in windows_until_closed(8, agg.config):
        agg.handle(decision(index, False))
    agg.write_due_clips()
    (event,) = EventLog(data).events()
    assert event.windows == 2 and len(Outbox(outbox_path(data)).rows()) == len(RECIPIENTS)  # texted once
    span = (8 * HOP + WINDOW - 6 * HOP) / RATE
    assert event.end_time - event.start_time == pytest.approx(span, abs=1e-3)  # the record's start moved too
    clip, _ = soundfile.read(data / event.clip, dtype="int16")
    pre, post = agg.config.storage.clip_pre_roll, agg.config.storage.clip_post_roll
    assert len(clip) == round((pre + span + post) * RATE)
    assert np.argmax(clip) == click_in_clip(6, pre)


def test_an_event_whose_alert_an_aggregator_stop_kept_from_the_outbox_is_texted_by_the_next(tmp_path):
    """Stopped (kill -9, a crash) between recording an event and queueing its alert: the next
    aggregator queues it, and the one after does not again. An event left open whose alert was
    queued long ago (its texts since pruned by the retention) is not texted again."""
    config = override(Config(), {"storage.data_dir": str(tmp_path), "alerts.recipients": RECIPIENTS})
    log = EventLog(tmp_path)
    texted_long_ago = log.open_event(1_796_000_000.0, 0.9, {"wave": 0.9}, {}, False)
    log.mark_alert_queued(texted_long_ago)
    never_queued = log.open_event(1_796_000_060.0, 0.8, {"wave": 0.8}, {}, False)
    log.close()
    for _ in range(2):
        with built(config) as (agg, _, _):
            assert agg.unqueued == []
    with Outbox(outbox_path(tmp_path)) as outbox:
        alerts = [(row.event_id, row.recipient) for row in outbox.rows() if row.kind == "alert"]
    assert sorted(alerts) == sorted((never_queued, number) for number in RECIPIENTS)
    assert [e.state for e in EventLog(tmp_path).events()] == ["interrupted", "interrupted"]
