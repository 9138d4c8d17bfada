"""A data folder that cannot be written (an SD card the kernel remounted read-only, a worn-out card
locked read-only, a folder of another user) must not stop the alerts: pipeline/storage.py.

At start: a real read-only tmpfs under the real detector. While running: a card cannot be made to
fail under open files here (the kernel refuses a read-only remount then), so the outbox's writes
fail on cue instead."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

from alerting import sender
from alerting.modem import Modem
from alerting.outbox import OUTBOX_DB, REPEAT_PREFIX, TAKEN_OVER_NOTE, Outbox, outbox_path
from alerting.pin_record import RECORD_FILE
from alerting.sender import OUTBOX_RETRY, Senders
from inference.eventlog import EVENTS_DB, EventLog
from pipeline import storage
from pipeline.config import Config, override
from pipeline.health import HealthMonitor
from pipeline.metrics import StatsTable
from pipeline.storage import (
    CARD_ADVICE,
    PRIVATE_MODE,
    PROBE_FILE,
    SANDBOX_ADVICE,
    TAKEN_OVER_FILE,
    UnsafeFolder,
    card_texts_stuck,
    fall_back_if_unwritable,
    give_back,
    queue_durably,
    storage_advice,
    take_over,
    unwritable_reason,
    volatile_data_dir,
)
from pipeline.supervisor import LOCK_FILE
from tests.audio_env import pulseaudio_available, start_pulse
from tests.conftest import own_run_id, tmpfs
from tests.detector_run import RATE, ROOT, DetectorRun, listening_config, stream_with_shots
from tests.other_user import as_nobody, needs_root, open_folder
from tests.test_aggregator import built, decision
from tests.test_alerting_support import NUMBERS, FaultScript, Returns, config_for, sent_texts

SHOT_AT = 3.0
SECONDS = 8.0
CARD_MB = 1
NOBODY = 65534  # another local user


@pytest.fixture
def card(tmp_path):
    """tmp_path/data: an empty tmpfs standing in for the SD card (root needed to mount)."""
    with tmpfs(tmp_path / "data", CARD_MB) as data:
        yield data
    shutil.rmtree(volatile_data_dir(data), ignore_errors=True)


def whole_log(run: DetectorRun) -> str:
    return (run.folder / "detector.log").read_text()


def read_only(folder) -> None:
    """What the kernel does to a card after errors (here: no file may be open for writing)."""
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


def test_a_detector_started_on_a_read_only_card_texts_the_shot_what_the_card_held_and_why(tmp_path, card):
    """The card's unsent texts are taken over (the one caught mid-send as a repeat), and so is its
    PIN record; the recipients learn why."""
    outbox = Outbox(outbox_path(card))
    outbox.enqueue(NUMBERS[0], "Test range: an alert the card still held", "alert")
    outbox.mark_sending(outbox.enqueue(NUMBERS[1], "Test range: an alert caught mid-send", "alert"))
    outbox.close()
    (card / RECORD_FILE).write_text("salt hash refused\n")
    read_only(card)
    recording = tmp_path / "shot.wav"
    soundfile.write(recording, stream_with_shots(SECONDS, [(SHOT_AT, "openarena-shotgun")]), RATE, subtype="PCM_16")
    run = DetectorRun(tmp_path, config_lines=listening_config(tmp_path, "default", RATE))
    run.start("--source", str(recording))
    run.wait_until(lambda: run.process.poll() is not None, SECONDS + 60, "the end of the recording")
    assert run.stop() == 0, run.output()
    assert f"cannot write the data folder {card} (Read-only file system)" in run.output()
    texts = sent_texts(tmp_path)
    held = {
        NUMBERS[0]: "Test range: an alert the card still held",
        NUMBERS[1]: REPEAT_PREFIX + "Test range: an alert caught mid-send",
    }
    for number in NUMBERS:
        to_it = [text for recipient, text in texts if recipient == number]
        assert len(to_it) == 3, texts
        assert to_it[0] == held[number]
        assert sum("possible gunshot" in text for text in to_it) == 1
        assert sum("cannot write the data folder" in text and "Check the SD card" in text for text in to_it) == 1
    kept = volatile_data_dir(card)
    assert (kept / RECORD_FILE).read_text() == "salt hash refused\n"
    assert outbox_path(kept).exists() and not (kept / "clips").exists()  # no clips in memory


ADVICE_OF = (
    "import sys\nfrom pathlib import Path\nfrom pipeline.storage import storage_advice, unwritable_reason\n"
    "folder = Path(sys.argv[1])\n"
    "print(storage_advice(f'cannot write the data folder {folder} ({unwritable_reason(folder)})'))"
)


def test_a_folder_read_only_in_the_service_s_sandbox_alone_is_told_as_the_sandbox_not_the_card(tmp_path, card):
    """The unit's ProtectSystem=strict makes a data_dir outside its ReadWritePaths a read-only bind
    mount: "Check the SD card." sent someone to replace a healthy card. A card the kernel made
    read-only (its file system read-only too) is still the card."""
    sandboxed = tmp_path / "srv"
    sandboxed.mkdir()
    in_a_sandbox = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$0" -c "$2" "$1"'
    run = subprocess.run(
        ["unshare", "-m", "sh", "-c", in_a_sandbox, sys.executable, str(sandboxed), ADVICE_OF],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if run.returncode and "unshare" in run.stderr:
        pytest.skip(f"no private mount namespace here: {run.stderr.strip()}")
    assert run.stdout.strip() == SANDBOX_ADVICE, run.stderr
    read_only(card)
    on_the_card = subprocess.run([sys.executable, "-c", ADVICE_OF, str(card)], cwd=ROOT, capture_output=True, text=True)
    assert on_the_card.stdout.strip() == CARD_ADVICE, on_the_card.stderr


def test_a_writable_folder_keeps_its_config_and_a_read_only_one_is_swapped_for_memory(tmp_path, card):
    config = config_for(tmp_path, **{"storage.data_dir": str(tmp_path / "writable")})
    assert fall_back_if_unwritable(config) == (config, None)
    read_only(card)
    swapped, problem = fall_back_if_unwritable(override(config, {"storage.data_dir": str(card)}))
    assert problem == f"cannot write the data folder {card} (Read-only file system)"
    assert swapped.storage.data_dir == str(volatile_data_dir(card)) and not swapped.storage.clips


@needs_root
def test_a_folder_this_user_may_not_write_is_told_as_its_owner_not_the_card(monkeypatch):
    """A data folder of root's (made by a command run with sudo), the detector run as nobody: the
    log names the user in the chown, and the recipients are not sent to the SD card."""
    with open_folder() as folder:
        data, memory = folder / "data", folder / "shm"
        data.mkdir()
        memory.mkdir()
        memory.chmod(0o1777)  # as /dev/shm
        monkeypatch.setattr(storage, "VOLATILE_ROOT", memory)

        def fall_back() -> tuple[str | None, str, list[str]]:
            lines: list[str] = []
            handler = logging.Handler()
            handler.emit = lambda record: lines.append(record.getMessage())
            logging.getLogger("pipeline.storage").addHandler(handler)
            _, problem = fall_back_if_unwritable(override(Config(), {"storage.data_dir": str(data)}))
            return problem, storage_advice(problem), lines

        problem, advice, lines = as_nobody(fall_back)
    assert problem == f"cannot write the data folder {data} (Permission denied)"
    assert advice == "Check the folder's owner: the detector's user (nobody) must be able to write it."
    (line,) = lines
    assert line.endswith(f"Fix: it must be this user's: `sudo chown -R nobody: {data}`")
    assert "SD card" not in line


def test_the_recipients_are_sent_to_the_card_or_the_folder_s_owner_by_the_cause(tmp_path):
    """Read-only (a card the kernel remounted), EPERM (an immutable folder, the tests' failing
    card): the card; refused by the folder's modes or a file of another user: its owner."""
    problem = f"cannot write the data folder {tmp_path} ({{}})"
    for reason in ("Read-only file system", "Operation not permitted", "Input/output error"):
        assert storage_advice(problem.format(reason)) == "Check the SD card."
    for reason in ("Permission denied", "outbox.sqlite is not writable by this user"):
        assert storage_advice(problem.format(reason)).startswith("Check the folder's owner: the detector's user (")
    health = HealthMonitor(config_for(tmp_path, **{"alerts.recipients": []}), capture=None)
    text = health.storage_failed(problem.format("Permission denied"))
    assert text.endswith(f"are lost at a reboot. {storage_advice(problem.format('Permission denied'))}")
    assert "SD card" not in text


def test_a_full_card_is_no_reason_to_leave_it(card):
    """Its outbox reserve is there for that (tests/test_disk_full.py); memory would strand the
    texts the card holds, which the reserve lets out."""
    filler = card / "someone-elses.log"
    with filler.open("wb") as stream, contextlib.suppress(OSError):
        os.posix_fallocate(stream.fileno(), 0, CARD_MB * 1024 * 1024)
    assert unwritable_reason(card) is None
    assert not (card / PROBE_FILE).exists()


@pytest.mark.realtime
@pytest.mark.skipif(not pulseaudio_available(), reason="needs pulseaudio, pactl, paplay (./setup.sh --test)")
def test_a_card_failing_under_the_running_detector_is_texted_once_and_the_next_shot_too(tmp_path, card):
    """A card that fails while running cannot be made here (the kernel refuses a read-only remount
    under open files): the data folder made immutable (no new file in it, even for root) stands in.
    A process that dies makes the supervisor look at once."""
    pulse = start_pulse(rate=48000)
    run = DetectorRun(tmp_path, env=pulse.env, config_lines=listening_config(tmp_path, "pulse", 48000))
    try:
        run.start()
        run.wait_for_audio(run.ring())
        subprocess.run(["chattr", "+i", str(card)], check=True)
        run.child("gs.aggregator").kill()
        run.wait_until(lambda: "texts go out from memory" in whole_log(run), 30, "the failed card noticed")
        run.wait_until(lambda: run.child("gs.aggregator") is not None, 30, "the aggregator again")
        wav = tmp_path / "shot.wav"
        soundfile.write(wav, stream_with_shots(SECONDS, [(SHOT_AT, "openarena-shotgun")]), RATE, subtype="PCM_16")
        pulse.play(wav)
        run.wait_until(lambda: len(sent_texts(tmp_path)) >= 2 * len(NUMBERS), 60, "the texts")
    finally:
        assert run.stop() == 0
        pulse.stop()
        subprocess.run(["chattr", "-i", str(card)], check=False)
    assert f"cannot write the data folder {card} (Operation not permitted)" in whole_log(run)
    assert not (volatile_data_dir(card) / TAKEN_OVER_FILE).exists()  # its outbox still records sends itself
    for number in NUMBERS:
        to_it = [text for recipient, text in sent_texts(tmp_path) if recipient == number]
        assert len(to_it) == 2 and "Check the SD card" in to_it[0] and "possible gunshot" in to_it[1], to_it


def test_an_aggregator_started_on_a_failed_card_keeps_its_events_in_memory_and_no_clips(
    tmp_path, card, in_memory, caplog
):
    """No clips: they would fill the Pi's RAM."""
    EventLog(card).close()  # closed cleanly: its -wal and -shm files are gone, and cannot be made again
    read_only(card)
    with built(config_for(tmp_path, **{"storage.data_dir": str(card)})) as (agg, _, _):
        assert agg.events.data_dir == volatile_data_dir(card) and "kept in memory" in caplog.text
        assert volatile_data_dir(card).stat().st_mode & 0o777 == PRIVATE_MODE
        assert not agg.keep_clips
    with built(config_for(tmp_path, **{"storage.data_dir": str(tmp_path / "writable")})) as (agg, _, _):
        assert agg.keep_clips


def test_back_on_the_card_each_taken_over_text_goes_once(tmp_path, card, in_memory):
    """The same boot: one text memory sent is marked sent on the card; one it had not sent is taken
    back (the card sends it). (After a reboot memory is gone, and they would go again.)"""
    outbox = Outbox(outbox_path(card))
    sent_from_memory = outbox.enqueue(NUMBERS[0], "an alert memory sent", "alert")
    still_waiting = outbox.enqueue(NUMBERS[1], "an alert memory did not send", "alert")
    caught = outbox.enqueue(NUMBERS[1], "an alert memory was sending when it stopped", "alert")
    outbox.close()
    memory = volatile_data_dir(card)
    take_over(card, memory)
    in_memory_outbox = Outbox(outbox_path(memory))
    first, _, third = in_memory_outbox.rows()
    in_memory_outbox.mark_sent(first.id, [1], time.time())
    in_memory_outbox.mark_sending(third.id)  # the SMS process killed while the modem sent it
    in_memory_outbox.close()
    give_back(card, memory)
    on_card, in_memory_rows = Outbox(outbox_path(card)), Outbox(outbox_path(memory)).rows()
    assert on_card.row(sent_from_memory).state == "sent" and on_card.row(sent_from_memory).last_error == TAKEN_OVER_NOTE
    assert (on_card.row(still_waiting).state, on_card.row(still_waiting).repeat) == ("pending", False)
    assert (on_card.row(caught).state, on_card.row(caught).repeat) == ("pending", True)  # it may have gone out
    assert [(row.state, row.last_error) for row in in_memory_rows] == [("sent", None)] + [("sent", TAKEN_OVER_NOTE)] * 2
    assert not (memory / TAKEN_OVER_FILE).exists()


def test_the_files_checked_are_the_detectors_own():
    assert storage.OWN_FILES[0] == EVENTS_DB and LOCK_FILE in storage.OWN_FILES


class _ReadOnlyOutbox(Outbox):
    """The outbox of a card that failed under the running detector: every write refused."""

    def enqueue(self, *_args, **_kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    mark_sending = enqueue


def card_fails_under(monkeypatch, data, outbox_class=_ReadOnlyOutbox) -> None:
    """Every outbox opened in `data` from now on is an `outbox_class`."""

    def opened(path):
        return (outbox_class if data in path.parents else Outbox)(path)

    monkeypatch.setattr(storage, "Outbox", opened)
    monkeypatch.setattr("alerting.sender.Outbox", opened)


def test_a_card_failing_under_the_running_detector_costs_no_alert(tmp_path, in_memory, monkeypatch, caplog):
    """Texts already waiting in the failed outbox wait until it can be written again."""
    config = config_for(tmp_path)
    data = tmp_path / "data"
    Outbox(outbox_path(data)).enqueue(NUMBERS[0], "an older text", "alert")
    with built(config) as (agg, audio, _):
        card_fails_under(monkeypatch, data)
        audio.write(np.zeros(RATE * 4, dtype=np.int16))
        agg.handle(decision(1, True))
        assert agg.unqueued == [] and "queued in memory" in caplog.text
        senders = Senders(config, Modem(config.modem), agg.slot)
        senders.send_due(time.time())
        senders.close()
    assert "failed (attempt to write a readonly database)" in caplog.text
    texts = sent_texts(tmp_path)
    assert sorted(recipient for recipient, _ in texts) == sorted(NUMBERS)
    assert all("possible gunshot" in text for _, text in texts)


def test_the_texts_waiting_on_a_card_that_fails_under_the_running_detector_go_from_memory_once(
    tmp_path, in_memory, monkeypatch
):
    """The SMS process cannot mark them sending on the failed card; the supervisor takes them over."""
    config = config_for(tmp_path, **{"alerts.recipients": [NUMBERS[0]]})
    data = tmp_path / "data"
    Outbox(outbox_path(data)).enqueue(NUMBERS[0], "a text waiting for the network", "alert")
    card_fails_under(monkeypatch, data)
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("sms",))
    try:
        senders = Senders(config, Modem(config.modem), stats.slot("sms"))
        senders.send_due(time.time())
        assert sent_texts(tmp_path) == []  # stuck on the card
        take_over(data, volatile_data_dir(data))  # what the supervisor does when its probe fails
        for _ in range(3):
            senders.send_due(time.time())
        senders.close()
    finally:
        stats.close()
    assert [text for _, text in sent_texts(tmp_path)] == ["a text waiting for the network"]


class _ForgetfulOutbox(Outbox):
    """A card that fails once, just after the modem took a text: its sending is not recorded."""

    failures = 1

    def mark_sent(self, *args, **kwargs):
        if _ForgetfulOutbox.failures:
            _ForgetfulOutbox.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        super().mark_sent(*args, **kwargs)


def test_a_text_whose_sending_could_not_be_recorded_goes_again_once_as_a_repeat(tmp_path, in_memory, monkeypatch):
    """The outbox is closed and opened again: the text caught mid-send is a repeat (at least once),
    not sent again unmarked on every pass."""
    monkeypatch.setattr(_ForgetfulOutbox, "failures", 1)
    config = config_for(tmp_path, **{"alerts.recipients": [NUMBERS[0]]})
    data = tmp_path / "data"
    Outbox(outbox_path(data)).enqueue(NUMBERS[0], "an alert", "alert")
    card_fails_under(monkeypatch, data, _ForgetfulOutbox)
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("sms",))
    try:
        senders = Senders(config, Modem(config.modem), stats.slot("sms"))
        start = time.monotonic()
        for step in range(4):  # a pass every OUTBOX_RETRY s: the failed outbox is opened again
            clock = SimpleNamespace(monotonic=lambda step=step: start + step * OUTBOX_RETRY, time=time.time)
            monkeypatch.setattr(sender, "time", clock)
            senders.send_due(time.time())
        senders.close()
    finally:
        stats.close()
    assert [text for _, text in sent_texts(tmp_path)] == ["an alert", REPEAT_PREFIX + "an alert"]


def test_the_end_of_a_long_network_loss_is_texted_once_when_the_card_refuses_it(tmp_path, in_memory, monkeypatch):
    every = 300.0
    config = config_for(tmp_path, **{"modem.network_check": every})
    data = tmp_path / "data"
    Outbox(outbox_path(data)).close()
    card_fails_under(monkeypatch, data)
    script = FaultScript(tmp_path, {"GetNetworkInfo": [None] + [Returns({"State": "NoNetwork"})] * 3})
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("sms",))
    try:
        now = time.time()
        senders = Senders(
            config, Modem(config.modem, machine_factory=script.machine), stats.slot("sms"), monotonic=lambda: now
        )
        for _ in range(7):  # connected; three checks without a network; back; the text goes out
            senders.send_due(now)
            now += every
        senders.close()
    finally:
        stats.close()
    texts = sent_texts(tmp_path)
    assert sorted(recipient for recipient, _ in texts) == sorted(NUMBERS)
    assert all("had no mobile network" in text for _, text in texts)


def made_by_another_user(folder, forged_text: str | None = None):
    """`folder` made first by another local user (its name can be guessed), with a text for the
    modem in its outbox and a marker claiming the card's texts went out."""
    folder.mkdir(parents=True)
    if forged_text is not None:
        Outbox(outbox_path(folder)).enqueue(NUMBERS[0], forged_text, "alert")
    (folder / TAKEN_OVER_FILE).write_text('{"card": "", "texts": [[1, 1]]}')
    for path in (folder, *folder.iterdir()):
        os.chown(path, NOBODY, NOBODY)
    folder.chmod(0o777)


def test_an_in_memory_folder_another_user_made_first_is_neither_used_nor_trusted(tmp_path, card, in_memory, caplog):
    """Not to start from, not to queue in, not to send from, not to mark the card's texts sent."""
    made_by_another_user(volatile_data_dir(card))
    read_only(card)
    with pytest.raises(
        UnsafeFolder, match=rf"uid {NOBODY}, not a folder of this user \(uid {os.geteuid()}\).*sudo rm -rf"
    ):
        fall_back_if_unwritable(config_for(tmp_path, **{"storage.data_dir": str(card)}))
    with pytest.raises(UnsafeFolder):
        give_back(card, volatile_data_dir(card))
    pending = ["a text"]
    assert isinstance(queue_durably(pending, Outbox.enqueue, card), UnsafeFolder) and pending == ["a text"]

    writable = tmp_path / "writable"
    made_by_another_user(volatile_data_dir(writable), "a text of somebody else's")
    Outbox(outbox_path(writable)).close()
    config = config_for(tmp_path, **{"storage.data_dir": str(writable)})
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("sms",))
    try:
        senders = Senders(config, Modem(config.modem), stats.slot("sms"))
        senders.send_due(time.time())
        senders.close()
    finally:
        stats.close()
    assert sent_texts(tmp_path) == [] and "not a folder of this user" in caplog.text


def test_the_in_memory_folder_is_closed_to_other_users_and_a_link_in_its_place_is_refused(tmp_path, card, in_memory):
    read_only(card)
    config = config_for(tmp_path, **{"storage.data_dir": str(card)})
    memory = volatile_data_dir(card)
    memory.mkdir(parents=True, mode=0o755)  # as earlier versions made it
    fall_back_if_unwritable(config)
    assert memory.stat().st_mode & 0o777 == PRIVATE_MODE
    memory.rmdir()
    memory.symlink_to(tmp_path)
    with pytest.raises(UnsafeFolder, match="is a symbolic link"):
        fall_back_if_unwritable(config)


def test_the_detector_refuses_to_start_from_an_in_memory_folder_of_another_user(tmp_path, card):
    """The real detector, the real /dev/shm: a clear error, no traceback, exit code 2."""
    made_by_another_user(volatile_data_dir(card))
    read_only(card)
    run = DetectorRun(tmp_path, config_lines=listening_config(tmp_path, "default", RATE))
    recording = tmp_path / "quiet.wav"
    soundfile.write(recording, np.zeros(RATE, dtype=np.int16), RATE, subtype="PCM_16")
    run.start("--source", str(recording))
    run.wait_until(lambda: run.process.poll() is not None, 60, "the refusal")
    assert run.stop() == 2
    assert f"{volatile_data_dir(card)} is a folder of uid {NOBODY}" in run.output()
    assert "Traceback" not in run.output()


def test_the_texts_of_a_card_failing_under_the_detector_are_taken_over_only_if_they_are_stuck(tmp_path, card):
    """A card remounted read-only cannot record their sending (they would wait for ever); one made
    immutable still can, and sends them itself: taken over too, they would go twice."""
    with Outbox(outbox_path(card)) as sms_process:  # holds it open, as the running detector's does
        sms_process.enqueue(NUMBERS[0], "an alert waiting for the network", "alert")
        assert not card_texts_stuck(card)
        subprocess.run(["chattr", "+i", str(card)], check=True)
        try:
            assert unwritable_reason(card) is not None and not card_texts_stuck(card)
        finally:
            subprocess.run(["chattr", "-i", str(card)], check=True)
        open_files = {path: path.read_bytes() for path in card.glob(f"{OUTBOX_DB}*")}  # with its -wal and -shm
    for path, data in open_files.items():
        path.write_bytes(data)  # as the kernel leaves them when it remounts a failing card read-only
    read_only(card)
    assert card_texts_stuck(card)
