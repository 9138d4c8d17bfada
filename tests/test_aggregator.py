"""The aggregator's side effects: an opening event goes to the event log and the outbox at once;
closing completes the record and saves the evidence clip from the ring."""

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile

from alerting.outbox import Outbox, outbox_path
from inference.aggregator import Aggregator
from inference.eventlog import EventLog
from inference.model import load_ensemble
from inference.vote import Decision
from pipeline.channel import Channel
from pipeline.config import Config, override
from pipeline.layout import AUDIO_SHAPE, Layout
from pipeline.messages import OutboxChanged
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
    assert audio.last_loss == (2 * RATE, 3 * RATE)
    agg.handle(decision(3, True))  # 1.5-2.5 s: the sound stops dead
    agg.handle(decision(4, False))
    agg.handle(decision(5, True))  # 2.5-3.5 s: it comes back
    assert EventLog(data).events() == []
    agg.handle(decision(6, True))  # 3.0-4.0 s: starts where the silence ends, holds none of it
    assert len(EventLog(data).events()) == 1
