"""Whether the wall clock can be trusted. A Raspberry Pi has no real-time clock: after a boot
without network it starts from the last saved time (fake-hwclock), hours or days behind, until
NTP (or the modem's network time, through chrony/gpsd setups) sets it. The kernel knows whether
a time service has synchronised it: adjtimex(2) answers TIME_ERROR while it has not."""

from __future__ import annotations

import contextlib
import ctypes
import time

_TIMEX_BYTES = 512  # struct timex is 208 bytes on 64-bit Linux; the rest is slack
_TIME_ERROR = 5  # adjtimex's answer while the clock is not synchronised (STA_UNSYNC)

UNSYNCHRONISED_NOTE = " Time unverified: clock not synced."  # short, to stay one SMS part


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


class ForwardStep:
    """How far the wall clock was set forward since this was made (NTP setting a Pi that booted on
    a saved time): what was stamped before looks that much older than it is."""

    def __init__(self) -> None:
        self.offset = time.time() - time.monotonic()

    def seconds(self) -> float:
        return max(0.0, time.time() - time.monotonic() - self.offset)
