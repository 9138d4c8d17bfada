"""The near-miss simulation's cut of a source into an early stretch (what a device hears and a
person labels) and a later one (what it is judged on): by split group, never across one."""

from __future__ import annotations

import numpy as np

from models.training.data import Clip
from models.training.evaluate import clip_scores, clip_window_probs
from models.training.field_adaptation import (
    DEPLOYED_SHARE,
    SITE_VAL_SHARE,
    as_site_clips,
    site_folds,
    site_threshold,
    stretches,
)
from tests.detector_run import SHIPPED_MODELS, stream_with_shots


def clip(source: str, group: str, label: int) -> Clip:
    return Clip(f"{group}.flac", label, "gunshot" if label else "ambience", source, group, "val", np.zeros(8))


def test_the_source_is_cut_by_split_group_with_gunshot_and_other_groups_cut_alike():
    clips = [clip("site", f"gun{g}", 1) for g in range(10) for _ in range(3)]
    clips += [clip("site", f"bg{g}", 0) for g in range(6) for _ in range(2)]
    clips += [clip("elsewhere", "x", 1)]
    early, later = stretches(clips, "site")
    assert len(early) + len(later) == len(clips) - 1
    assert not {c.split_group for c in early} & {c.split_group for c in later}
    for prefix, groups in (("gun", 10), ("bg", 6)):
        early_groups = {c.split_group for c in early if c.split_group.startswith(prefix)}
        assert len(early_groups) == round(DEPLOYED_SHARE * groups)
    assert stretches(clips, "site") == (early, later)  # seeded


def test_labelled_clips_train_as_the_site_s_own_source():
    (site,) = as_site_clips([clip("belize", "gun0", 1)], "belize")
    assert (site.source, site.fold, site.label) == ("belize_site", "train", 1)


def test_with_a_site_vote_a_share_of_the_labelled_groups_goes_to_validation():
    labelled = [clip("belize", f"gun{g}", 1) for g in range(5)] + [clip("belize", f"bg{g}", 0) for g in range(5)]
    assert {c.fold for c in site_folds(labelled, "belize", site_vote=False)} == {"train"}
    site = site_folds(labelled, "belize", site_vote=True)
    groups = {fold: {c.split_group for c in site if c.fold == fold} for fold in ("train", "val")}
    assert not groups["train"] & groups["val"] and len(site) == len(labelled)
    assert len(groups["val"]) == 2 * round(SITE_VAL_SHARE * 5)  # of the gunshot groups and of the others
    assert {c.source for c in site} == {"belize_site"}


def test_a_site_threshold_sits_just_above_the_site_s_loudest_other_clip():
    """With the shipped models: a loud other clip sets the bar, a quiet one stays under it."""

    def sound(label: int, shot_at: float | None, gain: float) -> Clip:
        audio = gain * stream_with_shots(4.0, [(shot_at, "hedgewars-shotgun")] if shot_at else [])
        return Clip("x.flac", label, "c", "site", "g", "val", audio.astype(np.float32))

    site_val = [sound(0, None, 1.0), sound(0, None, 0.1), sound(1, 2.0, 1.0)]
    later = [sound(1, 1.0, 1.0), sound(1, 3.0, 0.05), sound(0, None, 1.0)]
    figures = site_threshold(SHIPPED_MODELS, site_val, later)
    bar = max(clip_scores(clip_window_probs(SHIPPED_MODELS, site_val[:2])[0]))
    assert figures["fused_threshold"] == round(float(bar), 6)
    later_scores = clip_scores(clip_window_probs(SHIPPED_MODELS, later)[0])
    assert figures["tp"] == int(sum(later_scores[:2] > bar)) and figures["fp"] == int(later_scores[2] > bar)


def test_the_card_shows_before_and_after_on_the_later_stretch():
    from models.training import card

    def fold(recall: float, vote: str) -> dict:
        curve = {"0": recall, "4": 0.9}
        ensemble = {"recall": recall, "precision": 1.0, "f1": 0.5, "fp": 0, "clip_auc": 0.9}
        return {"vote": vote, "ensemble": {**ensemble, "recall_at_false_positive_clips": curve}}

    counts = {"gunshot_clips": 10, "other_clips": 5}
    run = {"early_stretch": counts, "kept_and_labelled": counts, "device_hours_to_keep_as_many": 3.8}
    report = {
        "sources": {"belize": {**run, "later_stretch": counts, "before": fold(0.1, "k"), "after": fold(0.4, "f")}}
    }
    before, after = card._field_adaptation(report)[-2:]
    assert before.startswith("| belize | 10 / 5 | 10 / 5 (3.8 h) | 10 / 5 | before | k | 0.100 |")
    assert after.startswith("|  |  |  |  | after | f | 0.400 |") and after.endswith("| 0.400 | 0.900 |")


def test_the_simulated_score_log_keeps_what_the_device_would_and_leaves_the_shots_out():
    from models.training.site_threshold_sim import logged_scores
    from models.training.streaming import TAIL_S, InsertedShot, StreamScores

    starts = np.arange(0.0, 20.0, 0.5)
    probs = np.full((starts.size, 3), 0.9)
    probs[starts < 5.0] = 0.1  # under SCORE_FLOOR: not logged
    shot = InsertedShot(12.0, 11.5, 12.5, 10.0, "shot.flac", "s")
    scores = StreamScores(probs, ["wave", "mel_fine", "mel_coarse"], starts, 2.0, [shot], 0.01)
    kept, fused = logged_scores(scores)
    assert list(kept) == [s for s in starts if s >= 5.0 and not (s + 2.0 >= 11.5 and s <= 12.5 + TAIL_S)]
    assert np.allclose(fused, 0.9)
    assert 9.0 in list(kept) and 10.0 not in list(kept) and 14.0 in list(kept)


def test_the_card_shows_the_proposed_threshold_beside_the_fold_s_vote():
    from models.training import card

    judged = {"event_recall": 0.5, "false_alerts_per_hour": 0.25}
    costs = [{"threshold": 0.9, "false_alerts_per_hour": 0.4}]
    fold = {"log_hours": 3.1, "proposal": {"proposed": 0.9, "costs": costs}, "fold_vote": judged}
    report = {"method": "m", "sources": {"belize": {"before": {**fold, "site_threshold": judged}}}}
    row = "| belize | before | 3.100 | 0.9 | 0.400 | 0.500 / 0.250 | 0.500 / 0.250 |"
    assert card._site_threshold_sim(report)[-1] == row
