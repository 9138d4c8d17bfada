"""The supervisor as a whole process tree: crash of the supervisor itself, then a clean restart."""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import multiprocessing
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile

from alerting.outbox import Outbox, outbox_path
from inference.model import load_ensemble
from pipeline.channel import Channel
from pipeline.config import Config, override
from pipeline.health import HealthMonitor
from pipeline.layout import AUDIO_SHAPE, Layout
from pipeline.metrics import StatsTable
from pipeline.process import die_with_parent
from pipeline.ring import Ring
from pipeline.supervisor import (
    DRAIN_LIMIT,
    EXIT_INCOMPLETE,
    FIRST_BACKOFF,
    HEARTBEAT_TIMEOUT,
    MAX_BACKOFF,
    RECOVERED_AFTER,
    RESTART_BURST,
    RESTART_WINDOW,
    STARTUP_GRACE,
    WATCH_INTERVAL,
    Managed,
    Supervisor,
)
from tests import at_modem
from tests.conftest import own_run_id
from tests.detector_run import RATE, RECIPIENTS, ROOT, DetectorRun, pipeline_test_models, stream_with_shots

DEADLINE = 30.0
SLOW_SEND = HEARTBEAT_TIMEOUT + 5  # s the modem takes to answer the second text
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


def running_detector(
    tmp_path, config_lines: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> tuple[DetectorRun, Path]:
    """A detector replaying two minutes of background, once its capture is writing."""
    wav = tmp_path / "long.wav"
    soundfile.write(wav, stream_with_shots(120.0, []), RATE, subtype="PCM_16")
    run = DetectorRun(tmp_path, config_lines=list(config_lines), env=env or {})
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


PR_GET_PDEATHSIG = 2


def report_death_signal(answers: multiprocessing.Queue) -> None:
    """A forked process's first act: the signal it gets when its parent dies (0: none)."""
    signal_number = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(PR_GET_PDEATHSIG, ctypes.byref(signal_number), 0, 0, 0)
    answers.put(signal_number.value)


def test_the_forkserver_s_children_die_with_it_from_their_first_instruction():
    """Set by the forkserver's fork hook, before the process runs anything (process_setup came later).
    In a Python of its own: this one's forkserver may be another test's, started without the preload."""
    child = (
        "from pipeline.supervisor import _default_context\n"
        "from tests.test_supervisor import report_death_signal\n"
        "context = _default_context()\n"
        "answers = context.Queue()\n"
        "process = context.Process(target=report_death_signal, args=(answers,))\n"
        "process.start()\n"
        f"print(answers.get(timeout={DEADLINE}))\n"
        f"process.join({DEADLINE})\n"
    )
    run = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=2 * DEADLINE)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) == signal.SIGKILL


def test_a_child_whose_parent_died_before_it_set_its_death_signal_kills_itself():
    """The forkserver killed between a fork and the child's prctl: the child is the reaper's and
    would run on beside the new set of processes. Its parent's pid was read before the fork."""
    pid = os.fork()
    if pid == 0:
        die_with_parent(os.getppid() + 1)  # not its parent any more: as if that had died
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


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


def test_a_second_detector_on_the_same_data_folder_is_refused_clearly(tmp_path):
    run, wav = running_detector(tmp_path)
    try:
        second = subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), "start", "--source", str(wav), "--data-dir", str(run.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert "another detector is running on data folder" in second.stderr
    finally:
        assert run.stop() == 0


def test_a_process_that_keeps_crashing_marks_the_detector_degraded_and_texts(tmp_path):
    recipients = f"recipients = {RECIPIENTS!r}".replace("'", '"')
    run, _ = running_detector(tmp_path, ("[alerts]", recipients))
    try:
        for _ in range(6):  # RESTART_BURST + 1 crashes within RESTART_WINDOW
            run.wait_until(lambda: run.child("gs.model.mel_co") is not None, 30, "the worker (back)")
            run.child("gs.model.mel_co").kill()
            time.sleep(0.3)
        run.wait_until(
            lambda: len([t for t in run.texts() if t["kind"] == "health"]) == len(RECIPIENTS), 60, "the degraded texts"
        )
    finally:
        assert run.stop() == 0
    degraded = "detector is degraded (model.mel_coarse crashed 6 times in a row, each within 70 s of its start)"
    assert all(degraded in t["text"] for t in run.texts())


def test_a_front_end_held_up_past_the_ring_is_texted_as_behind_and_the_audio_it_never_scored_counted(tmp_path):
    """A CPU-starved detector fell further behind without a word (CPU audit). The front end is stopped
    (SIGSTOP, as a starved Pi holds it) until the supervisor kills it as hung; its restart finds more
    audio waiting than the 10 s ring holds, skips what is gone and catches up. ("Keeps up again" comes
    10 minutes later: tests/test_health.py.)"""
    recipients = f"recipients = {RECIPIENTS!r}".replace("'", '"')
    config = ("[audio]", "ring_seconds = 10", "[storage]", "clips = false", "[alerts]", recipients)
    run, _ = running_detector(tmp_path, config)
    log = tmp_path / "detector.log"
    try:
        run.wait_until(lambda: run.output().count(" ready") >= 4, DEADLINE, "the front end and the models ready")
        ring = run.ring()
        heard_from = ring.write_pos + round(3 * RATE)  # windows decided: the supervisor watches the lag
        run.wait_until(lambda: ring.write_pos > heard_from, DEADLINE, "3 s more audio")
        ring.close()
        held = run.child("gs.frontend")
        held.suspend()
        run.wait_until(lambda: len(run.texts()) == len(RECIPIENTS), DEADLINE, "the behind texts")
        run.wait_until(lambda: "captured and never scored" in log.read_text(), DEADLINE, "the restart's skip")
    finally:
        assert run.stop() == 0
    assert not held.is_running() and "frontend is hung" in log.read_text()
    texts = [t["text"] for t in run.texts()]
    assert all("s behind the microphone: shots texted late, missed past 10 s" in text for text in texts), texts
    assert 1 * RATE <= run.stats()["unheard_samples"] <= 3 * RATE  # killed after 10 s, the ring holds 10


def test_under_systemd_it_notifies_ready_pings_the_watchdog_says_stopping_and_logs_for_the_journal(tmp_path):
    """A real datagram socket in the abstract namespace as $NOTIFY_SOCKET, as systemd gives it."""
    address = f"@gs-test-notify-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + address[1:])
    listener.settimeout(0.2)
    log_file = tmp_path / "detector.log"  # DetectorRun's stderr: reopened with "w", so the inode stays
    log_file.touch()
    stat = log_file.stat()
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000", "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
    run, _ = running_detector(tmp_path, env=env)
    messages: list[str] = []
    pings: list[float] = []  # when each WATCHDOG=1 came
    deadline = time.monotonic() + DEADLINE
    while len(pings) < 4 or not any("READY=1" in m for m in messages):
        assert time.monotonic() < deadline, f"systemd was told only {messages}"
        with contextlib.suppress(TimeoutError):
            messages.append(listener.recv(4096).decode())
            if messages[-1] == "WATCHDOG=1":
                pings.append(time.monotonic())
    assert run.stop() == 0
    # systemd kills the service when WatchdogSec (2 s here) passes without a ping
    assert max(b - a for a, b in itertools.pairwise(pings)) < 2.0, pings
    with contextlib.suppress(TimeoutError):
        while True:
            messages.append(listener.recv(4096).decode())
    listener.close()
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=listening;" in ready and "windows decided" in ready
    assert messages[-1] == "STOPPING=1"
    lines = [line for line in log_file.read_text().splitlines() if line.strip()]
    # every line whole and with its level: LiteRT's own (three writes each) go through the log too
    assert lines and all(line.startswith(("<7>", "<6>", "<4>", "<3>")) for line in lines), lines
    assert any(line.startswith("<6>") and "detector started" in line for line in lines)


@pytest.mark.parametrize("segment", ["audio", "features1"])
def test_shared_memory_deleted_under_a_running_detector_makes_it_exit_for_a_fresh_start(tmp_path, segment):
    """Nothing could attach to it again: exit 3 (systemd's Restart=always starts it afresh)."""
    run, _ = running_detector(tmp_path)
    deleted = SHM / f"gs-{run.process.pid:x}-{segment}"
    assert deleted.exists()
    deleted.unlink()
    assert run.process.wait(DEADLINE) == 3
    run.log.close()
    assert "was deleted while the detector ran" in (tmp_path / "detector.log").read_text()
    assert not list(SHM.glob(f"gs-{run.process.pid:x}-*"))  # the rest unlinked on the way out


def test_a_replay_in_which_a_process_died_ends_with_its_own_exit_code_not_0(tmp_path):
    """The memory audit's replays exited 0 with model workers OOM-killed and shots missed: a replay
    (a test of a recording, the demo) must say when it was not scored as `analyze` scores it."""
    wav = tmp_path / "short.wav"
    soundfile.write(wav, stream_with_shots(12.0, []), RATE, subtype="PCM_16")
    run = DetectorRun(tmp_path)
    run.start("--source", str(wav))
    run.wait_until(lambda: run.child("gs.model.wave") is not None, DEADLINE, "the wave worker")
    run.child("gs.model.wave").kill()
    assert run.process.wait(DEADLINE + 30) == EXIT_INCOMPLETE, run.output()
    run.log.close()
    log = (tmp_path / "detector.log").read_text()
    assert f"{wav} was not scored as a whole: 1 process restarts (the log says which died and why)" in log


def test_a_replayed_recording_is_not_replayed_again_when_its_capture_dies(tmp_path):
    """Restarted, the capture would read the file from its start and text its shots again: the
    detector drains and ends, with the capture's fate as its exit status (128 + SIGKILL's 9)."""
    run, _ = running_detector(tmp_path)
    run.child("gs.capture").kill()
    assert run.process.wait(DEADLINE) == 128 + signal.SIGKILL, run.output()
    run.log.close()
    log = (tmp_path / "detector.log").read_text()
    assert "capture finished (exit code -9)" in log and "restarting capture" not in log


def test_a_stray_sigterm_to_the_sms_process_restarts_it(tmp_path):
    """The SMS process stops cleanly on SIGTERM (no text cut mid-send); unless the detector is
    stopping, that clean exit is a fault like any other: texting must not end with it."""
    run, _ = running_detector(tmp_path)
    try:
        sms = run.child("gs.sms")
        sms.send_signal(signal.SIGTERM)
        run.wait_until(lambda: (child := run.child("gs.sms")) is not None and child.pid != sms.pid, 30, "sms back")
    finally:
        assert run.stop() == 0


def test_a_modem_slow_to_accept_a_text_is_not_taken_for_a_hung_sms_process(tmp_path):
    """Gammu waits up to about 100 s for a modem's answer to a send. Killing the SMS process while
    it waits would send the text again, as a repeat, after the modem had taken it."""
    modem = at_modem.start(tmp_path, send_delays=(0.0, SLOW_SEND))
    wav = tmp_path / "shot.wav"
    soundfile.write(wav, stream_with_shots(12.0, [(2.0, "hedgewars-shotgun")]), RATE, subtype="PCM_16")
    config = [f'[detector]\nmodels_dir = "{pipeline_test_models(tmp_path)}"', '[modem]\nsmsc = "+447785016005"']
    run = DetectorRun(tmp_path, config_lines=config)
    recipients = [arg for number in RECIPIENTS for arg in ("--recipient", number)]
    run.start("--source", str(wav), "--gammurc", str(at_modem.gammurc(tmp_path)), *recipients)
    try:
        code = run.process.wait(DRAIN_LIMIT + 30)
    finally:
        run.stop()
        modem.kill()
        modem.wait()
    assert code == 0, run.output()
    assert "hung" not in run.output()
    assert [t["state"] for t in run.texts()] == ["sent", "sent"]
    assert (tmp_path / "at-modem.log").read_text().count("handed to the network") == len(RECIPIENTS)


@contextlib.contextmanager
def supervisor_of_one_worker(tmp_path) -> Iterator[tuple[Supervisor, Callable[[float], float]]]:
    """A supervisor without its processes, and `crash(now)`: its one worker (a real process that
    has exited) is found dead at `now`; returns the wait before its restart."""
    config = override(Config(), {"storage.data_dir": str(tmp_path), "alerts.recipients": RECIPIENTS})
    context = multiprocessing.get_context("fork")
    supervisor = Supervisor(config, load_ensemble(""), context)
    names = ("capture", "model.wave")
    supervisor.stats = stats = StatsTable.create(f"gs-{own_run_id()}-stats", names)
    supervisor.health = HealthMonitor(config, stats.slot("capture"))
    supervisor.layout = Layout("t", "", stats.segment_name, names, outbox=Channel("outbox"))
    worker = supervisor.managed["model.wave"] = Managed("model.wave", int, ())

    def crash(now: float) -> float:
        worker.process = context.Process(target=int)
        worker.process.start()
        worker.process.join()
        supervisor._schedule_restart(worker, now)
        return worker.restart_at - now

    try:
        yield supervisor, crash
    finally:
        stats.close()


def test_restarts_back_off_and_a_crash_after_a_quiet_minute_restarts_at_once(tmp_path):
    with supervisor_of_one_worker(tmp_path) as (supervisor, crash):
        waits = [crash(100.0 + second) for second in range(RESTART_BURST + 3)]
        assert waits == [1, 2, 4, 8, 16, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
        assert supervisor.degraded and supervisor.managed["model.wave"].restarts == RESTART_BURST + 3
        restarted_at = 107.0 + MAX_BACKOFF
        assert crash(restarted_at + RESTART_WINDOW + 1) == FIRST_BACKOFF  # it ran for a minute
    texts = [row.text for row in Outbox(outbox_path(tmp_path)).rows()]
    assert sum("degraded" in text for text in texts) == len(RECIPIENTS)  # once for the burst, not per crash


def test_a_long_crash_loop_is_logged_at_every_tenth_crash_once_texted(tmp_path, caplog):
    """A model that crashes at once on every start logged 21 lines every 30 s (its traceback among
    them) for as long as it went on: the log audit. The first RESTART_BURST crashes are logged, then
    one in CRASH_LOG_EVERY, with its count."""
    caplog.set_level(logging.DEBUG, logger="pipeline.supervisor")
    with supervisor_of_one_worker(tmp_path) as (_, crash):
        now = 100.0
        for _ in range(25):
            now += crash(now)
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "model.wave" in r.message]
    died = [m for m in logged if m.startswith("model.wave died")]
    assert len(died) == RESTART_BURST + 2  # crashes 1-5, 10 and 20
    assert "restarting model.wave in 30 s (crash 20 in a row: every 10th is logged)" in logged


@pytest.mark.parametrize("crashes_within", [0.0, 60.0], ids=["first-crash", "in-a-crash-loop"])
def test_a_process_that_raises_logs_its_traceback_once_at_its_level_then_one_line(tmp_path, crashes_within):
    """multiprocessing printed a crashing process's traceback line by line, at no level, at every crash."""
    script = (
        "import logging, sys\n"
        "from pipeline.process import exit_with, JournalFormatter\n"
        "handler = logging.StreamHandler(sys.stderr)\n"
        "handler.setFormatter(JournalFormatter('%(message)s'))\n"
        "logging.basicConfig(handlers=[handler], force=True)\n"
        "def role():\n"
        "    raise ValueError('the model file is damaged')\n"
        f"exit_with(role, brief_within={crashes_within})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    if crashes_within:
        assert lines == ["<3>crashed again: ValueError: the model file is damaged"]
    else:
        assert lines[0] == "<2>crashed" and lines[-1] == "<2>ValueError: the model file is damaged"
        assert len(lines) > 3 and all(line.startswith("<2>") for line in lines)  # each at its level


@pytest.mark.parametrize(
    "lives",
    [31.0, STARTUP_GRACE + WATCH_INTERVAL],
    ids=["dies-after-31-s", "hangs-before-its-first-item"],  # killed once the start-up grace is over
)
def test_a_process_that_dies_soon_after_each_restart_is_a_crash_loop_however_slow(tmp_path, lives):
    """Crashes were counted within a minute of each other: a process dying 31 s after each start
    was never taken for a crash loop once the backoff spread its crashes out."""
    with supervisor_of_one_worker(tmp_path) as (supervisor, crash):
        now, wait = 1000.0, 0.0
        waits = []
        for _ in range(RESTART_BURST + 1):
            now += wait + lives  # restarted after the wait, dead or killed as hung this much later
            wait = crash(now)
            waits.append(wait)
        assert waits == [1, 2, 4, 8, 16, MAX_BACKOFF] and supervisor.degraded


def test_a_restarted_process_gets_the_start_up_grace_until_its_first_item(tmp_path):
    """Only a process's first run had it (its items counted from 0): a model worker restarted on a
    busy Pi 3B+ had 10 s to load its model before it was killed as hung, again and again."""
    with supervisor_of_one_worker(tmp_path) as (supervisor, _):
        worker = supervisor.managed["model.wave"]
        row = supervisor.stats.slot("model.wave")
        row.add("processed", 500)  # its runs before this one
        worker.process = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        worker.process.start()
        row.started(worker.process.pid)
        worker.processed_at_start = row.get("processed")
        try:
            supervisor._check_health(worker, time.monotonic() + STARTUP_GRACE / 2)  # loading, no heartbeat yet
            assert worker.process is not None and worker.process.is_alive()
            supervisor._check_health(worker, time.monotonic() + STARTUP_GRACE + 1)
            assert worker.process is None and worker.restarts == 1  # killed as hung once the grace is over
        finally:
            if worker.process is not None:
                worker.process.kill()
                worker.process.join()


def test_the_status_line_counts_the_windows_decided_without_every_model_and_the_audio_never_scored(tmp_path):
    with supervisor_of_one_worker(tmp_path) as (supervisor, _):
        supervisor.stats = StatsTable.create(f"gs-{own_run_id()}-aggregator", ("aggregator", "frontend"))
        supervisor.audio = Ring.in_memory(RATE, AUDIO_SHAPE, RATE)
        try:
            slot = supervisor.stats.slot("aggregator")
            slot.add("processed", 100)
            assert supervisor.status_line() == "listening; 100 windows decided, 0 overruns (0 samples lost), 0 restarts"
            slot.add("partial_votes", 6)
            assert "; 100 windows decided (6 without every model), 0 overruns" in supervisor.status_line()
            supervisor.stats.slot("frontend").add("unheard", 12.4 * RATE)
            assert "(0 samples lost), 12 s never scored (fell behind), 0 restarts" in supervisor.status_line()
            assert supervisor.run_figures().lost_seconds == pytest.approx(12.4)  # the heartbeat's lost audio
        finally:
            supervisor.stats.close()


def test_how_far_behind_counts_the_audio_captured_after_the_first_undecided_window(tmp_path):
    with supervisor_of_one_worker(tmp_path) as (supervisor, _):
        supervisor.stats = StatsTable.create(f"gs-{own_run_id()}-aggregator", ("aggregator", "frontend"))
        supervisor.audio = Ring.in_memory(60 * RATE, AUDIO_SHAPE, RATE)
        try:
            supervisor.audio.write(np.zeros(40 * RATE, np.int16))
            aggregator = supervisor.stats.slot("aggregator")
            aggregator.set("cursor", 20)  # windows 0-19 decided: window 20 covers 10-12 s
            assert supervisor.behind_seconds() == pytest.approx(28.0)
            aggregator.set("cursor", 77)  # window 77 (38.5-40.5 s) is not complete yet
            assert supervisor.behind_seconds() == 0.0
        finally:
            supervisor.stats.close()


def test_degraded_is_texted_per_crash_loop_and_cleared_after_a_quiet_spell(tmp_path):
    """Degraded once stayed degraded for the run, and a later crash loop went untexted."""

    def texts(word: str) -> int:
        return sum(word in row.text for row in Outbox(outbox_path(tmp_path)).rows())

    with supervisor_of_one_worker(tmp_path) as (supervisor, crash):

        def crash_loop(start: float) -> None:
            for second in range(RESTART_BURST + 1):
                crash(start + second)

        crash_loop(100.0)
        quiet_from = 100.0 + RESTART_BURST
        assert supervisor.degraded and texts("degraded") == len(RECIPIENTS)
        supervisor.check_recovered(quiet_from + RECOVERED_AFTER - 1)
        assert supervisor.degraded
        supervisor.check_recovered(quiet_from + RECOVERED_AFTER)
        assert not supervisor.degraded and texts("works normally again") == len(RECIPIENTS)
        crash_loop(quiet_from + 2 * RECOVERED_AFTER)
        assert supervisor.degraded and texts("degraded") == 2 * len(RECIPIENTS)
        quiet_again = quiet_from + 2 * RECOVERED_AFTER + RESTART_BURST
        supervisor.check_recovered(quiet_again + RECOVERED_AFTER)
        assert supervisor.degraded  # a second recovery needs twice the quiet: bursts do not text on and on
        supervisor.check_recovered(quiet_again + 2 * RECOVERED_AFTER)
        assert not supervisor.degraded and texts("works normally again") == 2 * len(RECIPIENTS)


def test_sigterm_to_the_whole_process_group_still_shuts_down_in_order(tmp_path):
    """A service manager or `timeout` signals every process at once: the children leave the
    shutdown to the supervisor, so the aggregator still writes what it holds (here: the score log
    of the seconds listened, written once a minute otherwise)."""
    wav = tmp_path / "long.wav"
    soundfile.write(wav, stream_with_shots(120.0, []), RATE, subtype="PCM_16")
    run = DetectorRun(tmp_path, own_group=True)
    run.start("--source", str(wav))
    try:
        ring = run.ring()
        run.wait_for_audio(ring)
        ring.close()
        time.sleep(5.0)  # windows decided, their scores held for the minute's write
        os.killpg(run.process.pid, signal.SIGTERM)
        assert run.process.wait(DEADLINE) == 0, run.output()
    finally:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
        run.log.close()
    assert "detector stopped" in run.output()
    with contextlib.closing(sqlite3.connect(run.data_dir / "events.sqlite")) as db:
        assert db.execute("SELECT SUM(seconds) FROM listened").fetchone()[0] > 0


START_THEN = """
import os, signal, sys
from pathlib import Path

import psutil

from pipeline.config import load_config, override
from pipeline.process import configure_logging
from pipeline.run import run_detector
from pipeline.supervisor import Supervisor

spawn = Supervisor._spawn


def spawn_then(self, managed):
    spawn(self, managed)
    if managed.name == "capture":  # the forkserver runs, the other processes are still to start
        if ACTION == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            raise OSError("cannot fork: out of memory (injected)")


if __name__ == "__main__":  # not in the processes the forkserver starts
    config, source, data_dir, ACTION = sys.argv[1:]
    Supervisor._spawn = spawn_then
    configure_logging()
    changes = {"audio.source": source, "storage.data_dir": data_dir}
    try:
        sys.exit(run_detector(override(load_config(Path(config)), changes)))
    except OSError:
        ours = [c.name() for c in psutil.Process().children(recursive=True) if c.name().startswith("gs.")]
        segments = list(Path("/dev/shm").glob(f"gs-{os.getpid():x}-*"))
        sigterm = "default" if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else "still ours"
        print(f"left after the failed start: processes {ours}, segments {segments}, SIGTERM {sigterm}")
        sys.exit(5)
"""


def start_then(tmp_path, action: str) -> tuple[subprocess.CompletedProcess, float]:
    """A detector whose start, right after the capture process, gets SIGTERM or fails; how it ended
    and how long it took."""
    wav = tmp_path / "long.wav"
    soundfile.write(wav, stream_with_shots(120.0, []), RATE, subtype="PCM_16")
    config = tmp_path / "config.toml"
    config.write_text(f'[detector]\nmodels_dir = "{pipeline_test_models(tmp_path)}"\n')
    script = tmp_path / "start_then.py"
    script.write_text(START_THEN)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), str(config), str(wav), str(tmp_path / "data"), action],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=DEADLINE + 60,
    )
    return result, time.monotonic() - started


def test_a_sigterm_while_the_processes_start_stops_the_detector_at_once(tmp_path):
    """SIGTERM was ignored by the supervisor while it started its processes (so that the forkserver
    started then ignores it): a `systemctl stop` right after a start waited for TimeoutStopSec and
    SIGKILL. Now the supervisor's own handler records it and the detector stops in order."""
    result, took = start_then(tmp_path, "sigterm")
    assert result.returncode == 0, result.stderr
    assert "detector started" in result.stderr and "detector stopped" in result.stderr
    assert took < DEADLINE, f"stopped after {took:.0f} s: the SIGTERM was lost, the 2-minute source played on"


def test_a_start_that_fails_half_way_leaves_no_process_no_shared_memory_and_sigterm_as_it_was(tmp_path):
    """Else SIGTERM would only be recorded for a loop that never runs, and the started processes
    (not daemons) would keep the failed supervisor from exiting."""
    result, _ = start_then(tmp_path, "fail")
    assert result.returncode == 5, result.stderr
    assert "left after the failed start: processes [], segments [], SIGTERM default" in result.stdout
