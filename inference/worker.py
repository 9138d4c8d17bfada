"""An inference worker: one model, one process; reads each announced window from shared memory."""

from __future__ import annotations

import logging
import time
from multiprocessing.synchronize import Event as StopEvent

import numpy as np

from capture.pcm import int16_to_float
from inference.model import ModelSpec, TFLiteModel, load_spec
from pipeline.config import Config
from pipeline.layout import AUDIO_SHAPE, Layout, feature_shape
from pipeline.messages import Vote, WindowReady
from pipeline.metrics import StatsTable
from pipeline.process import process_setup
from pipeline.ring import Lapped, NotWritten, Ring

RECEIVE_TIMEOUT = 1.0

log = logging.getLogger(__name__)


class WindowReader:
    """The model input of a window: raw audio, or its frames from the shared log-mel ring."""

    def __init__(self, spec: ModelSpec, audio: Ring, features: Ring | None) -> None:
        self.spec = spec
        self.audio = audio
        self.features = features

    def input_for(self, window: WindowReady) -> np.ndarray:
        """Raises Lapped or NotWritten when the window's data is not in the rings."""
        if self.spec.logmel is None:
            return int16_to_float(self.audio.read(window.start, self.spec.window_samples))
        first_frame = window.start // self.spec.logmel.hop_length
        return self.features.read(first_frame, self.spec.input_shape[1])


def run_worker(config: Config, model_id: str, layout: Layout, stop: StopEvent) -> int:
    process_setup(f"model.{model_id}", supervisor_pid=layout.supervisor_pid)
    spec = load_spec(config.detector.models_dir, model_id)
    model = TFLiteModel(spec)
    audio = Ring.attach(layout.audio_ring, AUDIO_SHAPE)
    features = None
    if spec.logmel is not None:
        features = Ring.attach(layout.feature_rings[spec.logmel.key], feature_shape(spec.logmel.n_mels))
    reader = WindowReader(spec, audio, features)
    slot = StatsTable.attach(layout.stats, layout.process_names).slot(f"model.{model_id}")
    inbox = layout.windows[model_id]
    log.info("model %s %s ready", spec.id, spec.version)
    while not stop.is_set():
        slot.beat()
        window = inbox.receive(RECEIVE_TIMEOUT)
        if window is None:
            continue
        since = slot.busy()
        try:
            probability = model.predict(reader.input_for(window))
        except (Lapped, NotWritten) as exc:
            slot.add("dropped")
            log.warning("window %d skipped: %s", window.index, exc)
            slot.done(since, items=0)
            continue
        if not layout.votes.send(Vote(window.index, spec.id, probability, time.monotonic())):
            slot.add("dropped")
        slot.set("queue_hwm", inbox.high_water)
        slot.done(since)
    return 0
