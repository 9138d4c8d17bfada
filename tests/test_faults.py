"""Faults in a real-time run (PulseAudio null sink as the microphone, Gammu's dummy phone as the
modem, the real processes): every process SIGKILLed in turn, and the microphone vanishing and
coming back. What must hold: the supervisor restarts what died, audio resumes, shots after each
fault are detected and texted, and audio that was not captured is counted as lost. Also a
microphone that stalls (reads block, no error)."""

from __future__ import annotations

import time

import pytest
import soundfile

from tests.audio_env import pulseaudio_available, start_pulse
from tests.detector_run import (
    CHILD_PROCESSES,
    PIPELINE_SHOTS,
    RATE,
    RECIPIENTS,
    DetectorRun,
    listening_config,
    stream_with_shots,
)

pytestmark = [
    pytest.mark.skipif(not pulseaudio_available(), reason="needs pulseaudio, pactl, paplay (./setup.sh --test)"),
]

VICTIMS = CHILD_PROCESSES
SHOT_EVERY = 8.0  # s: room for a restart (backoff 1 s + model loading) between two shots
FIRST_SHOT = 4.0
RESTART_DEADLINE = 15.0
OUTAGE = 6.0  # s the microphone is gone
LOST_SHARE = 0.8  # at least this share of the outage must be counted as lost audio
STALL_DEADLINE = 30.0  # s: the heartbeat timeout (10 s) and a restart, with room for a busy machine


def listening_run(tmp_path, pulse, config_lines: tuple[str, ...] = ()) -> DetectorRun:
    run = DetectorRun(tmp_path, env=pulse.env, config_lines=[*listening_config(tmp_path, "pulse", RATE), *config_lines])
    run.start()
    run.wait_for_audio(run.ring())
    return run


def play_shots(pulse, tmp_path, count: int) -> list[float]:
    """Shots every SHOT_EVERY s into the microphone; their times from now."""
    shots = [(FIRST_SHOT + i * SHOT_EVERY, PIPELINE_SHOTS[i % len(PIPELINE_SHOTS)]) for i in range(count)]
    wav = tmp_path / "shots.wav"
    soundfile.write(wav, stream_with_shots(shots[-1][0] + 4.0, shots), RATE, subtype="PCM_16")
    pulse.play(wav)
    return [t for t, _ in shots]


def restarted(run: DetectorRun, name: str, old_pid: int) -> bool:
    child = run.child(name)
    return child is not None and child.pid != old_pid


def texted(run: DetectorRun, events: int) -> bool:
    texts = run.texts()
    return len({t["event_id"] for t in texts if t["state"] == "sent"}) >= events


def test_each_process_killed_in_turn_is_restarted_and_every_shot_is_still_texted(tmp_path):
    pulse = start_pulse(rate=RATE)
    run = listening_run(tmp_path, pulse)
    try:
        play_shots(pulse, tmp_path, len(VICTIMS) + 1)
        for number, victim in enumerate(VICTIMS, 1):
            run.wait_until(lambda n=number: len(run.events()) >= n, SHOT_EVERY + 10, f"event {number}")
            process = run.child(victim)
            assert process is not None, f"no {victim} running"
            process.kill()
            run.wait_until(lambda v=victim, p=process.pid: restarted(run, v, p), RESTART_DEADLINE, f"{victim} back")
        shots = len(VICTIMS) + 1
        run.wait_until(lambda: len(run.events()) >= shots, SHOT_EVERY + 10, "the last shot, after every restart")
        run.wait_until(lambda: texted(run, shots), 30, "a text for every event")
        ring = run.ring()
        assert ring.lost > 0  # the capture's restart left a hole: counted, not hidden
        ring.close()
    finally:
        code = run.stop()
        pulse.stop()
    assert code == 0
    events = run.events()
    assert len(events) == len(VICTIMS) + 1, events  # one per shot: no duplicates from the restarts
    texts = run.texts()
    for event in events:
        assert {t["recipient"] for t in texts if t["event_id"] == event["id"] and t["state"] == "sent"} == set(
            RECIPIENTS
        )
    killed = " died (exit code -9: killed, by a person or for lack of memory"  # no OOM kill counted
    assert (run.folder / "detector.log").read_text().count(killed) == len(VICTIMS)


def test_the_microphone_vanishing_is_reported_counted_and_recovered(tmp_path):
    """PulseAudio (the 'device') is killed for OUTAGE s and started again, as a USB mic unplugged
    and plugged back. With health.silence_alert_after short, the recipients are told."""
    pulse = start_pulse(rate=RATE)
    run = listening_run(tmp_path, pulse, ("[health]", "silence_alert_after = 5.0"))
    try:
        ring = run.ring()
        lost_before = ring.lost
        pulse.kill_daemon()
        gone_at = time.monotonic()
        run.wait_until(lambda: any(t["kind"] == "health" for t in run.texts()), 30, "a text about the microphone")
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - gone_at)))
        pulse.start_daemon()
        outage = time.monotonic() - gone_at
        lost = expect_lost_audio_then_a_shot(
            run, ring, pulse, tmp_path, lost_before + LOST_SHARE * outage * RATE, "outage"
        )
    finally:
        code = run.stop()
        pulse.stop()
    assert code == 0
    assert run.stats()["lost_samples"] >= lost  # what `cli.py stats` and the journal show
    health = [t["text"] for t in run.texts() if t["kind"] == "health"]
    assert health, run.output()
    assert "audio device 'pulse' failed" in run.output() or "cannot open audio device" in run.output()


def expect_lost_audio_then_a_shot(run, ring, pulse, tmp_path, lost_at_least: float, what: str) -> int:
    """After a fault: audio flows again, the gap is counted as lost audio, a new shot is detected.
    The samples counted lost by then."""
    run.wait_for_audio(ring, timeout=40)
    run.wait_until(lambda: ring.lost >= lost_at_least, 10, f"the {what} counted as lost audio")
    play_shots(pulse, tmp_path, 1)
    run.wait_until(lambda: len(run.events()) >= 1, SHOT_EVERY + 10, f"the shot after the {what}")
    lost = ring.lost
    ring.close()
    return lost


def test_a_stalled_microphone_is_restarted_counted_and_recovered(tmp_path):
    """The null sink suspended: reads block without an error, as a wedged USB device's would. The
    capture stops beating its heartbeat, the supervisor kills and restarts it; once audio flows
    again the stall is counted as lost audio and a shot is detected."""
    pulse = start_pulse(rate=RATE)
    run = listening_run(tmp_path, pulse)
    try:
        ring = run.ring()
        capture = run.child("gs.capture")
        pulse.suspend(True)
        stalled_at = time.monotonic()
        run.wait_until(
            lambda: restarted(run, "gs.capture", capture.pid), STALL_DEADLINE, "the stalled capture restarted"
        )
        pulse.suspend(False)
        stall = time.monotonic() - stalled_at
        expect_lost_audio_then_a_shot(run, ring, pulse, tmp_path, LOST_SHARE * stall * RATE, "stall")
    finally:
        code = run.stop()
        pulse.stop()
    assert code == 0
    assert "capture is hung (no heartbeat" in (run.folder / "detector.log").read_text()
