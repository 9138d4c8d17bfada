"""An inference worker: one model, one process; reads each announced window from shared memory."""

from __future__ import annotations

import logging
import time
from multiprocessing.synchronize import Event as StopEvent

import numpy as np

from capture.pcm import int16_to_float
from inference.frontend import hop_samples
from inference.model import ModelSpec, TFLiteModel, load_ensemble
from pipeline.config import Config
from pipeline.layout import AUDIO_SHAPE, Layout, feature_shape
from pipeline.log_throttle import LogThrottle
from pipeline.messages import Vote, WindowReady
from pipeline.metrics import StatsTable
from pipeline.process import OOM_FIRST, process_setup
from pipeline.ring import Lapped, NotWritten, Ring

RECEIVE_TIMEOUT = 1.0
# s: windows skipped are logged at most this often, with their count (a worker starved of CPU skips
# every window: a line each, two a second, for as long as it lasts)
SKIP_LOG_EVERY = 60.0

log = logging.getLogger(__name__)


class WindowReader:
    """The model input of a window: raw audio, or its frames from the shared log-mel ring."""

    def __init__(self, spec: ModelSpec, audio: Ring, features: Ring | None) -> None:
        self.spec = spec
        self.audio = audio
        self.features = features

    def input_at(self, start: int) -> np.ndarray:
        """The model's window from audio sample `start`. Raises Lapped or NotWritten when its data
        is not in the rings."""
        if self.spec.logmel is None:
            return int16_to_float(self.audio.read(start, self.spec.window_samples))
        return self.features.read(start // self.spec.logmel.hop_length, self.spec.input_shape[1])


class WindowScorer:
    """A model's probability for a vote window. A model whose own window is shorter scores each of
    its windows inside (one every hop, the last ending with the vote window) and gives the best:
    each is scored once and kept while a later vote window still holds it, so it costs one
    inference per hop like the others."""

    def __init__(self, model: TFLiteModel, reader: WindowReader, window_samples: int, hop: int) -> None:
        self.model = model
        self.reader = reader
        self.offsets = range(0, window_samples - model.spec.window_samples + 1, hop)
        self._scores: dict[int, float] = {}  # by the start of the model's window

    def score(self, window: WindowReady) -> float:
        """Raises Lapped or NotWritten when the window's data is not in the rings."""
        self._scores = {start: p for start, p in self._scores.items() if start >= window.start}
        best = 0.0
        for start in (window.start + offset for offset in self.offsets):
            if start not in self._scores:
                self._scores[start] = self.model.predict(self.reader.input_at(start))
            best = max(best, self._scores[start])
        return best


def run_worker(config: Config, model_id: str, layout: Layout, stop: StopEvent) -> int:
    process_setup(f"model.{model_id}", supervisor_pid=layout.supervisor_pid, oom=OOM_FIRST)
    ensemble = load_ensemble(config.detector.models_dir)
    spec = ensemble.model(model_id)
    audio = Ring.attach(layout.audio_ring, AUDIO_SHAPE)
    features = None
    if spec.logmel is not None:
        features = Ring.attach(layout.feature_rings[spec.logmel.key], feature_shape(spec.logmel.n_mels))
    scorer = WindowScorer(
        TFLiteModel(spec), WindowReader(spec, audio, features), ensemble.window_samples, hop_samples(config, ensemble)
    )
    slot = StatsTable.attach(layout.stats, layout.process_names).slot(f"model.{model_id}")
    inbox = layout.windows[model_id]
    skips = LogThrottle(SKIP_LOG_EVERY)
    log.info("model %s %s ready", spec.id, spec.version)
    while not stop.is_set():
        slot.beat()
        window = inbox.receive(RECEIVE_TIMEOUT)
        if window is None:
            continue
        since = slot.busy()
        try:
            probability = scorer.score(window)
        except (Lapped, NotWritten) as exc:
            slot.add("dropped")
            if (count := skips.due(since)) is not None:
                log.warning("window %d skipped: %s (%d skipped since the last such line)", window.index, exc, count)
            slot.done(since, items=0)
            continue
        if not layout.votes.send(Vote(window.index, spec.id, probability, time.monotonic())):
            slot.add("dropped")
        slot.set("queue_hwm", inbox.high_water)
        slot.done(since)
    return 0
