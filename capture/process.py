"""The capture process: microphone (or replayed file) -> 16 kHz int16 -> the shared audio ring.

It never waits for a consumer. Lost audio (an overrun) is counted in the ring header and replaced
by silence so that ring positions stay true to time; a failing or vanished device is closed and
reopened with exponential backoff, with one log line per change of state. So is the time the
microphone was not read at all: a device outage, or this process restarted (after a crash, or a
stalled device that stopped its heartbeat): the first audio after it is checked against the time
of the last row in the ring.
"""

from __future__ import annotations

import logging
import time
from multiprocessing.synchronize import Event as StopEvent
from pathlib import Path

import numpy as np

from capture.alsa_source import AlsaSource, DeviceError
from capture.audio_file import AudioFileError
from capture.file_source import FileSource
from capture.pcm import INT16_SCALE, MODEL_RATE
from capture.resample import Resampler
from pipeline.config import Config
from pipeline.layout import AUDIO_SHAPE, Layout
from pipeline.log_throttle import LogThrottle
from pipeline.metrics import StatsSlot, StatsTable
from pipeline.process import process_setup
from pipeline.ring import Ring

CAPTURE_NICE = -5  # capture first when the CPU is short (needs RLIMIT_NICE: the unit's LimitNICE)
FIRST_BACKOFF = 1.0
OVERRUN_LOG_EVERY = 60.0  # s: overruns are logged at most this often, with their count
GAP_TOLERANCE = 0.5  # s: a longer hole between the ring's last row and new audio counts as lost
STOP_CHECK = 0.5  # longest sleep between looks at the stop event
EXIT_SOURCE_DAMAGED = 4  # the replayed file broke off: an end of the source (replaying it again re-alerts)

log = logging.getLogger(__name__)


class RingWriter:
    """Resamples to the model rate and appends to the ring, counting lost audio."""

    def __init__(self, ring: Ring, slot: StatsSlot, source_rate: int, silence_dbfs: float) -> None:
        self.ring, self.slot = ring, slot
        self.resampler = Resampler(source_rate, MODEL_RATE)
        self.source_rate = source_rate
        self.losses = 0
        self.overrun_log = LogThrottle(OVERRUN_LOG_EVERY)
        self.resuming = True  # the next audio may follow a gap (process start, device reopened)
        # Mean square of int16 samples at the silence level: compared without a log or a sqrt.
        self.silence_power = (10 ** (silence_dbfs / 20) * INT16_SCALE) ** 2

    def write(self, samples: np.ndarray, lost_frames: int = 0) -> None:
        now = time.monotonic()
        if lost_frames:
            self._lose(round(lost_frames * MODEL_RATE / self.source_rate), "audio overrun", throttled=True)
        out = self.resampler.process(samples)
        if self.resuming and out.shape[0]:
            self.resuming = False
            self._count_gap(now - out.shape[0] / MODEL_RATE)
        if out.shape[0]:
            self.ring.write(out, captured_at=now)
            if _ac_power(out) > self.silence_power:
                self.slot.set("last_sound", now)

    def _count_gap(self, first_captured_at: float) -> None:
        if self.ring.write_pos == 0:
            return  # the first audio ever
        gap = first_captured_at - self.ring.time_of(self.ring.write_pos)
        if gap > GAP_TOLERANCE:
            self._lose(round(gap * MODEL_RATE), f"no audio for {gap:.1f} s (device away or capture restarted)")

    def _lose(self, rows: int, why: str, throttled: bool = False) -> None:
        """Count lost audio and stand silence in for it; `throttled`: logged at most once an
        OVERRUN_LOG_EVERY (every 100th overrun was a line every 25 s at one a period: log audit)."""
        self.ring.record_loss(rows)
        self.ring.skip(rows)
        self.losses += 1
        if not throttled or self.overrun_log.due(time.monotonic()) is not None:
            log.warning("%s: %d samples lost (%d losses so far)", why, rows, self.losses)


def _ac_power(samples: np.ndarray) -> float:
    """Mean square about the mean: a dead input stuck at a constant (a DC offset) is silence."""
    return float(np.var(samples, dtype=np.float32))


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
    return _capture(AlsaSource.from_config(audio), ring, slot, stop, audio.reopen_max_backoff, silence)


def _replay(source: FileSource, ring: Ring, slot: StatsSlot, stop: StopEvent, silence_dbfs: float) -> int:
    source.open()
    writer = RingWriter(ring, slot, MODEL_RATE, silence_dbfs)
    log.info("replaying %s", source.path)
    code = 0
    while not stop.is_set():
        try:
            chunk = source.read()  # waits for the audio: not counted as busy
        except AudioFileError as exc:
            slot.add("errors")
            log.error("%s: the rest of the recording cannot be replayed", exc)
            code = EXIT_SOURCE_DAMAGED
            break
        if chunk is None:
            log.info("source finished: %s", source.path)
            break
        since = slot.busy()
        writer.write(chunk.samples)
        slot.done(since)
    source.close()
    return code


def _capture(
    source: AlsaSource, ring: Ring, slot: StatsSlot, stop: StopEvent, max_backoff: float, silence_dbfs: float
) -> int:
    writer = RingWriter(ring, slot, source.rate, silence_dbfs)
    backoff, failing = FIRST_BACKOFF, None
    while not stop.is_set():
        try:
            if not source.is_open:
                source.open()
                log.info(
                    "capturing from %s at %d Hz, %d channel(s)", source.device, source.rate, source.delivered_channels
                )
                backoff, failing = FIRST_BACKOFF, None
                writer.resuming = True
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
