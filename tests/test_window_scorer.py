"""Models of two window lengths in one vote: the shorter model scores its best window inside each
vote window, each of its windows scored once."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os

import numpy as np
import pytest

from capture.pcm import float_to_int16, int16_to_float
from inference.frontend import hop_samples
from inference.litert_log import litert_lines_to_log
from inference.model import Ensemble, TFLiteModel, load_spec
from inference.worker import WindowReader, WindowScorer, run_worker
from pipeline.channel import Channel
from pipeline.config import Config
from pipeline.layout import AUDIO_SHAPE, Layout
from pipeline.messages import WindowReady
from pipeline.metrics import StatsTable
from pipeline.ring import Ring
from tests.conftest import own_run_id

RATE = 16000
HOP = RATE // 2
VOTE_WINDOW = 2 * RATE
CRACK = 4 * RATE + 4800  # where the test audio's one shot-like crack starts


class CountingModel(TFLiteModel):
    """The shipped waveform model, counting its inferences."""

    calls = 0

    def predict(self, x: np.ndarray) -> float:
        self.calls += 1
        return super().predict(x)


def _one_second_wave_spec():
    spec = load_spec("", "wave")
    assert spec.window_samples == RATE, "the shipped waveform model is a 1 s model"
    return spec


def _ring_with_a_shot() -> Ring:
    """Ten seconds of quiet noise with one loud crack at CRACK."""
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.003, 10 * RATE).astype(np.float32)
    audio[CRACK : CRACK + 800] += 0.8 * np.exp(-np.arange(800) / 120) * rng.standard_normal(800)
    ring = Ring.in_memory(audio.shape[0], AUDIO_SHAPE, RATE)
    ring.write(float_to_int16(audio))
    return ring


def test_a_shorter_model_scores_its_best_window_inside_each_vote_window_once():
    spec = _one_second_wave_spec()
    ring = _ring_with_a_shot()
    model = CountingModel(spec)
    scorer = WindowScorer(model, WindowReader(spec, ring, None), VOTE_WINDOW, HOP)
    windows = [WindowReady(index=i, start=i * HOP) for i in range((10 * RATE - VOTE_WINDOW) // HOP + 1)]
    scores = [scorer.score(w) for w in windows]
    reference = TFLiteModel(spec)
    each = {start: reference.predict(int16_to_float(ring.read(start, RATE))) for start in range(0, 9 * RATE + 1, HOP)}
    for window, score in zip(windows, scores, strict=True):
        assert score == max(each[window.start + offset] for offset in (0, HOP, 2 * HOP))
    assert model.calls == len(each)  # every 1 s window once, though three vote windows hold it
    holding = [s for w, s in zip(windows, scores, strict=True) if w.start <= CRACK < w.start + VOTE_WINDOW]
    others = [s for w, s in zip(windows, scores, strict=True) if not w.start <= CRACK < w.start + VOTE_WINDOW]
    assert holding and min(holding) > max(others)  # every vote window holding the crack hears it


def test_the_vote_window_is_the_longest_model_window_and_the_hop_must_step_to_its_end():
    wave = _one_second_wave_spec()
    mel = dataclasses.replace(load_spec("", "mel_fine"), window_samples=VOTE_WINDOW)
    ensemble = Ensemble((wave, mel), votes_required=2)
    assert ensemble.window_samples == VOTE_WINDOW
    config = Config()
    assert hop_samples(config, ensemble) == HOP
    odd = dataclasses.replace(wave, window_samples=RATE + 160)  # 2 s - 1.01 s: no whole number of hops
    with pytest.raises(ValueError, match=r"detector.hop.*does not step model wave"):
        hop_samples(config, Ensemble((odd, mel), votes_required=2))


WORKER_DEADLINE = 60.0


def test_the_model_worker_process_counts_a_window_it_could_not_read_as_dropped():
    """run_worker alone, in its own process: a window whose audio the ring no longer holds is
    skipped and counted in the stats the status line shows; the next one is voted on."""
    run = own_run_id()
    capacity, written = 4 * RATE, 20 * RATE
    audio = Ring.create(f"gs-{run}-audio", capacity, AUDIO_SHAPE, RATE)
    stats = StatsTable.create(f"gs-{run}-stats", ("model.wave",))
    layout = Layout(
        run, audio.name, stats.segment_name, ("model.wave",), windows={"wave": Channel("w")}, votes=Channel("v")
    )
    audio.write(np.zeros(written, dtype=np.int16))
    held = (written - VOTE_WINDOW) // HOP
    layout.windows["wave"].send(WindowReady(0, 0))  # overwritten long ago
    layout.windows["wave"].send(WindowReady(held, held * HOP))
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    worker = context.Process(target=run_worker, args=(Config(), "wave", layout, stop))
    worker.start()
    try:
        vote = layout.votes.receive(WORKER_DEADLINE)
    finally:
        stop.set()
        worker.join(WORKER_DEADLINE)
        dropped = stats.slot("model.wave").get("dropped")
        audio.close()
        stats.close()
    assert vote is not None and (vote.index, vote.model_id) == (held, "wave")
    assert dropped == 1


def test_float_audio_at_or_beyond_full_scale_clips_at_the_rail_of_its_sign():
    """A clipped gunshot, or a resampler's overshoot on one, must not wrap to the other rail."""
    audio = np.array([1.0, 1.2, 0.99999, -1.0, -1.2, 0.5 / 32768], dtype=np.float32)
    assert float_to_int16(audio).tolist() == [32767, 32767, 32767, -32768, -32768, 0]


def test_litert_lines_written_in_pieces_are_logged_whole_at_their_level(caplog):
    """LiteRT writes "INFO: ", the text and "\\n" apart; another process's line could land between."""
    before = os.fstat(2)
    with caplog.at_level(logging.DEBUG, logger="inference.litert_log"), litert_lines_to_log():
        for piece in (b"WARNING: ", b"delegate not applied", b"\n", b"INFO: ", b"Created delegate", b"\n"):
            os.write(2, piece)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "LiteRT: delegate not applied"),
        (logging.DEBUG, "LiteRT: Created delegate"),
    ]
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)  # stderr given back
