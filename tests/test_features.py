"""The runtime log-mel front end against librosa, and streaming against whole-window computation."""

import fcntl
import json
import multiprocessing
import shutil
import time
import tracemalloc

import numpy as np
import pytest

from inference.features import LogMelFrontend, LogMelSpec
from inference.frontend import CHUNK_SECONDS, Frontend, feature_ring_capacity, hop_samples, run_frontend
from inference.model import SHIPPED_MODELS, ModelError, TFLiteModel, load_ensemble
from pipeline.channel import Channel
from pipeline.config import Config, override
from pipeline.layout import AUDIO_SHAPE, Layout, feature_shape
from pipeline.metrics import StatsTable
from pipeline.ring import Ring
from pipeline.run import load_checked_ensemble
from tests.conftest import own_run_id
from tests.detector_run import stream_with_shots

librosa = pytest.importorskip("librosa")
TOLERANCE_DB = 1e-3
PAGE = 4096  # the smallest pipe the kernel makes
PROCESS_DEADLINE = 60.0


def shipped_specs():
    return list(load_ensemble("").logmel_specs().values())


@pytest.mark.parametrize("spec", shipped_specs(), ids=lambda s: s.key)
def test_runtime_features_equal_librosa(spec):
    audio = stream_with_shots(2.0, [(1.0, "openarena-shotgun")])
    audio[: spec.sample_rate // 2] = 0.0  # digital silence: lost audio's stand-in, a muted input (the log floor)
    ours = LogMelFrontend(spec).frames(audio)
    reference = librosa.power_to_db(
        librosa.feature.melspectrogram(
            y=audio,
            sr=spec.sample_rate,
            n_fft=spec.n_fft,
            hop_length=spec.hop_length,
            center=False,
            n_mels=spec.n_mels,
            fmin=spec.fmin,
            fmax=spec.fmax,
            power=2.0,
        ),
        ref=1.0,
        amin=1e-10,
        top_db=None,
    ).T
    assert ours.shape == reference.shape
    assert np.max(np.abs(ours - reference)) < TOLERANCE_DB


@pytest.mark.parametrize("spec", shipped_specs(), ids=lambda s: s.key)
def test_shipped_mel_matrix_is_librosas(spec):
    expected = librosa.filters.mel(
        sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax
    )
    np.testing.assert_allclose(spec.filters, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("spec", shipped_specs(), ids=lambda s: s.key)
def test_frames_computed_hop_by_hop_equal_frames_of_a_whole_window(spec):
    audio = stream_with_shots(3.0, [(1.2, "wesnoth-gunshot")])
    frontend = LogMelFrontend(spec)
    whole = frontend.frames(audio)
    hop = 8000
    first_window = frontend.frames(audio[hop : hop + 16000])
    offset = hop // spec.hop_length
    np.testing.assert_allclose(whole[offset : offset + len(first_window)], first_window, atol=1e-4)


def test_sidecar_round_trip_keeps_the_filters():
    sidecar = json.loads((SHIPPED_MODELS / "mel_fine.json").read_text())
    spec = LogMelSpec.from_json(sidecar["input"]["logmel"])
    assert LogMelSpec.from_json(spec.to_json()).filters.tobytes() == spec.filters.tobytes()


def test_streams_share_a_key_only_when_their_filter_banks_and_rates_are_the_same():
    spec = shipped_specs()[0]
    same = LogMelSpec(
        spec.sample_rate, spec.n_fft, spec.hop_length, spec.n_mels, spec.fmin, spec.fmax, spec.filters.copy()
    )
    assert same.key == spec.key
    other_bank = LogMelSpec(
        spec.sample_rate, spec.n_fft, spec.hop_length, spec.n_mels, spec.fmin, spec.fmax, spec.filters * 2
    )
    assert other_bank.key != spec.key  # one model's matrix must never feed the other's stream


def shipped_copy(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(SHIPPED_MODELS, models, ignore=shutil.ignore_patterns("keras", "runs", "reports", "training"))
    return models


def edit_sidecar(models, model_id: str, edit) -> None:
    sidecar = models / f"{model_id}.json"
    data = json.loads(sidecar.read_text())
    edit(data)
    sidecar.write_text(json.dumps(data))


def test_models_for_another_rate_than_capture_delivers_are_refused(tmp_path):
    models = shipped_copy(tmp_path)
    for sidecar in models.glob("*.json"):
        sidecar.write_text(sidecar.read_text().replace('"sample_rate": 16000', '"sample_rate": 8000'))
    with pytest.raises(ModelError, match="take 8000 Hz audio; capture delivers 16000 Hz"):
        load_checked_ensemble(override(Config(), {"detector.models_dir": str(models)}))


def at_8_khz(sidecar: dict) -> None:
    sidecar["sample_rate"] = sidecar["input"]["logmel"]["sample_rate"] = 8000


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda m: edit_sidecar(m, "mel_fine", lambda d: d.update(id="mel_coarse")), "id is 'mel_coarse', expected"),
        (lambda m: (m / "wave.tflite").unlink(), r"model file .*wave\.tflite is missing"),
        (lambda m: edit_sidecar(m, "mel_coarse", at_8_khz), "cannot vote together"),
        (
            lambda m: edit_sidecar(m, "mel_fine", lambda d: d["input"]["logmel"].update(sample_rate=22050)),
            "features at 22050 Hz, model at 16000 Hz",
        ),
        (
            lambda m: edit_sidecar(m, "wave", lambda d: d.update(window_samples=24000)),
            r"input shape .* does not match its sidecar",
        ),
    ],
    ids=["another id", "no model file", "two rates", "features at another rate", "another window"],
)
def test_a_damaged_or_mismatched_model_folder_is_refused_with_what_is_wrong(tmp_path, damage, says):
    models = shipped_copy(tmp_path)
    damage(models)
    with pytest.raises(ModelError, match=says):
        for spec in load_ensemble(models).models:
            TFLiteModel(spec)


def test_windows_whose_audio_the_ring_no_longer_holds_are_skipped_and_counted():
    ensemble = load_ensemble("")
    rate, window = ensemble.sample_rate, ensemble.window_samples
    capacity, hop = 4 * rate, rate // 2
    frontend, audio, streams = _stepped_frontend(capacity, hop)
    audio.write(np.zeros(3 * rate, dtype=np.int16))
    assert [w.index for w in frontend.step()] == [0, 1, 2] and frontend.skipped == 0
    audio.write(np.zeros(6 * rate, dtype=np.int16))  # the front end stalled while 6 s came: the ring holds 4
    ready = frontend.step()
    first_held = -(-audio.oldest() // hop)
    assert frontend.skipped == first_held - 3 > 0
    assert frontend.unheard == first_held * hop - 3 * rate  # captured, in no window scored (they end at 3 s)
    assert [w.index for w in ready] == list(range(first_held, (9 * rate - window) // hop + 1))
    assert frontend.step() == [] and frontend.skipped == 0
    restarted = Frontend(audio, streams, window, hop, resume_at=3)  # the front end died after window 2
    assert restarted.step()[0].index == first_held and restarted.skipped == first_held - 3
    late = Frontend(audio, streams, window, hop)  # its first start, after the ring had wrapped
    assert late.step()[0].index == first_held and late.skipped == first_held


def test_windows_skipped_over_a_gap_capture_stood_silence_in_for_are_not_counted_unheard_again():
    """Audio lost by capture (an unplugged microphone, overruns) is counted as lost there; only the
    skipped audio that capture had captured is unheard, however the two mix."""
    rate = load_ensemble("").sample_rate
    capacity, hop = 4 * rate, rate // 2
    frontend, audio, _ = _stepped_frontend(capacity, hop)
    audio.write(np.zeros(3 * rate, dtype=np.int16))
    frontend.step()
    audio.skip(10 * rate)  # 3-13 s: a device gap longer than the ring, stood in by capture
    frontend.step()
    assert frontend.skipped > 0 and frontend.unheard == 0
    assert frontend.next_window * hop == 11.5 * rate  # the last window framed ends at 13 s
    audio.write(np.zeros(rate, dtype=np.int16))  # then the front end stalls: 13-14 s captured,
    audio.skip(rate)  # 14-15 s lost,
    audio.write(np.zeros(4 * rate, dtype=np.int16))  # 15-19 s captured, the ring holds 15-19 s
    frontend.step()
    assert frontend.skipped == (15.0 - 11.5) * rate / hop
    assert frontend.unheard == rate  # of 13-15 s, which no window scored covers, only 13-14 s was captured


def _all_waiting(channel: Channel) -> list:
    messages = []
    while (message := channel.receive(timeout=0.0)) is not None:
        messages.append(message)
    return messages


def test_the_front_end_process_counts_skipped_windows_and_full_channels_as_dropped_and_unheard_audio():
    """run_frontend alone, in its own process, started after the ring wrapped, with one model's
    channel a single page deep: both losses reach the stats that the status line shows."""
    ensemble = load_ensemble("")
    rate, run = ensemble.sample_rate, own_run_id()
    capacity, recorded = 40 * rate, 80 * rate  # more windows held than a page of channel holds
    audio = Ring.create(f"gs-{run}-audio", capacity, AUDIO_SHAPE, rate)
    feature_rings = [
        Ring.create(
            f"gs-{run}-f{i}", feature_ring_capacity(spec, capacity), feature_shape(spec.n_mels), rate / spec.hop_length
        )
        for i, spec in enumerate(ensemble.logmel_specs().values())
    ]
    stats = StatsTable.create(f"gs-{run}-stats", ("frontend",))
    windows = {model.id: Channel(model.id) for model in ensemble.models}
    shallow = windows[ensemble.models[0].id]
    fcntl.fcntl(shallow._writer.fileno(), fcntl.F_SETPIPE_SZ, PAGE)
    feature_names = dict(zip(ensemble.logmel_specs(), (ring.name for ring in feature_rings), strict=True))
    layout = Layout(run, audio.name, stats.segment_name, ("frontend",), feature_names, windows)
    audio.write(np.zeros(recorded, dtype=np.int16))  # before the front end started
    config = Config()
    last = (recorded - ensemble.window_samples) // hop_samples(config, ensemble)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    process = context.Process(target=run_frontend, args=(config, layout, stop))
    process.start()
    slot = stats.slot("frontend")
    try:
        deadline = time.monotonic() + PROCESS_DEADLINE
        while slot.get("cursor") < last + 1:
            assert time.monotonic() < deadline and process.is_alive(), "the front end did not reach the last window"
            time.sleep(0.05)
    finally:
        stop.set()
        process.join(PROCESS_DEADLINE)
        for ring in (audio, *feature_rings):
            ring.close()
        dropped, unheard = slot.get("dropped"), slot.get("unheard")
        stats.close()
    sent = _all_waiting(windows[ensemble.models[1].id])
    kept = _all_waiting(shallow)
    skipped = sent[0].index
    assert skipped > 0 and sent[-1].index == last and 0 < len(kept) < len(sent)
    assert dropped == skipped + len(sent) - len(kept)
    assert unheard == skipped * hop_samples(config, ensemble)  # captured before its start, in no window scored


def _stepped_frontend(capacity: int, hop: int) -> tuple[Frontend, Ring, dict]:
    ensemble = load_ensemble("")
    rate = ensemble.sample_rate
    audio = Ring.in_memory(capacity, AUDIO_SHAPE, rate)
    streams = {
        key: (
            spec,
            Ring.in_memory(feature_ring_capacity(spec, capacity), feature_shape(spec.n_mels), rate / spec.hop_length),
        )
        for key, spec in ensemble.logmel_specs().items()
    }
    return Frontend(audio, streams, ensemble.window_samples, hop), audio, streams


def test_a_whole_ring_of_audio_at_once_is_framed_in_bounded_memory_with_the_same_frames():
    """After a stall or a restart the front end finds up to a ring of audio waiting (60 s by default):
    its spectra computed at once took 194 MB on a Pi with 1 GB. Framed a chunk at a time, the
    catch-up's peak is a few MB, and every frame equals the frame of a front end that kept up (to the
    float rounding of a matrix product over another number of rows)."""
    rate = load_ensemble("").sample_rate
    capacity, hop = 60 * rate, rate // 2
    audio = (np.random.default_rng(7).standard_normal(capacity) * 3000).astype(np.int16)
    behind, behind_audio, behind_streams = _stepped_frontend(capacity, hop)
    behind_audio.write(audio)
    tracemalloc.start()
    try:
        caught_up = behind.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB"
    kept_up, kept_audio, kept_streams = _stepped_frontend(capacity, hop)
    ready = []
    for start in range(0, capacity, hop):
        kept_audio.write(audio[start : start + hop])
        ready += kept_up.step()
    assert [w.index for w in caught_up] == [w.index for w in ready]
    for key, (_, ring) in behind_streams.items():
        kept = kept_streams[key][1]
        assert ring.write_pos == kept.write_pos
        np.testing.assert_allclose(ring.read(0, ring.write_pos), kept.read(0, kept.write_pos), atol=TOLERANCE_DB)


def test_windows_whose_audio_was_overwritten_while_they_were_framed_are_skipped_not_announced():
    """A CPU-starved front end: capture laps the ring while a step computes frames, and the frames
    whose audio went are stand-ins (Ring.skip). A window of real frames and stand-ins scored 1.0 by
    both mel models: a false alert (CPU audit). Such windows are skipped and counted."""
    rate = load_ensemble("").sample_rate
    capacity, hop = 10 * rate, rate // 2
    frontend, audio, _ = _stepped_frontend(capacity, hop)
    noise = (np.random.default_rng(3).standard_normal(20 * rate) * 300).astype(np.int16)
    audio.write(noise[: 4 * rate])
    frontend.step()
    audio.write(noise[4 * rate : 12 * rate])  # 8 s behind, still held
    framed = {"first": True}
    for stream, _ in frontend.streams.values():
        compute = stream.frames

        def slow(samples, compute=compute):
            if framed.pop("first", False):
                audio.write(noise[12 * rate : 20 * rate])  # the ring laps while the step runs
            return compute(samples)

        stream.frames = slow
    ready = frontend.step()
    assert frontend.skipped > 0
    assert ready and all(window.start >= audio.oldest() for window in ready)


def test_a_long_catch_up_beats_after_each_chunk_so_it_is_not_taken_for_a_hang():
    """The supervisor kills a process that has not beaten for 10 s: a CPU-starved front end catching
    up a backlog in one step was killed, restarted on a bigger backlog and killed again (CPU audit)."""
    rate = load_ensemble("").sample_rate
    capacity, hop = 60 * rate, rate // 2
    frontend, audio, _ = _stepped_frontend(capacity, hop)
    beats = []
    frontend.beat = lambda: beats.append(1)
    audio.write(np.zeros(capacity, dtype=np.int16))
    frontend.step()
    assert len(beats) >= 2 * 60 / CHUNK_SECONDS - 2  # every chunk of each of the two streams
