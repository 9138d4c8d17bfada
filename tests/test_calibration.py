"""The vote rule is chosen on validation scores: k of n, or the fused vote only where it is better."""

import numpy as np

from inference.vote import VoteRule
from models.training.data import Clip
from models.training.evaluate import choose_thresholds
from models.training.streaming import InsertedShot, StreamScores, joined, recall_and_false_alerts
from models.training.train import VOTES_CHOICES

MODELS = ["wave", "mel_fine", "mel_coarse"]
HOP_S, WINDOW_S, SLOT_S = 0.5, 1.0, 30.0
HOURS = 2.0
QUIET = (0.01, 0.01, 0.01)


def scenario(shot_probs: list[tuple], loud: list[tuple]) -> tuple[list[dict], list[Clip], np.ndarray, StreamScores]:
    """Two hours of quiet windows; one shot per 30 s slot, its two windows scored `shot_probs` in
    turn; a loud non-gun sound between shots every tenth slot, scored `loud` in turn; and clips
    scored the same way (the shots, the loud sounds, quiet background)."""
    starts = np.arange(0.0, HOURS * 3600, HOP_S)
    probs = np.tile(QUIET, (starts.shape[0], 1))
    shots = []
    for slot in range(int(HOURS * 3600 / SLOT_S)):
        peak = slot * SLOT_S + 10.2
        hit = (starts <= peak) & (starts + WINDOW_S > peak)
        probs[hit] = shot_probs[slot % len(shot_probs)]
        shots.append(InsertedShot(peak, peak - 0.1, peak + 0.5, 10.0, f"shot{slot}", "s"))
        if slot % 10 == 0:
            probs[np.flatnonzero(starts >= slot * SLOT_S + 25.0)[0]] = loud[(slot // 10) % len(loud)]
    stream = StreamScores(probs, MODELS, starts, WINDOW_S, shots, HOURS * 0.95)

    def clip(label: int, scores: tuple) -> tuple[dict, Clip]:
        windows = {m: np.array([QUIET[i], scores[i]]) for i, m in enumerate(MODELS)}
        return windows, Clip("c.flac", label, "gunshot" if label else "dog_bark", "s", "g", "val", np.zeros(16000))

    pairs = [clip(1, p) for p in shot_probs] + [clip(0, p) for p in loud] + [clip(0, QUIET)] * 20
    return [p for p, _ in pairs], [c for _, c in pairs], np.full(len(pairs), 60.0), stream


def choose(shot_probs: list[tuple], loud: list[tuple]):
    probs, clips, durations, stream = scenario(shot_probs, loud)
    return choose_thresholds(probs, clips, durations, VOTES_CHOICES, stream)


def rotations(scores: tuple) -> list[tuple]:
    return [scores[-i:] + scores[:-i] for i in range(len(scores))]


def test_fused_vote_is_chosen_when_evidence_spread_over_the_models_is_what_tells_shots_apart():
    # shots: one model sure, two fairly sure (mean log-odds 2.46). Loud sounds: one model surer
    # than any shot's (rules out 1 of 3), or all three nearly as sure as a shot's (rules out 3 of 3
    # and leaves 2 of 3 at most two shots in three); their mean log-odds are 1.13 and 2.04.
    shots = rotations((0.99, 0.8, 0.8))
    loud = rotations((0.9999, 0.05, 0.05)) + rotations((0.9, 0.9, 0.85))
    rule, report = choose(shots, loud)
    assert rule.fused_threshold is not None
    assert 0.885 < rule.fused_threshold < 0.921  # between the loud sounds' mean log-odds and the shots'
    stream = report["ensemble"]["calibration_stream"]
    assert stream["chosen"]["event_recall"] == 1.0 and stream["chosen"]["false_alerts"] == 0
    assert stream["best_k_of_n"]["event_recall"] < 0.7
    assert report["ensemble"]["fp"] == 0 and report["ensemble"]["recall"] == 1.0


def test_k_of_n_is_kept_when_the_fused_vote_is_no_better_and_ties_need_more_votes():
    rule, report = choose([(0.99, 0.99, 0.99)], [(0.99, 0.01, 0.01)])
    assert rule.fused_threshold is None
    assert rule.votes_required >= 2  # 1 of 3 would fire on the loud sound
    assert report["ensemble"]["calibration_stream"]["chosen"]["event_recall"] == 1.0
    assert report["ensemble"]["calibration_stream"]["chosen"]["false_alerts"] == 0
    assert report["ensemble"]["negative_hours"] == round(21 * 60 / 3600, 3)  # the 21 other clips only
    rule, _ = choose([(0.99, 0.99, 0.99)], [(0.01, 0.01, 0.01)])
    assert rule.votes_required == 3  # every k hears every shot: the one needing most models is kept


def test_a_sound_only_the_mixture_holds_rules_out_every_vote_it_passes():
    """Once in 1.9 hours of background (the target allows int(0.95) = 0 false alerts), a sound the
    models score above every shot: any vote that hears the shots passes it, so none is taken."""
    probs, clips, durations, stream = scenario([(0.99, 0.8, 0.8)], [QUIET])
    stream.probs[np.flatnonzero(stream.starts_s >= 25.0)[0]] = (0.9999, 0.9, 0.9)
    _, report = choose_thresholds(probs, clips, durations, VOTES_CHOICES, stream)
    assert report["ensemble"]["calibration_stream"]["chosen"]["false_alerts"] == 0
    assert report["ensemble"]["recall"] == 0.0


def test_joined_mixtures_keep_their_shots_and_false_alerts_apart():
    """Two mixtures joined for calibration: the second's times move past the first's end, its shots
    with them, the background hours add up, and a loud window at the end of one and another at the
    start of the next stay two false alerts."""
    *_, stream = scenario([(0.99, 0.99, 0.99)], [(0.01, 0.01, 0.01)])
    stream.probs[-1] = stream.probs[0] = (0.99, 0.99, 0.99)  # a loud sound at each end, away from the shots
    both = joined([stream, stream])
    first_end = stream.starts_s[-1] + WINDOW_S
    assert both.probs.shape[0] == 2 * stream.probs.shape[0] and both.background_h == 2 * stream.background_h
    assert both.starts_s[stream.starts_s.shape[0]] == first_end + SLOT_S
    assert [s.peak_s for s in both.shots[len(stream.shots) :]] == [s.peak_s + first_end + SLOT_S for s in stream.shots]
    rule = VoteRule(dict.fromkeys(MODELS, 0.9), 3)
    recall, false_alerts = recall_and_false_alerts(both, rule, merge_gap_s=2.0)
    assert recall == 1.0 and false_alerts == 2 * recall_and_false_alerts(stream, rule, merge_gap_s=2.0)[1] == 4
