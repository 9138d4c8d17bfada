"""Stale shared memory from a crashed run is removed at start; a live run's is left alone."""

import os
import subprocess
import sys
from multiprocessing import resource_tracker

from pipeline.shm import SHM_DIR, create_segment, remove_stale_segments, segment_name
from tests.conftest import _ours, own_run_id
from tests.detector_run import ROOT

DEAD_PID = (1 << 29) + os.getpid()  # above Linux's pid_max (2**22): never a running process; one per session
NOBODY = 65534
FOREIGN = f"gs-someone-elses-{os.getpid():x}"  # one per pytest session: two may run at once


def test_segments_of_a_dead_run_are_removed_and_live_ones_kept():
    stale = create_segment(segment_name(f"{DEAD_PID:x}", "audio"), 4096)
    live = create_segment(segment_name(f"{os.getpid():x}", "audio"), 4096)
    foreign = create_segment(FOREIGN, 4096)  # not named by a detector: never ours to remove
    try:
        removed = remove_stale_segments()
        assert stale.name.lstrip("/") in removed
        assert not (SHM_DIR / stale.name.lstrip("/")).exists()
        assert (SHM_DIR / live.name.lstrip("/")).exists()
        assert (SHM_DIR / FOREIGN).exists()
    finally:
        stale.close()
        for kept in (live, foreign):
            kept.close()
            kept.unlink()
        resource_tracker.unregister(stale._name, "shared_memory")  # removed behind the tracker's back


def test_another_user_s_stale_segment_is_left_to_its_owner_and_stops_no_start():
    """A detector run by hand as root and killed leaves its segments; the service's user cannot unlink
    them (/dev/shm is sticky), and the PermissionError ended every start of the service."""
    stale = create_segment(segment_name(f"{DEAD_PID + 1:x}", "audio"), 4096)  # root's, its run dead
    as_another_user = (
        "import os, sys; from pipeline.shm import remove_stale_segments; "
        f"os.setgid({NOBODY}); os.setuid({NOBODY}); print(remove_stale_segments())"
    )
    try:
        cleanup = subprocess.run([sys.executable, "-c", as_another_user], cwd=ROOT, capture_output=True, text=True)
        assert cleanup.returncode == 0, cleanup.stderr
        assert stale.name.lstrip("/") not in cleanup.stdout
        assert (SHM_DIR / stale.name.lstrip("/")).exists()
    finally:
        stale.close()
        stale.unlink()


def test_a_dead_run_s_segments_are_removed_though_its_pid_now_names_another_program():
    """After a reboot or a long run, the crashed detector's pid may belong to anything."""
    other = subprocess.Popen(["sleep", "60"])
    stale = create_segment(segment_name(f"{other.pid:x}", "audio"), 4096)
    try:
        assert stale.name.lstrip("/") in remove_stale_segments()
    finally:
        other.kill()
        other.wait()
        stale.close()
        resource_tracker.unregister(stale._name, "shared_memory")


def test_the_leak_check_counts_only_this_session_s_segments():
    """Another pytest session (or detector) running beside this one makes segments too."""
    assert _ours(f"gs-{own_run_id()}-ring")
    assert not _ours(f"gs-test{os.getppid():x}x123456-ring")  # a test of another live session
    detector = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live run's supervisor
    try:
        assert not _ours(f"gs-{detector.pid:x}-audio")
    finally:
        detector.kill()
        detector.wait()
    assert _ours(f"gs-{DEAD_PID:x}-audio")  # a detector run that has ended and left it behind
    assert not _ours(FOREIGN)
