"""Recipe ablations change what they name while they run and leave the shipped recipe as it was."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import types
from pathlib import Path

import numpy as np
import pytest

from models.training import ablations, augment, train
from models.training.data import Clip


def shot_clip() -> Clip:
    audio = np.zeros(48000, dtype=np.float32)
    audio[20000:20400] = np.hanning(400)
    return Clip("shot.flac", 1, "gunshot", "s", "g", "train", audio)


def bed_clip() -> Clip:
    rng = np.random.default_rng(0)
    return Clip("bed.flac", 0, "rain", "s", "g2", "train", rng.standard_normal(64000).astype(np.float32) * 0.1)


def test_variants_change_the_one_second_recipe_and_shipped_trains_todays():
    shipped = dict(train.WINDOW_SAMPLES)
    assert set(shipped.values()) == {augment.SAMPLE_RATE, 2 * augment.SAMPLE_RATE}
    with ablations.applied("long"):
        assert set(train.WINDOW_SAMPLES.values()) == {ablations.LONG_WINDOW}
        assert train.plain_windows([shot_clip()], train.WINDOW_SAMPLES["wave"])[0].shape == (2, ablations.LONG_WINDOW)
    with ablations.applied("ours"):
        assert set(train.WINDOW_SAMPLES.values()) == {augment.SAMPLE_RATE}
        assert train.LOGMEL["mel_fine"] == (512, 160, 64)
    with ablations.applied("shipped"):
        assert shipped == train.WINDOW_SAMPLES
    with ablations.applied("shipped_smooth"):
        assert shipped == train.WINDOW_SAMPLES and train.LOSS[1] == {"label_smoothing": 0.1}
    for variant in (v for v in ablations.VARIANTS if v.startswith("shipped")):  # each on today's recipe
        with ablations.applied(variant):
            assert shipped == train.WINDOW_SAMPLES, variant
    seed = train.SEED
    with ablations.applied("shipped_gunfire2"):
        assert train.build_windows is ablations._with_game_gunfire and seed + 1 == train.SEED
    with ablations.applied("shipped_gunfire3"):
        assert train.build_windows is ablations._with_game_gunfire and seed + 2 == train.SEED
    with ablations.applied("shipped_gunfire_light"):
        assert train.build_windows is ablations._with_game_gunfire and ablations.extra_gunfire.REPEATS == 5
    assert ablations.extra_gunfire.REPEATS == 20
    assert shipped == train.WINDOW_SAMPLES and train.LOGMEL["mel_fine"] == ablations.PROTOTYPE_LOGMEL["mel_fine"]


def test_the_plain_variant_places_the_shot_and_adds_nothing():
    shot, beds = shot_clip(), [bed_clip()]
    with ablations.applied("plain"):
        p_bandlimit = train.bandlimit_probabilities([shot, *beds], train.COPIES)[1]  # as build_windows
        for seed in range(20):
            window = augment.positive_window(np.random.default_rng(seed), shot.audio, beds, p_bandlimit)
            # only the shot, moved: no bed, colour, level or noise floor
            np.testing.assert_array_equal(window[window != 0], shot.audio[shot.audio != 0])
        copies = {"positive": 1, "negative": 1, "ambient": 1, "noise": 0, "synthetic": 0}
        _, labels, _ = train.build_windows([shot, beds[0]], copies, seed=0)
        assert labels.tolist() == [1.0, 0.0]
    window = augment.positive_window(np.random.default_rng(1), shot.audio, beds)
    assert np.count_nonzero(window) > 10 * np.count_nonzero(shot.audio)  # a noise floor at least


def test_a_variant_is_undone_when_training_fails():
    before = dict(train.LOGMEL)
    with pytest.raises(RuntimeError), ablations.applied("hires"):
        assert before != train.LOGMEL
        raise RuntimeError("training failed")
    assert before == train.LOGMEL


def test_ranking_reports_auc_and_recall_at_each_false_positive_count():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    scores = np.array([0.9, 0.8, 0.3, 0.1, 0.85, 0.2, 0.15, 0.05])
    figures = ablations.ranking(labels, scores)
    assert figures["recall_at_0_fp"] == 0.25  # only 0.9 is above the top negative 0.85
    assert figures["recall_at_3_fp"] == 1.0  # three negatives pass above 0.05: every shot does
    assert figures["clip_auc"] == pytest.approx(11 / 16)


def test_the_card_shows_each_system_as_cut_and_rolled():
    from models.training import card

    def ranked(auc: float) -> dict:
        return {"clip_auc": auc, "recall_at_0_fp": auc / 10, "recall_at_41_fp": auc / 2}

    fold = {"tests": "-", "vote": {}, "ranking": {"fused": ranked(0.9), "wave": ranked(0.8)}}
    fold["rolled"] = {"fused": ranked(0.7), "wave": ranked(0.6)}
    curve = {"0": 0.25, "40": 0.5, "50": 0.75}
    prototype = {"clip_auc": 0.95, "recall_at_false_positive_clips": curve, "per_model_clip_auc": {"w": 0.5}}
    prototype["rolled"] = {**prototype, "clip_auc": 0.85, "per_model_clip_auc": {"w": 0.4}}
    baselines = {"prototype_leave_one_source_out": {"sources": {"belize": prototype}}}
    scored_before = {k: v for k, v in fold.items() if k != "rolled"}  # scored before rolled clips: no row
    lines = card._shot_position({"belize": {"ours": fold, "plain": scored_before}}, baselines)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| system")]
    assert rows == [
        "| ours | 0.900 -> 0.700 | 0.090 -> 0.070 | 0.450 -> 0.350 | wave 0.800 -> 0.600 |",
        "| 2019 design | 0.950 -> 0.850 | 0.250 -> 0.250 | 0.500 -> 0.500 | w 0.500 -> 0.400 |",
    ]


def test_the_card_shows_a_gunshot_only_source_s_vote_recall_and_its_shots_against_validation_negatives():
    from models.training import card

    fold = {"tests": "2 s windows", "vote": {"recall": 0.25, "f1": 0.4, "fp": 0}}
    against = {"fused": {"clip_auc": 0.7, "recall_at_0_fp": 0.05, "recall_at_10_fp": 0.2}}
    lines = card._ablations({"kaggle_guns": {"longproto": fold, "gunfire": {**fold, "against_validation": against}}})
    assert "| longproto | 2 s windows | 0.250 | - | - | - |" in lines
    assert "| gunfire | 2 s windows | 0.250 | 0.700 | 0.050 | 0.200 |" in lines
    assert any("recall at 10 validation FP |" in line for line in lines)


def test_a_gunshot_only_source_is_ranked_against_the_validation_negatives_alone():
    """The shipped models score the clips; the same shot as a training negative, as a negative of the
    held-out source or as another source's validation gunshot would outrank it were any counted."""
    import soundfile

    shot, _ = soundfile.read("assets/shots/openarena-shotgun.flac", dtype="float32")
    quiet = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.001

    def clip(label: int, source: str, fold: str, audio: np.ndarray) -> Clip:
        return Clip(f"{source}-{fold}-{label}.flac", label, "x", source, source, fold, audio)

    held = [clip(1, "guns", "train", shot)]
    clips = [*held, clip(0, "guns", "val", shot), clip(0, "other", "train", shot), clip(1, "other", "val", shot)]
    clips.append(clip(0, "other", "val", quiet))
    probs, _ = ablations.clip_window_probs(Path("models"), held)
    fused = ablations.against_validation(Path("models"), "guns", probs, clips)["fused"]
    assert fused["clip_auc"] == 1.0
    assert fused["recall_at_0_fp"] == 1.0


def test_pcen_is_librosa_s_smoother_started_at_the_first_frame():
    import scipy.signal

    from models.training import architectures

    frames, mels = 50, 8
    rng = np.random.default_rng(0)
    db = rng.uniform(-62, -58, (frames, mels)).astype(np.float32)  # a steady background
    db[30] += 40  # a transient: PCEN lifts it above its smoothed past
    with ablations.applied("pcen"):
        pcen = np.asarray(architectures.BandMeanRemoval(-50, 20)(db[None]))[0, :, :, 1]
    power = 10 ** (db.astype(np.float64) / 10)
    hop_s = architectures.WAVE_SAMPLES / 16000 / frames
    b = ablations.pcen_smoothing(2, hop_s)[1, 1]  # the smoother's coefficient
    zi = scipy.signal.lfilter_zi([b], [1, b - 1])[0] * power[:1]
    smooth, _ = scipy.signal.lfilter([b], [1, b - 1], power, axis=0, zi=zi)
    expected = np.sqrt(power / (ablations.PCEN_EPS + smooth) ** ablations.PCEN_ALPHA + ablations.PCEN_DELTA)
    assert pcen == pytest.approx(expected - np.sqrt(ablations.PCEN_DELTA), abs=1e-4)
    assert pcen[30].min() > pcen[29].max()


def test_a_shot_free_bed_is_the_clip_s_background_away_from_its_shot():
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(48000) * 0.01).astype(np.float32)
    audio[8000:8400] += np.hanning(400).astype(np.float32)  # a shot at 0.5 s of 3 s
    bed = ablations.shot_free_bed(Clip("a.flac", 1, "gunshot", "s", "g", "train", audio))
    assert bed is not None and bed.label == 0 and bed.source == "s"
    assert len(bed.audio) >= ablations.MIN_BED_S * 16000
    assert np.abs(bed.audio).max() < 0.1  # the shot is not in it
    bursts = np.tile(np.hanning(400), 120).astype(np.float32)  # automatic fire, no quiet stretch
    assert ablations.shot_free_bed(Clip("b.flac", 1, "gunshot", "s", "g", "train", bursts)) is None


def test_the_hybrid_takes_the_best_1_s_wave_window_inside_each_2_s_window():
    long = {"wave": np.array([0.1, 0.2, 0.3]), "mel_fine": np.array([0.5, 0.6, 0.7])}
    short = {"wave": np.array([0.1, 0.9, 0.2, 0.3, 0.4]), "mel_fine": np.zeros(5)}  # 1 s windows of 3 s
    combined = ablations.wave_inside(long, short)
    assert combined["wave"].tolist() == [0.9, 0.9, 0.4]  # 2 s window i holds 1 s windows i, i+1, i+2
    assert combined["mel_fine"] is long["mel_fine"]


def test_the_card_shows_a_scored_combination_without_a_vote_and_its_validation_ranking():
    from models.training import card

    ranked = {"clip_auc": 0.9, "recall_at_0_fp": 0.5}
    fold = {"tests": "-", "ranking": {"fused": ranked, "wave": ranked}, "validation_clip_auc": {"hybrid": 0.95}}
    lines = card._ablations({"belize": {"hybrid": fold}})
    assert "| hybrid | - | 0.900 | 0.900 | 0.500 | - (none chosen) |" in lines
    assert "Validation fold, hybrid (clip AUC, fused): hybrid 0.950." in lines
    vote = {"recall": 0.5, "f1": 0.6, "fp": 2}
    fold["vote_on_validation_clips"] = {"seeds": vote, "ours": vote}
    lines = card._ablations({"belize": {"seeds": fold}})
    assert any(line.endswith("seeds 0.500 / 0.600 / 2, ours 0.500 / 0.600 / 2.") for line in lines)


def test_a_seed_ensemble_averages_each_model_s_log_odds():
    from inference.vote import logit, sigmoid

    a = {"wave": sigmoid(np.array([2.0, -1.0])), "mel_fine": sigmoid(np.array([0.0, 4.0]))}
    b = {"wave": sigmoid(np.array([0.0, -3.0])), "mel_fine": sigmoid(np.array([2.0, 0.0]))}
    mean = ablations.seed_mean(a, b)
    np.testing.assert_allclose(logit(mean["wave"]), [1.0, -2.0])
    np.testing.assert_allclose(logit(mean["mel_fine"]), [1.0, 2.0])


def test_the_best_stretch_wave_model_scores_a_2_s_window_by_its_best_1_s_stretch():
    from models.training import architectures

    with ablations.applied("longmax"):
        model = architectures.wave_model()
    stretch = model.get_layer("wave_stretch")
    x = np.random.default_rng(0).standard_normal((2, ablations.LONG_WINDOW)).astype(np.float32) * 0.1
    x[1, 20000:20400] += np.hanning(400).astype(np.float32)  # a click in the last two stretches only
    starts = range(0, ablations.LONG_WINDOW - architectures.WAVE_SAMPLES + 1, ablations.HOP)
    each = np.stack([stretch(x[:, s : s + architectures.WAVE_SAMPLES]).numpy()[:, 0] for s in starts])
    np.testing.assert_allclose(model(x).numpy()[:, 0], each.max(axis=0), rtol=1e-6)
    assert architectures.count_macs(model) == len(starts) * architectures.count_macs(architectures.wave_model())


def test_source_balancing_gives_each_gunshot_source_the_same_total_weight():
    loud = [Clip(f"a{i}.flac", 1, "gunshot", "big", "g", "train", shot_clip().audio) for i in range(6)]
    few = [Clip("b.flac", 1, "gunshot", "small", "g3", "train", shot_clip().audio)]
    knock = Clip("k.flac", 0, "door_wood_knock", "esc50", "g4", "train", bed_clip().audio)
    copies = {"positive": 2, "negative": 2, "ambient": 4, "noise": 2, "synthetic": 3}
    _, labels, plain = train.build_windows([*loud, *few, knock], copies, seed=0)
    _, _, weights = ablations._source_balanced_windows([*loud, *few, knock], copies, seed=0)
    sources = ablations.window_sources([*loud, *few, knock], copies)
    shots = labels == 1
    totals = [weights[shots & (sources == s)].sum() for s in ("big", "small", "synthetic")]
    np.testing.assert_allclose(totals, [plain[shots].sum() / 3] * 3, rtol=1e-5)
    np.testing.assert_array_equal(weights[~shots], plain[~shots])  # the others as before


def test_a_source_left_out_loses_its_training_gunshots_or_every_training_clip():
    here = Clip("h.flac", 1, "gunshot", "here", "g", "train", shot_clip().audio)
    gone = Clip("x.flac", 1, "gunshot", "gone", "g2", "train", shot_clip().audio)
    gone_sound = dataclasses.replace(bed_clip(), source="gone")
    copies = {"positive": 2, "negative": 2, "ambient": 4, "noise": 2, "synthetic": 3}
    build = ablations._training_shots_kept(ablations._not_from("gone"))
    gone.audio[20000:20400] *= 0.5  # another shot than here's: the windows tell which was dropped
    x, labels, _ = build([here, gone, gone_sound], copies, seed=0)
    x_expected, expected, _ = train.build_windows([here, gone_sound], copies, seed=0)
    np.testing.assert_array_equal(labels, expected)  # one clip's shots fewer, its other sound kept
    np.testing.assert_array_equal(x, x_expected)
    validation = [dataclasses.replace(c, fold="val") for c in (here, gone, gone_sound)]
    _, labels, _ = build(validation, copies, seed=0)
    assert (labels == 1).sum() == 2 * copies["positive"] + copies["synthetic"]  # validation windows as they were
    rain = bed_clip()  # another source's sound: the windows still have a negative to mix shots into
    leave_out = ablations._training_clips_kept(ablations._not_from("gone"))
    x, _, _ = leave_out([here, gone, gone_sound, rain], copies, seed=0)
    np.testing.assert_array_equal(x, train.build_windows([here, rain], copies, seed=0)[0])  # the whole source gone


def test_thinning_draws_the_same_clips_every_run_at_about_its_share():
    clips = [Clip(f"audio/{i}.flac", 1, "gunshot", "s", "g", "train", np.zeros(1)) for i in range(4000)]
    fewer, fewest = ablations.BELIZE_FOLD_KAGGLE_SHARE, ablations.BELIZE_FOLD_ELP_SHARE
    kept = {share: np.array([ablations._thinned(share)(c) for c in clips]) for share in (fewer, fewest)}
    for share, mask in kept.items():
        assert abs(1 - mask.mean() - share) < 0.03
    assert not (kept[fewest] & ~kept[fewer]).any()  # the larger share drops a superset
    # the draw is a hash of the path, not of the process: the same decisions in every run
    assert [ablations._thinned(fewer)(c) for c in clips[:8]] == [True, True, False, True, True, True, True, True]


def test_a_variant_s_windows_are_cached_under_the_code_that_changes_them(tmp_path, monkeypatch):
    """A variant edited in ablations.py must not train on the windows cached before the edit."""
    shipped = train._recipe_digest(train.COPIES)
    with ablations.applied("shipped_thinned"):
        assert ablations in train.WINDOW_CODE
        thinned = train._recipe_digest(train.COPIES)
    assert train._recipe_digest(train.COPIES) == shipped != thinned
    code = tmp_path / "variant.py"
    code.write_text("SHARE = 0.3\n")
    monkeypatch.setattr(train, "WINDOW_CODE", (*train.WINDOW_CODE, types.SimpleNamespace(__file__=str(code))))
    before = train._recipe_digest(train.COPIES)
    code.write_text("SHARE = 0.4\n")
    edited = train._recipe_digest(train.COPIES)
    monkeypatch.setattr(train, "SEED", train.SEED + 1)  # another seed's run (ours2, field_adaptation)
    assert len({before, edited, train._recipe_digest(train.COPIES)}) == 3


def test_the_log_envelope_front_end_follows_a_tone_s_level_in_decibels():
    tone = np.sin(2 * np.pi * 1000 * np.arange(4000) / 16000).astype(np.float32)
    envelope = ablations.LogEnvelope()
    quiet, loud = (np.asarray(envelope(a * tone.reshape(1, -1, 1))) for a in (0.01, 1.0))
    assert quiet.shape == (1, 4000 // ablations.ENVELOPE_FRAME, 1)
    np.testing.assert_allclose(loud - quiet, np.log(100.0), rtol=1e-3)


def test_the_narrow_waveform_model_hears_below_4_khz_only():
    model = ablations._wave_narrow()
    lowpass = model.get_layer("lowpass")
    t = np.arange(16000) / 16000

    def passed(hz: float) -> float:
        tone = np.sin(2 * np.pi * hz * t).astype(np.float32).reshape(1, -1, 1)
        return float(np.abs(np.asarray(lowpass(tone))[0, 1000:-1000]).max())

    assert passed(1000) == pytest.approx(1.0, abs=0.01)
    assert passed(6000) < 0.01
    assert not lowpass.trainable


def test_freqmix_gives_each_patch_another_patch_s_band_statistics_in_training_only():
    rng = np.random.default_rng(0)
    # two patches of 40 frames x 8 bands with their own per-band means and spreads
    means = np.array([np.linspace(-80, -40, 8), np.linspace(-30, -60, 8)])[:, None, :]
    spreads = np.array([np.full(8, 1.0), np.full(8, 6.0)])[:, None, :]
    x = (rng.standard_normal((2, 40, 8)) * spreads + means).astype(np.float32)
    layer = ablations.FreqMixStyle(p=1.0, alpha=1e-3)  # a weight of ~0 or ~1: the stats swapped or kept
    np.testing.assert_array_equal(np.asarray(layer(x)), x)  # inference and export: the identity
    mixed = np.asarray(layer(x, training=True))
    norm = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    mixed_norm = (mixed - mixed.mean(axis=1, keepdims=True)) / mixed.std(axis=1, keepdims=True)
    np.testing.assert_allclose(mixed_norm, norm, atol=1e-3)  # each patch keeps its own shape
    band_means = mixed.mean(axis=1)
    for patch in range(2):  # and takes its own or the other patch's band means
        assert any(np.allclose(band_means[patch], x[k].mean(axis=0), atol=0.1) for k in range(2))
    with ablations.applied("freqmix"):
        from models.training import architectures

        model = architectures.mel_model("mel_fine", 63, 64, -50.0, 20.0)
    assert any(isinstance(layer, ablations.FreqMixStyle) for layer in model.layers)
    plain = architectures.mel_model("m", 63, 64, -50.0, 20.0)
    assert architectures.count_macs(model) == architectures.count_macs(plain)  # nothing more to run


def test_the_ema_variant_validates_and_keeps_the_averaged_weights(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((384, 16000)).astype(np.float32) * 0.1
    y = (np.arange(384) % 2).astype(np.float32)
    x[y == 1, 8000:8400] += 0.05 * np.hanning(400).astype(np.float32)  # faint: neither set of weights is perfect
    train_x, train_y, val_x, val_y = x[:256], y[:256], x[256:], y[256:]
    (tmp_path / "cache").mkdir()
    with ablations.applied("ema"):
        assert train.EMA_MOMENTUM is not None
        model, info = train.train_one("wave", train_x, train_y, np.ones(256), val_x, val_y, 3, None, tmp_path)
    assert train.EMA_MOMENTUM is None
    assert model.optimizer.use_ema
    # the weights kept are those early stopping chose by their validation AUC: the averaged ones
    kept_auc = model.evaluate(val_x, val_y, verbose=0, return_dict=True)["auc"]
    assert kept_auc == pytest.approx(info["best_val_auc"], abs=1e-4)
    # and they are not what the same training without the average ends with
    plain, _ = train.train_one("wave", train_x, train_y, np.ones(256), val_x, val_y, 3, None, tmp_path)
    assert not plain.optimizer.use_ema
    assert not np.allclose(plain.get_weights()[0], model.get_weights()[0], atol=1e-4)


@pytest.mark.parametrize(
    ("variant", "loss", "config"),
    [("focal", "BinaryFocalCrossentropy", {"gamma": 2.0}), ("smooth", "BinaryCrossentropy", {"label_smoothing": 0.1})],
)
def test_a_loss_variant_trains_with_its_loss_and_leaves_the_shipped_one(tmp_path, variant, loss, config):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 16000)).astype(np.float32) * 0.1
    y = (np.arange(128) % 2).astype(np.float32)
    (tmp_path / "cache").mkdir()
    with ablations.applied(variant):
        model, _ = train.train_one("wave", x[:96], y[:96], np.ones(96), x[96:], y[96:], 1, None, tmp_path)
    assert type(model.loss).__name__ == loss
    assert {k: model.loss.get_config()[k] for k in config} == config
    assert train.LOSS == ("BinaryCrossentropy", {})
    shipped, _ = train.train_one("wave", x[:96], y[:96], np.ones(96), x[96:], y[96:], 1, None, tmp_path)
    assert type(shipped.loss).__name__ == "BinaryCrossentropy"
    assert shipped.loss.get_config()["label_smoothing"] == 0.0


def test_the_adversarial_variant_carries_each_training_window_s_source_in_its_label():
    shots = [Clip(f"{s}.flac", 1, "gunshot", s, "g", "train", shot_clip().audio) for s in ("forest", "city")]
    knock = Clip("k.flac", 0, "door_wood_knock", "esc50", "g4", "train", bed_clip().audio)
    copies = {"positive": 2, "negative": 2, "ambient": 4, "noise": 2, "synthetic": 3}
    _, plain, _ = train.build_windows([*shots, knock], copies, seed=0)
    _, carried, _ = ablations._with_sources([*shots, knock], copies, seed=0)
    np.testing.assert_array_equal(carried % ablations.CLASSES, plain)
    names = sorted({"forest", "city", "esc50", "synthetic", "noise"})
    decoded = np.array(names)[(carried // ablations.CLASSES).astype(int)]
    np.testing.assert_array_equal(decoded, ablations.window_sources([*shots, knock], copies))
    validation = [Clip("v.flac", 1, "gunshot", "forest", "g", "val", shot_clip().audio)]
    validation.append(dataclasses.replace(bed_clip(), fold="val"))
    _, untouched, _ = ablations._with_sources(validation, copies, seed=0)
    np.testing.assert_array_equal(untouched, train.build_windows(validation, copies, seed=0)[1])


def test_the_gradient_reversal_passes_values_and_turns_gradients_back():
    import tensorflow as tf

    reversal = ablations.GradientReversal()
    reversal.strength.assign(0.5)
    x = tf.Variable([1.0, -2.0])
    with tf.GradientTape() as tape:
        y = reversal(x)
        total = tf.reduce_sum(3.0 * y)
    np.testing.assert_array_equal(np.asarray(y), [1.0, -2.0])
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), [-1.5, -1.5])


def test_a_source_head_learns_only_from_windows_of_its_class():
    targets = ablations._source_targets(np.array([1.0, 0.0, 1.0]), np.array([2.0, 0.0, 1.0]))
    np.testing.assert_array_equal(targets["gunshot_source"], [2, ablations.NOT_THIS_CLASS, 1])
    np.testing.assert_array_equal(targets["other_source"], [ablations.NOT_THIS_CLASS, 0, ablations.NOT_THIS_CLASS])
    guess = np.array([[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]], dtype=np.float32)
    loss = np.asarray(ablations._source_loss(np.array([1, ablations.NOT_THIS_CLASS, 1]), guess))
    np.testing.assert_allclose(loss, [-np.log(0.9), 0.0, -np.log(0.1)], rtol=1e-5)


def test_the_adversarial_variant_exports_the_gunshot_model_alone(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 16000)).astype(np.float32) * 0.1
    y = (np.arange(128) % 2).astype(np.float32)
    x[y == 1, 8000:8400] += np.hanning(400).astype(np.float32)
    carried = y + ablations.CLASSES * (np.arange(128) % 3)  # three sources
    (tmp_path / "cache").mkdir()
    with ablations.applied("shipped_adversarial"):
        model, info = train.train_one("wave", x[:96], carried[:96], np.ones(96), x[96:], y[96:], 2, None, tmp_path)
    from models.training import architectures

    assert info["params"] == architectures.wave_model().count_params()  # no source head in what is exported
    assert model.output.shape == (None, 1)
    assert info["epochs_run"] == 2
    assert info["best_val_auc"] > 0.9  # the labels were decoded: the shot is found
    with (tmp_path / "cache" / "train-wave.csv").open() as log:
        last = list(csv.DictReader(log))[-1]
    assert float(last["gunshot_source_loss"]) > 0 and float(last["other_source_loss"]) > 0  # both adversaries learnt
    assert train.train_one.__name__ == "train_one"  # the variant's patch is undone


def test_the_reversal_grows_from_nothing_to_its_strength_over_training():
    reversal = ablations.GradientReversal()
    ramp = ablations.RampReversal(reversal, epochs=12)
    strengths = []
    for epoch in range(12):
        ramp.on_epoch_begin(epoch)
        strengths.append(float(reversal.strength.numpy()))
    assert strengths[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(strengths))
    assert ablations.ADVERSARY_STRENGTH * 0.99 < strengths[-1] < ablations.ADVERSARY_STRENGTH


def test_the_strong_adversarial_variant_reverses_harder_on_the_features_before_the_dropout():
    with ablations.applied("shipped_adversarial_strong"):
        assert ablations.ADVERSARY_STRENGTH == 1.0
        assert ablations.ADVERSARY_BEFORE_DROPOUT
        assert train.train_one is ablations._train_one_adversarial
    assert ablations.ADVERSARY_STRENGTH == 0.5
    assert not ablations.ADVERSARY_BEFORE_DROPOUT
