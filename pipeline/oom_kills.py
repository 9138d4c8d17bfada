"""How many processes the kernel's out-of-memory killer took in the detector's memory cgroup.

A process killed for lack of memory only shows as exit code -9 (SIGKILL), as one a person killed;
the kernel counts its kills per cgroup (the service's own under systemd): `oom_kill` in
memory.events (cgroup v2, Raspberry Pi OS Bookworm) or memory.oom_control (cgroup v1).
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
OWN_CGROUPS = Path("/proc/self/cgroup")
COUNTER = "oom_kill"
OOM_KILLED = "killed by the kernel for lack of memory"


def counter_file(own_cgroups: Path = OWN_CGROUPS, root: Path = CGROUP_ROOT) -> Path | None:
    """The file holding this process's cgroup's count of OOM kills; None if there is none to read."""
    try:
        lines = own_cgroups.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if "memory" in controllers.split(","):
            candidate = root / "memory" / relative / "memory.oom_control"
        elif controllers == "":
            candidate = root / relative / "memory.events"
        else:
            continue
        if candidate.is_file():
            return candidate
    return None


def read_count(path: Path | None) -> int | None:
    """The OOM kills counted so far; None when the kernel does not say."""
    if path is None:
        return None
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == COUNTER:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


class OomKills:
    """Tells a process killed for lack of memory from one killed otherwise (a person, a script)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = counter_file() if path is None else path
        self.told = read_count(self.path)  # the kills already attributed to a death

    def take_one(self) -> bool | None:
        """For a process found killed (SIGKILL): whether an OOM kill not yet attributed to another
        death was counted (then it is this one's); None if the kernel's count cannot be read."""
        count = read_count(self.path)
        if count is None or self.told is None:
            self.told = count
            return None
        if count > self.told:
            self.told += 1
            return True
        return False
