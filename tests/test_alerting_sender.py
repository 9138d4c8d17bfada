"""The sender: outbox -> modem with retries, repeats, order and the hourly limit, on the dummy phone
(faults injected around it as python-gammu's own exceptions), and the SMS process in real child
processes: sending, the once-a-second poll, a clean stop (event or SIGTERM), and a SIGKILL mid-send."""

import contextlib
import itertools
import logging
import multiprocessing
import os
import random
import re
import sqlite3
import threading
import time
from pathlib import Path

import gammu
import pytest

from alerting import modem as modem_module
from alerting.clock import clock_synchronised
from alerting.compose import SUMMARY_INTERVAL, EventAlert, clock_note, queue_event_alert
from alerting.encoding import CUT_MARK
from alerting.faults import ModemError
from alerting.modem import Modem
from alerting.outbox import REPEAT_PREFIX, Outbox, outbox_path
from alerting.sender import JITTER, Sender, retry_delay, run_sender, send_pending_once
from pipeline import metrics
from pipeline.channel import Channel
from pipeline.layout import Layout
from pipeline.messages import OutboxChanged
from pipeline.metrics import StatsTable
from pipeline.supervisor import HEARTBEAT_TIMEOUT
from tests import at_modem
from tests.conftest import own_run_id
from tests.test_alerting_support import (
    DEADLINE,
    NUMBERS,
    POLL,
    After,
    FaultScript,
    Hang,
    Returns,
    config_for,
    sent_texts,
    wait_until,
)

A, B = NUMBERS
SHOT_TIME = 1_795_604_587.0  # 2026-11-25 14:03:07 EAT
ALERT_TEXT = "North gate: possible gunshot at 2026-11-25 14:03:07 EAT."
JUST_BEFORE = 0.01  # s
MAX_PASSES = 10


def setup(tmp_path, steps=None, **changes):
    config = config_for(tmp_path, **changes)
    script = FaultScript(tmp_path, {method: list(queue) for method, queue in (steps or {}).items()})
    outbox = Outbox(outbox_path(config.storage.data_dir))
    modem = Modem(config.modem, machine_factory=script.machine)
    return config, script, outbox, Sender(config, outbox, modem, rng=random.Random(1))


def alert(event_id=1, started_at=SHOT_TIME):
    return EventAlert(event_id, started_at, 0.9, degraded=False)


def next_try(sender, outbox):
    due = outbox.next_attempt()
    return due if sender.modem.connected else max(due, sender.retry_connect_at)


def send_until_empty(sender, outbox, script, start=0.0):
    """Passes at the moments the sender may try again, until all is sent; the pass times.

    Checks on the way that a failure leaves every text queued and that nobody touches the modem
    before its backoff is over."""
    now, times = start, []
    for _ in range(MAX_PASSES):
        times.append(now)
        sender.send_due(now)
        if outbox.pending_count() == 0:
            return times
        assert {r.state for r in outbox.rows()} <= {"pending", "sent"}  # nothing stuck in 'sending'
        now = next_try(sender, outbox)
        calls = sum(script.calls.values())
        assert sender.send_due(now - JUST_BEFORE) == 0
        assert sum(script.calls.values()) == calls, "the modem was tried before its backoff ended"
    raise AssertionError(f"still {outbox.pending_count()} texts queued after {MAX_PASSES} passes")


def assert_backoff(times, initial=1.0, longest=8.0):
    for k, gap in enumerate((b - a for a, b in itertools.pairwise(times)), 1):
        base = min(longest, initial * 2 ** (k - 1))
        assert base * (1 - JITTER) <= gap <= base * (1 + JITTER), (k, gap)


@pytest.mark.parametrize(
    ("steps", "failures", "repeat"),
    [
        ({"SendSMS": [gammu.ERR_NOTCONNECTED]}, 1, True),  # lost mid-send: maybe sent
        ({"SendSMS": [After(gammu.ERR_TIMEOUT)] * 2}, 2, True),  # the dummy took it, the answer was lost
        ({"Init": [gammu.ERR_DEVICENOTEXIST] * 3}, 3, False),  # unplugged: never submitted
        ({"GetNetworkInfo": [Returns({"State": "NoNetwork"})] * 2}, 2, False),
        ({"SendSMS": [gammu.ERR_UNKNOWN] * 2}, 2, False),  # "+CMS ERROR": refused, so not sent
    ],
    ids=["not-connected", "timeout-after-submit", "device-missing", "no-network", "refused"],
)
def test_modem_faults_leave_the_text_queued_until_they_clear(tmp_path, steps, failures, repeat):
    config, script, outbox, sender = setup(tmp_path, steps, **{"alerts.recipients": [A]})
    queue_event_alert(outbox, config, alert(), now=0.0)
    times = send_until_empty(sender, outbox, script)
    assert len(times) == failures + 1
    assert_backoff(times)
    (row,) = outbox.rows()
    assert (row.state, row.repeat, row.reference) == ("sent", repeat, "255")
    assert script.machines == failures + 1  # re-initialised after every failure
    if any(isinstance(step, After) for queue in steps.values() for step in queue):
        # The dummy took every attempt before the answer was lost: all but the first say "[sent again]".
        expected = [ALERT_TEXT] + [REPEAT_PREFIX + ALERT_TEXT] * failures
    else:
        expected = [REPEAT_PREFIX + ALERT_TEXT if repeat else ALERT_TEXT]
    assert sent_texts(tmp_path) == [(A, text) for text in expected]


def test_a_text_that_may_have_gone_out_stays_a_repeat_after_a_later_refusal(tmp_path):
    steps = {"SendSMS": [After(gammu.ERR_TIMEOUT), gammu.ERR_UNKNOWN]}
    config, script, outbox, sender = setup(tmp_path, steps, **{"alerts.recipients": [A]})
    queue_event_alert(outbox, config, alert(), now=0.0)
    send_until_empty(sender, outbox, script)
    assert sent_texts(tmp_path) == [(A, ALERT_TEXT), (A, REPEAT_PREFIX + ALERT_TEXT)]


def test_a_second_modem_outage_backs_off_from_the_start_again(tmp_path):
    """The modem's failures in a row end with a text sent: the next outage is tried again soon."""
    steps = {"Init": [gammu.ERR_DEVICENOTEXIST] * 3, "SendSMS": [None, gammu.ERR_NOTCONNECTED]}
    config, script, outbox, sender = setup(tmp_path, steps, **{"alerts.recipients": [A]})
    queue_event_alert(outbox, config, alert(1), now=0.0)
    now = send_until_empty(sender, outbox, script)[-1] + 60.0
    queue_event_alert(outbox, config, alert(2, SHOT_TIME + 60), now=now)
    assert sender.send_due(now) == 0  # the modem is lost mid-send
    initial = config.modem.retry_initial
    assert initial * (1 - JITTER) <= sender.retry_connect_at - now <= initial * (1 + JITTER)


def test_a_text_due_decades_ahead_after_a_clock_jump_is_tried_within_retry_max(tmp_path):
    """A Pi without a clock chip can start with its clock years ahead: a backoff written then must
    not hold a text for years once the clock is set right."""
    config, _, outbox, sender = setup(tmp_path, **{"alerts.recipients": [A]})
    queue_event_alert(outbox, config, alert(), now=0.0)
    with contextlib.closing(sqlite3.connect(outbox_path(config.storage.data_dir))) as db, db:
        db.execute("UPDATE texts SET next_attempt = 4e9")  # the year 2096
    assert sender.send_due(100.0) == 0
    assert sender.send_due(100.0 + config.modem.retry_max) == 1


def test_a_clock_set_back_after_the_modem_failed_does_not_hold_the_texts_for_as_long(tmp_path, caplog):
    """A modem not there yet at boot (USB still coming up), then NTP sets the clock back 6 h: the
    modem's retry must not wait 6 h (measured before: no text for 6 h, nothing logged)."""
    config = config_for(tmp_path, **{"alerts.recipients": [A]})
    device = tmp_path / "phone"
    device.rmdir()
    outbox = Outbox(outbox_path(config.storage.data_dir))
    sender = Sender(config, outbox, Modem(config.modem), rng=random.Random(1))
    booted_at = SHOT_TIME + 6 * 3600.0  # the saved time, ahead
    queue_event_alert(outbox, config, alert(), now=booted_at)
    assert sender.send_due(booted_at) == 0
    device.mkdir()  # the modem is up
    set_right = SHOT_TIME
    assert sender.send_due(set_right) == 0  # the text's own due time is clamped to retry_max ahead
    assert sender.send_due(set_right + config.modem.retry_max) == 1
    assert "the clock went back" in caplog.text
    sender.modem.terminate()


def test_a_missing_device_is_retried_until_plugged_in(tmp_path):
    config = config_for(tmp_path, **{"alerts.recipients": [A]})
    device = tmp_path / "phone"
    device.rmdir()  # the real dummy now fails Init, as an unplugged modem would
    outbox = Outbox(outbox_path(config.storage.data_dir))
    sender = Sender(config, outbox, Modem(config.modem), rng=random.Random(1))
    queue_event_alert(outbox, config, alert(), now=0.0)
    assert sender.send_due(0.0) == 0
    assert "not found: is the modem plugged in?" in str(sender.last_error)
    assert sender.send_due(next_try(sender, outbox)) == 0
    device.mkdir()  # plugged in
    assert sender.send_due(next_try(sender, outbox)) == 1
    assert not outbox.rows()[0].repeat
    sender.modem.terminate()


def test_an_alert_held_up_by_a_missing_modem_says_how_late_it_went(tmp_path):
    """The audit: with the modem missing for 4 min, alerts went 287 s and 167 s after their shots,
    worded exactly as fresh ones."""
    config = config_for(tmp_path, **{"alerts.recipients": [A]})
    device = tmp_path / "phone"
    device.rmdir()  # unplugged
    outbox = Outbox(outbox_path(config.storage.data_dir))
    sender = Sender(config, outbox, Modem(config.modem), rng=random.Random(1))
    for event_id, shot in enumerate((SHOT_TIME, SHOT_TIME + 120, SHOT_TIME + 250), 1):
        queue_event_alert(outbox, config, alert(event_id, shot), now=shot + 1)
        assert sender.send_due(shot + 1) == 0
    device.mkdir()  # plugged in
    assert sender.send_due(SHOT_TIME + 287) == 3
    assert [text for _, text in sent_texts(tmp_path)] == [
        "[sent 4 min late] " + ALERT_TEXT,  # 287 s
        "[sent 2 min late] " + ALERT_TEXT.replace("14:03:07", "14:05:07"),  # 167 s
        ALERT_TEXT.replace("14:03:07", "14:07:17"),  # 37 s: on time
    ]
    assert outbox.rows()[0].text == ALERT_TEXT  # the outbox keeps the text as written
    sender.modem.terminate()


@pytest.mark.parametrize(("minutes", "texted"), [(10, True), (9, False)], ids=["long", "short"])
def test_a_modem_that_did_not_work_for_10_min_or_more_is_texted_once_it_works(tmp_path, minutes, texted):
    """Not only a lost network: a modem unplugged (or not answering) as long delays the texts too."""
    config = config_for(tmp_path, **{"modem.network_check": 60.0})
    device = tmp_path / "phone"
    device.rmdir()  # unplugged, with nothing to send: the network check finds it
    outbox = Outbox(outbox_path(config.storage.data_dir))
    sender = Sender(config, outbox, Modem(config.modem), rng=random.Random(1))
    for minute in range(minutes):
        sender.watch_network(SHOT_TIME + 60 * minute)
        assert sender.down_since == SHOT_TIME and not sender.modem.connected
    device.mkdir()  # plugged in
    sender.watch_network(SHOT_TIME + 60 * minutes)
    assert sender.modem.connected and sender.down_since is None
    health = [row.text for row in outbox.rows() if row.kind == "health"]
    if texted:
        expected = "North gate: the modem did not work from 14:03 to 14:13 EAT; texts were delayed."
        assert health == [expected + clock_note(clock_synchronised())] * len(NUMBERS)
    else:
        assert health == []
    sender.modem.terminate()


@pytest.mark.parametrize(("seconds", "texted"), [(30, False), (600, True)], ids=["boot wait", "long"])
def test_an_outage_is_timed_on_the_monotonic_clock_not_by_a_wall_clock_ntp_stepped(tmp_path, seconds, texted):
    """A Pi without RTC boots on a saved time; NTP steps it 3 days on while the modem is still
    coming up: 30 s without a modem was texted as 3 days ("did not work from 14:03 on 11-25 to 11-28")."""
    config = config_for(tmp_path, **{"modem.network_check": 10.0})
    device = tmp_path / "phone"
    device.rmdir()  # not there yet
    outbox = Outbox(outbox_path(config.storage.data_dir))
    elapsed = [0.0]
    sender = Sender(config, outbox, Modem(config.modem), rng=random.Random(1), monotonic=lambda: elapsed[0])
    sender.watch_network(SHOT_TIME)
    step = 3 * 86400.0
    elapsed[0] = seconds
    device.mkdir()
    sender.retry_connect_at = 0.0  # its backoff over
    sender.watch_network(SHOT_TIME + step + seconds)
    assert sender.modem.connected and sender.down_since is None
    health = [row.text for row in outbox.rows() if row.kind == "health"]
    if texted:
        expected = "North gate: the modem did not work from 14:03 to 14:13 EAT; texts were delayed."
        assert health == [expected + clock_note(clock_synchronised())] * len(NUMBERS)  # on 11-28
    else:
        assert health == []
    sender.modem.terminate()


def test_a_refused_text_does_not_hold_up_texts_to_other_numbers(tmp_path):
    config, script, outbox, sender = setup(tmp_path, {"SendSMS": [gammu.ERR_UNKNOWN]})
    queue_event_alert(outbox, config, alert(), now=0.0)  # A first (lower id), then B
    assert sender.send_due(0.0) == 1
    assert [(r.recipient, r.state) for r in outbox.rows()] == [(A, "pending"), (B, "sent")]
    assert "the modem refused the text" in outbox.rows()[0].last_error
    assert sender.send_due(next_try(sender, outbox)) == 1
    assert [recipient for recipient, _ in sent_texts(tmp_path)] == [B, A]
    assert script.machines == 2


def test_log_lines_name_recipients_by_a_masked_number_and_the_outbox_keeps_the_whole(tmp_path, caplog):
    """The journal is read by more people (the adm group, bug reports) than the outbox."""
    config, _, outbox, sender = setup(tmp_path, {"SendSMS": [gammu.ERR_UNKNOWN]})
    queue_event_alert(outbox, config, alert(), now=0.0)  # A first: refused once, then sent
    with caplog.at_level(logging.DEBUG, logger="alerting.sender"):
        sender.send_due(0.0)
        sender.send_due(next_try(sender, outbox))
    lines = [r.getMessage() for r in caplog.records if r.name == "alerting.sender"]
    assert any(line.startswith("texts to +44*******123: the modem refused the text") for line in lines), lines
    assert any(line.startswith("texts to +44*******123 go through again") for line in lines), lines
    assert any(re.fullmatch(r"text \d+ \(alert, 1 part\) sent to \+44\*{7}123", line) for line in lines), lines
    assert any(re.fullmatch(r"text \d+ \(alert, 1 part\) sent to \+12\*{6}143", line) for line in lines), lines
    assert not [line for line in lines if A in line or B in line]
    assert {row.recipient for row in outbox.rows()} == {A, B}
    sender.modem.terminate()


def test_a_malformed_number_in_an_old_outbox_file_is_kept_and_blocks_nobody(tmp_path):
    config, script, outbox, sender = setup(tmp_path)
    bad = sqlite3.connect(outbox_path(config.storage.data_dir))
    with bad:  # as an older version, or a person with sqlite3, might have written it
        bad.execute(
            "INSERT INTO texts (created, recipient, text, kind, next_attempt) VALUES (0,?,'hi','alert',0)",
            ("0712 345678",),
        )
    bad.close()
    queue_event_alert(outbox, config, alert(), now=0.0)
    assert sender.send_due(0.0) == 2
    first = outbox.rows()[0]
    assert first.state == "pending" and "cannot send to 0712 345678" in first.last_error
    assert first.next_attempt == config.modem.retry_max  # a person must fix it; it is never dropped
    assert script.calls["SendSMS"] == 2


FIFTY_PARTS = "x" * 7650  # the longest text Gammu encodes: 50 parts of 153 GSM-7 characters


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        (FIFTY_PARTS, [None] * 49 + [After(gammu.ERR_TIMEOUT)]),  # it went, the answer was lost: its repeat is 51
        (FIFTY_PARTS + "x", []),
        ("ж" * 3351, []),  # UCS-2: 50 x 67
    ],
)
def test_a_text_too_long_for_sms_goes_cut_and_holds_up_no_other_text(tmp_path, text, steps):
    """Gammu's EncodeSMS refuses a text past 50 parts (ERR_INVALIDDATA): once an exception out of a
    pass (the SMS process died at every restart, and no text went at all), then a text kept back for
    good, and with it every later text to the same number (texts to a number go in order)."""
    _, _, outbox, sender = setup(tmp_path, {"SendSMS": steps})
    long_id = outbox.enqueue(A, text, "alert", now=0.0)
    later_id = outbox.enqueue(A, "North gate: the detector is degraded.", "health", now=0.0)
    now = 0.0
    for _ in range(MAX_PASSES):
        sender.send_due(now)
        if outbox.row(later_id).state == "sent":
            break
        now = next_try(sender, outbox)
    assert (outbox.row(long_id).state, outbox.row(later_id).state) == ("sent", "sent")
    *long_texts, later = [t for r, t in sent_texts(tmp_path) if r == A]
    assert later == "North gate: the detector is degraded."
    if steps:  # the whole text went, then its repeat, cut
        assert long_texts[0] == text and long_texts[1].startswith(REPEAT_PREFIX + text[:7000])
    else:
        assert len(long_texts) == 1 and long_texts[0].startswith(text[:3000])
    assert long_texts[-1].endswith(CUT_MARK)


def test_texts_to_one_number_keep_their_order_through_failures(tmp_path):
    steps = {"SendSMS": [None, After(gammu.ERR_TIMEOUT), gammu.ERR_NOTCONNECTED]}
    config, script, outbox, sender = setup(tmp_path, steps, **{"alerts.recipients": [A]})
    for event_id in (1, 2, 3):
        queue_event_alert(outbox, config, alert(event_id, SHOT_TIME + 60 * event_id), now=float(event_id))
    send_until_empty(sender, outbox, script, start=10.0)
    texts = [text for _, text in sent_texts(tmp_path)]
    assert [t.split(" at ")[1][:19] for t in texts] == [
        "2026-11-25 14:04:07",
        "2026-11-25 14:05:07",  # taken by the dummy, answer lost ...
        "2026-11-25 14:05:07",  # ... so sent again, as a repeat, before the third
        "2026-11-25 14:06:07",
    ]
    assert [t.startswith(REPEAT_PREFIX) for t in texts] == [False, False, True, False]


def test_a_restart_between_mark_sending_and_the_answer_loses_nothing(tmp_path):
    config = config_for(tmp_path)
    outbox = Outbox(outbox_path(config.storage.data_dir))
    for event_id in (1, 2, 3):
        queue_event_alert(outbox, config, alert(event_id, SHOT_TIME + event_id), now=float(event_id))
    first = outbox.due(now=10.0)[0]
    outbox.mark_sending(first.id)  # ... and the process dies here
    outbox.close()
    reopened = Outbox(outbox_path(config.storage.data_dir))
    assert reopened.recover() == 1
    modem = Modem(config.modem)
    try:
        assert send_pending_once(reopened, modem, config, now=20.0) == 6
    finally:
        modem.terminate()
    sent = sent_texts(tmp_path)
    assert [text.startswith(REPEAT_PREFIX) for _, text in sent] == [True] + [False] * 5
    for number in NUMBERS:
        times = [text.split(" at ")[1][:19] for recipient, text in sent if recipient == number]
        assert times == sorted(times) and len(times) == 3


def test_a_flood_goes_out_as_five_alerts_then_summaries_at_most_the_summary_interval_apart(tmp_path):
    config, _, outbox, sender = setup(tmp_path, **{"alerts.recipients": [A], "alerts.max_per_hour": 5})
    for i in range(30):
        queue_event_alert(outbox, config, alert(i, SHOT_TIME + 2 * i), now=SHOT_TIME + 2 * i)
    assert sender.send_due(SHOT_TIME + 60) == 6  # 5 alerts, then the sixth event's summary
    assert sender.send_due(SHOT_TIME + 10 + SUMMARY_INTERVAL - 1) == 0  # the rest waits, recorded
    assert sender.send_due(SHOT_TIME + 10 + SUMMARY_INTERVAL) == 1  # SUMMARY_INTERVAL after the first summary
    texts = [text for _, text in sent_texts(tmp_path)]
    assert len(texts) == 7 and all(" possible gunshot at " in t for t in texts[:5])
    note = clock_note(clock_synchronised())
    assert texts[5:] == [
        "North gate: 1 more possible gunfire incident at 14:03 EAT (texts limited to 5/hour)." + note,
        "North gate: 24 more possible gunfire incidents between 14:03 and 14:04 EAT "
        "(texts limited to 5/hour)." + note,  # held by design: not called late, though 852 s after the newest
    ]
    assert outbox.waiting_held() == {} and outbox.pending_count() == 0


def test_a_failure_is_logged_once_when_it_starts_and_once_when_it_clears(tmp_path, caplog):
    steps = {"Init": [gammu.ERR_DEVICENOTEXIST] * 4}
    config, script, outbox, sender = setup(tmp_path, steps, **{"alerts.recipients": [A]})
    queue_event_alert(outbox, config, alert(), now=0.0)
    with caplog.at_level(logging.INFO, logger="alerting.sender"):
        send_until_empty(sender, outbox, script)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "alerting.sender"]
    errors = [message for level, message in lines if level == "ERROR"]
    assert len(errors) == 1 and "1 texts waiting, retrying with backoff" in errors[0]
    (cleared,) = [message for _, message in lines if "works again" in message]
    assert re.fullmatch(r"the modem works again, after 4 failed attempts over \d+ s", cleared)


def test_backoff_doubles_from_retry_initial_to_retry_max_with_jitter(tmp_path):
    config = config_for(tmp_path, **{"modem.retry_initial": 5.0, "modem.retry_max": 300.0})
    rng = random.Random(3)
    for attempts, base in [(1, 5.0), (2, 10.0), (3, 20.0), (6, 160.0), (7, 300.0), (30, 300.0)]:
        delays = [retry_delay(config, attempts, rng) for _ in range(200)]
        assert base * (1 - JITTER) <= min(delays) < base * 0.8 and base * 1.2 < max(delays) <= base * (1 + JITTER)


def test_a_setting_a_person_must_fix_is_retried_at_the_longest_backoff(tmp_path):
    config, _, outbox, sender = setup(
        tmp_path, {"Init": [gammu.ERR_UNKNOWNCONNECTIONTYPESTRING]}, **{"alerts.recipients": [A]}
    )
    queue_event_alert(outbox, config, alert(), now=0.0)
    sender.send_due(0.0)
    assert isinstance(sender.last_error, ModemError) and not sender.last_error.retryable
    assert sender.retry_connect_at == config.modem.retry_max
    assert sender.send_due(config.modem.retry_max) == 1


# --- the SMS process ----------------------------------------------------------------------------------
def process_parts(tmp_path):
    context = multiprocessing.get_context("forkserver")
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("sms",))
    layout = Layout("test", "", stats.segment_name, ("sms",), outbox=Channel("outbox"))
    return context, stats, layout, context.Event()


def stop_process(process):
    if process.is_alive():
        process.kill()
    process.join(DEADLINE)


@pytest.mark.parametrize("how", ["stop-event", "sigterm"])
def test_the_sms_process_sends_queued_texts_and_stops_cleanly(tmp_path, how):
    config = config_for(tmp_path)
    context, stats, layout, stop = process_parts(tmp_path)
    outbox = Outbox(outbox_path(config.storage.data_dir))
    queue_event_alert(outbox, config, alert(1), now=0.0)  # waiting before the process starts
    process = context.Process(target=run_sender, args=(config, layout, stop), name="sms")
    process.start()
    try:
        wait_until(lambda: outbox.pending_count() == 0, "the texts queued before the start")
        slot = stats.slot("sms")
        beat = slot.get("heartbeat")
        queue_event_alert(outbox, config, alert(2), now=1.0)  # no wake-up: the poll must find it
        wait_until(lambda: outbox.pending_count() == 0, "a text queued without a wake-up")
        queue_event_alert(outbox, config, alert(3), now=2.0)
        layout.outbox.send(OutboxChanged())
        wait_until(lambda: outbox.pending_count() == 0, "a text after a wake-up")
        assert slot.get("processed") == 6 and slot.get("heartbeat") > beat and slot.get("errors") == 0
        if how == "sigterm":
            process.terminate()
        else:
            stop.set()
        process.join(DEADLINE)
        assert process.exitcode == 0
    finally:
        stop_process(process)
        stats.close()
    assert len(sent_texts(tmp_path)) == 6
    assert (tmp_path / "gammu.log").read_text().rstrip().endswith("[Terminating]\n[Closing]")  # modem closed


def hanging_modem(config):
    """A modem whose first SendSMS never returns (the child is killed while it waits)."""
    script = FaultScript(Path(config.modem.gammurc).parent, {"SendSMS": [Hang()]})
    return Modem(config.modem, machine_factory=script.machine)


def test_a_killed_sms_process_loses_nothing_and_its_successor_resends_as_a_repeat(tmp_path):
    config = config_for(tmp_path, **{"alerts.recipients": [A]})
    context, stats, layout, stop = process_parts(tmp_path)
    outbox = Outbox(outbox_path(config.storage.data_dir))
    for event_id in (1, 2):
        queue_event_alert(outbox, config, alert(event_id, SHOT_TIME + 60 * event_id), now=float(event_id))
    first = context.Process(target=run_sender, args=(config, layout, stop, hanging_modem), name="sms")
    second = context.Process(target=run_sender, args=(config, layout, stop), name="sms")
    first.start()
    try:
        wait_until(lambda: outbox.rows()[0].state == "sending", "the first text to be mid-send")
        first.kill()  # SIGKILL: no cleanup at all
        first.join(DEADLINE)
        assert [r.state for r in outbox.rows()] == ["sending", "pending"]
        second.start()
        wait_until(lambda: outbox.pending_count() == 0, "the restarted process to send")
        stop.set()
        second.join(DEADLINE)
        assert second.exitcode == 0
    finally:
        stop_process(first)
        if second.pid is not None:
            stop_process(second)
        stats.close()
    texts = [text for _, text in sent_texts(tmp_path)]
    assert [t.startswith(REPEAT_PREFIX) for t in texts] == [True, False]
    assert texts[0].endswith("14:04:07 EAT.") and texts[1].endswith("14:05:07 EAT.")


def sms_process_logging_to(log_path, config, layout, stop):
    """The SMS process with its log (stderr) in `log_path`."""
    os.dup2(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), 2)
    run_sender(config, layout, stop)


def longest_heartbeat_gap(slot, until, timeout):
    """Watch a heartbeat as the supervisor does until `until()` or `timeout` s; the longest gap seen.
    A gap past HEARTBEAT_TIMEOUT ends the watch: the supervisor would have killed the process."""
    longest, deadline = 0.0, time.monotonic() + timeout
    while not until() and time.monotonic() < deadline and longest <= HEARTBEAT_TIMEOUT:
        longest = max(longest, time.monotonic() - slot.get("heartbeat"))
        time.sleep(POLL)
    return longest


def heartbeat_gap_during(slot, work):
    """The longest gap in `slot`'s heartbeat while `work()` runs (watched from another thread)."""
    done, gaps = threading.Event(), []
    watcher = threading.Thread(target=lambda: gaps.append(longest_heartbeat_gap(slot, done.is_set, DEADLINE)))
    watcher.start()
    try:
        work()
    finally:
        done.set()
        watcher.join()
    return gaps[0]


SILENT_MODEM_WATCH = 60.0  # s: Gammu gives up on a silent modem's start after about 12 s


def test_the_sms_process_keeps_its_heartbeat_while_the_modem_does_not_answer(tmp_path):
    """Gammu's real AT driver on a port that never answers: its start fails after about 12 s, and the
    close of that connection waits for the modem for minutes; the heartbeat must go on throughout
    (it did not: the close ran when the error that kept the machine was replaced, 423 s without a beat)."""
    context, stats, layout, stop = process_parts(tmp_path)
    log_path = tmp_path / "sms.log"
    with at_modem.silent_terminal() as device:
        config = config_for(tmp_path, **{"modem.gammurc": "", "modem.device": device, "modem.connection": "at"})
        outbox = Outbox(outbox_path(config.storage.data_dir))
        queue_event_alert(outbox, config, alert(1), now=0.0)
        process = context.Process(target=sms_process_logging_to, args=(log_path, config, layout, stop), name="sms")
        process.start()
        try:
            slot = stats.slot("sms")
            wait_until(lambda: slot.get("heartbeat") > 0, "the SMS process's first heartbeat")
            gap = longest_heartbeat_gap(slot, lambda: slot.get("errors") >= 2, SILENT_MODEM_WATCH)
            failures = slot.get("errors")
            stop.set()
            process.join(DEADLINE)
        finally:
            stop_process(process)
            stats.close()
    log = log_path.read_text()
    assert gap < HEARTBEAT_TIMEOUT and failures >= 2, log  # it started, failed, and was tried again
    assert "the modem did not answer in time" in log and "does not answer: its connection is closed in the" in log
    assert "used elsewhere" not in log  # the port is held by our own last connection, still closing
    assert process.exitcode == 0 and outbox.pending_count() == len(NUMBERS)


def test_closing_a_modem_after_a_refused_text_keeps_the_heartbeat(tmp_path, monkeypatch):
    """The modem is closed after a refusal; a close that waits (a modem gone silent) beats on."""
    monkeypatch.setattr(metrics, "BLOCKED_BEAT_EVERY", 0.02)
    monkeypatch.setattr(modem_module, "CLOSE_WAIT", 0.5)
    table = StatsTable.create(f"gs-{own_run_id()}-stats", ("sms",))
    slot = table.slot("sms")
    config, script, outbox, _ = setup(tmp_path, {"SendSMS": [gammu.ERR_UNKNOWN], "Terminate": [Hang(1.5)]})
    sender = Sender(config, outbox, Modem(config.modem, machine_factory=script.machine), slot)
    outbox.enqueue(A, "hello", "alert", now=0.0)
    try:
        slot.beat()
        gap = heartbeat_gap_during(slot, lambda: sender.send_due(1.0))
    finally:
        table.close()
    assert script.calls["Terminate"] == 1 and not sender.modem.connected
    assert gap < 0.3  # beats every 0.02 s; a close outside the heartbeat's cover: 1.5 s without


@pytest.mark.parametrize(("checks_without_network", "texted"), [(3, True), (1, False)], ids=["long", "short"])
def test_a_lost_network_is_noticed_while_idle_and_a_long_loss_is_texted_once_it_is_back(
    tmp_path, checks_without_network, texted
):
    """Nothing to send, so only the periodic check can notice; a loss of at least NETWORK_TEXT_AFTER
    is reported when the network is back, a short one only logged."""
    every = 300.0
    steps = {"GetNetworkInfo": [None] + [Returns({"State": "NoNetwork"})] * checks_without_network}
    _, script, outbox, sender = setup(tmp_path, steps, **{"modem.network_check": every})
    now = SHOT_TIME
    sender.watch_network(now)  # connected, registered
    assert sender.modem.connected and sender.down_since is None
    for _ in range(checks_without_network):
        now += every
        sender.watch_network(now)
        assert not sender.modem.connected and sender.down_since == SHOT_TIME + every
    assert outbox.pending_count() == 0
    now += every
    sender.watch_network(now)  # reconnects: registered again
    assert sender.down_since is None and script.calls["GetNetworkInfo"] == checks_without_network + 2
    health = [row for row in outbox.rows() if row.kind == "health"]
    if not texted:
        assert health == []
        return
    assert {row.recipient for row in health} == set(NUMBERS)
    assert health[0].text == (
        "North gate: the modem had no mobile network from 14:08 to 14:23 EAT; texts were delayed."
        + clock_note(clock_synchronised())
    )
    assert sender.send_due(now) == len(NUMBERS)
    assert [text for _, text in sent_texts(tmp_path)] == [health[0].text] * len(NUMBERS)


def test_a_blocked_modem_call_keeps_the_heartbeat_until_its_limit(monkeypatch):
    """The heartbeat goes on while a call blocks (with the GIL released, as Gammu's do), renewed by
    each part sent, and stops once the call has blocked longer than it ever should."""
    monkeypatch.setattr(metrics, "BLOCKED_BEAT_EVERY", 0.02)
    table = StatsTable.create(f"gs-{own_run_id()}-stats", ("sms",))
    slot = table.slot("sms")
    try:
        with metrics.BlockedCall(slot, limit=2.0) as call:
            time.sleep(1.5)
            call.renew()
            time.sleep(1.5)
            assert time.monotonic() - slot.get("heartbeat") < 0.5  # 3 s blocked, renewed at 1.5 s
            time.sleep(2.5)
            assert time.monotonic() - slot.get("heartbeat") > 1.0  # 2 s past the limit: beats stopped
            call.renew()  # a part accepted after all: beats again
            time.sleep(0.5)
            assert time.monotonic() - slot.get("heartbeat") < 0.4
    finally:
        table.close()
