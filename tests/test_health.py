"""A dead microphone must not look like a quiet night."""

import time

import numpy as np
import soundfile

from alerting.clock import clock_synchronised
from alerting.compose import clock_note
from alerting.outbox import Outbox, outbox_path
from pipeline.config import Config, override
from pipeline.health import HealthMonitor
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
        assert "works again" in monitor.check(1600.5, WALL + 539.5)
        assert monitor.check(1601.0, WALL + 540.0) is None  # said once
    finally:
        stats.close()
    texts = Outbox(outbox_path(tmp_path)).rows()
    assert [(t.kind, t.recipient) for t in texts] == [("health", r) for r in RECIPIENTS] * 2


def test_the_heartbeat_text_goes_out_on_its_schedule_and_never_when_off(tmp_path):
    changes = {"storage.data_dir": str(tmp_path), "alerts.recipients": RECIPIENTS, "site.name": "Gate"}
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        off = HealthMonitor(override(Config(), changes), stats.slot("capture"), started=0.0)
        assert off.heartbeat("listening", 10 * 86400.0) is None
        config = override(Config(), {**changes, "health.heartbeat_hours": 24.0})
        monitor = HealthMonitor(config, stats.slot("capture"), started=0.0, started_wall=WALL)
        assert monitor.heartbeat("listening", 86399.0) is None
        text = monitor.heartbeat("listening; 172800 windows decided, 0 overruns", 86400.0)
        assert text == (
            "Gate: detector running since 2027-01-15 08:00 UTC: listening; 172800 windows decided, 0 overruns."
            + clock_note(clock_synchronised())
        )
        assert monitor.heartbeat("listening", 86400.0 + 3600.0) is None  # the next one a day later
        assert monitor.heartbeat("listening", 2 * 86400.0) is not None
    finally:
        stats.close()
    texts = Outbox(outbox_path(tmp_path)).rows()
    assert [(t.kind, t.recipient) for t in texts] == [("health", r) for r in RECIPIENTS] * 2


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
