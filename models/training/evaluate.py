"""Validation figures and threshold choice, computed through the runtime inference path."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from inference.model import Ensemble, load_ensemble, load_spec
from inference.offline import OfflineDetector
from inference.vote import VoteRule, fused_scores, logit, sigmoid
from models.training.data import HARD_NEGATIVES, SAMPLE_RATE, Clip
from models.training.streaming import StreamScores, on_shot, recall_and_false_alerts

HOP = SAMPLE_RATE // 2
MERGE_GAP_S = 2.0
TARGET_FALSE_ALERTS_PER_HOUR = 0.5
FUSED_STEP = 1e-6  # log-odds: a fused threshold just above a window's score, far above float error
HINDSIGHT_SLACK = 20  # false alerts past the largest allowance before a threshold scan gives up
HINDSIGHT_NOTE = (
    "thresholds and vote chosen on this mixture itself: the highest event recall found at no more false "
    "alerts than each allowance (thresholds scanned down until the false alerts pass it by 20); about the "
    "most these models could hear here, not an operating point"
)
THRESHOLD_GRID = (
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.85,
    0.9,
    0.93,
    0.95,
    0.97,
    0.98,
    0.99,
    0.995,
    0.998,
    0.999,
    0.9995,
    0.9998,
    0.9999,
)
ROLL_SEED = 0
ROLL_S = (0.25, 1.75)  # how far `rolled` turns a clip
# The fused vote's thresholds: log-odds -2 to 14 in steps of 0.1 (probabilities 0.12 to 1 - 8e-7).
FUSED_GRID = tuple(float(1 / (1 + np.exp(-x))) for x in np.arange(-2.0, 14.05, 0.1))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    combined = np.concatenate([pos, neg])
    for value in np.unique(combined):  # average ranks of ties
        tied = combined == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def binary_figures(labels: np.ndarray, decided: np.ndarray) -> dict[str, float]:
    labels, decided = np.asarray(labels).astype(bool), np.asarray(decided).astype(bool)
    tp, fp = int(np.sum(decided & labels)), int(np.sum(decided & ~labels))
    fn = int(np.sum(~decided & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def recall_at_false_positives(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The best recall of a score threshold that passes at most f negatives, at each f where it rises:
    compares systems at the same false-positive count (F1 at each one's own operating point does not)."""
    labels = np.asarray(labels).astype(bool)
    negatives, positives = np.sort(scores[~labels])[::-1], scores[labels]
    curve: dict[str, float] = {}
    for allowed in range(len(negatives) + 1):
        bar = negatives[allowed] if allowed < len(negatives) else -np.inf
        recall = round(float(np.mean(positives > bar)), 4)
        if not curve or recall > list(curve.values())[-1]:
            curve[str(allowed)] = recall
    return curve


def recall_within(curve: dict[str, float], false_positives: int) -> float:
    """The best recall on `curve` (false-positive count -> recall, rising) with at most that many."""
    return max(recall for allowed, recall in curve.items() if int(allowed) <= false_positives)


def rolled(clips: list[Clip], seed: int = ROLL_SEED) -> list[Clip]:
    """Each clip turned circularly by a random ROLL_S seconds (the same turns for the same clips).
    A shot then no longer sits where the clip's cutting put it: half of the belize and elp shots
    peak at 0.5 s, where a model trained on shots at a fixed place in its window finds them."""
    rng = np.random.default_rng(seed)
    turns = rng.uniform(*ROLL_S, len(clips)) * SAMPLE_RATE
    return [dataclasses.replace(c, audio=np.roll(c.audio, int(t))) for c, t in zip(clips, turns, strict=True)]


def window_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {"auc": round(roc_auc(labels, probs), 4), **binary_figures(labels, probs >= 0.5)}


def clip_window_probs(models_dir: Path, clips: list[Clip]) -> tuple[list[np.ndarray], np.ndarray]:
    """Per clip, a (windows, models) array of probabilities from the exported models, run through
    the same offline path as `analyze` (padding, windows, features, LiteRT)."""
    models_dir = Path(models_dir)
    ids = [p.stem for p in sorted(models_dir.glob("*.tflite"))]
    ensemble = Ensemble(tuple(load_spec(models_dir, model_id) for model_id in ids), votes_required=1)
    detector = OfflineDetector(ensemble, HOP, MERGE_GAP_S, votes_required=1)
    order = [m.id for m in ensemble.models]
    probs = []
    for clip in clips:
        result = detector.run([clip.audio], keep_window_scores=True)
        probs.append(np.array([[votes[m] for m in order] for _, votes in result.window_scores]))
    durations = np.array([c.audio.shape[0] / SAMPLE_RATE for c in clips])
    return [dict(zip(order, p.T, strict=True)) for p in probs], durations


def clip_scores(probs: list[dict], weights: dict[str, float] | None = None) -> np.ndarray:
    """Per clip, the fused probability (sigmoid of the mean log-odds, or of their `weights`-weighted
    mean) of its highest window."""
    models = list(probs[0])
    w = np.array([1.0 if weights is None else weights[m] for m in models])
    fused = [np.max(logit(np.stack([p[m] for m in models], axis=1)) @ w / w.sum()) for p in probs]
    return sigmoid(np.array(fused))


def detections(probs: list[dict], rule: VoteRule) -> np.ndarray:
    """Per clip: did any of its windows pass the vote?"""
    return np.array([bool(np.any(rule.positive(np.stack(list(p.values()), axis=1), list(p)))) for p in probs])


def detections_alone(probs: list[dict], model: str, threshold: float) -> np.ndarray:
    """Per clip: did one model alone reach its threshold in any window?"""
    return np.array([bool(np.any(p[model] >= threshold)) for p in probs])


def _stack(probs: list[dict], models: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All windows as one (windows, models) array, and each window's clip index."""
    windows = np.concatenate([np.stack([p[m] for m in models], axis=1) for p in probs])
    owner = np.concatenate([np.full(len(p[models[0]]), i) for i, p in enumerate(probs)])
    return windows, owner


def k_of_n_rules(models: list[str], votes_choices: tuple[int, ...]):
    for votes_required in votes_choices:
        for combo in itertools.product(THRESHOLD_GRID, repeat=len(models)):
            yield VoteRule(dict(zip(models, combo, strict=True)), votes_required)


def fused_rules(thresholds: dict[str, float], votes_required: int):
    """The fused vote at each threshold of FUSED_GRID (the models' own thresholds ride along)."""
    for threshold in FUSED_GRID:
        yield VoteRule(thresholds, votes_required, threshold)


def choose_thresholds(
    probs: list[dict],
    clips: list[Clip],
    durations: np.ndarray,
    votes_choices: tuple[int, ...],
    stream: StreamScores | None = None,
) -> tuple[VoteRule, dict]:
    """The vote rule with at most TARGET_FALSE_ALERTS_PER_HOUR on the negative clips and, with
    `stream` (a validation mixture, see streaming.py), on its background too, and the highest stream
    event recall, then clip recall (ties: fewer false alerts, then the lower thresholds). First the
    best k of n (per-model thresholds and k); then the fused vote, which replaces it only when
    strictly better (the k-of-n thresholds stay in the sidecars: each model alone, and
    detector.votes_required)."""
    labels = np.array([c.label for c in clips], dtype=bool)
    negative_hours = durations[~labels].sum() / 3600
    allowed = int(TARGET_FALSE_ALERTS_PER_HOUR * negative_hours)
    stream_allowed = int(TARGET_FALSE_ALERTS_PER_HOUR * stream.background_h) if stream else 0
    models = list(probs[0])
    if stream is not None and stream.models != models:
        raise ValueError(f"stream scores are for {stream.models}, clips for {models}")
    windows, owner = _stack(probs, models)

    def merit(rule: VoteRule) -> tuple | None:
        detected = np.zeros(len(probs), dtype=bool)
        detected[owner[rule.positive(windows, models)]] = True
        fp = int(np.sum(detected & ~labels))
        if fp > allowed:
            return None
        stream_recall, stream_false = 0.0, 0
        if stream is not None:
            stream_recall, stream_false = recall_and_false_alerts(stream, rule, MERGE_GAP_S)
            if stream_false > stream_allowed:
                return None
        return stream_recall, float(np.mean(detected[labels])), -fp - stream_false

    def best(rules) -> tuple[tuple, VoteRule] | None:
        found = None
        for rule in rules:
            key = merit(rule)
            # ties: more votes required (k of n), then the lower thresholds
            tie_break = (rule.votes_required, -(rule.fused_threshold or sum(rule.thresholds.values())))
            if key is not None and (found is None or (*key, *tie_break) > found[0]):
                found = ((*key, *tie_break), rule)
        return found

    k_of_n = best(k_of_n_rules(models, votes_choices))
    if k_of_n is None:
        k_of_n = ((), VoteRule(dict.fromkeys(models, max(THRESHOLD_GRID)), max(votes_choices)))
    fused = best(fused_rules(k_of_n[1].thresholds, k_of_n[1].votes_required))
    rule = fused[1] if fused is not None and fused[0][:3] > k_of_n[0][:3] else k_of_n[1]
    report = figures(probs, clips, durations, rule, negative_hours)
    if stream is not None:
        candidates = {"chosen": rule, "best_k_of_n": k_of_n[1], "best_fused": fused[1] if fused else None}
        report["ensemble"]["calibration_stream"] = {
            "background_hours": round(stream.background_h, 3),
            **{name: stream_figures(stream, r) for name, r in candidates.items() if r is not None},
        }
    return rule, report


def stream_figures(stream: StreamScores, rule: VoteRule) -> dict:
    recall, false_alerts = recall_and_false_alerts(stream, rule, MERGE_GAP_S)
    return {"rule": rule.describe(), "event_recall": round(recall, 4), "false_alerts": false_alerts}


def figures(probs, clips, durations, rule: VoteRule, negative_hours) -> dict:
    labels = np.array([c.label for c in clips], dtype=bool)
    thresholds = rule.thresholds
    detected = detections(probs, rule)
    scores = clip_scores(probs)
    ensemble = {
        **binary_figures(labels, detected),
        "clip_auc": round(roc_auc(labels, scores), 4),
        "false_alerts_per_hour": round(float(np.sum(detected & ~labels)) / negative_hours, 3),
        "negative_hours": round(negative_hours, 3),
        "vote": rule.describe(),
        "thresholds": thresholds,
        "votes_required": rule.votes_required,
        "fused_threshold": rule.fused_threshold,
    }
    per_model = {}
    for model in probs[0]:
        alone = detections_alone(probs, model, thresholds[model])
        model_scores = np.array([np.max(p[model]) for p in probs])
        per_model[model] = {
            "clips": {**binary_figures(labels, alone), "clip_auc": round(roc_auc(labels, model_scores), 4)}
        }
    per_source = {source: figures for source, (figures, _) in source_figures(clips, detected).items()}
    per_category = {}
    for label, category in sorted({(c.label, c.category) for c in clips}):
        mask = np.array([c.category == category and c.label == label for c in clips])
        per_category[category] = {
            "label": "gunshot" if label else "other",
            "clips": int(mask.sum()),
            "detected": int((detected & mask).sum()),
            "detected_rate": round(float(detected[mask].mean()), 4),
        }
    hard = {k: v["detected_rate"] for k, v in per_category.items() if k in HARD_NEGATIVES and v["label"] == "other"}
    return {
        "ensemble": ensemble,
        "per_model": per_model,
        "per_source": dict(per_source),
        "per_category": per_category,
        "false_positive_rate_hard_negatives": hard,
    }


def source_figures(clips: list[Clip], detected: np.ndarray) -> dict[str, tuple[dict, np.ndarray]]:
    """Per source: gunshot recall and false positives (None / 0 where it has no clips of a kind),
    with the source's clip mask."""
    labels = np.array([c.label for c in clips], dtype=bool)
    out = {}
    for source in sorted({c.source for c in clips}):
        mask = np.array([c.source == source for c in clips])
        pos, neg = mask & labels, mask & ~labels
        out[source] = (
            {
                "gunshot_clips": int(pos.sum()),
                "recall": round(float(detected[pos].mean()), 4) if pos.any() else None,
                "other_clips": int(neg.sum()),
                "false_positive_clips": int((detected & neg).sum()),
            },
            mask,
        )
    return out


WORST = 20  # false positives and misses listed in the report


def evaluate_manifest(manifest: Path, models_dir: Path, out_dir: Path, fold: str) -> dict:
    """`python cli.py evaluate`: the shipped models, vote and thresholds over a manifest's clips,
    through the runtime path; writes metrics.json, roc.csv and the worst clips into `out_dir`."""
    from models.training.data import load_clips

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = [c for c in load_clips(manifest, out_dir / "cache") if fold == "all" or c.fold == fold]
    if not clips:
        raise ValueError(f"{manifest}: no clips in fold {fold!r}")
    ensemble = load_ensemble(models_dir)
    probs, durations = clip_window_probs(models_dir, clips)
    labels = np.array([c.label for c in clips], dtype=bool)
    rule = ensemble.rule()
    report = figures(probs, clips, durations, rule, max(durations[~labels].sum() / 3600, 1e-9))
    scores = clip_scores(probs)
    detected = detections(probs, rule)
    order = np.argsort(scores)
    report["worst_false_positives"] = [
        {"path": clips[i].path, "category": clips[i].category, "score": round(float(scores[i]), 4)}
        for i in order[::-1]
        if detected[i] and not labels[i]
    ][:WORST]
    report["worst_misses"] = [
        {"path": clips[i].path, "source": clips[i].source, "score": round(float(scores[i]), 4)}
        for i in order
        if labels[i] and not detected[i]
    ][:WORST]
    report["ensemble"]["recall_at_false_positive_clips"] = recall_at_false_positives(labels, scores)
    report["clips"] = {"gunshot": int(labels.sum()), "other": int((~labels).sum()), "fold": fold}
    report["confusion"] = confusion(labels, detected)
    _write_confusion(out_dir / "confusion.csv", report["confusion"])
    curve = score_curve(labels, scores)
    _write_roc(out_dir / "roc.csv", curve)
    report["plots"] = plot_curves(out_dir, curve, roc_auc(labels, scores))
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=1, default=float))
    return report


def evaluate_stream(
    manifest: Path, models_dir: Path, out_dir: Path, hop_s: float, merge_gap_s: float, hours: float, seed: int
) -> dict:
    """`python cli.py evaluate --stream-hours H`: the streaming proxy (models/training/streaming.py)
    over the manifest's validation fold; writes streaming.json (with the missed shots) into `out_dir`."""
    from models.training.data import load_clips
    from models.training.streaming import streaming_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ensemble = load_ensemble(models_dir)
    clips = [c for c in load_clips(manifest, out_dir / "cache") if c.fold == "val"]
    report, windows = streaming_report(clips, ensemble, round(hop_s * ensemble.sample_rate), merge_gap_s, hours, seed)
    report["hindsight"] = hindsight(windows, merge_gap_s, false_alert_allowances(windows.background_h))
    report["model_versions"] = {m.id: m.version for m in ensemble.models}
    (out_dir / "streaming.json").write_text(json.dumps(report, indent=1))
    return report


def false_alert_allowances(background_h: float) -> list[int]:
    """The false alerts a hindsight search allows: none, and as many as the target allows."""
    return sorted({0, int(TARGET_FALSE_ALERTS_PER_HOUR * background_h)})


def hindsight(scores: StreamScores, merge_gap_s: float, allowances: list[int]) -> dict:
    """The highest event recall each way of voting reaches on this mixture with at most N false
    alerts, for each N of `allowances`: k of n on the calibration's threshold grid, and the fused
    vote and each model alone at thresholds just above the background windows' scores. Chosen on
    the mixture itself: about the most a calibration could get from these models here, not an
    operating point."""
    result = {"note": HINDSIGHT_NOTE, "allowances": allowances}
    votes_choices = tuple(range(1, len(scores.models) + 1))
    result["k_of_n"] = _best(k_of_n_rules(scores.models, votes_choices), _voting(scores), merge_gap_s, allowances)
    result["fused"] = _best(_descending(scores), scores, merge_gap_s, allowances, stop=True)
    held = two_in_a_row(scores)
    result["fused_two_in_a_row"] = _best(_descending(held), held, merge_gap_s, allowances, stop=True)
    for column, model in enumerate(scores.models):
        alone = dataclasses.replace(scores, probs=scores.probs[:, [column]], models=[model])
        result[model] = _best(_descending(alone), alone, merge_gap_s, allowances, stop=True)
    return result


def two_in_a_row(scores: StreamScores) -> StreamScores:
    """The fused vote held through two windows in a row: each window scored by the lower of its
    fused score and the next window's (one HOP later: none across the gap between joined
    mixtures), as one column, "fused". A shot lies in several overlapping windows; a sound that
    passes in one window alone no longer counts."""
    fused = fused_scores(scores.probs)
    follows = np.isclose(np.diff(scores.starts_s), HOP / SAMPLE_RATE)
    next_fused = np.append(np.where(follows, fused[1:], 0.0), 0.0)
    return dataclasses.replace(scores, probs=np.minimum(fused, next_fused)[:, None], models=["fused"])


def _voting(scores: StreamScores) -> StreamScores:
    """Only the windows some model scores at the lowest threshold of the grid or above: no k of n on
    the grid calls any other window a shot, and the scan over the grid is that much shorter."""
    kept = scores.probs.max(axis=1) >= min(THRESHOLD_GRID)
    return dataclasses.replace(scores, probs=scores.probs[kept], starts_s=scores.starts_s[kept])


def _descending(scores: StreamScores) -> Iterator[VoteRule]:
    """Thresholds just above each background window's score, the highest first. One model: its
    probability; several: their fused vote (mean log-odds)."""
    fused = len(scores.models) > 1
    values = logit(scores.probs).mean(axis=1) if fused else scores.probs[:, 0].astype(np.float64)
    for value in np.unique(values[~on_shot(scores)])[::-1]:
        if fused:
            threshold = float(sigmoid(value + FUSED_STEP))
            yield VoteRule(dict.fromkeys(scores.models, threshold), len(scores.models), threshold)
        else:
            yield VoteRule({scores.models[0]: float(np.nextafter(value, np.inf))}, 1)


def _best(
    rules: Iterable[VoteRule], scores: StreamScores, merge_gap_s: float, allowances: list[int], stop: bool = False
) -> dict[str, dict]:
    """Per allowance, the rule with the highest event recall within it (ties: fewer false alerts,
    then the rule found first). `stop`: the rules come from the strictest down, and the scan ends
    once the false alerts pass the largest allowance by HINDSIGHT_SLACK (a lower threshold can
    merge two events into one, so the count dips now and then)."""
    best: dict[str, dict] = {}
    for rule in rules:
        recall, false_alerts = recall_and_false_alerts(scores, rule, merge_gap_s)
        recall = round(recall, 4)  # as reported
        for key in (str(n) for n in allowances if false_alerts <= n):
            found = best.get(key)
            if found is None or (recall, -false_alerts) > (found["event_recall"], -found["false_alerts"]):
                best[key] = {
                    "vote": rule.describe(),
                    "thresholds": rule.thresholds if rule.fused_threshold is None else {"fused": rule.fused_threshold},
                    "event_recall": recall,
                    "false_alerts": false_alerts,
                }
        if stop and false_alerts > max(allowances) + HINDSIGHT_SLACK:
            break
    return best


def confusion(labels: np.ndarray, detected: np.ndarray) -> dict[str, dict[str, int]]:
    """Clips by true label (rows) and decision (columns)."""
    return {
        name: {"gunshot": int(np.sum(detected & truth)), "other": int(np.sum(~detected & truth))}
        for name, truth in (("gunshot", labels), ("other", ~labels))
    }


def _write_confusion(path: Path, table: dict[str, dict[str, int]]) -> None:
    rows = ["true/decided,gunshot,other"] + [f"{name},{row['gunshot']},{row['other']}" for name, row in table.items()]
    path.write_text("\n".join(rows) + "\n")


def score_curve(labels: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """False-positive rate, recall and precision at every distinct score, highest threshold first."""
    thresholds = np.unique(scores)[::-1]
    decided = scores[None, :] >= thresholds[:, None]
    tp, fp = (decided & labels).sum(axis=1), (decided & ~labels).sum(axis=1)
    return {
        "threshold": thresholds,
        "false_positive_rate": fp / max(1, (~labels).sum()),
        "recall": tp / max(1, labels.sum()),
        "precision": tp / np.maximum(1, tp + fp),
    }


def _write_roc(path: Path, curve: dict[str, np.ndarray]) -> None:
    rows = [",".join(curve)]
    for values in zip(*curve.values(), strict=True):
        rows.append(",".join(f"{v:.6f}" if i == 0 else f"{v:.4f}" for i, v in enumerate(values)))
    path.write_text("\n".join(rows) + "\n")


def plot_curves(out_dir: Path, curve: dict[str, np.ndarray], auc: float) -> list[str]:
    """roc.png and precision_recall.png of the ensemble score; none when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return []
    origin = np.zeros(1)
    roc = (np.concatenate([origin, curve["false_positive_rate"]]), np.concatenate([origin, curve["recall"]]))
    written = []
    for name, (x, y), xlabel, ylabel in (
        ("roc.png", roc, "false-positive rate (clips)", "recall"),
        ("precision_recall.png", (curve["recall"], curve["precision"]), "recall", "precision"),
    ):
        figure, axes = pyplot.subplots(figsize=(4.5, 4.5))
        axes.plot(x, y)
        axes.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02), title=f"ensemble (clip AUC {auc:.3f})")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(out_dir / name, dpi=100)
        pyplot.close(figure)
        written.append(name)
    return written
