"""Alerting without a modem: phone numbers, SMS parts (real gammu.EncodeSMS), alert and summary
texts, the SQLite outbox (real files) and the hourly limit."""

import multiprocessing
import sqlite3

import pytest

from alerting.clock import UNSYNCHRONISED_NOTE, clock_synchronised
from alerting.compose import (
    SUMMARY_INTERVAL,
    EventAlert,
    EventEnd,
    EventOngoing,
    alert_text,
    clock_note,
    end_text,
    network_back_text,
    queue_event_alert,
    queue_event_end,
    queue_event_ongoing,
    release_summaries,
    summary_text,
)
from alerting.encoding import encode_parts, is_gsm7
from alerting.outbox import LATE_AFTER, REPEAT_PREFIX, HeldEvent, Outbox, outbox_path
from alerting.phone import PhoneNumberError, masked, validate_e164
from pipeline.config import ConfigError
from pipeline.health import BACK_TEXT, SILENT_TEXT, HealthMonitor
from pipeline.metrics import StatsTable
from tests.conftest import own_run_id
from tests.test_alerting_support import NUMBERS, config_for

SHOT_TIME = 1_795_604_587.0  # 2026-11-25 14:03:07 EAT (11:03:07 UTC)
A, B = NUMBERS


# --- phone numbers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("", "no leading +"),
        ("+", "not a valid international number"),
        ("abc+1", "no leading +"),
        ("07700900123", "no leading +"),
        ("447700900123", "no leading +"),
        ("+44 7700 900123", "spaces or dashes"),
        (" +447700900123", "spaces or dashes"),
        ("+44-7700-900123", "spaces or dashes"),
        ("+0447700900123", "not a valid international number"),
        ("+4477", "not a valid international number"),
        ("+123456", "not a valid international number"),  # 6 digits: too short for any country
        ("+1234567890123456", "not a valid international number"),
        ("+44770090012x", "not a valid international number"),
        (447700900123, "not a phone number"),
        (None, "not a phone number"),
    ],
)
def test_wrong_phone_numbers_are_refused_clearly(bad, says):
    with pytest.raises(PhoneNumberError, match=says) as refused:
        validate_e164(bad)
    assert "+447700900123" in str(refused.value)  # every message shows the right form


@pytest.mark.parametrize("good", [*NUMBERS, "+254712345678", "+6834002", "+123456789012345"])  # Niue: 7 digits
def test_good_phone_numbers_pass(good):
    assert validate_e164(good) == good


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("+447700900111", "+44*******111"),
        ("+12025550143", "+12******143"),
        ("+6834002", "+68**002"),  # Niue: 7 digits
        ("+12345", "******"),  # too short to keep both ends (no E.164 number): none of it
    ],
)
def test_a_number_in_a_log_line_keeps_its_country_and_last_three_digits(number, shown):
    assert masked(number) == shown


def test_the_config_names_the_bad_recipient(tmp_path):
    with pytest.raises(ConfigError, match=r"alerts\.recipients\[1\]: '0712 345678' contains spaces"):
        config_for(tmp_path, **{"alerts.recipients": [A, "0712 345678"]})


# --- SMS parts --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "parts", "unicode"),
    [
        ("short text", 1, False),
        ("x" * 160, 1, False),  # one GSM-7 part holds 160 characters
        ("x" * 161, 2, False),  # split parts hold 153
        ("x" * 400, 3, False),
        ("Séréna € [ok] {1}", 1, False),  # é is GSM-7; € [ ] { } are its extension table
        ("€" * 80, 1, False),  # extension characters cost two septets
        ("€" * 81, 2, False),
        ("Kenya Ndovu – Séréna ☂", 1, True),  # the en dash and the umbrella are not GSM-7
        ("☂" * 70, 1, True),  # one UCS-2 part holds 70 characters
        ("☂" * 71, 2, True),  # split parts hold 67
        ("Kenya Ndovu – Séréna ☂: possible gunshot at 2026-11-25 14:03:07 EAT (confidence 87%).", 2, True),
    ],
)
def test_texts_split_into_parts_and_use_unicode_only_when_needed(text, parts, unicode):
    encoded = encode_parts(A, text)
    assert len(encoded) == parts
    coding = "Unicode_No_Compression" if unicode else "Default_No_Compression"
    assert {part["Coding"] for part in encoded} == {coding}
    assert is_gsm7(text) is not unicode
    assert "".join(part["Text"] for part in encoded) == text
    assert all(part["Number"] == A and part["SMSC"] == {"Location": 1} for part in encoded)


def test_a_configured_sms_centre_replaces_the_sims():
    (part,) = encode_parts(A, "hello", smsc="+447700900999")
    assert part["SMSC"] == {"Number": "+447700900999"}


def test_parts_are_never_made_for_a_malformed_number():
    with pytest.raises(PhoneNumberError):
        encode_parts("abc+1", "hello")  # the dummy phone would take it; a real network would not


# --- texts ------------------------------------------------------------------------------------------
def test_alert_text_names_the_site_and_local_time_and_confidence_only_when_asked(tmp_path):
    config = config_for(tmp_path, **{"site.name": "Kenya Ndovu – Séréna ☂"})
    alert = EventAlert(1, SHOT_TIME, 0.87, degraded=False)
    assert alert_text(config, alert) == "Kenya Ndovu – Séréna ☂: possible gunshot at 2026-11-25 14:03:07 EAT."
    degraded = alert_text(config, EventAlert(1, SHOT_TIME, 0.87, degraded=True))
    assert degraded.endswith("14:03:07 EAT. Detector degraded: not all models are running.")
    unsynchronised = alert_text(config, EventAlert(1, SHOT_TIME, 0.87, degraded=False, clock_synchronised=False))
    assert unsynchronised.endswith("14:03:07 EAT. Time unverified: clock not synced.")
    asked = config_for(tmp_path, **{"alerts.template": "{site}: possible gunshot at {time} (confidence {confidence})."})
    assert alert_text(asked, alert).endswith("14:03:07 EAT (confidence 87%).")


def test_summary_text_gives_the_span_and_dates_only_when_needed(tmp_path):
    config = config_for(tmp_path, **{"alerts.max_per_hour": 5})
    events = [HeldEvent(i, A, i, SHOT_TIME + 60 * i, None) for i in range(7)]
    assert summary_text(config, events, SHOT_TIME + 3600) == (
        "North gate: 7 more possible gunfire incidents between 14:03 and 14:09 EAT (texts limited to 5/hour)."
    )
    assert summary_text(config, events[:1], SHOT_TIME) == (
        "North gate: 1 more possible gunfire incident at 14:03 EAT (texts limited to 5/hour)."
    )
    same_minute = [HeldEvent(i, A, i, SHOT_TIME + 10 * i, None) for i in range(3)]  # not "between 14:03 and 14:03"
    assert summary_text(config, same_minute, SHOT_TIME + 60) == (
        "North gate: 3 more possible gunfire incidents at 14:03 EAT (texts limited to 5/hour)."
    )
    late = summary_text(config, events, SHOT_TIME + 86400)  # sent the next day
    assert "between 2026-11-25 14:03 and 2026-11-25 14:09 EAT" in late
    unsynchronised = summary_text(config, events[:1], SHOT_TIME, synchronised=False)
    assert unsynchronised.endswith("(texts limited to 5/hour). Time unverified: clock not synced.")
    network = network_back_text(config, SHOT_TIME, SHOT_TIME + 3600, synchronised=False)
    assert network.endswith("texts were delayed. Time unverified: clock not synced.")


def test_a_span_across_the_hour_clocks_go_back_names_both_zones(tmp_path):
    """Europe/London, 2026-10-25: 01:50 BST and 01:10 GMT are 20 min apart; "between 01:50 and 01:10
    GMT" read backwards (clock audit). Events listed out of time order (a clock set back) still
    give the earliest first."""
    config = config_for(tmp_path, **{"site.timezone": "Europe/London", "alerts.max_per_hour": 5})
    bst, gmt = 1792889400.0, 1792890600.0  # 00:50 and 01:10 UTC
    events = [HeldEvent(2, A, 2, gmt, None), HeldEvent(1, A, 1, bst, None)]
    assert "incidents between 01:50 BST and 01:10 GMT (texts" in summary_text(config, events, gmt + 60)
    assert "from 01:50 BST to 01:10 GMT;" in network_back_text(config, bst, gmt)
    assert "heard at 01:50:00 BST went on until 01:10:00 GMT (20 min)." in end_text(config, EventEnd(1, bst, gmt))
    assert "between 01:10 and 01:20 GMT" in summary_text(
        config, [HeldEvent(1, A, 1, gmt, None), HeldEvent(2, A, 2, gmt + 600, None)], gmt + 900
    )


def test_texts_that_state_a_time_stay_one_part_with_the_clock_note(tmp_path):
    """Multi-part texts arrive less reliably: the note must not split the usual texts."""
    config = config_for(tmp_path, **{"alerts.max_per_hour": 5})  # site "North gate"
    events = [HeldEvent(i, A, i, SHOT_TIME + 60 * i, None) for i in range(7)]
    late = SHOT_TIME + 86400  # dates in the summary
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        monitor = HealthMonitor(config, stats.slot("capture"), started=0.0)
        health = [SILENT_TEXT, BACK_TEXT]
        texts = [
            alert_text(config, EventAlert(1, SHOT_TIME, 0.97, degraded=True, clock_synchronised=False)),
            summary_text(config, events, late, synchronised=False),
            network_back_text(config, SHOT_TIME, late, synchronised=False),
            *(
                t.format(site=config.site.name, since=monitor._local(SHOT_TIME), until=monitor._local(late))
                + clock_note(False)
                for t in health
            ),
        ]
    finally:
        stats.close()
    for text in texts:
        assert len(encode_parts(A, text, "")) == 1, f"{len(text)} characters: {text}"


# --- outbox -----------------------------------------------------------------------------------------
def open_outbox(tmp_path):
    return Outbox(outbox_path(tmp_path / "data"))


def committed_states(tmp_path):
    """What another process sees in the file now (proves the writes were committed)."""
    other = sqlite3.connect(outbox_path(tmp_path / "data"))
    try:
        return [tuple(r) for r in other.execute("SELECT id, state, attempts, repeat FROM texts ORDER BY id")]
    finally:
        other.close()


def test_texts_are_committed_before_any_send_and_survive_reopening(tmp_path):
    outbox = open_outbox(tmp_path)
    first = outbox.enqueue(A, "one", "alert", event_id=7, now=100.0)
    assert committed_states(tmp_path) == [(first, "pending", 0, 0)]
    outbox.mark_sending(first)  # what the sender does before asking the modem
    assert committed_states(tmp_path) == [(first, "sending", 1, 0)]
    outbox.close()
    reopened = open_outbox(tmp_path)
    assert reopened.recover() == 1  # a crash while sending: maybe sent
    (row,) = reopened.rows()
    assert (row.state, row.repeat, row.event_id, row.kind) == ("pending", True, 7, "alert")
    assert row.text_to_send(100.0) == REPEAT_PREFIX + "one"
    assert reopened.due(now=100.0) == [row]
    assert pragmas(tmp_path) == ("wal",)


@pytest.mark.parametrize(
    ("late", "prefix"),
    [
        (-3600.0, ""),  # the clock was set back after the event
        (LATE_AFTER, ""),
        (LATE_AFTER + 1, "[sent 1 min late] "),
        (287.0, "[sent 4 min late] "),
        (120 * 60 - 1, "[sent 119 min late] "),
        (120 * 60, "[sent 2 h late] "),
        (3 * 3600 + 3599, "[sent 3 h late] "),
        (30 * 86400, "[sent 720 h late] "),
    ],
)
def test_a_text_sent_over_a_minute_after_its_event_says_how_late(tmp_path, late, prefix):
    """A text handed to the modem long after its shot (no network, no modem) must not read as a fresh
    alert; the outbox keeps the text as written, the lateness is the send's."""
    outbox = open_outbox(tmp_path)
    alert_id = outbox.enqueue(A, "the alert", "alert", event_id=1, now=SHOT_TIME + 1, event_time=SHOT_TIME)
    health_id = outbox.enqueue(A, "the modem is back", "health", now=SHOT_TIME + 1)
    assert outbox.row(alert_id).text_to_send(SHOT_TIME + late) == prefix + "the alert"
    assert outbox.row(health_id).text_to_send(SHOT_TIME + late) == "the modem is back"  # no event
    outbox.mark_sending(alert_id)
    outbox.mark_retry(alert_id, "timeout", retry_at=SHOT_TIME + 5, maybe_sent=True)
    assert outbox.row(alert_id).text_to_send(SHOT_TIME + late) == REPEAT_PREFIX + prefix + "the alert"


def test_a_text_written_on_an_unverified_clock_is_not_called_late_once_the_clock_is_synchronised(tmp_path):
    """A Pi without RTC boots on a saved time; NTP steps it 3 days on before the modem is up: the
    stamps before and after the step cannot tell how late the alert is (it read "[sent 72 h late]"
    a minute after the shot). On a clock never synchronised (no internet at the site) they can."""
    outbox = open_outbox(tmp_path)
    text = "the alert" + UNSYNCHRONISED_NOTE
    alert_id = outbox.enqueue(A, text, "alert", event_id=1, now=SHOT_TIME + 1, event_time=SHOT_TIME)
    after_the_step = SHOT_TIME + 3 * 86400 + 60
    assert outbox.row(alert_id).text_to_send(after_the_step, synchronised_now=True) == text
    assert outbox.row(alert_id).text_to_send(SHOT_TIME + 300, synchronised_now=False) == "[sent 5 min late] " + text


def test_a_summary_is_late_by_its_queueing_not_by_the_events_it_holds_by_design(tmp_path):
    config = config_for(tmp_path, **{"alerts.max_per_hour": 1, "alerts.recipients": [A]})
    outbox = open_outbox(tmp_path)
    for i, at in enumerate((0, 10, 20, 300)):
        queue_event_alert(outbox, config, EventAlert(i, SHOT_TIME + at, 0.9, False), now=SHOT_TIME + at + 1)
    queued = SHOT_TIME + 11 + SUMMARY_INTERVAL
    (summary_id,) = release_summaries(outbox, config, now=queued)
    summary = outbox.row(summary_id)
    assert [e.event_id for e in outbox.reported_by(summary_id)] == [2, 3]
    on_time = summary.text_to_send(queued + LATE_AFTER)  # 611 s after the newest event: it says when that was
    assert on_time.startswith("North gate: 2 more possible gunfire incidents between 14:03 and ")
    late = summary.text_to_send(queued + 611)  # held up by the modem
    assert late == "[sent 10 min late] " + on_time
    assert len(encode_parts(A, late)) == 1


def pragmas(tmp_path):
    other = sqlite3.connect(outbox_path(tmp_path / "data"))
    try:
        return other.execute("PRAGMA journal_mode").fetchone()
    finally:
        other.close()


def test_a_later_text_never_overtakes_an_earlier_one_to_the_same_number(tmp_path):
    outbox = open_outbox(tmp_path)
    a1 = outbox.enqueue(A, "a1", "alert", now=0.0)
    b1 = outbox.enqueue(B, "b1", "alert", now=0.0)
    a2 = outbox.enqueue(A, "a2", "alert", now=0.0)
    outbox.mark_sending(a1)
    outbox.mark_retry(a1, "timeout", retry_at=50.0, maybe_sent=False)
    assert [r.id for r in outbox.due(now=10.0)] == [b1]  # a2 is due by time, but a1 waits
    outbox.mark_sent(b1, [1], now=10.0)
    assert [r.id for r in outbox.due(now=60.0)] == [a1]
    outbox.mark_sent(a1, [2], now=60.0)
    assert [r.id for r in outbox.due(now=60.0)] == [a2]
    assert outbox.next_attempt() == 0.0


def test_retention_prunes_old_sent_texts_but_never_unsent_ones(tmp_path):
    outbox = open_outbox(tmp_path)
    old_sent = outbox.enqueue(A, "old", "alert", now=0.0)
    old_pending = outbox.enqueue(B, "old, still waiting", "alert", now=0.0)
    recent = outbox.enqueue(A, "recent", "alert", now=0.0)
    outbox.mark_sent(old_sent, [1], now=10.0)
    outbox.mark_sent(recent, [2], now=1000.0)
    assert outbox.prune_sent(older_than=500.0) == 1
    assert [r.id for r in outbox.rows()] == [old_pending, recent]


def test_the_outbox_refuses_bad_numbers_and_kinds(tmp_path):
    outbox = open_outbox(tmp_path)
    with pytest.raises(PhoneNumberError):
        outbox.enqueue("0712345678", "hi", "alert")
    with pytest.raises(ValueError, match="unknown text kind"):
        outbox.enqueue(A, "hi", "email")
    assert outbox.rows() == []


def test_texts_set_far_ahead_by_a_clock_that_went_back_are_brought_forward(tmp_path):
    outbox = open_outbox(tmp_path)
    row = outbox.enqueue(A, "hi", "alert", now=0.0)
    outbox.mark_sending(row)
    outbox.mark_retry(row, "timeout", retry_at=1e9, maybe_sent=False)  # the clock said 2001, then 1970
    assert outbox.clamp_next_attempt(latest=300.0) == 1
    assert [r.id for r in outbox.due(now=300.0)] == [row]
    assert outbox.clamp_next_attempt(latest=300.0) == 0


def test_an_outbox_file_from_before_summaries_were_linked_still_opens(tmp_path):
    path = outbox_path(tmp_path / "data")
    path.parent.mkdir()
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE held (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL, event_id INTEGER, "
        "event_time REAL NOT NULL)"
    )
    old.execute("INSERT INTO held (recipient, event_id, event_time) VALUES (?, 3, 50.0)", (A,))
    old.commit()
    old.close()
    outbox = Outbox(path)
    assert [(e.event_id, e.summary_id) for e in outbox.waiting_held()[A]] == [(3, None)]


# --- the hourly limit -------------------------------------------------------------------------------
def test_a_flood_gives_alerts_up_to_the_limit_then_summaries_and_drops_nothing(tmp_path):
    config = config_for(tmp_path, **{"alerts.max_per_hour": 5})
    outbox = open_outbox(tmp_path)
    start = SHOT_TIME
    for i in range(30):  # 30 events in a minute
        queue_event_alert(outbox, config, EventAlert(i, start + 2 * i, 0.9, False), now=start + 2 * i)
    for recipient in NUMBERS:
        texts = [r for r in outbox.rows() if r.recipient == recipient]
        assert [r.kind for r in texts] == ["alert"] * 5 + ["summary"]  # the first over the limit: at once
        assert [r.event_id for r in texts[:5]] == [0, 1, 2, 3, 4]
        assert [e.event_id for e in outbox.reported_by(texts[5].id)] == [5]
        assert len(outbox.waiting_held()[recipient]) == 24  # recorded, not dropped
    # The hour is full: the rest waits for SUMMARY_INTERVAL after that summary (at start + 10) ...
    assert release_summaries(outbox, config, now=start + 10 + SUMMARY_INTERVAL - 1) == []
    summaries = release_summaries(outbox, config, now=start + 10 + SUMMARY_INTERVAL)
    assert len(summaries) == 2
    for summary_id, recipient in zip(summaries, NUMBERS, strict=True):
        summary = outbox.row(summary_id)
        assert summary.recipient == recipient and summary.kind == "summary"
        assert summary.text == (
            "North gate: 24 more possible gunfire incidents between 14:03 and 14:04 EAT (texts limited to 5/hour)."
            + clock_note(clock_synchronised())  # this machine's clock may be unsynchronised
        )
        assert [e.event_id for e in outbox.reported_by(summary_id)] == list(range(6, 30))
    assert outbox.waiting_held() == {}
    # A later event is summarised at once (no summary for SUMMARY_INTERVAL); the next one waits ...
    assert len(queue_event_alert(outbox, config, EventAlert(30, start + 3000, 0.9, False), now=start + 3000)) == 2
    assert queue_event_alert(outbox, config, EventAlert(31, start + 3601, 0.9, False), now=start + 3601) == []
    # ... until the hour has room, when that comes first (3 summaries and the alerts of start + 6 and + 8).
    assert release_summaries(outbox, config, now=start + 3605) == []
    ids = release_summaries(outbox, config, now=start + 3606)  # the alert of start + 6 left the hour
    assert [outbox.row(i).text.split(" (")[0] for i in ids] == [
        "North gate: 1 more possible gunfire incident at 15:03 EAT"
    ] * 2


def test_an_event_after_a_quiet_hour_is_a_plain_alert_again(tmp_path):
    config = config_for(tmp_path, **{"alerts.max_per_hour": 1, "alerts.recipients": [A]})
    outbox = open_outbox(tmp_path)
    assert len(queue_event_alert(outbox, config, EventAlert(1, 0.0, 0.9, False), now=0.0)) == 1
    assert len(queue_event_alert(outbox, config, EventAlert(2, 10.0, 0.9, False), now=10.0)) == 1  # a summary
    assert queue_event_alert(outbox, config, EventAlert(3, 20.0, 0.9, False), now=20.0) == []
    assert len(release_summaries(outbox, config, now=10.0 + SUMMARY_INTERVAL)) == 1
    (alert_id,) = queue_event_alert(outbox, config, EventAlert(4, 7300.0, 0.9, False), now=7300.0)
    assert outbox.row(alert_id).kind == "alert"
    assert [r.kind for r in outbox.rows()] == ["alert", "summary", "summary", "alert"]


def test_a_new_incident_after_a_flood_is_texted_at_once_not_when_the_hour_is_over(tmp_path):
    """The audit's firefight: 11 bursts in 3 minutes at the default limit of 10, then a new incident
    25 minutes later. Before, it waited for the first alert to leave the hour: texted 35 min late."""
    config = config_for(tmp_path, **{"alerts.recipients": [A]})  # max_per_hour 10
    outbox = open_outbox(tmp_path)
    for i in range(11):
        queue_event_alert(outbox, config, EventAlert(i, SHOT_TIME + 16 * i, 0.9, False), now=SHOT_TIME + 16 * i + 2)
    assert [r.kind for r in outbox.rows()] == ["alert"] * 10 + ["summary"]
    new = SHOT_TIME + 25 * 60
    (summary_id,) = queue_event_alert(outbox, config, EventAlert(11, new, 0.9, False), now=new + 2)
    assert [e.event_id for e in outbox.reported_by(summary_id)] == [11]
    assert outbox.row(summary_id).text.startswith("North gate: 1 more possible gunfire incident at 14:28 EAT")


def test_a_long_flood_holds_no_event_past_the_summary_interval_and_costs_at_most_4_texts_an_hour_more(tmp_path):
    """Events every 20 s for 3 hours, the SMS process's pass every 5 s: every event is reported once,
    in order, within SUMMARY_INTERVAL (before: up to an hour), and no rolling hour holds more than
    max_per_hour + 4 texts to a recipient."""
    limit = 3
    config = config_for(tmp_path, **{"alerts.max_per_hour": limit, "alerts.recipients": [A]})
    outbox = open_outbox(tmp_path)
    queued_at: dict[int, float] = {}
    for step in range(3 * 720 + int(SUMMARY_INTERVAL) // 5):  # then the passes after the last event
        now = SHOT_TIME + 5 * step
        if step % 4 == 0 and step < 3 * 720:
            event_id = step // 4
            queue_event_alert(outbox, config, EventAlert(event_id, now, 0.9, False), now=now)
            queued_at[event_id] = now
        release_summaries(outbox, config, now)
    assert outbox.waiting_held() == {}
    texts = outbox.rows(limit=10_000)
    reported = []
    for text in texts:
        events = [text.event_id] if text.kind == "alert" else [e.event_id for e in outbox.reported_by(text.id)]
        assert all(text.created - queued_at[event_id] <= SUMMARY_INTERVAL for event_id in events), text
        reported += events
    assert reported == sorted(queued_at)  # every event once, in time order
    for text in texts:
        in_hour = outbox.count_between(A, ("alert", "summary"), text.created - 3600, text.created)
        assert in_hour <= limit + 4
    assert max(outbox.count_between(A, ("summary",), t.created - 3600, t.created) for t in texts) == 4


def test_texts_stamped_before_the_clock_was_set_back_leave_the_limit_room(tmp_path):
    """A Pi without a real-time clock may boot with a saved time ahead of the true one, text, and then
    have its clock set back: the next shot is texted at once, not a day later."""
    config = config_for(tmp_path, **{"alerts.max_per_hour": 1, "alerts.recipients": [A]})
    outbox = open_outbox(tmp_path)
    assert len(queue_event_alert(outbox, config, EventAlert(1, SHOT_TIME, 0.9, False), now=SHOT_TIME)) == 1
    queue_event_alert(outbox, config, EventAlert(2, SHOT_TIME + 10, 0.9, False), now=SHOT_TIME + 10)  # a summary
    set_back = SHOT_TIME - 86400
    (alert_id,) = queue_event_alert(outbox, config, EventAlert(3, set_back, 0.9, False), now=set_back)
    assert outbox.row(alert_id).kind == "alert"
    (summary_id,) = queue_event_alert(outbox, config, EventAlert(4, set_back + 60, 0.9, False), now=set_back + 60)
    assert outbox.row(summary_id).kind == "summary"  # the summary stamped a day ahead holds none up either
    assert queue_event_alert(outbox, config, EventAlert(5, set_back + 120, 0.9, False), now=set_back + 120) == []


OPENERS, ROUNDS = 6, 20


def _open_outbox(path: str, barrier, errors) -> None:
    barrier.wait()
    try:
        Outbox(path).close()
    except sqlite3.Error as exc:
        errors.put(repr(exc))


def test_processes_opening_a_new_outbox_together_all_get_it(tmp_path):
    """The detector's first start: the aggregator, the SMS process and the supervisor open a new
    outbox at once, and SQLite's first switch to WAL does not wait for the others."""
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for round_ in range(ROUNDS):
        barrier = context.Barrier(OPENERS, timeout=30)
        path = str(tmp_path / f"outbox-{round_}.sqlite")
        openers = [context.Process(target=_open_outbox, args=(path, barrier, errors)) for _ in range(OPENERS)]
        for process in openers:
            process.start()
        for process in openers:
            process.join(30)
            if process.is_alive():
                process.kill()
        assert [p.exitcode for p in openers] == [0] * OPENERS
    assert errors.empty(), errors.get()


class _Kernel:
    """Stands in for libc, answering adjtimex with a clock state: the test cannot make the
    machine's clock unsynchronised for real."""

    def __init__(self, state: int) -> None:
        self.state = state

    def adjtimex(self, _timex) -> int:
        return self.state


@pytest.mark.parametrize(("state", "synchronised"), [(0, True), (1, True), (4, True), (5, False), (-1, False)])
def test_the_clock_counts_as_synchronised_unless_the_kernel_says_time_error(monkeypatch, state, synchronised):
    monkeypatch.setattr("alerting.clock.ctypes.CDLL", lambda *_, **__: _Kernel(state))
    assert clock_synchronised() is synchronised


def test_a_new_event_waits_behind_events_already_held_for_a_summary(tmp_path):
    """Once a summary may go, the held events go first, in one summary with the new one: an alert of
    its own would tell of the newest shot before the older ones."""
    config = config_for(tmp_path, **{"alerts.max_per_hour": 1, "alerts.recipients": [A]})
    outbox = open_outbox(tmp_path)
    queue_event_alert(outbox, config, EventAlert(1, SHOT_TIME, 0.9, False), now=SHOT_TIME)
    queue_event_alert(outbox, config, EventAlert(2, SHOT_TIME + 10, 0.9, False), now=SHOT_TIME + 10)  # a summary
    assert queue_event_alert(outbox, config, EventAlert(3, SHOT_TIME + 20, 0.9, False), now=SHOT_TIME + 20) == []
    later = SHOT_TIME + 10 + SUMMARY_INTERVAL  # a summary may go, and none was released yet
    (summary_id,) = queue_event_alert(outbox, config, EventAlert(4, later, 0.9, False), now=later)
    assert [r.kind for r in outbox.rows()] == ["alert", "summary", "summary"]
    assert [e.event_id for e in outbox.reported_by(summary_id)] == [3, 4]


def test_a_network_outage_over_midnight_gives_both_dates(tmp_path):
    config = config_for(tmp_path)
    text = network_back_text(config, SHOT_TIME, SHOT_TIME + 12 * 3600, synchronised=True)
    assert text == (
        "North gate: the modem had no mobile network from 2026-11-25 14:03 to 2026-11-26 02:03 EAT; texts were delayed."
    )


def test_the_end_of_a_long_event_goes_to_those_its_alert_went_to_outside_the_limit(tmp_path):
    """One held for a summary learns of the event there; the end is one text per alert at most."""
    config = config_for(tmp_path, **{"alerts.max_per_hour": 1, "alerts.recipients": [A, B]})
    outbox = open_outbox(tmp_path)
    queue_event_alert(outbox, config, EventAlert(1, SHOT_TIME, 0.9, False), now=SHOT_TIME)
    queue_event_alert(outbox, config, EventAlert(2, SHOT_TIME + 60, 0.9, False), now=SHOT_TIME + 60)
    assert queue_event_end(outbox, config, EventEnd(2, SHOT_TIME + 60, SHOT_TIME + 200), now=SHOT_TIME + 210) == []
    ids = queue_event_end(outbox, config, EventEnd(1, SHOT_TIME, SHOT_TIME + 125.4), now=SHOT_TIME + 130)
    texts = [outbox.row(i) for i in ids]
    assert [(t.recipient, t.kind) for t in texts] == [(A, "update"), (B, "update")]
    assert texts[0].text == "North gate: the gunfire heard at 14:03:07 went on until 14:05:12 EAT (2 min)."
    assert texts[0].text_to_send(SHOT_TIME + 400) == texts[0].text  # it states its times: never called late


def test_still_going_goes_to_those_its_alert_went_to_and_never_piles_up_unsent(tmp_path):
    """Outside the hourly limit, as the end; to a recipient whose last "still going" of the event is
    not sent yet (no network for an hour of fire), none more: one stale text when the modem is back,
    not six. The end still goes. One GSM-7 part with the clock note, for a 20-character site name."""
    config = config_for(tmp_path, **{"alerts.max_per_hour": 1, "alerts.recipients": [A, B]})
    outbox = open_outbox(tmp_path)
    outbox.enqueue(B, "an earlier alert", "alert", now=SHOT_TIME - 60)  # B's limit is spent: held for B
    queue_event_alert(outbox, config, EventAlert(1, SHOT_TIME, 0.9, False), now=SHOT_TIME)
    for row in outbox.rows():
        outbox.mark_sent(row.id, [1], SHOT_TIME + 5)
    first = queue_event_ongoing(outbox, config, EventOngoing(1, SHOT_TIME, SHOT_TIME + 601.4), now=SHOT_TIME + 605)
    assert [(outbox.row(i).recipient, outbox.row(i).kind) for i in first] == [(A, "update")]
    assert outbox.row(first[0]).text == (
        "North gate: the gunfire heard at 14:03:07 is still going at 14:13:08 EAT (10 min so far)."
    )
    assert outbox.row(first[0]).text_to_send(SHOT_TIME + 3000) == outbox.row(first[0]).text  # it states its times
    assert queue_event_ongoing(outbox, config, EventOngoing(1, SHOT_TIME, SHOT_TIME + 1202), now=SHOT_TIME + 1205) == []
    outbox.mark_sent(first[0], [1], SHOT_TIME + 1600)
    (later,) = queue_event_ongoing(outbox, config, EventOngoing(1, SHOT_TIME, SHOT_TIME + 1802), now=SHOT_TIME + 1805)
    assert "(30 min so far)" in outbox.row(later).text
    assert queue_event_end(outbox, config, EventEnd(1, SHOT_TIME, SHOT_TIME + 1900), now=SHOT_TIME + 1910)
    assert outbox.count_between(A, ("alert", "summary"), SHOT_TIME - 1, SHOT_TIME + 2000) == 1
    site = config_for(tmp_path, **{"site.name": "Mara North gate 3 NE"})
    text = outbox.row(later).text.replace("North gate", site.site.name) + clock_note(False)
    assert len(encode_parts(A, text)) == 1, text


def test_the_reads_of_every_sms_pass_and_alert_use_indexes_not_the_whole_table(tmp_path):
    """Sent texts and reported events are kept storage.retention_days: a full scan on every pass
    (each second) measured 22 ms at 100k texts kept on x86. The SQL a pass, an alert, a "still
    going" text and the heartbeat's count run, traced from the real code, is planned on indexes only."""
    config = config_for(tmp_path, **{"alerts.max_per_hour": 1, "alerts.recipients": [A, B]})
    outbox = open_outbox(tmp_path)
    for i in range(3):
        queue_event_alert(outbox, config, EventAlert(i, SHOT_TIME + i, 0.9, False), now=SHOT_TIME + i)
    statements: list[str] = []
    outbox._db.set_trace_callback(statements.append)
    release_summaries(outbox, config, now=SHOT_TIME + 10)
    outbox.clamp_next_attempt(SHOT_TIME + 300)
    outbox.due(SHOT_TIME + 10)
    outbox.next_attempt()
    outbox.pending_count()
    queue_event_alert(outbox, config, EventAlert(9, SHOT_TIME + 20, 0.9, False), now=SHOT_TIME + 20)
    queue_event_ongoing(outbox, config, EventOngoing(9, SHOT_TIME + 20, SHOT_TIME + 620), now=SHOT_TIME + 620)
    outbox.incidents_between(SHOT_TIME - 86400, SHOT_TIME + 620)  # the heartbeat's
    outbox._db.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) >= 6, statements
    for read in reads:
        plan = [row[3] for row in outbox._db.execute("EXPLAIN QUERY PLAN " + read)]
        tables = [step for step in plan if not step.startswith("SCAN (subquery")]  # a result made on indexes
        scans = [step for step in tables if step.startswith("SCAN") and " INDEX " not in step]
        assert not scans, (read, plan)
