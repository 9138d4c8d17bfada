"""Where texts and records go when the data folder cannot be written.

A Pi's SD card fails in ways that keep the system running: the kernel remounts it read-only after
errors, a worn-out card locks itself read-only, or the folder belongs to another user (a run with
sudo). None of them may stop an alert. The detector then keeps its outbox, and at start its whole
data folder, in memory (VOLATILE_ROOT, a tmpfs on every Linux): texts still go out, but what is
kept there is lost at a reboot, and no clips are saved (they would fill the Pi's RAM). The
recipients are told, so that somebody replaces the card.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alerting.outbox import OUTBOX_DB, Outbox, outbox_path
from alerting.pin_record import RECORD_FILE
from alerting.reserve import DiskReserve, queue_in_order
from pipeline.config import Config, override
from pipeline.users import user_name

VOLATILE_ROOT = Path("/dev/shm")
PRIVATE_MODE = 0o700  # the in-memory folder: this user's alone
PROBE_FILE = ".write-test"
# What the detector writes in its data folder (pipeline, alerting, inference): each must be writable.
_DATABASES = ("events.sqlite", OUTBOX_DB)
OWN_FILES = (
    *(f"{db}{suffix}" for db in _DATABASES for suffix in ("", "-wal", "-shm")),
    RECORD_FILE,
    "detector.lock",
    "stats.json",
    "outbox.reserve",
    "clips",
)
TAKEN_OVER_FILE = "taken-over"  # in the in-memory folder: the card's texts were copied in
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
SECONDS_PER_HOUR = 3600.0
STORAGE_CHECK = 600.0  # s between probe files the supervisor makes in the data folder while running
NOT_WRITABLE = "is not writable by this user"
MOUNT_ONLY = "only where this process sees it mounted, not on the card"  # a sandbox's read-only bind mount
MOUNT_INFO = Path("/proc/self/mountinfo")
# What the recipients are told to do, by cause: the card, the folder's owner (a run with sudo), or
# the service's sandbox (deploy/gunshot-detector.service: writable are its ReadWritePaths only).
CARD_ADVICE = "Check the SD card."
OWNER_ADVICE = "Check the folder's owner: the detector's user ({user}) must be able to write it."
SANDBOX_ADVICE = "Add the folder to the service's ReadWritePaths (systemctl edit gunshot-detector)."

log = logging.getLogger(__name__)
T = TypeVar("T")


def volatile_data_dir(data_dir: Path | str) -> Path:
    """The in-memory stand-in for `data_dir`: one per data folder, so that the SMS process of the
    same detector (and its next start) finds what was queued there."""
    key = hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]
    return VOLATILE_ROOT / f"gunshot-data-{key}"


class UnsafeFolder(OSError):
    """The in-memory folder's place is taken by something this user does not own."""


def private_dir(folder: Path, *, create: bool = False) -> Path:
    """`folder` (made if `create`), checked to be this user's own and closed to other users. The
    in-memory folder's name can be guessed: one made first by another local user would let them
    read the phone numbers, or slip in texts for this detector's modem to send."""
    if create:
        folder.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return folder  # nothing there to trust yet; a writer makes it with `create`
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        kind = (
            "a symbolic link" if stat.S_ISLNK(info.st_mode) else "a folder" if stat.S_ISDIR(info.st_mode) else "a file"
        )
        raise UnsafeFolder(
            f"{folder} is {kind} of uid {info.st_uid}, not a folder of this user (uid {os.geteuid()}): another "
            f"user may have made it to read texts or slip some in. Remove it (sudo rm -rf {folder}) and start again"
        )
    if stat.S_IMODE(info.st_mode) != PRIVATE_MODE:
        folder.chmod(PRIVATE_MODE)  # ours, from a version that made it open to read
    return folder


def unwritable_reason(folder: Path) -> str | None:
    """Why a file cannot be made in `folder` (made if missing), or None if it can. A full disk is
    not a reason: the outbox reserve is made for it (alerting/reserve.py), and the folder comes
    back once space does. Not synced: a read-only card or another owner refuses the open at once,
    and a sync could hang on a dying card (the supervisor, which calls this, must keep pinging the
    watchdog)."""
    probe = folder / PROBE_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        if refused := next((name for name in OWN_FILES if _not_writable(folder / name)), None):
            return f"{refused} {NOT_WRITABLE}"  # left by a run as another user (sudo)
    except OSError as exc:
        if exc.errno == errno.EROFS and read_only_mount_only(folder):
            return f"{exc.strerror}, {MOUNT_ONLY}"
        return None if exc.errno in FULL_DISK else exc.strerror or str(exc)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None


def read_only_mount_only(folder: Path) -> bool:
    """Whether `folder` is read-only by its mount alone (a bind mount made read-only, as systemd's
    ProtectSystem=strict makes every path but ReadWritePaths=), its file system writable: not a
    card the kernel remounted read-only, whose file system is read-only too."""
    try:
        lines = MOUNT_INFO.read_text().splitlines()
    except OSError:
        return False
    target, best, read_only = str(folder.resolve()), "", False
    for line in lines:  # proc(5): id parent dev root MOUNT_POINT OPTIONS [optional...] - type source SUPER_OPTIONS
        fields = line.split()
        mount_point = fields[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):  # the deepest, and of one place the last mounted
            super_options = fields[fields.index("-") + 3]
            best, read_only = mount_point, "ro" in fields[5].split(",") and "rw" in super_options.split(",")
    return read_only


def _not_writable(path: Path) -> bool:
    """A file this user cannot write; not one that is gone (SQLite removes its -wal, -shm files)."""
    return not os.access(path, os.W_OK) and path.exists()  # exists afterwards: it may vanish meanwhile


def owner_problem(problem: str) -> bool:
    """Whether a data folder's problem ("cannot write the data folder F (reason)", the reason from
    unwritable_reason) is its owner or modes: this user may not write it, a card would let it.
    (EPERM is not: an immutable folder stands in for a failing card in the tests.)"""
    return problem.endswith((f"({os.strerror(errno.EACCES)})", f"{NOT_WRITABLE})"))


def sandbox_problem(problem: str) -> bool:
    """Whether a data folder's problem is a read-only mount of this process's alone (the service's
    sandbox: the folder is not in its ReadWritePaths), the card writable."""
    return problem.endswith(f"{MOUNT_ONLY})")


def storage_advice(problem: str) -> str:
    """What the recipients' text about a data folder's `problem` tells them to do."""
    if owner_problem(problem):
        return OWNER_ADVICE.format(user=user_name())
    return SANDBOX_ADVICE if sandbox_problem(problem) else CARD_ADVICE


def fall_back_if_unwritable(config: Config) -> tuple[Config, str | None]:
    """`config` as is, or (when its data folder cannot be written) with the volatile one and no
    clips, and what is wrong with the folder."""
    folder = Path(config.storage.data_dir)
    if (reason := unwritable_reason(folder)) is None:
        return config, None
    volatile = private_dir(volatile_data_dir(folder), create=True)
    problem = f"cannot write the data folder {folder} ({reason})"
    if owner_problem(problem):
        fix = f"it must be this user's: `sudo chown -R {user_name()}: {folder}`"
    elif sandbox_problem(problem):
        fix = "add it to ReadWritePaths= in a drop-in (systemctl edit gunshot-detector): the unit's sandbox"
    else:
        fix = "a read-only or failing SD card (see `dmesg`) needs replacing"
    log.critical(
        "%s: keeping events and texts in memory (%s) instead, without clips; they are lost at a reboot. Fix: %s",
        problem,
        volatile,
        fix,
    )
    return override(config, {"storage.data_dir": str(volatile), "storage.clips": False}), problem


def take_over(card: Path, volatile: Path) -> None:
    """At a start from memory, or when the card fails under the running detector; once per
    in-memory folder (until a reboot empties it): what the card's folder holds that must not be
    lost or repeated. Its outbox's unsent texts (those caught mid-send as repeats), the texts it
    sent in the last hour (the hourly limit counts them) and the events it holds for a summary; and
    the PIN record, so that a PIN the SIM refused is not entered again (one that cannot be read
    stands as unreadable: no PIN goes out until a person looks).
    The card's files are only read (a copy of the outbox is opened: SQLite must write to replay its
    log). Tried again at the next start if the card could not be read. Under the running detector
    only when the card's texts are stuck (card_texts_stuck)."""
    marker = private_dir(volatile, create=True) / TAKEN_OVER_FILE
    if marker.exists():
        return
    try:  # a failing card may fail even a lookup (EIO, EBADMSG)
        _take_over_pin_record(card, volatile)
        taken = _take_over_outbox(card, volatile) if outbox_path(card).exists() else []
    except (OSError, sqlite3.Error) as exc:
        log.critical("what %s holds cannot be read yet (%s): tried again at the next start", card, exc)
        return
    log.warning("%d unsent texts taken over from %s", len(taken), outbox_path(card))
    marker.write_text(json.dumps({"card": str(card), "texts": taken}))


def card_texts_stuck(card: Path) -> bool:
    """Whether the card's outbox can no longer record the sends of its waiting texts (a card
    remounted read-only): they are taken over. One that still can sends them itself, and a take-over
    would send them twice."""
    if not outbox_path(card).exists():
        return False
    try:
        with Outbox(outbox_path(card)) as outbox:
            return not outbox.can_record_sends()
    except (sqlite3.Error, OSError):
        return True


def give_back(card: Path, volatile: Path) -> None:
    """At a start on the card again (the same boot, the card writable; before any process runs):
    each text taken over from it is marked sent on the card if memory sent it, else taken back
    from memory and sent from the card (as a repeat if memory may have sent it), so that it goes
    once. (After a reboot memory is gone: the card's texts then go again, and so may its summaries
    of held events.)"""
    marker = private_dir(volatile) / TAKEN_OVER_FILE  # a forged marker could mark the card's texts sent
    if not marker.exists():
        return
    pairs = json.loads(marker.read_text())["texts"]  # [card id, memory id]
    with Outbox(outbox_path(card)) as card_outbox, Outbox(outbox_path(volatile)) as memory_outbox:
        sent = memory_outbox.sent_among([memory_id for _, memory_id in pairs])
        maybe_sent = memory_outbox.maybe_sent_among([memory_id for _, memory_id in pairs])
        card_outbox.mark_taken_over([card_id for card_id, memory_id in pairs if memory_id in sent], time.time())
        card_outbox.mark_repeat([card_id for card_id, memory_id in pairs if memory_id in maybe_sent])
        memory_outbox.mark_taken_over([memory_id for _, memory_id in pairs if memory_id not in sent], time.time())
    marker.unlink()
    log.warning("back on %s: of %d texts taken over, memory sent %d", card, len(pairs), len(sent))


def _take_over_pin_record(card: Path, volatile: Path) -> None:
    source, target = card / RECORD_FILE, volatile / RECORD_FILE
    if target.exists():
        return
    try:
        if not source.exists():
            return
        shutil.copyfile(source, target)
    except OSError as exc:
        target.write_text(f"unreadable: {exc}\n")  # PinRecord.state raises: the PIN is not entered


def _take_over_outbox(card: Path, volatile: Path) -> list[tuple[int, int]]:
    copy = volatile / "card-outbox"
    copy.mkdir(exist_ok=True)
    try:
        for suffix in ("", "-wal"):
            source = card / f"{OUTBOX_DB}{suffix}"
            if source.exists():
                shutil.copyfile(source, copy / source.name)
        with Outbox(outbox_path(copy)) as old, Outbox(outbox_path(volatile)) as new:
            return new.take_over(old, sent_since=time.time() - SECONDS_PER_HOUR)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def queue_durably(pending: list[T], queue: Callable[[Outbox, T], None], data_dir: Path) -> BaseException | None:
    """Queue `pending` (oldest first, each removed once queued) in the data folder's outbox; what it
    refuses (a read-only or failing card; a full disk once the reserve is given up) in the volatile
    one, whose texts the SMS process sends too. The error if neither took them (they stay pending)."""
    if (exc := queue_in_order(pending, _into(data_dir, queue), DiskReserve(data_dir))) is None:
        return None
    try:
        volatile = private_dir(volatile_data_dir(data_dir), create=True)
    except OSError as unsafe:
        log.critical(
            "the outbox in %s refused %d text(s) (%s), and memory cannot take them: %s",
            data_dir,
            len(pending),
            exc,
            unsafe,
        )
        return unsafe
    log.critical(
        "the outbox in %s refused %d text(s) (%s): queued in memory (%s)", data_dir, len(pending), exc, volatile
    )
    return queue_in_order(pending, _into(volatile, queue), DiskReserve(volatile))


def _into(data_dir: Path, queue: Callable[[Outbox, T], None]) -> Callable[[T], None]:
    def queue_one(item: T) -> None:
        with Outbox(outbox_path(data_dir)) as outbox:
            queue(outbox, item)

    return queue_one
