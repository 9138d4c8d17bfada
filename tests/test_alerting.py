import multiprocessing
import time
import uuid

import gammu
import pytest

from alerting.compose import EventAlert, alert_text, queue_event_alert, release_summaries
from alerting.modem import Modem, ModemError, encode_parts
from alerting.outbox import REPEAT_PREFIX, Outbox, outbox_path
from alerting.phone import PhoneNumberError, validate_e164
from alerting.sender import Sender, check_modem, run_sender
from pipeline.channel import Channel
from pipeline.config import Config, override
from pipeline.layout import Layout
from pipeline.messages import OutboxChanged
from pipeline.metrics import StatsTable
from tests.gammu_env import FakeModem, FlakyStateMachine, dummy_gammurc

NUMBERS = ["+447700900123", "+12025550143"]
DEADLINE = 30.0


def config_for(tmp_path, **changes):
    base = {
        "storage.data_dir": str(tmp_path / "data"),
        "modem.gammurc": str(dummy_gammurc(tmp_path)),
        "alerts.recipients": NUMBERS,
        "modem.retry_initial": 1.0,
        "modem.retry_max": 8.0,
    }
    return override(Config(), {**base, **changes})


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "+",
        "abc+1",
        "07700900123",
        "+44 7700 900123",
        "+44-7700-900123",
        "+0447700900123",
        "+4477",
        "+1234567890123456",
        "447700900123",
        447700900123,
    ],
)
def test_wrong_phone_numbers_are_refused_clearly(bad):
    with pytest.raises(PhoneNumberError, match=r"E\.164|not a phone number"):
        validate_e164(bad)


@pytest.mark.parametrize("good", [*NUMBERS, "+254712345678"])
def test_good_phone_numbers_pass(good):
    assert validate_e164(good) == good


def test_long_and_unicode_texts_split_into_parts_only_as_needed():
    assert len(encode_parts(NUMBERS[0], "short text")) == 1
    assert len(encode_parts(NUMBERS[0], "x" * 400)) == 3  # 153 GSM-7 characters per part
    unicode_parts = encode_parts(NUMBERS[0], "Kenya Ndovu – Séréna ☂ " * 5)
    assert len(unicode_parts) == 2  # 67 UCS-2 characters per part
    assert all(part["Number"] == NUMBERS[0] for part in unicode_parts)


def test_alert_text_names_the_site_and_local_time(tmp_path):
    config = config_for(tmp_path, **{"site.name": "Ndovu ☂", "site.timezone": "Africa/Nairobi"})
    text = alert_text(config, EventAlert(1, 1_800_000_000.0, 0.87, degraded=True))
    assert text.startswith("Ndovu ☂: possible gunshot at 2027-01-15 11:00:00 EAT (confidence 87%).")
    assert "degraded" in text


def test_dummy_phone_sends_long_unicode_text(tmp_path):
    config = config_for(tmp_path)
    modem = Modem(config.modem)
    modem.connect()
    try:
        assert len(modem.send_text(NUMBERS[0], "Séréna ☂ " * 30)) == 5
    finally:
        modem.terminate()
    log = (tmp_path / "gammu.log").read_text(errors="replace")
    assert log.count(f'Recipient number "{NUMBERS[0]}"') == 5


def sender_with(config, machine):
    outbox = Outbox(outbox_path(config.storage.data_dir))
    return Sender(config, outbox, FakeModem(config.modem, machine)), outbox


def test_outbox_row_is_written_before_sending_and_kept_while_the_modem_fails(tmp_path):
    config = config_for(tmp_path)
    machine = FlakyStateMachine(faults=[gammu.ERR_NOTCONNECTED])
    sender, outbox = sender_with(config, machine)
    queue_event_alert(outbox, config, EventAlert(1, time.time(), 0.9, False), now=100.0)
    assert outbox.pending_count() == 2
    assert sender.send_due(100.0) == 0  # the modem says not connected
    assert outbox.pending_count() == 2
    assert sender.send_due(100.5) == 0  # backing off: no attempt yet
    assert sender.send_due(110.0) == 2
    assert outbox.pending_count() == 0
    rows = outbox.rows()
    assert [r.repeat for r in rows] == [True, False]  # not-connected mid-send: fate unknown
    assert machine.sent[0]["Number"] == NUMBERS[0]


def test_timeout_after_submit_resends_marked_as_repeat(tmp_path):
    config = config_for(tmp_path, **{"alerts.recipients": NUMBERS[:1]})
    machine = FlakyStateMachine(faults=[gammu.ERR_TIMEOUT])
    sender, outbox = sender_with(config, machine)
    queue_event_alert(outbox, config, EventAlert(1, time.time(), 0.9, False), now=0.0)
    sender.send_due(0.0)
    sender.send_due(100.0)
    (row,) = outbox.rows()
    assert row.state == "sent" and row.repeat
    assert machine.sent[-1]["Text"].startswith(REPEAT_PREFIX)


def test_init_failure_is_retried_until_the_modem_comes_back(tmp_path):
    config = config_for(tmp_path, **{"alerts.recipients": NUMBERS[:1]})
    machine = FlakyStateMachine(faults=[], init_faults=[gammu.ERR_DEVICENOTEXIST, gammu.ERR_NOSERVICE])
    sender, outbox = sender_with(config, machine)
    queue_event_alert(outbox, config, EventAlert(1, time.time(), 0.9, False), now=0.0)
    assert sender.send_due(0.0) == 0
    assert "not found" in sender.failing
    assert sender.send_due(100.0) == 0
    assert sender.send_due(200.0) == 1
    assert not outbox.rows()[0].repeat  # never submitted before: not a repeat


def test_a_restart_mid_send_loses_nothing_and_keeps_order(tmp_path):
    config = config_for(tmp_path, **{"alerts.recipients": NUMBERS[:1]})
    outbox = Outbox(outbox_path(config.storage.data_dir))
    for event_id in (1, 2, 3):
        queue_event_alert(outbox, config, EventAlert(event_id, time.time(), 0.9, False), now=float(event_id))
    first = outbox.due(10.0)[0]
    outbox.mark_sending(first.id)  # ... and the process dies here
    outbox.close()
    reopened = Outbox(outbox_path(config.storage.data_dir))
    assert reopened.recover() == 1
    machine = FlakyStateMachine(faults=[])
    sender = Sender(config, reopened, FakeModem(config.modem, machine))
    for _ in range(3):
        sender.send_due(20.0)
    assert [r.state for r in reopened.rows()] == ["sent"] * 3
    assert [r.repeat for r in reopened.rows()] == [True, False, False]
    assert len(machine.sent) == 3


def test_a_flood_becomes_alerts_up_to_the_limit_then_summaries(tmp_path):
    config = config_for(tmp_path, **{"alerts.recipients": NUMBERS[:1], "alerts.max_per_hour": 5})
    outbox = Outbox(outbox_path(config.storage.data_dir))
    start = 1_800_000_000.0
    for i in range(30):
        queue_event_alert(outbox, config, EventAlert(i, start + 2 * i, 0.9, False), now=start + 2 * i)
    assert sum(r.kind == "alert" for r in outbox.rows()) == 5
    release_summaries(outbox, config, now=start + 60)
    summaries = [r for r in outbox.rows() if r.kind == "summary"]
    assert len(summaries) == 1 and "25 more possible gunshots" in summaries[0].text
    assert not outbox.held()


def _run_sender(config, layout, stop):
    run_sender(config, layout, stop)


def test_sender_process_sends_with_the_dummy_phone_and_stops_cleanly(tmp_path):
    config = config_for(tmp_path)
    context = multiprocessing.get_context("forkserver")
    stats = StatsTable.create(f"gs-test{uuid.uuid4().hex[:6]}-stats", ("sms",))
    layout = Layout("t", "", stats.segment_name, ("sms",), outbox=Channel("outbox"))
    stop = context.Event()
    outbox = Outbox(outbox_path(config.storage.data_dir))
    queue_event_alert(outbox, config, EventAlert(1, time.time(), 0.9, False), now=time.time())
    process = context.Process(target=_run_sender, args=(config, layout, stop))
    process.start()
    try:
        layout.outbox.send(OutboxChanged())
        deadline = time.monotonic() + DEADLINE
        while outbox.pending_count() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert outbox.pending_count() == 0
        stop.set()
        process.join(DEADLINE)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
        stats.close()


def test_check_modem_identifies_the_dummy_and_sends_a_test_text(tmp_path):
    config = config_for(tmp_path)
    report = check_modem(config, NUMBERS[0])
    assert report["manufacturer"] == "Gammu"
    assert report["imei"] == "999999999999999"
    assert "sent to" in report["test text"]


def test_missing_modem_gives_a_clear_error(tmp_path):
    config = override(
        Config(), {"modem.device": str(tmp_path / "no-such-tty"), "modem.connection": "none", "modem.model": "dummy"}
    )
    with pytest.raises(ModemError, match=r"cannot be opened|not found"):
        check_modem(config, None)


def test_the_sender_sleeps_until_the_next_text_is_due(tmp_path):
    config = config_for(tmp_path, **{"alerts.recipients": NUMBERS[:1]})
    sender, outbox = sender_with(config, FlakyStateMachine(faults=[gammu.ERR_TIMEOUT]))
    assert sender.wait_time(now=0.0) == 5.0  # nothing to send: the idle poll
    queue_event_alert(outbox, config, EventAlert(1, 0.0, 0.9, False), now=100.0)
    queue_event_alert(outbox, config, EventAlert(2, 0.0, 0.9, False), now=101.0)
    assert sender.wait_time(now=99.0) == pytest.approx(1.0)
    sender.send_due(100.0)  # times out: the first text is retried after a backoff of about 1 s
    wait = sender.wait_time(now=100.0)
    assert 0.7 <= wait <= 1.3  # not 0, though the second text was queued at 101 and is "older" than now
