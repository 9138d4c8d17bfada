import json
import math

import numpy as np
import pytest

from inference.events import EventTracker, EventUpdate
from inference.vote import ABSENT_AFTER, Decision, VoteBox, VoteRule, probability_text, votes_text

THRESHOLDS = {"wave": 0.5, "mel_fine": 0.6, "mel_coarse": 0.4}
WINDOW, HOP = 16000, 8000


def box(timeout=1.0, required=2):
    return VoteBox(VoteRule(THRESHOLDS, required), timeout)


def test_two_of_three_positive_waits_for_the_third_so_its_confidence_is_every_model_s():
    """Decided at the second yes, a window's confidence (in the text) was that of whichever two
    models came first: the same audio texted as 100 % or 68 % (measured live; `analyze` said 69 %)."""
    b = box()
    b.add(0, "wave", 0.9, now=0.0)
    b.add(0, "mel_fine", 0.7, now=0.1)
    assert b.decide(0.1) == []
    b.add(0, "mel_coarse", 0.1, now=0.2)
    (d,) = b.decide(0.2)
    assert d.positive and not d.degraded and d.confidence == pytest.approx((0.9 + 0.7 + 0.1) / 3)


def test_thresholds_are_per_model():
    b = box()
    b.add(0, "wave", 0.55, now=0)
    b.add(0, "mel_fine", 0.55, now=0)  # below its 0.6
    b.add(0, "mel_coarse", 0.1, now=0)
    (d,) = b.decide(0)
    assert not d.positive
    assert d.confidence == pytest.approx((0.55 + 0.55 + 0.1) / 3)


def test_a_dead_model_does_not_stall_the_vote_and_marks_it_degraded():
    b = box(timeout=1.0)
    b.add(0, "wave", 0.9, now=0.0)
    b.add(0, "mel_fine", 0.1, now=0.0)
    assert b.decide(0.5) == []  # still waiting for mel_coarse
    (d,) = b.decide(1.0)
    assert d.degraded and not d.positive  # 1 of 2 present: needs ceil(2*2/3) = 2


def without_mel_fine(b: VoteBox, windows: range) -> None:
    """Windows that mel_fine never votes on (dead or stalled), each decided at its timeout."""
    for i in windows:
        b.add(i, "wave", 0.1, now=i)
        b.add(i, "mel_coarse", 0.1, now=i)
        b.decide(i + 1.0)
    assert "mel_fine" not in b.present()


def test_two_of_two_alive_after_timeout():
    b = box(timeout=1.0)
    b.add(0, "wave", 0.9, now=0.0)
    b.add(0, "mel_coarse", 0.1, now=0.0)
    b.add(0, "mel_fine", 0.1, now=0.0)
    b.decide(0.0)
    without_mel_fine(b, range(1, 4))  # mel_fine dies
    b.add(4, "wave", 0.9, now=10.0)
    b.add(4, "mel_coarse", 0.9, now=10.0)
    (d,) = b.decide(10.0)  # no waiting for the absent model
    assert d.positive


def test_a_model_back_from_a_stall_is_waited_for_again_though_its_first_votes_come_late():
    """A stalled worker catches up with votes for windows already decided without it. Dropped
    unheard, they left it absent for good: every later window was decided 2 of 2 (degraded) the
    moment the faster models voted, and the slow model's yes never counted again."""
    b = box(timeout=1.0)
    without_mel_fine(b, range(3))  # mel_fine stalls (a restart, the SD card, start-up on a Pi 3B+)
    b.add(3, "wave", 0.9, now=4.0)
    b.add(3, "mel_coarse", 0.1, now=4.0)
    (decided,) = b.decide(4.0)  # not waited for while absent
    assert decided.degraded and not decided.positive
    b.add(2, "mel_fine", 0.1, now=4.1)  # later than the timeout after window 2's first vote
    assert "mel_fine" not in b.present()  # a model always that late stays absent: no waiting in vain
    b.add(3, "mel_fine", 0.9, now=4.2)  # back: window 3 would have waited for this vote
    assert "mel_fine" in b.present()
    b.add(4, "wave", 0.9, now=5.0)
    b.add(4, "mel_coarse", 0.1, now=5.0)
    (late,) = b.decide(5.0)  # window 4 waits for mel_fine again; window 3 is a "yes" now (below)
    assert (late.index, late.positive, late.late) == (3, True, True)
    b.add(4, "mel_fine", 0.9, now=5.3)
    (heard,) = b.decide(5.3)
    assert heard.positive and not heard.degraded and not heard.late


def test_a_window_decided_no_without_a_late_model_is_decided_again_when_its_yes_comes():
    """A worker stalled 6 s over a shot (SIGSTOP; the SD card, a restart, start-up on a Pi): the
    shot's windows were decided 2 of 2 without it, "no"; its catch-up votes, 1.4-2.4 s after, said
    "gunshot", 2 of 3 with another model, and were dropped: no event, no text (measured live)."""
    b = box(timeout=1.0)
    without_mel_fine(b, range(3))
    b.add(3, "wave", 0.1, now=4.0)
    b.add(3, "mel_coarse", 0.9, now=4.0)  # a shot: mel_coarse hears it, the waveform model does not
    (first,) = b.decide(4.0)
    assert not first.positive and first.degraded
    for index in range(4):  # the stalled model catches up; only window 3 holds the shot
        b.add(index, "mel_fine", 0.9 if index == 3 else 0.1, now=6.0)
    (again,) = b.decide(6.0)
    assert (again.index, again.positive, again.late, again.degraded) == (3, True, True, False)
    assert again.votes == {"wave": 0.1, "mel_coarse": 0.9, "mel_fine": 0.9}
    b.add(3, "mel_fine", 0.9, now=6.1)  # a vote repeated (a restarted worker): decided once
    assert b.decide(6.1) == []


def test_a_yes_decided_without_an_absent_model_is_degraded():
    """2 of 3 with one model dead is 2 of the 2 left: every positive was decided at its second yes,
    marked not degraded, so no text said "Detector degraded" while one model was down (measured live)."""
    b = box(timeout=1.0)
    without_mel_fine(b, range(3))
    b.add(3, "wave", 0.9, now=4.0)
    b.add(3, "mel_coarse", 0.9, now=4.0)
    (d,) = b.decide(4.0)
    assert d.positive and d.degraded


def test_a_model_is_absent_after_missing_absent_after_windows_in_a_row():
    b = box(timeout=1.0)
    without_one = ["wave", "mel_coarse"]
    for i in range(ABSENT_AFTER):
        assert "mel_fine" in b.present()
        for model_id in without_one:
            b.add(i, model_id, 0.1, now=i)
        assert b.decide(i + 0.5) == []  # waited for
        assert len(b.decide(i + 1.0)) == 1
    assert "mel_fine" not in b.present()
    for model_id in without_one:
        b.add(ABSENT_AFTER, model_id, 0.1, now=10.0)
    assert len(b.decide(10.0)) == 1  # no longer waited for


def test_one_model_left_decides_alone():
    b = box(timeout=1.0)
    b.add(0, "wave", 0.9, now=0.0)
    (d,) = b.decide(1.0)
    assert d.positive and d.degraded


def test_windows_are_decided_in_order():
    b = box(timeout=1.0)
    b.add(1, "wave", 0.9, now=0.0)
    b.add(1, "mel_fine", 0.9, now=0.0)
    b.add(0, "wave", 0.1, now=0.0)
    assert b.decide(0.1) == []  # window 0 still open
    assert [d.index for d in b.decide(1.0)] == [0, 1]
    assert [d.index for d in box(math.inf).flush()] == []


def fused_box(threshold=0.9, timeout=1.0):
    return VoteBox(VoteRule(THRESHOLDS, 2, fused_threshold=threshold), timeout)


def test_fused_vote_lets_a_confident_model_carry_a_hesitant_one():
    b = fused_box(threshold=0.9)
    b.add(0, "wave", 0.999, now=0.0)  # log-odds 6.9
    b.add(0, "mel_fine", 0.8, now=0.0)  # 1.4
    assert b.decide(0.0) == []  # no early decision: the third vote could pull the mean down
    b.add(0, "mel_coarse", 0.5, now=0.0)  # 0: mean 2.77 >= logit(0.9) = 2.2
    (d,) = b.decide(0.0)
    assert d.positive and not d.degraded


def test_fused_vote_is_not_fooled_by_one_confident_model():
    b = fused_box(threshold=0.9)
    votes = {"wave": 0.999, "mel_fine": 0.61, "mel_coarse": 0.05}  # 2 of 3 at their thresholds: yes
    for model, p in votes.items():
        b.add(0, model, p, now=0.0)
    (d,) = b.decide(0.0)
    assert not d.positive  # mean log-odds (6.9 + 0.45 - 2.94) / 3 = 1.47 < logit(0.9) = 2.2
    assert VoteRule(THRESHOLDS, 2).positive(np.array(list(votes.values())), list(votes))[0]
    assert d.confidence == pytest.approx(1 / (1 + math.exp(-1.47)), abs=0.01)  # the fused probability


def test_a_degraded_fused_vote_uses_the_models_own_thresholds():
    # mel_coarse is dead: fused 0.9 was chosen for the mean of three models; two must each pass
    # their own thresholds (2 of 3 becomes 2 of 2), one left alone must pass its own.
    b = fused_box(threshold=0.9, timeout=1.0)
    b.add(0, "wave", 0.99, now=0.0)
    b.add(0, "mel_fine", 0.95, now=0.0)
    assert b.decide(0.5) == []
    (d,) = b.decide(1.0)
    assert d.positive and d.degraded
    b.add(1, "wave", 0.99, now=2.0)
    b.add(1, "mel_fine", 0.55, now=2.0)  # fused over these two: yes; mel_fine below its own 0.6: no
    (d,) = b.decide(3.0)
    assert not d.positive and d.degraded
    b.add(2, "wave", 0.45, now=4.0)  # mel_fine dies too: wave alone, below its own 0.5
    (d,) = b.decide(5.0)
    assert not d.positive and d.degraded


def test_a_stored_fused_threshold_is_used_unless_the_config_asks_for_k_of_n(tmp_path):
    from inference.model import load_ensemble
    from tests.detector_run import SHIPPED_MODELS

    for path in SHIPPED_MODELS.iterdir():
        if path.suffix in (".json", ".tflite"):
            (tmp_path / path.name).write_bytes(path.read_bytes())
    index = json.loads((tmp_path / "ensemble.json").read_text())
    (tmp_path / "ensemble.json").write_text(json.dumps({**index, "fused_threshold": 0.97}))
    ensemble = load_ensemble(tmp_path)
    assert ensemble.rule().fused_threshold == 0.97
    assert ensemble.rule(votes_required=2) == VoteRule({m.id: m.threshold for m in ensemble.models}, 2)
    (tmp_path / "ensemble.json").write_text(json.dumps({**index, "fused_threshold": 1.5}))
    with pytest.raises(ValueError, match=r"fused_threshold 1\.5 must be between 0 and 1"):
        load_ensemble(tmp_path)


def decision(index, positive, confidence=0.9, degraded=False):
    return Decision(index, positive, confidence, {"wave": confidence}, degraded, 0.0)


def test_overlapping_positive_windows_make_one_event_closed_after_the_gap():
    """The event keeps its most confident window's votes, and is degraded if any window was."""
    tracker = EventTracker(WINDOW, HOP, merge_gap_samples=16000)
    assert tracker.update(decision(2, True)).opened is not None
    assert tracker.update(decision(3, True, 0.95, degraded=True)).opened is None
    assert tracker.update(decision(4, True, 0.92)).opened is None
    for i in range(5, 9):
        assert tracker.update(decision(i, False)).closed is None
    closed = tracker.update(decision(9, False)).closed
    assert (closed.start, closed.end, closed.windows, closed.confidence) == (16000, 48000, 3, 0.95)
    assert closed.votes == {"wave": 0.95} and closed.degraded


def test_shots_further_apart_than_the_gap_are_separate_events():
    tracker = EventTracker(WINDOW, HOP, merge_gap_samples=16000)
    tracker.update(decision(0, True))
    update = tracker.update(decision(10, True))
    assert update.closed is not None and update.opened is not None
    assert tracker.finish().first_window == 10


def late(index, confidence=0.9):
    return Decision(index, True, confidence, {"wave": confidence}, False, 0.0, late=True)


def test_a_late_yes_joins_the_open_event_or_the_incident_it_belongs_to_and_texts_only_a_new_one():
    gap = 16000  # samples: two windows of HOP
    tracker = EventTracker(WINDOW, HOP, merge_gap_samples=gap)
    assert tracker.update(late(4)).opened is not None  # nothing open: it opens the event (and its text)
    assert tracker.update(decision(5, False)) == EventUpdate()
    assert tracker.update(late(3)) == EventUpdate()  # within the open event's gap: joins it
    assert (tracker.current.start, tracker.current.first_window, tracker.current.windows) == (3 * HOP, 3, 2)
    closed = tracker.update(decision(12, False)).closed  # starts past its end (window 4's) plus the gap
    assert closed is not None and closed.late
    assert tracker.update(late(6)) == EventUpdate()  # the closed incident's, texted already
    assert tracker.update(decision(20, True)).opened is not None
    separate = tracker.update(late(15)).late  # before the open event, beyond both gaps: a text of its own
    assert separate is not None and (separate.first_window, separate.windows) == (15, 1)
    assert tracker.current.first_window == 20


def test_a_vote_just_under_its_threshold_never_reads_as_reaching_it():
    """The shipped thresholds sit at 0.995-0.9998: to 2 decimals, rounded, a near miss read
    "mel_fine 1.00, mel_coarse 1.00" beside events that passed (the demo's report)."""
    assert probability_text(0.99979) == "0.9997"
    assert probability_text(0.9998) == "0.9998"
    assert probability_text(0.996) == "0.9960"
    assert probability_text(0.129) == "0.12"
    assert [probability_text(p) for p in (0.29, 0.57, 0.58)] == ["0.29", "0.57", "0.58"]  # float products
    assert probability_text(1.0) == "1.0000"
    assert votes_text({"wave": 0.5, "mel_fine": 0.99995}) == "wave 0.50, mel_fine 0.9999"
