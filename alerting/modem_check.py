"""`cli.py test-modem`: identify the modem and, if asked, send a test text through the outbox, so
it is recorded like any other text (and waits there, to be retried, if it cannot go now)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from alerting.compose import local_time
from alerting.faults import DETECTOR_RUNNING, ModemError
from alerting.modem import Modem
from alerting.outbox import Outbox, outbox_path
from alerting.phone import validate_e164
from alerting.sender import Sender
from pipeline.config import Config

TEST_TEXT = "{site}: test text from the gunshot detector, {time}."
DETECTOR_LOCK = "detector.lock"  # must match pipeline.supervisor.LOCK_FILE (a test checks)
LOCK_MODE = 0o644


def test_modem(config: Config, send_to: str | None = None) -> dict[str, str]:
    """The modem's identity (and, with `send_to`, the fate of a test text); ModemError if it fails.

    Refuses while a detector runs on the same data folder: two programs on one modem garble both."""
    if send_to is not None:
        validate_e164(send_to)
    data_dir = Path(config.storage.data_dir)
    with _ctrl_c_ends_at_once(), _detector_stopped(data_dir, create=send_to is not None):
        modem = Modem(config.modem, data_dir=data_dir)
        modem.connect()
        try:
            report = modem.identify()
            if send_to is not None:
                report["test text"] = _send_test_text(config, modem, send_to)
        finally:
            modem.terminate()
    return report


test_modem.__test__ = False  # a name pytest would otherwise collect


def _send_test_text(config: Config, modem: Modem, send_to: str) -> str:
    outbox = Outbox(outbox_path(Path(config.storage.data_dir)))
    try:
        outbox.recover()  # the detector is stopped: texts it left mid-send go again, as repeats
        now = time.time()
        text = TEST_TEXT.format(site=config.site.name, time=local_time(config, now))
        row_id = outbox.enqueue(send_to, text, "test", now=now)
        outbox.make_due(send_to, now)  # earlier texts to this number go first (order is kept)
        earlier = outbox.pending_count(send_to) - 1
        sender = Sender(config, outbox, modem)
        while sender.send_due(now, recipients=[send_to]) > 0 and outbox.row(row_id).state != "sent":
            pass
        row = outbox.row(row_id)
        if row.state != "sent":
            error = sender.last_error or ModemError("the modem is not ready")
            raise ModemError(
                f"the test text to {send_to} was not sent: {error}. It stays in the outbox (id {row_id}) "
                "and is retried when the detector runs",
                error.code,
                retryable=error.retryable,
            )
        before = f" after {earlier} earlier waiting text{'s' if earlier != 1 else ''}" if earlier else ""
        return f"sent to {send_to}{before} (outbox id {row_id}, modem references {row.reference})"
    finally:
        outbox.close()


@contextlib.contextmanager
def _ctrl_c_ends_at_once() -> Iterator[None]:
    """Ctrl-C ends the process at once, also while Gammu waits for a modem that does not answer
    (Python's handler would run only once Gammu gives up, and the modem's close then waits minutes).
    Nothing is lost: a test text caught mid-send goes again (as a repeat), the lock goes with us."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a signal's handler
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _detector_stopped(data_dir: Path, create: bool) -> Iterator[None]:
    """Hold the detector's lock meanwhile (so none starts); ModemError if one is running."""
    if not data_dir.exists() and not create:
        yield  # no data folder: no detector has run here
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / DETECTOR_LOCK, os.O_RDWR | os.O_CREAT, LOCK_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModemError(
                f"the detector is running on data folder {data_dir} and uses the modem: stop it first "
                "(sudo systemctl stop gunshot-detector), or check its log for the SMS process",
                DETECTOR_RUNNING,
                retryable=False,
            ) from None
        yield
    finally:
        os.close(fd)
