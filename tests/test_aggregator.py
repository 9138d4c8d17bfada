"""The aggregator's side effects: an opening event goes to the event log and the outbox at once;
closing completes the record and saves the evidence clip from the ring."""

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile

from alerting.clock import UNSYNCHRONISED_NOTE
from alerting.outbox import Outbox, outbox_path
from inference.aggregator import AUDIO_STALL, Aggregator
from inference.eventlog import EventLog
from inference.model import load_ensemble
from inference.vote import ABSENT_AFTER, Decision
from pipeline.channel import Channel
from pipeline.config import Config, override
from pipeline.layout import AUDIO_SHAPE, Layout
from pipeline.messages import OutboxChanged, Vote
from pipeline.metrics import StatsTable
from pipeline.ring import Ring
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
    audio = Ring.in_memory(RATE * 60, AUDIO_SHAPE, RATE)
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


CLICK_AT = 3.2  # s


def write_click(audio: Ring) -> None:
    """16 s of silence with a one-sample click at CLICK_AT, to find in a clip."""
    sound = np.zeros(RATE * 16, dtype=np.int16)
    sound[int(RATE * CLICK_AT)] = 20000
    audio.write(sound)


def click_in_clip(first_window: int, pre_roll: float) -> int:
    """Where the click is in a clip that starts `pre_roll` s before `first_window`."""
    return round((CLICK_AT - (first_window * HOP / RATE - pre_roll)) * RATE)


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


def test_retention_removes_old_clips_events_and_sent_texts_but_never_pending_ones(aggregator):
    agg, audio, _, data = aggregator
    audio.write(np.zeros(RATE * 16, dtype=np.int16))
    agg.handle(decision(6, True))
    for index in windows_until_closed(6, agg.config):
        agg.handle(decision(index, False))
    agg.write_due_clips()
    outbox = Outbox(outbox_path(data))
    first, second = outbox.rows()
    outbox.mark_sent(first.id, [1], now=0.0)  # one text long sent, the other still pending
    agg.prune(time.time() + (agg.config.storage.retention_days + 1) * 86400)
    assert EventLog(data).events() == []
    assert not list((data / "clips").glob("*.flac"))
    assert [r.id for r in outbox.rows()] == [second.id]


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
    for index in windows_until_closed(5, agg.config):
        now = caught_up + index
        agg.take([Vote(index, m, 0.0, now) for m in (hears, deaf, stalled)], now)
    (event,) = EventLog(data).events()
    assert event.state == "closed" and event.windows == 1


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
