"""Telling a process the kernel killed for lack of memory from one killed by a person."""

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.oom_kills import CGROUP_ROOT, OomKills, counter_file, read_count

V1_MEMORY = CGROUP_ROOT / "memory"
LIMIT = 64 * 1024 * 1024  # bytes: the cgroup's, far below what the child asks for
GREEDY = "b = bytearray(512 * 1024 * 1024)"  # touched pages: 512 MB


def test_the_counter_is_found_for_cgroup_v1_and_v2(tmp_path):
    v1 = tmp_path / "memory" / "system.slice" / "gunshot.service"
    v1.mkdir(parents=True)
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    own = tmp_path / "cgroup"
    own.write_text("5:cpu,cpuacct:/x\n4:memory:/system.slice/gunshot.service\n0::/system.slice/gunshot.service\n")
    assert counter_file(own, tmp_path) == v1 / "memory.oom_control"
    assert read_count(counter_file(own, tmp_path)) == 3
    v2 = tmp_path / "system.slice" / "gunshot.service"  # Bookworm: the unified hierarchy alone
    v2.mkdir(parents=True)
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n")
    own.write_text("0::/system.slice/gunshot.service\n")
    assert read_count(counter_file(own, tmp_path)) == 1
    own.write_text("0::/\n")  # a container's root: no memory.events to read
    assert counter_file(own, tmp_path) is None
    assert counter_file(tmp_path / "no such file", tmp_path) is None


def test_each_counted_kill_is_told_once_and_an_unreadable_count_says_so(tmp_path):
    events = tmp_path / "memory.events"
    events.write_text("oom_kill 5\n")  # kills before the detector started are not its
    kills = OomKills(events)
    assert kills.take_one() is False
    events.write_text("oom_kill 7\n")  # two processes killed in one pass
    assert [kills.take_one(), kills.take_one(), kills.take_one()] == [True, True, False]
    events.unlink()
    assert kills.take_one() is None


@pytest.fixture
def memory_cgroup():
    """A cgroup v1 memory controller group with a small limit (root, as CI and this machine)."""
    group = V1_MEMORY / f"gs-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(LIMIT))
    except OSError as exc:
        pytest.skip(f"no writable cgroup v1 memory controller here ({exc})")
    yield group
    group.rmdir()


def run_in(group: Path, code: str) -> subprocess.Popen:
    def enter() -> None:
        (group / "cgroup.procs").write_text(str(os.getpid()))

    return subprocess.Popen([sys.executable, "-c", code], preexec_fn=enter)


def test_a_real_out_of_memory_kill_is_told_from_a_person_s_sigkill(memory_cgroup):
    kills = OomKills(memory_cgroup / "memory.oom_control")
    greedy = run_in(memory_cgroup, GREEDY)
    assert greedy.wait(timeout=60) == -signal.SIGKILL
    assert kills.take_one() is True
    idle = run_in(memory_cgroup, "import time; time.sleep(60)")
    idle.kill()
    assert idle.wait(timeout=60) == -signal.SIGKILL
    assert kills.take_one() is False
