"""Streaming evaluation: an hour or more of validation-fold background with validation gunshots
inserted at known times and SNRs, run through the live windowing, vote and event merging
(inference/offline.py), scored as event recall, false alerts per hour and detection delay.

It is a proxy: the background reuses the same ~18 minutes of validation clips (changed in gain,
pitch and speed and laid over synthetic noise), not hours of unseen recordings.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal, stats

from inference.model import Ensemble
from inference.offline import DetectedEvent, OfflineDetector, StreamResult
from inference.vote import VoteRule
from models.training.augment import colored_noise
from models.training.data import SAMPLE_RATE, Clip

PROXY_NOTE = (
    "Proxy: the background reuses the validation fold's ~18 min of non-gun clips (random gain, "
    "pitch/speed change, synthetic noise) and the shots are validation clips; not unseen field audio."
)
SLOT_S = 30.0  # one shot per slot: 120 shots per hour, far enough apart never to merge into one event
SHOT_MARGIN_S = 5.0  # a shot's peak lands at least this far from its slot's edges
SNR_CHOICES_DB = (0.0, 5.0, 10.0, 20.0, 30.0)
SNR_HALF_S = 0.1  # shot power over 0.2 s around its peak (as in training), bed power over 1 s
BED_HALF_S = 0.5
CLIP_PEAK_DBFS = (-30.0, -3.0)  # a background clip's peak level
NOISE_RMS_DBFS = (-40.0, -15.0)  # a synthetic noise stretch's level
SPEED_CHOICES = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15)  # resampling factor: pitch and tempo together
P_SYNTHETIC = 0.15  # a background segment is synthetic noise instead of a clip
NOISE_KINDS = ("white", "pink", "brown", "wind")
NOISE_FLOOR_DBFS = (-70.0, -45.0)  # a synthetic noise bed under the whole mixture
SYNTHETIC_SEGMENT_S = (2.0, 8.0)
CROSSFADE_S = 0.3  # pieces overlap with an equal-power crossfade: a splice is neither a click nor a dip
TAIL_S = 1.0  # a shot's echo: events this long after a clip ends still count as the shot
FULL_SCALE = 1.0  # loud shots clip there, as at a real microphone; the rest of the mixture never does
CONFIDENCE = 0.95
SYNTHETIC = "synthetic"  # a background segment of synthetic noise is named "synthetic KIND noise"
PERCENTILES = (50, 99)
# Peak memory of `evaluate --stream-hours H`: a line through 2.9 GB at 1 hour and 19.1 GB at 9 (measured),
# rounded up. Most of it is the FFT that colours the noise floor over the whole mixture at once.
MEMORY_BASE_BYTES = 0.9e9
MEMORY_BYTES_PER_HOUR = 2.05e9
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class InsertedShot:
    peak_s: float  # the shot's loudest sample: its onset for an impulsive sound
    start_s: float  # the inserted clip's extent
    end_s: float
    snr_db: float
    path: str
    source: str  # the clip's source: its recorders, places and guns


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    what: str  # "source/category" of a background clip, or the kind of synthetic noise


@dataclass(frozen=True)
class Mixture:
    audio: np.ndarray  # float32 at 16 kHz
    shots: list[InsertedShot]
    segments: list[Segment]  # the background pieces in order
    background_clips: int  # distinct validation clips in the background
    clipped_samples: int  # samples of loud shots cut at full scale

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / SAMPLE_RATE


def _db(value: float) -> float:
    return 10 ** (value / 20)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def _changed(rng: np.random.Generator, audio: np.ndarray) -> np.ndarray:
    """A background clip at a random gain and speed (resampled: pitch and tempo change together)."""
    speed = float(rng.choice(SPEED_CHOICES))
    if speed != 1.0:
        audio = signal.resample_poly(audio, 100, round(100 * speed)).astype(np.float32)
    return audio * np.float32(_db(rng.uniform(*CLIP_PEAK_DBFS)) / max(1e-3, float(np.max(np.abs(audio)))))


def _faded(piece: np.ndarray, n: int) -> np.ndarray:
    """Equal-power (sine) fade-in and fade-out over n samples each."""
    ramp = np.sin(np.linspace(0, np.pi / 2, n)).astype(np.float32)
    piece = piece.copy()
    piece[:n] *= ramp
    piece[piece.shape[0] - n :] *= ramp[::-1]
    return piece


def build_background(rng: np.random.Generator, negatives: list[Clip], samples: int) -> tuple[np.ndarray, list[Segment]]:
    """Negative clips, each used in turn (reshuffled every round) and changed, with stretches of
    synthetic noise between them, over a quiet synthetic noise bed; and what lies where."""
    out = np.zeros(samples, dtype=np.float32)
    at, order, segments, fade = 0, [], [], round(CROSSFADE_S * SAMPLE_RATE)
    previous_fade = 0
    while at < samples:
        if rng.random() < P_SYNTHETIC:
            kind = str(rng.choice(NOISE_KINDS))
            length = round(rng.uniform(*SYNTHETIC_SEGMENT_S) * SAMPLE_RATE)
            piece = colored_noise(rng, length, kind) * np.float32(_db(rng.uniform(*NOISE_RMS_DBFS)))
            what = f"{SYNTHETIC} {kind} noise"
        else:
            if not order:
                order = list(rng.permutation(len(negatives)))
            clip = negatives[order.pop()]
            piece, what = _changed(rng, clip.audio), f"{clip.source}/{clip.category}"
        n = min(fade, piece.shape[0] // 2)  # every piece of our data is long enough for the full fade
        start = at - min(n, previous_fade)
        piece = _faded(piece[: samples - start], n)
        previous_fade = n
        out[start : start + piece.shape[0]] += piece
        segments.append(Segment(start / SAMPLE_RATE, (start + piece.shape[0]) / SAMPLE_RATE, what))
        at = start + piece.shape[0]
    floor = colored_noise(rng, samples, str(rng.choice(NOISE_KINDS)))
    floor *= np.float32(_db(rng.uniform(*NOISE_FLOOR_DBFS)))
    out += floor
    return out, segments


def insert_shot(bed: np.ndarray, shot: np.ndarray, peak_at: int, snr_db: float) -> tuple[int, int]:
    """Adds `shot` to `bed` in place, its peak at sample `peak_at`, scaled to `snr_db` (shot power
    over 0.2 s around its peak against the bed's power over 1 s around it). Returns its extent."""
    peak = int(np.argmax(np.abs(shot)))
    start = peak_at - peak
    lo, hi = max(0, start), min(bed.shape[0], start + shot.shape[0])
    half, bed_half = round(SNR_HALF_S * SAMPLE_RATE), round(BED_HALF_S * SAMPLE_RATE)
    shot_power = _rms(shot[max(0, peak - half) : peak + half])
    bed_power = _rms(bed[max(0, peak_at - bed_half) : peak_at + bed_half])
    gain = bed_power * _db(snr_db) / shot_power
    bed[lo:hi] += shot[lo - start : hi - start] * np.float32(gain)
    return lo, hi


def memory_needed(hours: float) -> float:
    """Bytes a streaming evaluation of `hours` takes at its peak (MEMORY_*)."""
    return MEMORY_BASE_BYTES + MEMORY_BYTES_PER_HOUR * hours


def available_memory() -> float | None:
    """Bytes the kernel says can be had without swapping (MemAvailable), None where it does not say."""
    try:
        lines = MEMINFO.read_text().splitlines()
    except OSError:
        return None
    kilobytes = [int(line.split()[1]) for line in lines if line.startswith("MemAvailable:")]
    return kilobytes[0] * 1024.0 if kilobytes else None


def memory_shortfall(hours: float) -> str | None:
    """Why `hours` of streaming evaluation will not fit in the memory available, and what to do;
    None when it fits (or the kernel does not say)."""
    free, need = available_memory(), memory_needed(hours)
    if free is None or need <= free:
        return None
    fits = (free - memory_needed(0)) / MEMORY_BYTES_PER_HOUR
    advice = f"run fewer hours (about {fits:.1f} fit)" if fits >= 0.1 else "free memory first"
    return f"needs about {need / 1e9:.1f} GB of memory and {free / 1e9:.1f} GB is available: {advice}"


def build_mixture(negatives: list[Clip], shots: list[Clip], hours: float, seed: int) -> Mixture:
    """`hours` of background with one shot per SLOT_S at a random place and SNR; deterministic."""
    rng = np.random.default_rng(seed)
    slots = max(1, int(hours * 3600 / SLOT_S))
    audio, segments = build_background(rng, negatives, round(slots * SLOT_S * SAMPLE_RATE))
    order = rng.permutation(len(shots))
    inserted = []
    for slot in range(slots):
        clip = shots[order[slot % len(shots)]]
        peak_s = slot * SLOT_S + rng.uniform(SHOT_MARGIN_S, SLOT_S - SHOT_MARGIN_S)
        snr = float(rng.choice(SNR_CHOICES_DB))
        lo, hi = insert_shot(audio, clip.audio, round(peak_s * SAMPLE_RATE), snr)
        inserted.append(InsertedShot(peak_s, lo / SAMPLE_RATE, hi / SAMPLE_RATE, snr, clip.path, clip.source))
    clipped = int(np.sum(np.abs(audio) > FULL_SCALE))
    np.clip(audio, -FULL_SCALE, FULL_SCALE, out=audio)
    return Mixture(audio, inserted, segments, len(negatives), clipped)


def poisson_interval(count: int, exposure: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Garwood) confidence interval of a Poisson rate: `count` events in `exposure` units."""
    alpha = 1 - confidence
    low = stats.chi2.ppf(alpha / 2, 2 * count) / 2 if count else 0.0
    high = stats.chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2
    return float(low / exposure), float(high / exposure)


def score_events(events: list[DetectedEvent], shots: list[InsertedShot], duration_s: float, window_s: float) -> dict:
    """Event recall, false alerts per hour of background and delay from a shot's peak to the moment
    the first window of its event was complete (the earliest an alert could go out)."""
    matched, delays = [], []
    used = set()
    for shot in shots:
        hits = [i for i, e in enumerate(events) if e.start <= shot.end_s + TAIL_S and e.end >= shot.start_s]
        matched.append(bool(hits))
        used.update(hits)
        if hits:
            delays.append(events[hits[0]].start + window_s - shot.peak_s)
    false_alerts = len(events) - len(used)
    background_h = background_hours(shots, duration_s)
    low, high = poisson_interval(false_alerts, background_h) if background_h else (float("nan"),) * 2
    return {
        "shots": len(shots),
        "detected": int(sum(matched)),
        "event_recall": round(float(np.mean(matched)), 4) if shots else None,
        "events": len(events),
        "false_alerts": false_alerts,
        "background_hours": round(background_h, 4),
        "false_alerts_per_hour": round(false_alerts / background_h, 4) if background_h else None,
        "false_alerts_per_hour_ci95": [round(low, 4), round(high, 4)],
        "delay_s": {f"p{q}": round(float(np.percentile(delays, q)), 3) for q in PERCENTILES} if delays else {},
        "recall_per_snr_db": _recall_by([s.snr_db for s in shots], matched, label="{:g}".format),
        "recall_per_source": _recall_by([s.source for s in shots], matched),
        "missed": [s.path for s, m in zip(shots, matched, strict=True) if not m],
        "false_alert_starts_s": [round(e.start, 2) for i, e in enumerate(events) if i not in used],
    }


def _recall_by(values: list, matched: list[bool], label=str) -> dict[str, dict]:
    """Event recall of the shots of each value (their SNR, their source), in sorted order."""
    result = {}
    for value in sorted(set(values)):
        hit = [m for m, v in zip(matched, values, strict=True) if v == value]
        result[label(value)] = {"recall": round(float(np.mean(hit)), 4), "shots": len(hit)}
    return result


def heard_in(segments: list[Segment], start_s: float, end_s: float) -> str:
    """What the background holds between two times: "a" or, across a crossfade, "a + b"."""
    return " + ".join(dict.fromkeys(s.what for s in segments if s.start_s < end_s and s.end_s > start_s))


def background_hours_by_source(segments: list[Segment]) -> dict[str, float]:
    """Hours of the mixture each source's clips (or the synthetic noise) fill, shots included; a
    crossfade counts half to each side, so the hours add up to the mixture's length."""
    hours = Counter()
    for i, s in enumerate(segments):
        before = max(0.0, segments[i - 1].end_s - s.start_s) if i else 0.0
        after = max(0.0, s.end_s - segments[i + 1].start_s) if i + 1 < len(segments) else 0.0
        hours[source_of(s.what)] += (s.end_s - s.start_s - (before + after) / 2) / 3600
    return {what: round(h, 4) for what, h in sorted(hours.items())}


def source_of(what: str) -> str:
    """The source of a background piece ("source/category"), or SYNTHETIC."""
    return SYNTHETIC if what.startswith(SYNTHETIC) else what.split("/")[0]


def _blocks(audio: np.ndarray, seconds: float = 60.0):
    step = round(seconds * SAMPLE_RATE)
    for start in range(0, audio.shape[0], step):
        yield audio[start : start + step]


def streaming_report(
    clips: list[Clip], ensemble: Ensemble, hop: int, merge_gap_s: float, hours: float, seed: int
) -> tuple[dict, StreamScores]:
    """The streaming proxy: a mixture of the clips' validation fold."""
    return mixture_report(*validation_parts(clips), ensemble, hop, merge_gap_s, hours, seed)


def validation_parts(clips: list[Clip]) -> tuple[list[Clip], list[Clip]]:
    """The validation fold's non-gun clips and gunshots: a validation mixture's background and shots."""
    return [c for c in clips if c.fold == "val" and not c.label], [c for c in clips if c.fold == "val" and c.label]


def mixture_report(
    negatives: list[Clip], shots: list[Clip], ensemble: Ensemble, hop: int, merge_gap_s: float, hours: float, seed: int
) -> tuple[dict, StreamScores]:
    """Builds the mixture and runs it through OfflineDetector with the ensemble's thresholds and
    vote. "missed" and "inserted" (onsets) are the long lists of the report; the window scores of
    every model come with it."""
    mixture, result, windows = _run_mixture(negatives, shots, ensemble, hop, merge_gap_s, hours, seed)
    window_s = windows.window_s
    scores = score_events(result.events, mixture.shots, mixture.duration_s, window_s)
    heard = [heard_in(mixture.segments, t, t + window_s) for t in scores["false_alert_starts_s"]]
    report = {
        "note": PROXY_NOTE,
        "seed": seed,
        "hours": round(mixture.duration_s / 3600, 4),
        "background_clips": mixture.background_clips,
        "background_clip_plays": sum(not s.what.startswith(SYNTHETIC) for s in mixture.segments),
        "clipped_samples": mixture.clipped_samples,
        "distinct_shots": len({s.path for s in mixture.shots}),
        "hop_s": hop / ensemble.sample_rate,
        "merge_gap_s": merge_gap_s,
        "vote": ensemble.rule().describe(),
        "votes_required": ensemble.votes_required,
        "fused_threshold": ensemble.fused_threshold,
        "thresholds": {m.id: m.threshold for m in ensemble.models},
        **scores,
        "false_alerts_by_background": dict(Counter(heard).most_common()),
        "background_hours_by_source": background_hours_by_source(mixture.segments),
        "inserted": [{"peak_s": round(s.peak_s, 3), "snr_db": s.snr_db, "path": s.path} for s in mixture.shots],
    }
    return report, windows


@dataclass(frozen=True)
class StreamScores:
    """Every window's probability per model over a mixture, with the inserted shots: enough to
    score any thresholds and vote without running the models again."""

    probs: np.ndarray  # (windows, models)
    models: list[str]
    starts_s: np.ndarray  # each window's start
    window_s: float
    shots: list[InsertedShot]
    background_h: float


def stream_scores(models_dir, clips: list[Clip], hop: int, hours: float, seed: int) -> StreamScores:
    """Run a validation mixture through the runtime path once, keeping every model's window scores."""
    from inference.model import load_spec

    models_dir = Path(models_dir)
    ids = [p.stem for p in sorted(models_dir.glob("*.tflite"))]
    ensemble = Ensemble(tuple(load_spec(models_dir, model_id) for model_id in ids), votes_required=1)
    return _run_mixture(*validation_parts(clips), ensemble, hop, 0.0, hours, seed)[2]


def _run_mixture(
    negatives: list[Clip], shots: list[Clip], ensemble: Ensemble, hop: int, merge_gap_s: float, hours: float, seed: int
) -> tuple[Mixture, StreamResult, StreamScores]:
    """Builds the mixture and runs it through OfflineDetector with the ensemble's vote, keeping every
    model's window scores."""
    if not negatives or not shots:
        raise ValueError("streaming evaluation needs gunshots and other clips")
    mixture = build_mixture(negatives, shots, hours, seed)
    result = OfflineDetector(ensemble, hop, merge_gap_s).run(_blocks(mixture.audio), keep_window_scores=True)
    order = [m.id for m in ensemble.models]
    probs = np.array([[votes[m] for m in order] for _, votes in result.window_scores])
    starts = np.array([index * hop / SAMPLE_RATE for index, _ in result.window_scores])
    window_s = ensemble.window_samples / SAMPLE_RATE
    background_h = background_hours(mixture.shots, mixture.duration_s)
    return mixture, result, StreamScores(probs, order, starts, window_s, mixture.shots, background_h)


def background_hours(shots: list[InsertedShot], duration_s: float) -> float:
    """Hours of a mixture that are background: not under a shot or its TAIL_S."""
    under_shots = sum(min(s.end_s + TAIL_S, duration_s) - s.start_s for s in shots)
    return max(duration_s - under_shots, 0.0) / 3600


def joined(streams: list[StreamScores]) -> StreamScores:
    """Several mixtures' window scores as one stream, each after the one before with SLOT_S of
    nothing between them (no event can span two)."""
    first = streams[0]
    if any(s.models != first.models or s.window_s != first.window_s or not s.starts_s.size for s in streams):
        raise ValueError("joined streams need the same models and window length, and windows")
    probs, starts, shots, offset = [], [], [], 0.0
    for stream in streams:
        probs.append(stream.probs)
        starts.append(stream.starts_s + offset)
        shots += [
            dataclasses.replace(s, peak_s=s.peak_s + offset, start_s=s.start_s + offset, end_s=s.end_s + offset)
            for s in stream.shots
        ]
        offset = starts[-1][-1] + stream.window_s + SLOT_S
    background_h = sum(s.background_h for s in streams)
    probs, starts = np.concatenate(probs), np.concatenate(starts)
    return StreamScores(probs, first.models, starts, first.window_s, shots, background_h)


def on_shot(scores: StreamScores) -> np.ndarray:
    """Per window: does it overlap an inserted shot (or the shot's TAIL_S)?"""
    hit = np.zeros(scores.starts_s.shape, dtype=bool)
    for shot in scores.shots:
        hit |= (scores.starts_s + scores.window_s >= shot.start_s) & (scores.starts_s <= shot.end_s + TAIL_S)
    return hit


def recall_and_false_alerts(scores: StreamScores, rule: VoteRule, merge_gap_s: float) -> tuple[float, int]:
    """Event recall and false alerts of one vote rule, merging positive windows into events as the
    EventTracker does (a positive window more than merge_gap after an event's end starts a new one)."""
    positive = rule.positive(scores.probs, scores.models)
    starts = scores.starts_s[positive]
    if not starts.shape[0]:
        return 0.0, 0
    new_event = np.concatenate([[True], starts[1:] > starts[:-1] + scores.window_s + merge_gap_s])
    first = np.flatnonzero(new_event)
    event_start = starts[first]
    event_end = np.append(starts[first[1:] - 1], starts[-1]) + scores.window_s
    shot_start = np.array([s.start_s for s in scores.shots])
    shot_end = np.array([s.end_s + TAIL_S for s in scores.shots])
    overlap = (event_start[:, None] <= shot_end[None, :]) & (event_end[:, None] >= shot_start[None, :])
    return float(overlap.any(axis=0).mean()), int((~overlap.any(axis=1)).sum())
