"""Soak test: the real detector for a long real-time run with faults injected at random times.

    python benchmarks/soak.py --minutes 35 [--seed 1] [--no-faults] [--hog 2]

A private PulseAudio null sink stands in for the microphone (needs pulseaudio, paplay); a
generated stream (quiet outdoor-like background with bundled shots at known times) plays into it;
`cli.py start` captures it with Gammu's dummy phone as the modem. Faults, at random times:
SIGKILL of one process (capture, frontend, a model worker, aggregator, SMS, or the supervisor
itself, which is then started again), and modem outages (the dummy's device folder removed for a
while and the SMS process killed, so it must re-initialise against a missing modem). At the end it
prints the table: shots inserted, events detected and matched to shots, texts sent, false
alerts, overruns, restarts, max PSS and its trend (flat RSS), shot onset to text sent, and
whether any decided alert was lost. `--hog N` runs N busy processes (one pure-Python spin loop
each, normal priority) beside the detector for the whole run: the CPU-starved case.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.audio_env import start_pulse
from tests.detector_run import (
    CHILD_PROCESSES,
    PIPELINE_SHOTS,
    RATE,
    RECIPIENTS,
    DetectorRun,
    pipeline_test_models,
    stream_with_shots,
)
from tests.gammu_env import DUMMY_DEVICE, dummy_gammurc

SHOT_GAP = (40.0, 80.0)  # s between shots
FAULT_GAP = (60.0, 150.0)  # s between faults
OUTAGE = (30.0, 120.0)  # s a modem outage lasts
ORPHAN_DEADLINE = 5.0  # s: children notice their supervisor is gone within about a second
SAMPLE_EVERY = 10.0  # s between memory and CPU samples
WARM_UP = 60.0  # s: memory trend and CPU are taken after this
MATCH_TOLERANCE = 2.0  # s: an event within this of a shot's onset (its window starts up to 1 s early)
PROCESSES = (*CHILD_PROCESSES, "supervisor")


def shots_for(minutes: float, rng: random.Random) -> list[tuple[float, str]]:
    shots, t = [], 10.0
    while t < minutes * 60 - 10:
        shots.append((round(t, 2), rng.choice(PIPELINE_SHOTS)))
        t += rng.uniform(*SHOT_GAP)
    return shots


def children(run: DetectorRun) -> dict[str, psutil.Process]:
    found = {}
    try:
        for child in psutil.Process(run.process.pid).children(recursive=True):
            try:
                found[child.name()] = child
            except psutil.NoSuchProcess:
                continue
    except psutil.NoSuchProcess:
        pass
    return found


@dataclass(frozen=True)
class Sample:
    """The detector's processes at one moment: seconds into the run, PSS and USS in MB, CPU s."""

    at: float
    pss: float
    uss: float
    cpu: float


def sample(run: DetectorRun, at: float) -> Sample:
    pss = uss = cpu = 0.0
    for process in [psutil.Process(run.process.pid), *children(run).values()]:
        try:
            memory, times = process.memory_full_info(), process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        pss, uss, cpu = pss + memory.pss / 2**20, uss + memory.uss / 2**20, cpu + times.user + times.system
    return Sample(at, pss, uss, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=35.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--hog", type=int, default=0, help="Busy processes to run beside the detector.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="gs-soak-"))
    shots = shots_for(args.minutes, rng)
    wav = folder / "stream.wav"
    soundfile.write(wav, stream_with_shots(args.minutes * 60, shots, seed=args.seed), RATE, subtype="PCM_16")
    pulse = start_pulse(rate=48000)
    gammurc = dummy_gammurc(folder)
    modem_dir = folder / DUMMY_DEVICE
    run = DetectorRun(folder, env=pulse.env)
    run.config_lines = [
        "[detector]",
        f'models_dir = "{pipeline_test_models(folder)}"',
        "[site]",
        'name = "Soak"',
        "[audio]",
        'device = "pulse"',
        "rate = 48000",
        "[modem]",
        f'gammurc = "{gammurc}"',
        "retry_initial = 2.0",
        "retry_max = 30.0",
        "[alerts]",
        f"recipients = {json.dumps(RECIPIENTS)}",
        "max_per_hour = 1000",
    ]
    faults: list[tuple[float, str]] = []
    restarts_of_supervisor = 0
    orphans = 0
    samples: list[Sample] = []
    hogs: list[subprocess.Popen] = []
    try:
        run.start()
        run.wait_for_audio(run.ring())
        started = time.monotonic()
        first_audio = time.time()
        pulse.play(wav)
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hog)]
        next_fault = started + rng.uniform(*FAULT_GAP)
        outage_ends = None
        while time.monotonic() - started < args.minutes * 60 + 15:
            time.sleep(1.0)
            now = time.monotonic()
            if not samples or now - started - samples[-1].at >= SAMPLE_EVERY:
                samples.append(sample(run, now - started))
            if outage_ends and now >= outage_ends:
                modem_dir.mkdir(exist_ok=True)
                faults.append((now - started, "modem back"))
                outage_ends = None
            if args.no_faults or now < next_fault or now - started > args.minutes * 60 - 20:
                continue
            next_fault = now + rng.uniform(*FAULT_GAP)
            kind = rng.choice([*PROCESSES, "modem outage"])
            if kind == "modem outage" and outage_ends is None:
                shutil.rmtree(modem_dir, ignore_errors=True)
                if (sms := children(run).get("gs.sms")) is not None:
                    sms.kill()
                outage_ends = now + rng.uniform(*OUTAGE)
                faults.append((now - started, f"modem outage for {outage_ends - now:.0f} s"))
            elif kind == "supervisor":
                run.process.send_signal(signal.SIGKILL)
                run.process.wait()
                orphans += count_orphans()
                run.log.close()
                run.start()  # as systemd would: Restart=always
                restarts_of_supervisor += 1
                faults.append((now - started, "SIGKILL supervisor (whole tree), restarted"))
            elif (victim := children(run).get(kind)) is not None:
                victim.kill()
                faults.append((now - started, f"SIGKILL {kind}"))
        modem_dir.mkdir(exist_ok=True)
        run.wait_until(lambda: all(t["state"] == "sent" for t in run.texts()), 120, "every text sent")
    finally:
        for hog in hogs:
            hog.kill()
        code = run.stop() if run.process else None
        pulse.stop()
    report(run, shots, faults, samples, (restarts_of_supervisor, orphans), code, first_audio, args)


def count_orphans() -> int:
    """gs.* processes still alive ORPHAN_DEADLINE s after their supervisor was killed (they watch it)."""
    deadline = time.monotonic() + ORPHAN_DEADLINE
    while True:
        alive = [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("gs.")]
        if not alive or time.monotonic() > deadline:
            return len(alive)
        time.sleep(0.2)


def uss_trend(samples: list[Sample]) -> str:
    """Least-squares slope of the processes' private memory (USS) after the warm-up, MB per hour.

    USS, not PSS: PSS moves when other programs map the same libraries."""
    later = [(s.at, s.uss) for s in samples if s.at >= WARM_UP]
    if len(later) < 3:
        return "too short to tell"
    t, mb = np.array(later).T
    return f"{np.polyfit(t / 3600.0, mb, 1)[0]:+.1f} MB/h ({mb[0]:.1f} -> {mb[-1]:.1f} MB)"


def cpu_per_audio_second(samples: list[Sample]) -> str:
    """CPU of every detector process per second of (real-time) audio, after the warm-up; meaningful
    without faults (a restarted process starts its count again)."""
    later = [s for s in samples if s.at >= WARM_UP]
    if len(later) < 2 or later[-1].cpu < later[0].cpu:
        return "-"
    return f"{1000.0 * (later[-1].cpu - later[0].cpu) / (later[-1].at - later[0].at):.1f}"


def onset_to_sent(events: list[dict], texts: list[dict], onsets: list[float]) -> str:
    """p50/p99 of (first text of an event handed to the modem) - (the shot's onset in the audio)."""
    delays = []
    for event in events:
        near = [onset for onset in onsets if abs(onset - event["start_time"]) <= MATCH_TOLERANCE]
        sent = [t["sent_at"] for t in texts if t["event_id"] == event["id"] and t["sent_at"]]
        if near and sent:
            delays.append(min(sent) - near[0])
    if not delays:
        return "-"
    return f"p50 {np.percentile(delays, 50):.2f} s, p99 {np.percentile(delays, 99):.2f} s (n={len(delays)})"


def report(run, shots, faults, samples, supervisor_kills, code, first_audio, args) -> None:
    events = run.events()
    texts = run.texts()
    onsets = [first_audio + t for t, _ in shots]
    matched, false_events = set(), []
    for event in events:
        near = [
            i for i, onset in enumerate(onsets) if -MATCH_TOLERANCE <= onset - event["start_time"] <= MATCH_TOLERANCE
        ]
        if near:
            matched.add(near[0])
        else:
            false_events.append(event)
    stats = run.stats()
    restarts = {n: int(p.get("restarts", 0)) for n, p in stats.get("processes", {}).items() if p.get("restarts")}
    unsent = [t for t in texts if t["state"] != "sent"]
    alert_events = {t["text"] for t in texts if t["kind"] == "alert"}
    rows = [
        ("minutes of audio", args.minutes),
        ("faults injected", len([f for f in faults if f[1] != "modem back"])),
        ("shots inserted", len(shots)),
        ("events detected", len(events)),
        ("shots detected (event within 2 s)", len(matched)),
        ("false alerts (events matching no shot)", len(false_events)),
        ("texts queued / sent", f"{len(texts)} / {len(texts) - len(unsent)}"),
        ("texts marked repeat", sum(t["repeat"] for t in texts)),
        ("events without a text to every recipient", sum(1 for e in events if not _texted(e, texts))),
        ("orphaned processes after a supervisor kill", supervisor_kills[1]),
        ("overruns / lost samples (last run)", f"{stats.get('overruns')} / {stats.get('lost_samples')}"),
        ("process restarts (last supervisor run)", json.dumps(restarts)),
        ("supervisor restarts (whole tree killed)", supervisor_kills[0]),
        ("CPU beside the detector", f"{args.hog} busy processes" if args.hog else "none"),
        ("max PSS of all processes, MB", round(max(s.pss for s in samples), 1) if samples else "-"),
        ("USS trend after the first minute (flat RSS)", uss_trend(samples)),
        ("CPU of all processes, ms per audio s", cpu_per_audio_second(samples)),
        ("shot onset to first text handed to the modem", onset_to_sent(events, texts, onsets)),
        ("detector exit code at the end", code),
        ("anything lost (a decided alert not sent)", "no" if not unsent else f"YES: {len(unsent)} unsent"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\n| time (s) | fault |\n|---|---|")
    for at, what in faults:
        print(f"| {at:.0f} | {what} |")
    missed = [f"{t:.0f} s ({name})" for i, (t, name) in enumerate(shots) if i not in matched]
    print(f"\nmissed shots: {', '.join(missed) or 'none'}")
    print(f"distinct alert texts: {len(alert_events)}; data kept in {run.folder}")


def _texted(event: dict, texts: list[dict]) -> bool:
    return all(any(t["recipient"] == r and t["event_id"] == event["id"] for t in texts) for r in RECIPIENTS)


if __name__ == "__main__":
    main()
