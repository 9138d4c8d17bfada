"""Stale shared memory from a crashed run is removed at start; a live run's is left alone."""

import os
from multiprocessing import resource_tracker

from pipeline.shm import SHM_DIR, create_segment, remove_stale_segments, segment_name

DEAD_PID = 0x3FFFFFF0  # above Linux's pid_max (2**22): never a running process


def test_segments_of_a_dead_run_are_removed_and_live_ones_kept():
    stale = create_segment(segment_name(f"{DEAD_PID:x}", "audio"), 4096)
    live = create_segment(segment_name(f"{os.getpid():x}", "audio"), 4096)
    foreign = create_segment("gs-someone-elses", 4096)  # not named by a detector: never ours to remove
    try:
        removed = remove_stale_segments()
        assert stale.name.lstrip("/") in removed
        assert not (SHM_DIR / stale.name.lstrip("/")).exists()
        assert (SHM_DIR / live.name.lstrip("/")).exists()
        assert (SHM_DIR / "gs-someone-elses").exists()
    finally:
        stale.close()
        for kept in (live, foreign):
            kept.close()
            kept.unlink()
        resource_tracker.unregister(stale._name, "shared_memory")  # removed behind the tracker's back
