"""The supervisor as a whole process tree: crash of the supervisor itself, then a clean restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import soundfile

from tests.detector_run import RATE, DetectorRun, stream_with_shots

DEADLINE = 30.0
SHM = Path("/dev/shm")


def detector_processes(pids: set[int]) -> list[psutil.Process]:
    alive = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


def running_detector(tmp_path) -> tuple[DetectorRun, Path]:
    """A detector replaying two minutes of background, once its capture is writing."""
    wav = tmp_path / "long.wav"
    soundfile.write(wav, stream_with_shots(120.0, []), RATE, subtype="PCM_16")
    run = DetectorRun(tmp_path)
    run.start("--source", str(wav))
    ring = run.ring()
    run.wait_for_audio(ring)
    ring.close()
    return run, wav


def test_a_killed_supervisor_leaves_no_orphans(tmp_path):
    run, _ = running_detector(tmp_path)
    children = {c.pid for c in psutil.Process(run.process.pid).children(recursive=True) if c.name().startswith("gs.")}
    assert len(children) == 7
    run.process.send_signal(signal.SIGKILL)
    run.process.wait()
    deadline = time.monotonic() + DEADLINE
    while detector_processes(children):
        assert time.monotonic() < deadline, "processes outlived their supervisor"
        time.sleep(0.2)
    run.log.close()


def test_after_the_whole_tree_is_killed_the_next_start_removes_its_stale_shared_memory(tmp_path):
    """As systemd does to a unit that will not stop, or an OOM kill of everything: the resource
    tracker dies too, so nothing unlinks the segments but the next start."""
    run, wav = running_detector(tmp_path)
    tree = [*psutil.Process(run.process.pid).children(recursive=True), psutil.Process(run.process.pid)]
    for process in tree:
        process.kill()
    run.process.wait()
    psutil.wait_procs(tree, timeout=DEADLINE)
    stale = sorted(p.name for p in SHM.glob(f"gs-{run.process.pid:x}-*"))
    assert stale
    run.log.close()
    run.start("--source", str(wav))
    run.wait_for_audio(run.ring())
    assert run.stop() == 0
    assert "stale shared-memory segments" in run.output()  # ... and the next start removed it
    for name in stale:
        assert not (SHM / name).exists()
