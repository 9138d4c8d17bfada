"""The capture process on real ALSA through pyalsaaudio (the `file` plugin, no sound card)."""

from __future__ import annotations

import errno
import itertools
import multiprocessing
import os
import time
from typing import ClassVar

import numpy as np
import pytest

from capture import alsa_source
from capture.alsa_source import AlsaSource, DeviceError
from capture.meter import level_of
from capture.pcm import MODEL_RATE
from capture.process import RingWriter, run_capture
from pipeline.config import Config, override
from pipeline.layout import AUDIO_SHAPE, Layout
from pipeline.log_throttle import LogThrottle
from pipeline.metrics import StatsTable
from pipeline.ring import Ring
from tests.audio_env import alsa_replay_config, write_raw
from tests.conftest import own_run_id
from tests.other_user import as_nobody, needs_root, open_folder

DEADLINE = 30.0
NAMES = ("capture",)
RING_SECONDS = 600


@pytest.fixture
def shared():
    run = own_run_id()
    # The unclocked file plugin reads ~1000x faster than real time and returns zeros after the end
    # of the file: a ten-minute ring keeps the file's samples long enough to check them.
    ring = Ring.create(f"gs-{run}-audio", 16000 * RING_SECONDS, AUDIO_SHAPE, 16000.0)
    stats = StatsTable.create(f"gs-{run}-stats", NAMES)
    yield Layout(run, ring.name, stats.segment_name, NAMES), ring, stats
    ring.close()
    stats.close()


def _capture_with_env(env: dict, config: Config, layout: Layout, stop) -> None:
    os.environ.update(env)
    run_capture(config, layout, stop)


def start_capture(config: Config, layout: Layout, env: dict):
    context = multiprocessing.get_context("spawn")  # a fresh process reads ALSA_CONFIG_PATH at its first open
    stop = context.Event()
    process = context.Process(target=_capture_with_env, args=(env, config, layout, stop))
    process.start()
    return process, stop


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def stop_capture(process, stop) -> None:
    stop.set()
    process.join(DEADLINE)
    assert process.exitcode == 0


def test_file_pcm_samples_reach_the_ring_bit_exact(tmp_path, shared):
    layout, ring, _ = shared
    samples = np.random.default_rng(1).integers(-20000, 20000, 16000 * 3).astype(np.int16)
    env = alsa_replay_config(tmp_path, write_raw(tmp_path / "in.raw", samples), clocked=False)
    config = override(Config(), {"audio.device": "replay", "audio.rate": 16000})
    process, stop = start_capture(config, layout, env)
    try:
        wait_for(lambda: ring.write_pos >= samples.size, "the file's samples")
    finally:
        stop_capture(process, stop)
    np.testing.assert_array_equal(ring.read(0, samples.size), samples)


@pytest.mark.parametrize(("device", "channels"), [("replay", 2), ("stereo_only", 1)])
def test_a_stereo_device_is_captured_as_the_mean_of_its_channels(tmp_path, shared, device, channels):
    """Many USB microphones are stereo only. Asked for mono, such a device still delivers two
    channels (pyalsaaudio takes the nearest count without saying so): they are averaged too."""
    layout, ring, _ = shared
    rng = np.random.default_rng(2)
    left, right = (2 * rng.integers(-8000, 8000, 16000 * 2) for _ in range(2))  # even: an exact mean
    interleaved = np.column_stack((left, right)).ravel()
    env = alsa_replay_config(tmp_path, write_raw(tmp_path / "in.raw", interleaved), clocked=False)
    config = override(Config(), {"audio.device": device, "audio.rate": 16000, "audio.channels": channels})
    process, stop = start_capture(config, layout, env)
    try:
        wait_for(lambda: ring.write_pos >= left.size, "the file's frames")
    finally:
        stop_capture(process, stop)
    np.testing.assert_array_equal(ring.read(0, left.size), (left + right) // 2)


def test_a_48k_device_is_resampled_to_16k(tmp_path, shared):
    layout, ring, _ = shared
    seconds, tone = 2.0, 1000.0
    t = np.arange(int(48000 * seconds)) / 48000
    samples = (8000 * np.sin(2 * np.pi * tone * t)).astype(np.int16)
    env = alsa_replay_config(tmp_path, write_raw(tmp_path / "in.raw", samples), clocked=False)
    config = override(Config(), {"audio.device": "replay", "audio.rate": 48000})
    process, stop = start_capture(config, layout, env)
    try:
        wait_for(lambda: ring.write_pos >= 16000 * seconds, "two seconds at 16 kHz")
    finally:
        stop_capture(process, stop)
    got = ring.read(4000, 16000).astype(np.float32)
    peak_hz = np.argmax(np.abs(np.fft.rfft(got))) * 16000 / got.size
    assert abs(peak_hz - tone) < 2.0
    assert 7000 < np.max(np.abs(got)) < 9000


def _resampled_tone(rate: int, tone: float) -> tuple[np.ndarray, np.ndarray]:
    """Two seconds of a tone at -6 dBFS, resampled to 16 kHz period by period as capture does;
    the output and its spectrum's magnitude relative to the tone's amplitude."""
    from capture.resample import Resampler

    amplitude, period = 16384, rate // 4
    x = (amplitude * np.sin(2 * np.pi * tone * np.arange(2 * rate) / rate)).astype(np.int16)
    resampler = Resampler(rate, MODEL_RATE)
    parts = [resampler.process(x[i : i + period]) for i in range(0, x.size, period)]
    out = np.concatenate([*parts, resampler.process(np.zeros(0, dtype=np.int16), last=True)])
    window = np.hanning(MODEL_RATE)  # the middle second: no start-up or flush transient
    spectrum = np.abs(np.fft.rfft(out[MODEL_RATE // 4 : MODEL_RATE // 4 + MODEL_RATE] * window))
    return out, spectrum / (amplitude * window.sum() / 2)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_the_resampler_keeps_the_models_band_and_folds_nothing_above_it_back_into_it(rate):
    """USB microphones run at 44.1 or 48 kHz. The models hear up to 8 kHz; a sound above it (a
    bird, a machine's whine) must not alias into their band as a tone that is not there."""
    for tone in (1000, 4000, 7000):
        out, spectrum = _resampled_tone(rate, tone)
        assert out.size == 2 * MODEL_RATE
        assert np.argmax(spectrum) == tone and abs(20 * np.log10(spectrum.max())) < 0.5
    for tone in (9000, 12000, 20000):
        _, spectrum = _resampled_tone(rate, tone)
        assert 20 * np.log10(spectrum.max()) < -80  # measured: -100 to -115 dB (soxr HQ)


def test_a_missing_device_is_retried_with_a_clear_error_and_stops_cleanly(tmp_path, shared, capfd):
    layout, ring, stats = shared
    config = override(Config(), {"audio.device": "no_such_device", "audio.reopen_max_backoff": 2.0})
    process, stop = start_capture(config, layout, {})
    attempts: list[float] = []  # when each failed attempt was counted
    try:
        deadline = time.monotonic() + DEADLINE
        while len(attempts) < 4 and time.monotonic() < deadline:
            if stats.slot("capture").get("errors") > len(attempts):
                attempts.append(time.monotonic())
            time.sleep(0.02)
        assert process.is_alive()
    finally:
        stop_capture(process, stop)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(gaps) == 3, attempts
    assert all(want - 0.1 <= gap < want + 1.0 for gap, want in zip(gaps, [1.0, 2.0, 2.0], strict=True)), gaps
    assert ring.write_pos == 0
    err = capfd.readouterr().err
    assert err.count("cannot open audio device 'no_such_device'") == 1  # one line per failure state


def test_test_mic_reports_level_and_clipping_from_a_real_alsa_device(tmp_path):
    import subprocess
    import sys

    from tests.detector_run import ROOT

    tone = (np.sin(np.arange(16000 // 2) * 2 * np.pi * 440 / 16000) * 32767).astype(np.int16)  # full scale
    quiet = np.zeros(16000, dtype=np.int16)  # the gain turned down
    recording = write_raw(tmp_path / "in.raw", np.concatenate((tone, quiet)))
    env = {**os.environ, **alsa_replay_config(tmp_path, recording, clocked=False)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "test-mic", "--device", "replay", "--seconds", "1.2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    first, second, last = result.stdout.splitlines()  # 0.5 s, 0.5 s and the last 0.2 s
    assert "rms   -3.0 dBFS" in first and "clipped 40 " in first and "CLIPPING" in first  # samples at full scale
    assert "clipped 0" in second and "CLIPPING" not in second and "clipped 0" in last


def test_a_sample_on_the_negative_rail_counts_as_clipped():
    assert level_of(np.array([-32768, -32767, 32767, 0, 1000], dtype=np.int16)).clipped == 3


def test_frames_an_overrun_lost_at_48k_are_counted_as_16k_samples_and_stood_in_for(shared):
    _, ring, stats = shared
    writer = RingWriter(ring, stats.slot("capture"), 48000, Config().health.silence_dbfs)
    writer.write(np.zeros(4800, dtype=np.int16))
    before = ring.write_pos
    writer.write(np.zeros(4800, dtype=np.int16), lost_frames=4800)  # 0.1 s the device dropped
    assert (ring.lost, ring.overruns) == (1600, 1)
    assert ring.losses == [(before, before + 1600)]


def test_overruns_every_period_are_all_counted_and_logged_once_a_minute(shared, caplog, monkeypatch):
    """Every 100th was logged: a line every 25 s at one a period, every 5 s at a 0.05 s period (log audit)."""
    _, ring, stats = shared
    writer = RingWriter(ring, stats.slot("capture"), MODEL_RATE, Config().health.silence_dbfs)
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    for period in range(300):  # 150 s of 0.5 s periods, each with an overrun
        now[0] = 1000.0 + 0.5 * period
        writer.write(np.zeros(8000, dtype=np.int16), lost_frames=100)
    assert ring.overruns == 300 and ring.lost == 300 * 100  # each counted
    logged = [r.getMessage() for r in caplog.records if "audio overrun" in r.getMessage()]
    assert len(logged) == 3  # at 0, 60 and 120 s
    assert logged[-1].endswith("(241 losses so far)")


def test_a_line_that_recurs_is_logged_first_then_once_a_period_with_the_count_since():
    throttle = LogThrottle(every=60.0)
    due = [throttle.due(now=1000.0 + 0.5 * i) for i in range(300)]  # twice a second for 150 s
    assert [(i, count) for i, count in enumerate(due) if count is not None] == [(0, 1), (120, 120), (240, 120)]


def test_an_input_stuck_at_a_constant_counts_as_silence_and_a_quiet_sound_does_not(shared):
    """A dead capsule behind a working USB chip, or a stuck converter, may hold a DC offset."""
    _, ring, stats = shared
    slot = stats.slot("capture")
    writer = RingWriter(ring, slot, MODEL_RATE, Config().health.silence_dbfs)
    writer.write(np.full(MODEL_RATE // 4, 40, dtype=np.int16))  # 40 LSB of offset, nothing else
    assert slot.get("last_sound") == 0.0
    hiss = np.random.default_rng(0).integers(-1, 2, MODEL_RATE // 4).astype(np.int16)  # +-1 LSB: about -93 dBFS
    writer.write(hiss + 40)  # a converter's own noise, below the silence level (-85 dBFS)
    assert slot.get("last_sound") == 0.0
    quiet = np.random.default_rng(0).normal(0, 10, MODEL_RATE // 4).astype(np.int16)  # about -70 dBFS
    writer.write(quiet + 40)
    assert slot.get("last_sound") > 0.0


class _HardwarePCM:
    """What a USB sound card's driver answers and the PulseAudio plugin here never does (it buffers
    a stalled reader's audio in the server): a rate other than the one asked for, and an overrun
    (-EPIPE) after the reader was away."""

    rate: ClassVar[int] = 48000
    format_name: ClassVar[str] = "S16_LE"
    reads: ClassVar[list[tuple[int, bytes]]] = []

    def __init__(self, *_args, **_kwargs) -> None:
        self.closed = False

    def info(self) -> dict:
        return {"rate": self.rate, "channels": 1, "format_name": self.format_name}

    def read(self) -> tuple[int, bytes]:
        return self.reads.pop(0)

    def close(self) -> None:
        self.closed = True


def test_a_device_that_runs_at_another_rate_than_asked_is_refused_with_the_setting_to_change(monkeypatch):
    monkeypatch.setattr(alsa_source.alsaaudio, "PCM", type("At44k", (_HardwarePCM,), {"rate": 44100}))
    source = AlsaSource("hw:1", 48000, 1, 4800)
    with pytest.raises(DeviceError, match=r"runs at 44100 Hz, not 48000: set audio\.rate"):
        source.open()
    assert not source.is_open


def test_a_device_that_delivers_another_sample_format_is_refused_with_what_to_do(monkeypatch):
    """A hw: device that only does 24 or 32 bits: read as 16-bit samples it would be noise."""
    monkeypatch.setattr(alsa_source.alsaaudio, "PCM", type("S32Only", (_HardwarePCM,), {"format_name": "S32_LE"}))
    source = AlsaSource("hw:1", 48000, 1, 4800)
    with pytest.raises(DeviceError, match=r"delivers S32_LE samples, not S16_LE: use its plughw: name"):
        source.open()
    assert not source.is_open


class _RefusedPCM:
    """What alsa-lib raises for a card whose device nodes this user may not open (seen on a Pi as
    a user not in the audio group): the EACCES of open(2) becomes "no such file"."""

    def __init__(self, *_args, **_kwargs) -> None:
        raise alsa_source.alsaaudio.ALSAAudioError("No such file or directory [plughw:0]")


def sound_folder(parent, mode: int | None):
    """A stand-in for /dev/snd: a card's control and capture nodes (plain files) of `mode`, or none."""
    folder = parent / "snd"
    if mode is not None:
        folder.mkdir()
        for name in ("controlC0", "pcmC0D0c", "timer"):
            (folder / name).touch()
            (folder / name).chmod(mode)
    return folder


def open_error(source: AlsaSource) -> str:
    try:
        source.open()
    except DeviceError as exc:
        return str(exc)
    raise AssertionError("the device opened")


@needs_root
@pytest.mark.parametrize(
    ("mode", "hint"),
    [
        (
            0o000,
            "this user (nobody) cannot open the sound devices: add it to the audio group (sudo usermod -aG audio "
            "nobody), then restart the detector (or log in again)",
        ),
        (0o666, "is the microphone plugged in? see `arecord -L`"),
        (None, "is the microphone plugged in? see `arecord -L`"),
    ],
)
def test_a_microphone_this_user_may_not_open_is_not_reported_as_unplugged(monkeypatch, mode, hint):
    """As nobody (root may open any node): sound device nodes it cannot read and write mean the
    audio group, not the cable; nodes it may open, or none at all, keep the cable's hint."""
    monkeypatch.setattr(alsa_source.alsaaudio, "PCM", _RefusedPCM)
    with open_folder() as parent:
        folder = sound_folder(parent, mode)
        monkeypatch.setattr(alsa_source, "SOUND_DEVICES", folder)
        assert as_nobody(alsa_source.sound_devices_refused, folder) is (mode == 0o000)
        message = as_nobody(open_error, AlsaSource("plughw:0", 48000, 1, 4800))
    assert message == f"cannot open audio device 'plughw:0' (No such file or directory [plughw:0]); {hint}"


def test_start_refuses_a_device_that_runs_at_another_rate_before_the_pipeline_starts(monkeypatch):
    """Else the capture process would retry it with backoff for ever, and the detector be deaf."""
    from capture.preflight import PreflightError, check_source

    monkeypatch.setattr(alsa_source.alsaaudio, "PCM", type("At44k", (_HardwarePCM,), {"rate": 44100}))
    config = override(Config(), {"audio.device": "hw:1", "audio.rate": 48000})
    with pytest.raises(PreflightError, match=r"^audio\.device: .* runs at 44100 Hz, not 48000: set audio\.rate$"):
        check_source(config)


def test_an_overrun_reports_the_frames_lost_while_the_reader_was_away(monkeypatch):
    clock = iter([100.0, 102.0])  # the reader came back 2 s after its last read
    monkeypatch.setattr(alsa_source.time, "monotonic", lambda: next(clock))
    period = 4800
    reads = [(period, np.zeros(period, dtype="<i2").tobytes()), (-errno.EPIPE, b"")]
    monkeypatch.setattr(alsa_source.alsaaudio, "PCM", type("Overrun", (_HardwarePCM,), {"reads": reads}))
    source = AlsaSource("hw:1", 48000, 1, period)
    source.open()
    assert source.read().samples.shape == (period,)
    overrun = source.read()
    assert overrun.samples.shape == (0,) and overrun.lost == 2 * 48000 - period  # the period read next is not lost


def test_an_overrun_before_the_first_read_after_opening_counts_at_least_a_period(monkeypatch):
    period = 4800
    monkeypatch.setattr(
        alsa_source.alsaaudio, "PCM", type("Overrun", (_HardwarePCM,), {"reads": [(-errno.EPIPE, b"")]})
    )
    source = AlsaSource("hw:1", 48000, 1, period)
    source.open()
    assert source.read().lost == period


class _UnpluggedTwice:
    """A device that is away, comes back, is unplugged mid-read and is away again: what a loose USB
    cable does, and what cannot be made to happen to a real device here."""

    rate, channels, delivered_channels, device = MODEL_RATE, 1, 1, "hw:CARD=Loose"

    def __init__(self) -> None:
        self.is_open = False
        self.opens = iter([False, False, True, False, False])

    def open(self) -> None:
        if not next(self.opens):
            raise DeviceError("no such device")
        self.is_open = True

    def read(self):
        self.is_open = False
        raise DeviceError("device unplugged")

    def close(self) -> None:
        self.is_open = False


def test_the_reopen_backoff_starts_again_once_the_device_came_back(shared, monkeypatch):
    """Else the next unplug waits as long as the last outage's backoff had grown, losing audio."""
    from capture import process

    _, ring, stats = shared
    waits: list[float] = []

    class FourWaits:
        def is_set(self) -> bool:
            return len(waits) == 4

    monkeypatch.setattr(process, "_wait", lambda _stop, seconds, _slot: waits.append(seconds))
    process._capture(_UnpluggedTwice(), ring, stats.slot("capture"), FourWaits(), 16.0, Config().health.silence_dbfs)
    first = process.FIRST_BACKOFF
    assert waits == [first, 2 * first, first, 2 * first]


def test_a_hole_in_the_audio_is_counted_as_its_own_length(shared, monkeypatch):
    """A device away for 3 s: 3 s of samples are lost and stood in for, no more and no less."""
    from capture import process

    _, ring, stats = shared
    period = MODEL_RATE // 4
    now = [100.0]  # each period is timed as it arrives
    monkeypatch.setattr(process.time, "monotonic", lambda: now[0])
    writer = RingWriter(ring, stats.slot("capture"), MODEL_RATE, Config().health.silence_dbfs)
    writer.write(np.ones(period, dtype=np.int16))  # captured 99.75-100.0
    writer.resuming, now[0] = True, 103.25  # the device was reopened; its next period came 3 s late
    writer.write(np.ones(period, dtype=np.int16))  # captured 103.0-103.25
    assert (ring.lost, ring.write_pos) == (3 * MODEL_RATE, 2 * period + 3 * MODEL_RATE)
