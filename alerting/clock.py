"""Whether the wall clock can be trusted. A Raspberry Pi has no real-time clock: after a boot
without network it starts from the last saved time (fake-hwclock), hours or days behind, until
NTP (or the modem's network time, through chrony/gpsd setups) sets it. The kernel knows whether
a time service has synchronised it: adjtimex(2) answers TIME_ERROR while it has not."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import time
from pathlib import Path

_TIMEX_BYTES = 512  # struct timex is 208 bytes on 64-bit Linux; the rest is slack
_TIME_ERROR = 5  # adjtimex's answer while the clock is not synchronised (STA_UNSYNC)

UNSYNCHRONISED_NOTE = " Time unverified: clock not synced."  # short, to stay one SMS part
# In the data folder: this boot's id and the wall clock's offset from the monotonic one at the first
# start in it (ForwardStep); rewritten only by a start that finds the offset lower (set back since).
CLOCK_FILE = "clock.json"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # tells a restart (same boot: monotonic time holds) from a reboot
# s: a start reads the two clocks one after the other, so its offset differs from the recorded one
# by microseconds (milliseconds when descheduled between): less than this is no step back to record
STEP_NOTICED = 1.0

log = logging.getLogger(__name__)


def clock_synchronised() -> bool:
    """True when a time service has synchronised the system clock (what `timedatectl` reports).

    A read-only adjtimex call (modes 0). Where it cannot be asked, the clock counts as unsynchronised:
    a text that says "unverified" is better than a wrong time stated as fact (the phone that gets it
    stamps its arrival, seconds after the shot)."""
    with contextlib.suppress(OSError, AttributeError):
        timex = ctypes.create_string_buffer(_TIMEX_BYTES)
        state = ctypes.CDLL(None, use_errno=True).adjtimex(timex)
        return state not in (-1, _TIME_ERROR)
    return False


def boot_id() -> str:
    """This boot's id (Linux), "" where there is none: the monotonic clock counts from each boot."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


class ForwardStep:
    """How far the wall clock was set forward (NTP setting a Pi that booted on a saved time) since
    the first start in this boot: what was stamped before looks that much older than it is.

    With `data_dir`, that start's offset of the wall clock from the monotonic one is kept there
    (CLOCK_FILE), so that a process started after the step measures it too: the detector or the
    aggregator restarted after a 40-day step measured it from its own start, on the stepped clock,
    and retention deleted the records stamped before it as 40 days old. A start that finds the
    offset lower (the clock set back since) records its own: a later step forward counts whole.
    Across a reboot nothing can be known: the monotonic clock starts again at 0, so a step made
    before the first start in a boot is not seen, and what the last boot stamped on a clock that
    was behind still looks older by it. Without `data_dir`, a boot id, or a readable and writable
    file (logged): from this start."""

    def __init__(self, data_dir: Path | str | None = None) -> None:
        self.offset = wall_offset()
        if data_dir is not None:
            self.offset = _boot_offset(Path(data_dir) / CLOCK_FILE, self.offset)

    def seconds(self) -> float:
        return max(0.0, wall_offset() - self.offset)


def wall_offset() -> float:
    """Wall minus monotonic time: only a step changes it (NTP slews both clocks alike)."""
    return time.time() - time.monotonic()


def _boot_offset(path: Path, own: float) -> float:
    """The lowest offset recorded at a start in this boot, `own` included: written when it is the
    first, or lower by STEP_NOTICED."""
    boot = boot_id()
    if not boot:
        return own  # no telling a restart from a reboot: a file would lie after one
    try:
        record = json.loads(path.read_text())
        if str(record["boot_id"]) == boot and (recorded := float(record["offset"])) < own + STEP_NOTICED:
            return recorded
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s unreadable (%s): a clock step made before this start is not counted", path, exc)
    _record_offset(path, own, boot)
    return own


def _record_offset(path: Path, offset: float, boot: str) -> None:
    """Write CLOCK_FILE whole or not at all, through a part file of this process's own (the
    supervisor and the aggregator both start at once at the first start)."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        part.write_text(json.dumps({"boot_id": boot, "offset": offset}))
        os.replace(part, path)
    except OSError as exc:
        log.warning("%s not written (%s): a restart after a clock step will not count it", path, exc)
