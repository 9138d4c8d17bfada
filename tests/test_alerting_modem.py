"""The modem layer on python-gammu's dummy phone (real Init, EncodeSMS, SendSMS, Gammu's own log),
with faults the dummy cannot make injected around it as python-gammu's own exception classes."""

import fcntl
import functools
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import gammu
import pytest

from alerting import faults, modem_check
from alerting import modem as modem_module
from alerting.encoding import CUT_MARK, SMSEncodingError, cut_to_fit, encode_parts, text_parts
from alerting.faults import ModemError, translate
from alerting.modem import Modem
from alerting.outbox import REPEAT_PREFIX, Outbox, outbox_path
from alerting.pin_record import RECORD_FILE, PinRecord
from alerting.sender import check_modem
from pipeline.config import Config, ModemConfig, override
from tests import at_modem
from tests.gammu_env import dummy_gammurc
from tests.other_user import as_nobody, needs_root, open_folder
from tests.test_alerting_support import (
    DEADLINE,
    NUMBERS,
    After,
    FaultScript,
    Hang,
    Returns,
    config_for,
    gammu_error,
    sent_parts,
    sent_texts,
    wait_until,
)

A, B = NUMBERS
SITE = "Kenya Ndovu – Séréna ☂"


def connected_modem(config, script=None):
    modem = Modem(config.modem, machine_factory=script.machine if script else None)
    modem.connect()
    return modem


def test_the_dummy_phone_takes_long_and_unicode_texts_in_the_right_parts(tmp_path):
    config = config_for(tmp_path)
    long_text = "North gate: " + "possible gunshot. " * 20  # 372 GSM-7 characters: 3 parts
    unicode_text = f"{SITE}: possible gunshot at 2026-11-25 14:03:07 EAT (confidence 87%)."  # 2 UCS-2 parts
    modem = connected_modem(config)
    try:
        assert modem.send_text(A, long_text) == [255, 255, 255]  # the dummy's reference
        assert len(modem.send_text(B, unicode_text)) == 2
        assert len(modem.send_text(A, "Séréna € [ok]")) == 1  # GSM-7 with extension characters
    finally:
        modem.terminate()
    parts = sent_parts(tmp_path)
    assert [(p.recipient, p.total) for p in parts] == [(A, 3)] * 3 + [(B, 2)] * 2 + [(A, 1)]
    assert sent_texts(tmp_path) == [(A, long_text), (B, unicode_text), (A, "Séréna € [ok]")]
    log = (tmp_path / "gammu.log").read_text(encoding="utf-8")
    assert log.count("Unicode SMS") == 2 and log.count("7 bit SMS") == 4


def test_typographic_characters_go_as_gsm7_look_alikes_and_a_text_needing_ucs2_as_it_is(tmp_path):
    """A site name typed in a word processor ("Farmer’s dam – east") made every text UCS-2: an
    alert 2 parts, a health text 3, silently. Curly quotes, dashes, odd spaces and the ellipsis now
    go as their GSM-7 look-alikes; a text with a character GSM-7 has no form of (Amharic) still goes
    as UCS-2, as written."""
    config = config_for(tmp_path)
    typed = "Farmer’s dam – east: possible gunshot at 2026-11-25 14:03:07 EAT (confidence 87%). “Check”…"
    sent = 'Farmer\'s dam - east: possible gunshot at 2026-11-25 14:03:07 EAT (confidence 87%). "Check"...'
    amharic = "ዋሻ ’gate’: possible gunshot"
    modem = connected_modem(config)
    try:
        assert len(modem.send_text(A, typed)) == 1  # 96 characters: 2 parts as UCS-2
        assert len(modem.send_text(B, amharic)) == 1
    finally:
        modem.terminate()
    assert sent_texts(tmp_path) == [(A, sent), (B, amharic)]
    log = (tmp_path / "gammu.log").read_text(encoding="utf-8")
    assert log.count("7 bit SMS") == 1 and log.count("Unicode SMS") == 1
    assert len(text_parts("–" * 7650)) == 50  # 50 GSM-7 parts; as UCS-2, past Gammu's 50
    assert cut_to_fit("—" * 8000) == "—" * 7642 + CUT_MARK  # [ and ] take 2 septets each


def test_identify_reports_the_dummy_phone(tmp_path):
    modem = connected_modem(config_for(tmp_path))
    try:
        report = modem.identify()
    finally:
        modem.terminate()
    assert report["manufacturer"] == "Gammu" and report["model"] == "Dummy"
    assert report["imei"] == "999999999999999"
    assert report["sim"] == "ready"
    assert report["network"] == "HomeNetwork GammuT3l 999 99"
    assert report["signal"] == "42%"
    assert report["sms centre"] == "123456 (from the SIM)"
    assert report["firmware"] and report["modem clock"]


def test_a_missing_modem_device_says_so_not_no_permission(tmp_path):
    device = tmp_path / "ttyUSB0"
    config = override(Config(), {"modem.device": str(device), "modem.connection": "none", "modem.model": "dummy"})
    modem = Modem(config.modem)
    with pytest.raises(ModemError) as missing:
        modem.connect()  # Gammu's dummy driver says ERR_DEVICENOPERMISSION here
    message = str(missing.value)
    assert message.startswith(f"modem device {device} not found: is the modem plugged in? see ls /dev/serial/by-id")
    assert "permission" not in message
    assert missing.value.retryable and not modem.connected
    device.mkdir()  # plugged in
    modem.connect()
    assert modem.connected
    modem.terminate()


@needs_root
def test_a_modem_device_this_user_may_not_open_names_the_user_and_a_restart():
    """As nobody (root may open any device): the hint names the detector's user, not `$USER`
    (the admin's own account where the fix is typed), and a restart: a service has no login."""
    with open_folder() as folder:
        device = folder / "ttyUSB0"
        device.touch()
        device.chmod(0o600)  # as root:dialout 0660 is to a user outside dialout
        error = gammu.ERR_DEVICENOPERMISSION({"Text": "no permission", "Where": "Init", "Code": 0})
        message = as_nobody(lambda: str(translate(error, "modem start", str(device))))
    assert message.startswith(
        f"modem device {device} exists but cannot be opened by this user (nobody): add it to the dialout group "
        "(sudo usermod -aG dialout nobody), then restart the detector (or log in again) (ERR_DEVICENOPERMISSION"
    )


def test_a_missing_gammu_config_file_is_named(tmp_path):
    config = override(Config(), {"modem.gammurc": str(tmp_path / "nowhere.rc")})
    with pytest.raises(ModemError, match=r"Gammu config file .*nowhere\.rc does not exist") as missing:
        Modem(config.modem).connect()
    assert not missing.value.retryable


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("", "is empty or not a Gammu config"),  # ERR_FILENOTSUPPORTED: "File format not supported by Gammu"
        ("device = /dev/ttyUSB0\nconnection = at\n", "is empty or not a Gammu config"),  # no section line
        ("[modem]\ndevice = /dev/ttyUSB0\nconnection = at\n", "has no [gammu] section"),  # ERR_USING_DEFAULTS
        ("[gammu1]\ndevice = /dev/ttyUSB0\nconnection = at\n", "has no [gammu] section"),
    ],
)
def test_a_gammu_config_file_gammu_cannot_use_is_named_with_what_it_needs(tmp_path, content, says):
    rc = tmp_path / "gammurc"
    rc.write_text(content)
    with pytest.raises(ModemError) as unusable:
        Modem(override(Config(), {"modem.gammurc": str(rc)}).modem).connect()
    message = str(unusable.value)
    assert message.startswith(f"the Gammu config file (modem.gammurc) {says}")
    assert "[gammu] line, then e.g. device = /dev/ttyUSB0 and connection = at" in message
    assert f"during reading {rc}:" in message
    assert not unusable.value.retryable  # it will not mend itself: retried at the longest backoff


def test_invalid_data_on_a_send_points_at_the_sms_centre_and_the_recipient(tmp_path):
    """The dummy phone refuses an SMS centre number written with spaces (validate() refuses it in the
    config; the SIM's own may be as bad)."""
    modem = Modem(ModemConfig(gammurc=str(dummy_gammurc(tmp_path)), smsc="+44 7785 016005"))
    modem.connect()
    try:
        with pytest.raises(ModemError) as refused:
            modem.send_text(A, "hello")
    finally:
        modem.terminate()
    message = str(refused.value)
    assert "check modem.smsc" in message and "and the recipient number" in message
    assert "ERR_INVALIDDATA during sending part 1 of 1" in message
    assert not (refused.value.retryable or refused.value.modem_down)


def test_a_text_past_gammus_50_parts_goes_cut_to_fit_not_a_crash(tmp_path, caplog):
    """EncodeSMS makes at most 50 parts: 7650 GSM-7 characters, or 50 x 67 UCS-2 ones. A text of
    exactly 50 parts goes as it is, but not again as a repeat: no modem and no retry can send a
    longer one, so what fits goes, marked as cut (held back, it held up every later text to the
    number too); never an exception out of the send path."""
    modem = connected_modem(config_for(tmp_path))
    too_long = ("x" * 7651, REPEAT_PREFIX + "x" * 7650, "ж" * 3351, "😀" * 1676)
    try:
        assert len(modem.send_text(A, "x" * 7650)) == 50
        assert len(modem.send_text(B, "ж" * 3350)) == 50
        for text in too_long:
            assert len(modem.send_text(A, text)) == 50
        assert modem.connected
    finally:
        modem.terminate()
    cut = [text for _, text in sent_texts(tmp_path)[2:]]
    for text, sent in zip(too_long, cut, strict=True):
        kept = sent.removesuffix(CUT_MARK)
        assert sent.endswith(CUT_MARK) and text.startswith(kept)
        with pytest.raises(SMSEncodingError):  # as much as fits: one character more does not
            text_parts(text[: len(kept) + 1] + CUT_MARK)
    warnings = [r.getMessage() for r in caplog.records if "is cut to" in r.getMessage()]
    assert len(warnings) == 4 and all("shorten them" in w and "at most 50 parts" in w for w in warnings)
    assert all(w.startswith("the text to +44*******123 is cut to ") for w in warnings)  # the number masked


def test_the_pin_is_entered_when_the_sim_asks(tmp_path):
    config = config_for(tmp_path, **{"modem.pin": "1234"})
    script = FaultScript(tmp_path, {"GetSecurityStatus": [Returns("PIN"), Returns(None)]})
    modem = connected_modem(config, script)
    modem.terminate()
    assert script.calls["EnterSecurityCode"] == 1
    operations = (tmp_path / "phone" / "operations.log").read_text()
    assert "Security code 2: 1234" in operations  # the dummy's record of the PIN it was given


def test_a_refused_pin_is_never_tried_again(tmp_path):
    config = config_for(tmp_path, **{"modem.pin": "0000"})
    script = FaultScript(
        tmp_path, {"GetSecurityStatus": [Returns("PIN")] * 3, "EnterSecurityCode": [gammu.ERR_SECURITYERROR]}
    )
    modem = Modem(config.modem, machine_factory=script.machine)
    for _ in range(2):
        with pytest.raises(ModemError, match="3 wrong PINs lock the SIM") as refused:
            modem.connect()
        assert not refused.value.retryable and not modem.connected
    assert script.calls["EnterSecurityCode"] == 1


@pytest.mark.parametrize(
    ("status", "says"), [("PIN", "set modem.pin"), ("Pin", "set modem.pin"), ("PUK", "asks for its PUK")]
)
def test_a_locked_sim_without_a_usable_pin_says_what_to_do(tmp_path, status, says):
    script = FaultScript(tmp_path, {"GetSecurityStatus": [Returns(status)]})
    with pytest.raises(ModemError, match=says):
        connected_modem(config_for(tmp_path), script)
    assert script.calls["EnterSecurityCode"] == 0


def test_no_network_is_reported_with_its_state_and_signal(tmp_path):
    script = FaultScript(tmp_path, {"GetNetworkInfo": [Returns({"State": "NoNetwork"})]})
    modem = connected_modem(config_for(tmp_path), script)
    try:
        with pytest.raises(ModemError, match=r"no mobile network \(the modem reports NoNetwork, signal 42%\)"):
            modem.check_network()
        modem.check_network()  # registered again
    finally:
        modem.terminate()


@pytest.mark.parametrize(
    ("steps", "maybe_sent", "modem_down", "retryable"),
    [
        ([gammu.ERR_TIMEOUT], True, True, True),  # no answer: the part may have gone
        ([After(gammu.ERR_TIMEOUT)], True, True, True),  # it did go (the dummy took it)
        ([gammu.ERR_NOTCONNECTED], True, True, True),
        ([gammu.ERR_DEVICEREADERROR], True, True, True),
        ([gammu.ERR_UNKNOWN], False, False, True),  # "+CMS ERROR": refused, not sent
        ([gammu.ERR_INVALIDDATA], False, False, False),
        ([gammu.ERR_NOSIM], False, True, True),  # may be "SIM busy": reconnect and retry
        ([gammu.ERR_EMPTYSMSC], False, False, False),  # set modem.smsc: a person must act
        ([gammu.ERR_DEVICEBUSY], False, True, True),
        ([None, gammu.ERR_UNKNOWN], True, False, True),  # part 1 went out, part 2 refused
    ],
)
def test_send_failures_are_classified(tmp_path, steps, maybe_sent, modem_down, retryable):
    script = FaultScript(tmp_path, {"SendSMS": list(steps)})
    modem = connected_modem(config_for(tmp_path), script)
    try:
        with pytest.raises(ModemError) as failed:
            modem.send_text(A, "x" * 200)  # two parts
    finally:
        modem.terminate()
    error = failed.value
    assert (error.maybe_sent, error.modem_down, error.retryable) == (maybe_sent, modem_down, retryable)
    assert error.code in str(error) and "during sending part" in str(error)


# Written out here, not taken from alerting.faults: a code dropped from its list there must fail.
ANSWER_LOST = (  # the part may have reached the network: a resend is marked [sent again]
    "ERR_TIMEOUT",
    "ERR_NOTCONNECTED",
    "ERR_DEVICEREADERROR",
    "ERR_DEVICEWRITEERROR",
    "ERR_DEVICENOTWORK",
    "ERR_UNKNOWNRESPONSE",
    "ERR_UNKNOWNFRAME",
    "ERR_FRAMENOTREQUESTED",
    "ERR_ABORTED",
)
REFUSED_BY_THE_MODEM = (  # not sent; the connection is fine, so texts to other numbers go on
    "ERR_UNKNOWN",
    "ERR_INVALIDDATA",
    "ERR_EMPTYSMSC",
    "ERR_GETTING_SMSC",
    "ERR_FULL",
    "ERR_MEMORY",
    "ERR_MOREMEMORY",
    "ERR_PHONE_INTERNAL",
    "ERR_NETWORK_ERROR",
)


@pytest.mark.parametrize(
    ("code", "maybe_sent", "modem_down"),
    [(code, True, True) for code in ANSWER_LOST] + [(code, False, False) for code in REFUSED_BY_THE_MODEM],
)
def test_every_send_error_gammu_can_give_has_its_fate(tmp_path, code, maybe_sent, modem_down):
    script = FaultScript(tmp_path, {"SendSMS": [getattr(gammu, code)]})
    modem = connected_modem(config_for(tmp_path), script)
    try:
        with pytest.raises(ModemError) as failed:
            modem.send_text(A, "hello")
    finally:
        modem.terminate()
    assert (failed.value.maybe_sent, failed.value.modem_down) == (maybe_sent, modem_down)


# --- cli.py test-modem --------------------------------------------------------------------------------
def test_test_modem_identifies_the_dummy_and_records_the_test_text(tmp_path):
    config = config_for(tmp_path)
    report = modem_check.test_modem(config, A)
    assert report["manufacturer"] == "Gammu" and report["sim"] == "ready"
    assert report["test text"].startswith(f"sent to {A} (outbox id 1,")
    outbox = Outbox(outbox_path(config.storage.data_dir))
    (row,) = outbox.rows()
    assert (row.kind, row.state, row.recipient, row.reference) == ("test", "sent", A, "255")
    assert sent_texts(tmp_path) == [(A, row.text)]
    assert row.text.startswith("North gate: test text from the gunshot detector, 20")


def test_test_modem_sends_earlier_waiting_texts_to_that_number_first(tmp_path):
    config = config_for(tmp_path)
    outbox = Outbox(outbox_path(config.storage.data_dir))
    waiting = outbox.enqueue(A, "an alert the stopped detector left", "alert", now=0.0)
    outbox.mark_sending(waiting)  # ... when it crashed
    other = outbox.enqueue(B, "not this number's", "alert", now=0.0)
    report = check_modem(config, A)  # the name cli.py uses
    assert "after 1 earlier waiting text" in report["test text"]
    assert sent_texts(tmp_path)[0][1] == "[sent again] an alert the stopped detector left"
    assert [r.state for r in outbox.rows()] == ["sent", "pending", "sent"]
    assert outbox.row(other).state == "pending"


def test_test_modem_without_a_modem_says_what_is_wrong(tmp_path):
    config = override(
        Config(),
        {
            "modem.device": str(tmp_path / "ttyUSB9"),
            "modem.connection": "none",
            "modem.model": "dummy",
            "storage.data_dir": str(tmp_path / "data"),
        },
    )
    with pytest.raises(ModemError, match=r"ttyUSB9 not found: is the modem plugged in\?"):
        modem_check.test_modem(config, None)
    with pytest.raises(ModemError, match="not found"):
        modem_check.test_modem(config, A)
    assert Outbox(outbox_path(tmp_path / "data")).rows() == []  # failed at connect: nothing queued


def test_test_modem_refuses_while_the_detector_runs(tmp_path):
    config = config_for(tmp_path)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    fd = os.open(data_dir / modem_check.DETECTOR_LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what the supervisor holds while it runs
        with pytest.raises(ModemError, match="the detector is running on data folder"):
            modem_check.test_modem(config, A)
    finally:
        os.close(fd)
    assert not sent_parts(tmp_path)


def test_the_lock_file_is_the_supervisors():
    from pipeline.supervisor import LOCK_FILE

    assert modem_check.DETECTOR_LOCK == LOCK_FILE


def test_a_busy_port_names_modemmanager_when_it_runs(tmp_path):
    """A real process named ModemManager (a copy of sleep under that name) on this machine."""
    assert not faults.modemmanager_running()
    impostor = tmp_path / "ModemManager"
    shutil.copy(shutil.which("sleep"), impostor)
    process = subprocess.Popen([str(impostor), "30"])
    try:
        wait_until(faults.modemmanager_running, "ModemManager in /proc")
        error = faults.translate(gammu_error(gammu.ERR_DEVICEBUSY, "Init"), "connect", "/dev/ttyUSB0")
        assert "ModemManager is running" in str(error) and "systemctl disable --now ModemManager" in str(error)
    finally:
        process.kill()
        process.wait()
    assert "ModemManager is running" not in str(faults.translate(gammu_error(gammu.ERR_DEVICEBUSY, "Init"), "x"))


@pytest.fixture
def at_modem_with_pin(tmp_path):
    """A modem on Gammu's real AT driver whose SIM asks for PIN 1234."""
    process = at_modem.start(tmp_path, pin="1234")
    yield tmp_path / "at-modem.log"
    process.kill()
    process.wait()


def at_config(tmp_path, pin: str):
    return config_for(
        tmp_path, **{"modem.gammurc": str(at_modem.gammurc(tmp_path)), "modem.pin": pin, "modem.smsc": "+447785016005"}
    )


def test_a_sim_asking_for_its_pin_is_unlocked_with_modem_pin_and_sends(tmp_path, at_modem_with_pin):
    config = at_config(tmp_path, "1234")
    modem = Modem(config.modem, data_dir=tmp_path / "data")
    modem.connect()
    try:
        assert modem.send_text(NUMBERS[0], "test") == [1]
    finally:
        modem.terminate()
    assert at_modem_with_pin.read_text().count("PIN attempt") == 1


def test_a_refused_pin_is_not_entered_again_after_a_restart_until_it_is_changed(tmp_path, at_modem_with_pin):
    for _ in range(2):  # the SMS process restarted (or test-modem run): a new Modem each time
        modem = Modem(at_config(tmp_path, "0000").modem, data_dir=tmp_path / "data")
        with pytest.raises(ModemError, match="3 wrong PINs lock the SIM") as refused:
            modem.connect()
        assert refused.value.code == faults.PIN_REFUSED and not modem.connected
    assert at_modem_with_pin.read_text().count("PIN attempt") == 1
    modem = Modem(at_config(tmp_path, "1234").modem, data_dir=tmp_path / "data")
    modem.connect()
    modem.terminate()
    assert at_modem_with_pin.read_text().count("PIN attempt") == 2
    assert not (tmp_path / "data" / RECORD_FILE).exists()


def test_a_pin_entry_whose_outcome_is_unknown_is_tried_once_more_then_never(tmp_path):
    """A timeout while entering the PIN is no proof it was wrong, nor that the SIM did not count it:
    entered once more (also after a restart), never a third time, which leaves the SIM a try for a
    person. The state is recorded before the PIN goes out, so a failing re-check loses nothing."""
    config = config_for(tmp_path, **{"modem.pin": "1234"})
    statuses = [Returns("PIN"), gammu.ERR_TIMEOUT, Returns("PIN"), Returns("PIN"), Returns("PIN")]
    script = FaultScript(tmp_path, {"GetSecurityStatus": statuses, "EnterSecurityCode": [gammu.ERR_TIMEOUT] * 2})
    says = ["SIM check", "refused before|3 wrong PINs lock the SIM", "refused before"]
    retryable = [True, False, False]
    for message, may_retry in zip(says, retryable, strict=True):
        modem = Modem(config.modem, machine_factory=script.machine, data_dir=tmp_path / "data")  # a restart
        with pytest.raises(ModemError, match=message) as failed:
            modem.connect()
        assert failed.value.retryable == may_retry
    assert script.calls["EnterSecurityCode"] == 2


def test_an_unreadable_refusal_record_is_a_clear_error_and_no_pin_is_entered(tmp_path):
    config = config_for(tmp_path, **{"modem.pin": "1234"})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / RECORD_FILE).write_text("half a record")
    script = FaultScript(tmp_path, {"GetSecurityStatus": [Returns("PIN")]})
    with pytest.raises(ModemError, match=f"cannot read .*{RECORD_FILE}.*delete it") as unreadable:
        Modem(config.modem, machine_factory=script.machine, data_dir=tmp_path / "data").connect()
    assert unreadable.value.code == faults.PIN_REFUSED and not unreadable.value.retryable
    assert script.calls["EnterSecurityCode"] == 0


def test_a_gammurc_s_own_connection_and_device_are_the_ones_its_errors_name(tmp_path):
    """The settings in force are the gammurc's, not the config's unused `modem.connection`/`device`."""
    rc = dummy_gammurc(tmp_path)
    rc.write_text(rc.read_text().replace("connection = none", "connection = bogus"))
    modem = Modem(override(Config(), {"modem.gammurc": str(rc)}).modem)
    with pytest.raises(ModemError, match="unknown Gammu connection 'bogus'") as error:
        modem.connect()
    assert str(tmp_path / "phone") == modem.device
    assert "'at'" not in str(error.value)


def test_a_roaming_modem_that_cannot_report_its_sim_or_network_still_sends(tmp_path):
    """Many IoT SIMs roam, and some modems answer neither the SIM nor the network question: that is
    no reason to hold an alert back."""
    script = FaultScript(
        tmp_path,
        {
            "GetSecurityStatus": [gammu.ERR_NOTSUPPORTED],
            "GetNetworkInfo": [gammu.ERR_NOTIMPLEMENTED, Returns({"State": "RoamingNetwork"})],
        },
    )
    modem = connected_modem(config_for(tmp_path), script)
    try:
        modem.check_network()  # cannot tell
        modem.check_network()  # roaming
        assert modem.send_text(A, "hello") == [255]
    finally:
        modem.terminate()
    assert sent_texts(tmp_path) == [(A, "hello")]


def test_each_part_sent_is_reported_so_a_long_text_keeps_the_heartbeat(tmp_path):
    parts = []
    modem = connected_modem(config_for(tmp_path))
    try:
        modem.send_text(A, "possible gunshot. " * 20, on_part=lambda: parts.append(len(sent_parts(tmp_path))))
    finally:
        modem.terminate()
    assert parts == [1, 2, 3]


def test_texts_leave_as_ordinary_messages_not_flash_ones_that_phones_do_not_keep(tmp_path):
    for part in encode_parts(A, "North gate: possible gunshot. " * 8):
        assert gammu.DecodePDU(gammu.EncodePDU(part), SMSC=True)["Class"] == -1


TEST_MODEM_DEADLINE = 60.0


def test_test_modem_says_when_the_modem_refuses_the_test_text(tmp_path, monkeypatch):
    script = FaultScript(tmp_path, {"SendSMS": [gammu.ERR_UNKNOWN]})
    monkeypatch.setattr(modem_check, "Modem", functools.partial(Modem, machine_factory=script.machine))
    outcome: list = []

    def run() -> None:
        try:
            modem_check.test_modem(config_for(tmp_path), A)
        except ModemError as error:
            outcome.append(error)

    checking = threading.Thread(target=run, daemon=True)  # a loop that never ends fails, not hangs
    checking.start()
    checking.join(TEST_MODEM_DEADLINE)
    assert not checking.is_alive(), "test-modem did not return"
    assert "was not sent" in str(outcome[0]) and "stays in the outbox" in str(outcome[0])


def test_test_modem_sends_a_waiting_text_at_once_whatever_its_backoff(tmp_path):
    config = config_for(tmp_path)
    outbox = Outbox(outbox_path(config.storage.data_dir))
    waiting = outbox.enqueue(A, "an alert the modem refused", "alert", now=0.0)
    outbox.mark_sending(waiting)
    outbox.mark_retry(waiting, "refused", retry_at=1e12, maybe_sent=False)  # due in 30 000 years
    check_modem(config, A)
    assert sent_texts(tmp_path)[0] == (A, "an alert the modem refused")
    assert [r.state for r in outbox.rows()] == ["sent", "sent"]


def test_the_pin_record_is_readable_by_its_owner_only(tmp_path):
    """A salted hash of a 4-digit PIN is found by trying all 10 000: the file's mode is what keeps it."""
    record = PinRecord(tmp_path)
    record.refused("1234")
    assert stat.S_IMODE((tmp_path / RECORD_FILE).stat().st_mode) == 0o600


# --- a modem that does not answer -------------------------------------------------------------------
def test_a_connection_still_closing_is_not_opened_again_and_says_the_modem_does_not_answer(tmp_path, monkeypatch):
    """Closing a silent modem takes Gammu minutes (and holds the port): it goes on in the background,
    and connecting meanwhile says so, instead of Gammu's "cannot be opened ... used elsewhere"."""
    monkeypatch.setattr(modem_module, "CLOSE_WAIT", 0.1)
    script = FaultScript(tmp_path, {"Init": [gammu.ERR_TIMEOUT], "Terminate": [Hang(1.0)]})
    modem = Modem(config_for(tmp_path).modem, machine_factory=script.machine)
    with pytest.raises(ModemError, match=r"^the modem did not answer in time .*during modem start: injected"):
        modem.connect()  # back after CLOSE_WAIT, its machine still closing
    with pytest.raises(ModemError, match=rf"^the modem did not answer in time .*: {modem_module.STILL_CLOSING}"):
        modem.connect()
    assert script.calls["Init"] == 1 and not modem.connected  # the port was not tried
    monkeypatch.setattr(modem_module, "CLOSE_WAIT", DEADLINE)
    modem.connect()  # once closed, it is opened again
    modem.terminate()
    assert script.calls["Init"] == 2 and script.calls["Terminate"] == 2


def test_a_modem_that_does_not_answer_a_send_is_not_said_to_lack_an_sms_centre(tmp_path):
    """With modem.smsc empty, Gammu reads the SIM's SMS centre before a send and, when the modem does
    not answer, says it could not ("set modem.smsc"): the SMS centre is read first, so a timeout says so."""
    script = FaultScript(tmp_path, {"GetSMSC": [gammu.ERR_TIMEOUT]})
    modem = connected_modem(config_for(tmp_path), script)
    try:
        with pytest.raises(ModemError) as failed:
            modem.send_text(A, "hello")
        assert modem.send_text(A, "hello") == [255]  # the modem answers again
    finally:
        modem.terminate()
    error = failed.value
    assert str(error).startswith("the modem did not answer in time") and "modem.smsc" not in str(error)
    assert (error.code, error.modem_down, error.maybe_sent) == ("ERR_TIMEOUT", True, False)
    assert script.calls["SendSMS"] == 1 and script.calls["GetSMSC"] == 2  # read again, then kept


TEST_MODEM_ENDS = 25.0  # s: Gammu gives up on a silent modem's start after about 12 s, then CLOSE_WAIT
CTRL_C_ENDS = 2.0  # s


def test_test_modem_on_a_modem_that_does_not_answer_ends_after_saying_so_and_at_ctrl_c(tmp_path):
    """The command ended only once Gammu had closed the silent port, minutes later, even on Ctrl-C."""
    with at_modem.silent_terminal() as device:
        config = tmp_path / "config.toml"
        config.write_text(f'[modem]\ndevice = "{device}"\nconnection = "at"\n[storage]\ndata_dir = "{tmp_path}"\n')
        command = [sys.executable, "cli.py", "test-modem", "--config", str(config)]
        started = time.monotonic()
        result = subprocess.run(command, cwd=at_modem.ROOT, capture_output=True, text=True, timeout=TEST_MODEM_ENDS)
        took = time.monotonic() - started
        interrupted = subprocess.Popen(command, cwd=at_modem.ROOT, stderr=subprocess.DEVNULL)
        try:
            time.sleep(CTRL_C_ENDS)  # in Init, waiting for the modem
            interrupted.send_signal(signal.SIGINT)
            interrupted.wait(CTRL_C_ENDS)
        finally:
            interrupted.kill()
    assert result.returncode == 1 and "Error: the modem did not answer in time" in result.stderr, result.stderr
    assert took < TEST_MODEM_ENDS and interrupted.returncode == -signal.SIGINT
