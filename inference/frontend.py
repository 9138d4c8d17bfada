"""The front end: log-mel frames once per hop into feature rings, and window announcements.

Each distinct log-mel stream (by `LogMelSpec.key`) is computed once, frame by frame as audio
arrives, whichever models use it; models read their window's frames by index. Frame k of a
stream starts at audio sample k * hop_length, so ring positions are absolute and shared.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event as StopEvent

from capture.pcm import int16_to_float
from inference.features import LogMelFrontend, LogMelSpec
from inference.model import Ensemble, load_ensemble
from pipeline.config import Config
from pipeline.layout import AUDIO_SHAPE, Layout, feature_shape
from pipeline.messages import WindowReady
from pipeline.metrics import StatsTable
from pipeline.process import OOM_SECOND, process_setup
from pipeline.ring import Lapped, Ring

MIN_SLEEP = 0.01  # s: waits for the next window's audio are at least this ...
MAX_SLEEP = 0.5  # ... and at most this, so the stop event and the heartbeat stay timely
CHUNK_SECONDS = 2.0  # s: audio turned into frames at a time, bounding the memory of a catch-up

log = logging.getLogger(__name__)


def tail_padding(total: int, window: int, hop: int) -> int:
    """Zeros that complete the last window of a recording of `total` samples, so that its end is
    scored (and a recording shorter than a window too): by `analyze`, and live at the end of a
    replayed one (pipeline/supervisor.py)."""
    if total <= window:
        return window - total
    return (-(total - window)) % hop


def hop_samples(config: Config, ensemble: Ensemble) -> int:
    """The window hop in samples: a whole number of frames of every log-mel stream, and of steps
    from each shorter model window to the vote window's end."""
    hop = round(config.detector.hop * ensemble.sample_rate)
    for spec in ensemble.logmel_specs().values():
        if hop % spec.hop_length:
            raise ValueError(
                f"detector.hop: {config.detector.hop} s is not a multiple of the {spec.hop_length}-sample "
                f"frame hop of the models' features (try 0.5)"
            )
    for model in ensemble.models:
        if hop > model.window_samples:
            raise ValueError(f"detector.hop: {config.detector.hop} s is longer than model {model.id}'s window")
        if (ensemble.window_samples - model.window_samples) % hop:
            raise ValueError(
                f"detector.hop: {config.detector.hop} s does not step model {model.id}'s "
                f"{model.window_samples}-sample window to the end of the {ensemble.window_samples}-sample "
                f"vote window (try 0.5)"
            )
    return hop


def feature_ring_capacity(spec: LogMelSpec, audio_capacity: int) -> int:
    """Frames covering as much time as the audio ring."""
    return audio_capacity // spec.hop_length + 1


class Frontend:
    """Steps the feature streams forward over an audio ring and reports the windows now complete."""

    def __init__(
        self,
        audio: Ring,
        streams: dict[str, tuple[LogMelSpec, Ring]],
        window: int,
        hop: int,
        resume_at: int = 0,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        """`resume_at`: the first window not announced yet (from the stats table: 0 at the first start);
        `beat`: called after each chunk of frames (a long catch-up is not taken for a hang)."""
        self.audio = audio
        self.streams = {key: (LogMelFrontend(spec), ring) for key, (spec, ring) in streams.items()}
        self.window = window
        self.hop = hop
        self.next_window = resume_at  # windows whose audio is gone are skipped by `step`, counted
        self.skipped = 0  # windows never announced by the last step: their audio was gone
        self.unheard = 0  # samples captured (not lost) that the last step's skip left out of every window
        self.beat = beat

    def step(self) -> list[WindowReady]:
        """Compute every frame whose audio has arrived; return the windows that became complete.
        Windows whose audio the ring no longer held once the frames were computed are skipped: a
        frame whose audio capture overwrote while the step ran is a stand-in (Ring.skip), and a
        window of real frames and stand-ins scored as a gunshot (a CPU-starved front end's false
        alert, measured)."""
        available = self.audio.write_pos
        for frontend, ring in self.streams.values():
            self._advance(frontend, ring, available)
        first_held = -(-self.audio.oldest() // self.hop)
        self.skipped = max(0, first_held - self.next_window)
        self.unheard = 0
        if self.skipped:
            heard_to = (self.next_window - 1) * self.hop + self.window if self.next_window else 0  # the last window
            self.unheard = captured_between(self.audio, heard_to, first_held * self.hop)
            log.warning(
                "skipped %d windows whose audio the ring no longer holds: %.1f s of it captured and never "
                "scored (the front end fell behind), the rest lost by capture",
                self.skipped,
                self.unheard / self.audio.rate,
            )
            self.next_window += self.skipped
        ready = []
        while self.next_window * self.hop + self.window <= available:
            ready.append(WindowReady(index=self.next_window, start=self.next_window * self.hop))
            self.next_window += 1
        return ready

    def _advance(self, frontend: LogMelFrontend, ring: Ring, available: int) -> None:
        """Frames up to `available`, CHUNK_SECONDS of audio at a time: after a stall or a restart a
        whole ring may be waiting, and its spectra at once took 194 MB (a 60 s ring, measured)."""
        spec = frontend.spec
        last = spec.frames_in(available) if available >= spec.n_fft else 0
        chunk = max(1, round(CHUNK_SECONDS * spec.sample_rate / spec.hop_length))
        while ring.write_pos < last:
            first = ring.write_pos
            oldest_frame = -(-self.audio.oldest() // spec.hop_length)
            if first < oldest_frame:  # audio for these frames is gone: keep indices true, mark as silence
                ring.skip(oldest_frame - first)
                continue
            stop = min(last, first + chunk)
            start = first * spec.hop_length
            try:
                audio = self.audio.read(start, (stop - 1) * spec.hop_length + spec.n_fft - start)
            except Lapped:  # capture wrote over these rows while they were read (after a long gap)
                continue
            ring.write(frontend.frames(int16_to_float(audio)))
            self.beat()


def captured_between(audio: Ring, start: int, end: int) -> int:
    """Samples in [start, end) that capture captured, i.e. not in a stretch it stood silence in for
    (a device gap or overrun, already counted as lost): what skipping them leaves unheard."""
    return max(0, end - start - audio.lost_rows(start, end))


def attach_streams(ensemble: Ensemble, layout: Layout) -> dict[str, tuple[LogMelSpec, Ring]]:
    return {
        key: (spec, Ring.attach(layout.feature_rings[key], feature_shape(spec.n_mels)))
        for key, spec in ensemble.logmel_specs().items()
    }


def run_frontend(config: Config, layout: Layout, stop: StopEvent) -> int:
    process_setup("frontend", supervisor_pid=layout.supervisor_pid, oom=OOM_SECOND)
    ensemble = load_ensemble(config.detector.models_dir)
    audio = Ring.attach(layout.audio_ring, AUDIO_SHAPE)
    streams = attach_streams(ensemble, layout)
    slot = StatsTable.attach(layout.stats, layout.process_names).slot("frontend")
    frontend = Frontend(
        audio,
        streams,
        ensemble.window_samples,
        hop_samples(config, ensemble),
        resume_at=int(slot.get("cursor")),
        beat=slot.beat,
    )
    log.info("front end ready: %d feature streams, first window %d", len(streams), frontend.next_window)
    while not stop.is_set():
        slot.beat()
        missing = frontend.next_window * frontend.hop + frontend.window - audio.write_pos
        if missing > 0:  # sleep until the next window should be complete (audio arrives at its rate)
            time.sleep(min(MAX_SLEEP, max(MIN_SLEEP, missing / ensemble.sample_rate)))
            continue
        since = slot.busy()
        windows = frontend.step()
        slot.add("dropped", frontend.skipped)
        slot.add("unheard", frontend.unheard)
        for window in windows:
            for channel in layout.windows.values():
                if not channel.send(window):
                    slot.add("dropped")
        slot.set("cursor", frontend.next_window)
        slot.done(since, items=len(windows))
    return 0
