"""Offline detection over audio files with the live code: the same rings, front end, window
readers, models, vote and event merging as `start`, run in one process on in-memory rings."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from capture.audio_file import AudioFileError, iter_audio_blocks
from capture.pcm import float_to_int16
from inference.events import Event, EventTracker
from inference.frontend import Frontend, feature_ring_capacity, tail_padding
from inference.model import Ensemble, TFLiteModel
from inference.vote import VoteBox
from inference.worker import WindowReader, WindowScorer
from pipeline.layout import AUDIO_SHAPE, feature_shape
from pipeline.ring import Ring

BLOCK_SECONDS = 10.0  # audio decoded and scored per step: bounds memory for hours-long files


@dataclass(frozen=True)
class DetectedEvent:
    start: float  # seconds from the start of the file
    end: float
    confidence: float
    votes: dict[str, float]
    degraded: bool = False

    def to_json(self) -> dict:
        votes = {model: round(p, 4) for model, p in self.votes.items()}
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "confidence": round(self.confidence, 4),
            "votes": votes,
        }


@dataclass
class StreamResult:
    score: float = 0.0  # highest ensemble confidence of any window
    windows: int = 0
    events: list[DetectedEvent] = field(default_factory=list)
    window_scores: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (window, votes)
    damage: str | None = None  # a file damaged part-way: where (scored up to there)

    @property
    def detected(self) -> bool:
        return bool(self.events)


class OfflineDetector:
    """Loads the models once; `run` scores one stream of float audio blocks."""

    def __init__(
        self, ensemble: Ensemble, hop: int, merge_gap: float, votes_required: int = 0, fused_threshold: float = 0.0
    ) -> None:
        self.ensemble = ensemble
        self.hop = hop
        self.merge_gap = round(merge_gap * ensemble.sample_rate)
        self.rule = ensemble.rule(votes_required, fused_threshold)
        self.models = [TFLiteModel(spec) for spec in ensemble.models]

    def run(self, blocks: Iterable[np.ndarray], keep_window_scores: bool = False) -> StreamResult:
        rate, window = self.ensemble.sample_rate, self.ensemble.window_samples
        block = round(BLOCK_SECONDS * rate)
        run = _Run(self, Ring.in_memory(block + 2 * window, AUDIO_SHAPE, rate), keep_window_scores)
        total = 0
        for chunk in _rechunk(blocks, block):
            total += chunk.shape[0]
            run.audio.write(float_to_int16(chunk))
            run.score_ready()
        run.audio.write(np.zeros(tail_padding(total, window, self.hop), dtype=np.int16))
        run.score_ready()
        if (last := run.tracker.finish()) is not None:
            run.events.append(last)
        end_limit = max(total, window) / rate
        run.result.events = [
            DetectedEvent(e.start / rate, min(e.end / rate, end_limit), e.confidence, e.votes, e.degraded)
            for e in run.events
        ]
        return run.result

    def analyze_file(self, path: Path) -> StreamResult:
        """Scores the audio up to any damage (the result's `damage` says where); raises
        capture.audio_file.AudioFileError for a file with no audio that can be read."""
        blocks = _UpToDamage(iter_audio_blocks(path, self.ensemble.sample_rate, BLOCK_SECONDS))
        result = self.run(blocks)
        if blocks.error is not None:
            if not blocks.delivered:
                raise blocks.error
            result.damage = str(blocks.error)
        return result


class _UpToDamage:
    """The blocks of a file until it breaks off: the error is kept, not raised."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self.blocks = blocks
        self.delivered = 0
        self.error: AudioFileError | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for block in self.blocks:
                self.delivered += block.shape[0]
                yield block
        except AudioFileError as exc:
            self.error = exc


class _Run:
    """The state of one stream: in-memory rings, front end, readers, vote and events."""

    def __init__(self, detector: OfflineDetector, audio: Ring, keep_window_scores: bool) -> None:
        ensemble = detector.ensemble
        self.audio = audio
        streams = {
            key: (
                spec,
                Ring.in_memory(
                    feature_ring_capacity(spec, audio.capacity),
                    feature_shape(spec.n_mels),
                    ensemble.sample_rate / spec.hop_length,
                ),
            )
            for key, spec in ensemble.logmel_specs().items()
        }
        self.frontend = Frontend(audio, streams, ensemble.window_samples, detector.hop)
        self.scorers = [
            WindowScorer(
                model,
                WindowReader(model.spec, audio, streams[model.spec.logmel.key][1] if model.spec.logmel else None),
                ensemble.window_samples,
                detector.hop,
            )
            for model in detector.models
        ]
        self.box = VoteBox(detector.rule, timeout=math.inf)
        self.tracker = EventTracker(ensemble.window_samples, detector.hop, detector.merge_gap)
        self.keep_window_scores = keep_window_scores
        self.result = StreamResult()
        self.events: list[Event] = []

    def score_ready(self) -> None:
        for ready in self.frontend.step():
            for scorer in self.scorers:
                self.box.add(ready.index, scorer.model.spec.id, scorer.score(ready), now=0.0)
            for decision in self.box.decide(now=0.0):
                self.result.windows += 1
                self.result.score = max(self.result.score, decision.confidence)
                if self.keep_window_scores:
                    self.result.window_scores.append((decision.index, decision.votes))
                if (closed := self.tracker.update(decision).closed) is not None:
                    self.events.append(closed)


def _rechunk(blocks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Blocks of at most `size` samples, whatever the source yields."""
    for block in blocks:
        for start in range(0, block.shape[0], size):
            yield block[start : start + size]
