"""libasound's own error lines into this process's log, at DEBUG, instead of onto stderr.

libasound writes a line to stderr at every failed open ("ALSA lib pcm.c:2666:(snd_pcm_open_noupdate)
Unknown PCM ..."): with the microphone gone, one per reopen attempt for as long as it is gone
(measured: 719 lines in 12 minutes at a 1 s backoff), without process name or level, in a journal
that rotates the useful lines out. The capture logs the failure itself, once, with ALSA's reason.
"""

from __future__ import annotations

import ctypes
import functools
import logging

log = logging.getLogger(__name__)
LIBASOUND = "libasound.so.2"  # the one pyalsaaudio is linked against: loaded once per process

# snd_lib_error_handler_t: void (*)(const char *file, int line, const char *function, int err,
# const char *fmt, ...). The variable arguments are not read: `fmt` is logged as it is.
_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)


def _text(value: bytes | None) -> str:
    return (value or b"").decode(errors="replace")


@_HANDLER
def _to_debug_log(file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None) -> None:
    log.debug("ALSA lib %s:%d:(%s) %s (error %d)", _text(file), line, _text(function), _text(fmt), err)


@functools.cache
def route_alsa_errors() -> bool:
    """From now on, in this process; False (and stderr as before) where libasound cannot be loaded."""
    try:
        ctypes.CDLL(LIBASOUND).snd_lib_error_set_handler(_to_debug_log)
    except (OSError, AttributeError) as exc:
        log.debug("libasound's errors stay on stderr: %s", exc)
        return False
    return True
