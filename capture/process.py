"""The capture process: microphone (or replayed file) -> 16 kHz int16 -> the shared audio ring.

It never waits for a consumer. Lost audio (an overrun) is counted in the ring header and replaced
by silence so that ring positions stay true to time; a failing or vanished device is closed and
reopened with exponential backoff, with one log line per change of state.
"""

from __future__ import annotations

import logging
import time
from multiprocessing.synchronize import Event as StopEvent
from pathlib import Path

import numpy as np

from capture.alsa_source import AlsaSource, DeviceError
from capture.file_source import FileSource
from capture.pcm import INT16_SCALE
from capture.resample import Resampler
from pipeline.config import Config
from pipeline.layout import AUDIO_SHAPE, Layout
from pipeline.metrics import StatsSlot, StatsTable
from pipeline.process import process_setup
from pipeline.ring import Ring

MODEL_RATE = 16000
CAPTURE_NICE = -5  # capture first when the CPU is short (needs privileges; best effort)
FIRST_BACKOFF = 1.0
LOSS_LOG_EVERY = 100
STOP_CHECK = 0.5  # longest sleep between looks at the stop event

log = logging.getLogger(__name__)


class RingWriter:
    """Resamples to the model rate and appends to the ring, counting lost audio."""

    def __init__(self, ring: Ring, slot: StatsSlot, source_rate: int, silence_dbfs: float) -> None:
        self.ring, self.slot = ring, slot
        self.resampler = Resampler(source_rate, MODEL_RATE)
        self.source_rate = source_rate
        self.losses = 0
        # Mean square of int16 samples at the silence level: compared without a log or a sqrt.
        self.silence_power = (10 ** (silence_dbfs / 20) * INT16_SCALE) ** 2

    def write(self, samples: np.ndarray, lost_frames: int = 0) -> None:
        now = time.monotonic()
        if lost_frames:
            lost = round(lost_frames * MODEL_RATE / self.source_rate)
            self.ring.record_loss(lost)
            self.ring.skip(lost)
            self.losses += 1
            if self.losses == 1 or self.losses % LOSS_LOG_EVERY == 0:
                log.warning("audio overrun: %d samples lost (%d overruns so far)", lost, self.losses)
        out = self.resampler.process(samples)
        if out.shape[0]:
            self.ring.write(out, captured_at=now)
            if np.mean(np.square(out, dtype=np.float32)) > self.silence_power:
                self.slot.set("last_sound", now)


def _wait(stop: StopEvent, seconds: float, slot: StatsSlot) -> None:
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        slot.beat()
        stop.wait(min(STOP_CHECK, max(0.0, deadline - time.monotonic())))


def run_capture(config: Config, layout: Layout, stop: StopEvent) -> int:
    process_setup("capture", nice=CAPTURE_NICE, supervisor_pid=layout.supervisor_pid)
    ring = Ring.attach(layout.audio_ring, AUDIO_SHAPE)
    slot = StatsTable.attach(layout.stats, layout.process_names).slot("capture")
    audio, silence = config.audio, config.health.silence_dbfs
    if audio.source:
        replay = FileSource(Path(audio.source), MODEL_RATE, round(audio.period * MODEL_RATE))
        return _replay(replay, ring, slot, stop, silence)
    source = AlsaSource(audio.device, audio.rate, audio.channels, round(audio.period * audio.rate))
    return _capture(source, ring, slot, stop, audio.reopen_max_backoff, silence)


def _replay(source: FileSource, ring: Ring, slot: StatsSlot, stop: StopEvent, silence_dbfs: float) -> int:
    source.open()
    writer = RingWriter(ring, slot, MODEL_RATE, silence_dbfs)
    log.info("replaying %s", source.path)
    while not stop.is_set():
        chunk = source.read()  # waits for the audio: not counted as busy
        if chunk is None:
            log.info("source finished: %s", source.path)
            break
        since = slot.busy()
        writer.write(chunk.samples)
        slot.done(since)
    source.close()
    return 0


def _capture(
    source: AlsaSource, ring: Ring, slot: StatsSlot, stop: StopEvent, max_backoff: float, silence_dbfs: float
) -> int:
    writer = RingWriter(ring, slot, source.rate, silence_dbfs)
    backoff, failing = FIRST_BACKOFF, None
    while not stop.is_set():
        try:
            if not source.is_open:
                source.open()
                log.info("capturing from %s at %d Hz, %d channel(s)", source.device, source.rate, source.channels)
                backoff, failing = FIRST_BACKOFF, None
            chunk = source.read()  # blocks for one period
            since = slot.busy()
            writer.write(chunk.samples, chunk.lost)
            slot.done(since)
        except DeviceError as exc:
            source.close()
            slot.add("errors")
            if str(exc) != failing:
                log.error("%s; retrying every %.0f s at most", exc, max_backoff)
                failing = str(exc)
            _wait(stop, backoff, slot)
            backoff = min(backoff * 2, max_backoff)
    source.close()
    return 0
