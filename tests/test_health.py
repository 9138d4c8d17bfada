"""A dead microphone must not look like a quiet night."""

import itertools
import json
import sqlite3
import time

import numpy as np
import pytest
import soundfile

from alerting.clock import clock_synchronised
from alerting.compose import (
    EventAlert,
    EventEnd,
    EventOngoing,
    clock_note,
    queue_event_alert,
    queue_event_end,
    queue_event_ongoing,
)
from alerting.encoding import encode_parts
from alerting.outbox import Outbox, outbox_path
from pipeline.config import Config, override
from pipeline.health import BEHIND_AT, CAUGHT_UP_AT, CAUGHT_UP_FOR, HEARTBEAT_FILE, HealthMonitor, RunFigures
from pipeline.metrics import StatsTable
from tests.conftest import own_run_id
from tests.detector_run import RATE, RECIPIENTS, DetectorRun

WALL = 1_800_000_000.0


def test_one_text_when_the_mic_falls_silent_and_one_when_it_comes_back(tmp_path):
    config = override(
        Config(),
        {
            "storage.data_dir": str(tmp_path),
            "alerts.recipients": RECIPIENTS,
            "health.silence_alert_after": 60.0,
            "site.name": "Gate",
        },
    )
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        capture = stats.slot("capture")
        monitor = HealthMonitor(config, capture, started=0.0)
        capture.set("last_sound", 1000.0)
        assert monitor.check(1059.0, WALL) is None
        assert "microphone silent (or no audio) since 2027-01-15 07:58 UTC" in monitor.check(
            1061.0, WALL
        )  # 08:00:00 - 61 s
        assert monitor.check(1500.0, WALL + 439) is None  # said once
        capture.set("last_sound", 1600.0)
        step = 3 * 86400  # NTP set the clock of a Pi without RTC 3 days on meanwhile
        back = monitor.check(1600.5, WALL + 539.5 + step)
        assert "works again (silent from 2027-01-18 07:58 UTC to 2027-01-18 08:08 UTC)" in back  # not from 01-15
        assert monitor.check(1601.0, WALL + 540.0 + step) is None  # said once
    finally:
        stats.close()
    texts = Outbox(outbox_path(tmp_path)).rows()
    assert [(t.kind, t.recipient) for t in texts] == [("health", r) for r in RECIPIENTS] * 2


def test_the_heartbeat_text_goes_out_on_its_schedule_and_never_when_off(tmp_path):
    changes = {"storage.data_dir": str(tmp_path), "alerts.recipients": RECIPIENTS, "site.name": "Gate"}
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        off = HealthMonitor(override(Config(), changes), stats.slot("capture"), started=0.0)
        assert off.heartbeat(STATUS, 10 * 86400.0, WALL) is None
        assert not (tmp_path / HEARTBEAT_FILE).exists()
        config = override(Config(), {**changes, "health.heartbeat_hours": 24.0})
        monitor = HealthMonitor(config, stats.slot("capture"), started=0.0)
        assert monitor.heartbeat(STATUS, 86399.0, WALL + 86399.0) is None
        assert json.loads((tmp_path / HEARTBEAT_FILE).read_text())["monotonic"] == 0.0  # counted from the start
        text = monitor.heartbeat(STATUS, 86400.0, WALL + 86400.0)
        assert text == (
            "Gate: detector running since 2027-01-15 08:00 UTC (incidents in 24 h: 0; lost audio: none; "
            "restarts: 0)." + clock_note(clock_synchronised())
        )
        assert json.loads((tmp_path / HEARTBEAT_FILE).read_text())["wall"] == WALL + 86400.0
        assert monitor.heartbeat(STATUS, 86400.0 + 3600.0, WALL + 90000.0) is None  # the next one a day later
        assert monitor.heartbeat(STATUS, 2 * 86400.0, WALL + 2 * 86400.0) is not None
    finally:
        stats.close()
    texts = Outbox(outbox_path(tmp_path)).rows()
    assert [(t.kind, t.recipient) for t in texts] == [("health", r) for r in RECIPIENTS] * 2


STATUS = RunFigures(lost_seconds=0.0, restarts=0, degraded=False)


def test_the_heartbeat_is_one_plain_text_part_with_the_figures_that_say_it_works(tmp_path):
    """The audit's heartbeat was 172 characters, 2 parts, in the log's words ("windows decided, 0
    overruns (0 samples lost)"); now one part with the clock note, for a site name of 20 characters."""
    config = override(
        Config(),
        {
            "storage.data_dir": str(tmp_path),
            "alerts.recipients": RECIPIENTS[:1],
            "site.name": "Mara North gate 3 NE",
            "site.timezone": "Africa/Nairobi",
            "health.heartbeat_hours": 24.0,
        },
    )
    with Outbox(outbox_path(tmp_path)) as outbox:  # 2 alerts in the last day, 1 before it
        for created in (WALL - 86400.0 - 1.0, WALL - 3600.0, WALL - 60.0):
            outbox.enqueue(RECIPIENTS[0], "Gate: possible gunshot", "alert", now=created)
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        monitor = HealthMonitor(config, stats.slot("capture"), started=0.0)
        text = monitor.heartbeat(RunFigures(lost_seconds=3.25, restarts=2, degraded=True), 86400.0, WALL)
    finally:
        stats.close()
    assert text.startswith(
        "Mara North gate 3 NE: detector running since 2027-01-14 11:00 EAT (incidents in 24 h: 2; "
        "lost audio: 3 s; restarts: 2). Degraded: needs a look."
    )
    for word in ("windows", "overrun", "samples", "decided", "listening"):
        assert word not in text
    plain = text.removesuffix(clock_note(clock_synchronised())).replace(" Degraded: needs a look.", "")
    assert len(encode_parts(RECIPIENTS[0], plain + clock_note(False), "")) == 1, plain


def malformed(*_args):
    raise sqlite3.DatabaseError("database disk image is malformed")


@pytest.mark.parametrize("ring_seconds, texted_at", [(60.0, BEHIND_AT), (20.0, 10.0)])
def test_falling_behind_is_texted_once_and_catching_up_once_it_kept_up_with_the_audio_left_unscored(
    tmp_path, ring_seconds, texted_at
):
    """Below about 1.5 % of an x86 core the detector fell further and further behind, its shots
    texted later and later and then not at all, and nothing said so (CPU audit). A stall that comes
    back every few seconds is one spell: caught up only after CAUGHT_UP_FOR s under CAUGHT_UP_AT (a
    front end stopped 8 s of every 9 texted a pair every 9 s: the log audit)."""
    config = override(
        Config(),
        {
            "storage.data_dir": str(tmp_path),
            "alerts.recipients": RECIPIENTS[:1],
            "site.name": "Mara North gate 3 NE",
            "audio.ring_seconds": ring_seconds,
        },
    )
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        monitor = HealthMonitor(config, stats.slot("capture"), started=0.0)
        texts = [monitor.check_behind(behind, unheard, at) for at, behind, unheard in looks_behind(texted_at)]
    finally:
        stats.close()
    behind = (
        f"Mara North gate 3 NE: the detector is {texted_at:.0f} s behind the microphone: shots texted late, "
        f"missed past {ring_seconds:.0f} s. It needs more CPU (a cooler Pi, fewer other programs)."
    )
    caught_up = "Mara North gate 3 NE: the detector keeps up again (it was up to {} s behind; {})."
    said = [(i, text) for i, text in enumerate(texts) if text is not None]
    assert said == [
        (2, behind),
        (10, caught_up.format(90, "12 s of audio went unscored")),
        (11, behind),
        (13, caught_up.format(f"{texted_at:.0f}", "no audio went unscored")),
    ]
    for _, text in said:
        assert len(encode_parts(RECIPIENTS[0], text, "")) == 1, text
    assert [row.kind for row in Outbox(outbox_path(tmp_path)).rows()] == ["health"] * 4


def looks_behind(texted_at: float) -> list[tuple[float, float, float]]:
    """(monotonic time, s behind, s unscored so far) at each look: falling behind, wobbling, keeping
    up, falling behind again before it kept up long enough, keeping up, and once more."""
    kept_up = 1000.0
    return [
        (0.0, 1.0, 0.0),
        (1.0, texted_at - 0.5, 0.0),
        (2.0, texted_at, 2.0),  # texted
        (3.0, 90.0, 5.0),
        (4.0, 20.0, 10.0),  # still behind: no text per wobble
        (5.0, CAUGHT_UP_AT - 1, 12.0),  # under, but not for long:
        (300.0, texted_at + 5, 12.0),  # behind again, no text
        (301.0, CAUGHT_UP_AT - 0.5, 14.0),
        (400.0, 1.0, 14.0),
        (301.0 + CAUGHT_UP_FOR - 1, 1.0, 14.0),
        (301.0 + CAUGHT_UP_FOR, 1.0, 14.0),  # kept up: 12 s unscored since the text
        (kept_up, texted_at, 14.0),  # again
        (kept_up + 1, 0.5, 14.0),
        (kept_up + 1 + CAUGHT_UP_FOR, 0.5, 14.0),
    ]


def test_the_heartbeat_counts_incidents_not_texts(tmp_path, caplog, monkeypatch):
    """2 events alerted to 3 recipients (6 texts), their "still going" and end texts, and 3 events held
    into one summary to each (3 texts): 5 incidents (counted before: 3, the first recipient's alert
    and summary texts). An event the day before is not counted; an outbox that cannot be read gives
    "?" and a warning."""
    three = [*RECIPIENTS, "+33612345678"]
    config = override(
        Config(),
        {"storage.data_dir": str(tmp_path), "alerts.recipients": three, "health.heartbeat_hours": 24.0},
    )
    with Outbox(outbox_path(tmp_path)) as outbox:
        queue_event_alert(outbox, config, EventAlert(1, WALL - 86400.0 - 5, 0.9, False), now=WALL - 86400.0 - 1)
        for event in (2, 3):
            queue_event_alert(outbox, config, EventAlert(event, WALL - 7200.0, 0.9, False), now=WALL - 7200.0)
            queue_event_ongoing(outbox, config, EventOngoing(event, WALL - 7200.0, WALL - 6600.0), now=WALL - 6600.0)
            queue_event_end(outbox, config, EventEnd(event, WALL - 7200.0, WALL - 6000.0), now=WALL - 6000.0)
        for recipient in three:
            held = [outbox.hold(recipient, event, WALL - 3000.0 + event, WALL - 3000.0 + event) for event in (4, 5, 6)]
            outbox.release_held(recipient, held, "Gate: 3 more possible gunfire incidents ...", WALL - 2000.0)
        assert len(outbox.rows()) == 3 + 2 * 3 * 3 + 3
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        text = HealthMonitor(config, stats.slot("capture"), started=0.0).heartbeat(STATUS, 86400.0, WALL)
        assert "(incidents in 24 h: 5; " in text, text
        monkeypatch.setattr(Outbox, "incidents_between", malformed)  # a damaged card
        text = HealthMonitor(config, stats.slot("capture"), started=0.0).heartbeat(STATUS, 2 * 86400.0, WALL + 86400)
        assert "(incidents in 24 h: ?; " in text, text
        assert "the heartbeat cannot count the incidents" in caplog.text
    finally:
        stats.close()


class SteppedForward:
    """The clock NTP set 3 days forward since the start (it cannot be stepped for real here)."""

    def seconds(self) -> float:
        return 3 * 86400.0


def test_the_heartbeat_counts_the_incidents_stamped_before_ntp_set_the_clock_forward(tmp_path):
    """A Pi booted offline 3 days behind; 2 incidents, then NTP: the day's heartbeat said 0 (clock audit)."""
    config = override(
        Config(),
        {"storage.data_dir": str(tmp_path), "alerts.recipients": RECIPIENTS, "health.heartbeat_hours": 24.0},
    )
    before_the_step = WALL - 3 * 86400.0 - 3600.0
    with Outbox(outbox_path(tmp_path)) as outbox:
        for event in (1, 2):
            queue_event_alert(outbox, config, EventAlert(event, before_the_step, 0.9, False), now=before_the_step)
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        monitor = HealthMonitor(config, stats.slot("capture"), started=0.0, clock_step=SteppedForward())
        text = monitor.heartbeat(STATUS, 86400.0, WALL)
    finally:
        stats.close()
    assert "(incidents in 24 h: 2; " in text, text


def test_the_heartbeat_counts_the_incidents_stamped_before_a_step_made_before_a_restart(tmp_path, monkeypatch):
    """The same, with the detector restarted in the same boot after NTP set the clock 3 days on: the
    new start measured the step from itself, on the stepped clock, and the heartbeat said 0 after 2."""
    config = override(
        Config(),
        {"storage.data_dir": str(tmp_path), "alerts.recipients": RECIPIENTS, "health.heartbeat_hours": 24.0},
    )
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        HealthMonitor(config, stats.slot("capture"), started=0.0)  # the first start in this boot
        before_the_step = time.time() - 3600.0
        with Outbox(outbox_path(tmp_path)) as outbox:
            for event in (1, 2):
                queue_event_alert(outbox, config, EventAlert(event, before_the_step, 0.9, False), now=before_the_step)
        stepped = time.time
        monkeypatch.setattr(time, "time", lambda: stepped() + 3 * 86400.0)
        restarted = HealthMonitor(config, stats.slot("capture"), started=0.0)
        text = restarted.heartbeat(STATUS, 86400.0, time.time())
    finally:
        stats.close()
    assert "(incidents in 24 h: 2; " in text, text


def heartbeats_over(tmp_path, run_hours, reboot, clock_offsets=None):
    """Runs of the detector one after another (a restart, or with `reboot` a reboot: the monotonic
    clock starts again from 0), each checking every 10 minutes; the heartbeats queued, as (real
    hours since the first start, run)."""
    config = override(
        Config(),
        {"storage.data_dir": str(tmp_path), "alerts.recipients": RECIPIENTS[:1], "health.heartbeat_hours": 24.0},
    )
    sent = []
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        for run, hours in enumerate(run_hours):
            start = sum(run_hours[:run]) * 3600.0  # real time
            offset = (clock_offsets or {}).get(run, 0.0)  # how wrong the wall clock is in this run
            boot = f"boot-{run}" if reboot else "boot-0"
            mono_origin = start - 30.0 if reboot else 0.0  # a reboot: the service starts 30 s into the boot
            monitor = HealthMonitor(
                config,
                stats.slot("capture"),
                started=start - mono_origin,
                boot_id=boot,
            )
            for second in range(0, round(hours * 3600), 600):
                now = start + second
                if monitor.heartbeat(STATUS, now - mono_origin, WALL + now + offset) is not None:
                    sent.append((now / 3600.0, run))
    finally:
        stats.close()
    return sent


@pytest.mark.parametrize("reboot", [False, True], ids=["restarts", "reboots"])
def test_a_detector_restarted_more_often_than_the_period_still_sends_its_heartbeat(tmp_path, reboot):
    """The audit: restarted every 20 h with a 24 h period, no heartbeat in 100 h (each run counted
    from its own start). The last heartbeat's time now survives restarts (heartbeat.json)."""
    sent = heartbeats_over(tmp_path, [20] * 5, reboot=reboot)
    assert [hours for hours, _run in sent] == [24.0, 48.0, 72.0, 96.0]
    texts = Outbox(outbox_path(tmp_path)).rows()
    assert [t.kind for t in texts] == ["health"] * 4


@pytest.mark.parametrize(("step", "next_at"), [(-6.0, 78.0), (-72.0, 84.0), (6.0, 66.0), (72.0, 60.0)])
def test_a_clock_set_back_or_forward_at_a_reboot_neither_skips_the_heartbeat_nor_bursts(tmp_path, step, next_at):
    """A Pi has no RTC: after a reboot its clock may be hours behind (the last saved time) or ahead.
    Heartbeats at 24 h and 48 h, a reboot at 60 h with the clock `step` hours off: the next one
    comes when the clock says 24 h went by since 48 h, but never later than a period after the
    start (-72 h: 84 h, not 156 h), and one at once at most (72 h: at 60 h, not three); then one a
    period again."""
    sent = heartbeats_over(tmp_path, [60, 130], reboot=True, clock_offsets={1: step * 3600.0})
    assert [h for h, run in sent if run == 0] == [24.0, 48.0]
    after_reboot = [h for h, run in sent if run == 1]
    assert after_reboot[0] == next_at
    assert all(b - a == 24.0 for a, b in itertools.pairwise(after_reboot))


def test_an_unreadable_heartbeat_file_counts_from_the_start(tmp_path):
    (tmp_path / HEARTBEAT_FILE).write_text("{not json")
    assert [h for h, _run in heartbeats_over(tmp_path, [30], reboot=False)] == [24.0]


def test_the_running_detector_texts_about_a_silent_microphone(tmp_path):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(RATE * 14, dtype=np.int16), RATE, subtype="PCM_16")
    run = DetectorRun(tmp_path)
    run.config_lines = [
        "[health]",
        "silence_alert_after = 5.0",
        "[alerts]",
        f"recipients = {RECIPIENTS!r}".replace("'", '"'),
    ]
    started = time.monotonic()
    run.start("--source", str(silent))
    try:
        run.wait_until(lambda: len([t for t in run.texts() if t["kind"] == "health"]) == 2, 30, "health texts")
        assert time.monotonic() - started >= 5.0
    finally:
        run.stop()
    assert all("microphone silent (or no audio) since" in t["text"] for t in run.texts())


def test_the_heartbeat_s_start_time_follows_the_clock_set_since(tmp_path):
    """A Pi without RTC starts on a saved time and NTP sets it right later: the start is stated by
    the clock as it reads now (the text carries no note then), not as it read at the start."""
    config = override(
        Config(),
        {"storage.data_dir": str(tmp_path), "alerts.recipients": RECIPIENTS, "health.heartbeat_hours": 24.0},
    )
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        monitor = HealthMonitor(config, stats.slot("capture"), started=0.0)
        stepped = 5 * 3600.0  # the clock read 5 h early at the start
        text = monitor.heartbeat(STATUS, 86400.0, WALL + 86400.0 + stepped)
    finally:
        stats.close()
    assert "detector running since 2027-01-15 13:00 UTC " in text  # WALL is 08:00 UTC
