"""What the CLI commands do, as plain functions: run the detector, the demo, analyze, list events."""

from __future__ import annotations

import datetime
import json
import logging
import math
import time
import zoneinfo
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import FICTIONAL_NUMBER, Config, check_clips_fit_ring, text_cost_warnings
from pipeline.users import why_unreadable

if TYPE_CHECKING:
    from inference.model import Ensemble
    from inference.offline import OfflineDetector
    from inference.site_thresholds import SiteThresholds

DEMO_DATA_DIR = "data/demo"
EXIT_RESTART_ME = 3  # a fault only a fresh start clears
DEMO_WINDOW_SLACK = 2.0  # s: an event may start up to a window before the audio clock's origin
DUMMY_GAMMURC = """[gammu]
device = {device}
connection = none
model = dummy
"""

NO_RECIPIENTS = "alerts.recipients is empty: events are recorded but no text will be sent"

log = logging.getLogger(__name__)


def run_detector(config: Config) -> int:
    """Start the pipeline and supervise it until stopped; a non-zero exit code on a fatal problem."""
    from capture.preflight import DeviceAbsent, PreflightError, check_source
    from inference.model import ModelError
    from pipeline.storage import UnsafeFolder
    from pipeline.supervisor import AlreadyRunning, SharedMemoryLost, Supervisor

    try:
        ensemble = load_checked_ensemble(config)
        check_gammurc(config)
    except (ModelError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    try:
        check_source(config)
    except DeviceAbsent as exc:
        log.error(
            "%s. Starting anyway: it is tried again every %.0f s at most, and the recipients are texted if "
            "no sound comes for %.0f s (health.silence_alert_after)",
            exc,
            config.audio.reopen_max_backoff,
            config.health.silence_alert_after,
        )
    except PreflightError as exc:
        log.error("%s", exc)
        return 2
    if not config.alerts.recipients:
        log.warning("%s", NO_RECIPIENTS)  # the demo's fictional number is no warning: check-config warns of it
    for warning in text_cost_warnings(config):
        log.warning("%s", warning)
    try:
        supervisor = Supervisor(config, ensemble)
        supervisor.start()
    except (AlreadyRunning, UnsafeFolder) as exc:
        log.error("%s", exc)
        return 2
    try:
        return supervisor.run()
    except SharedMemoryLost as exc:
        log.critical("%s: stopping so that systemd (Restart=always) starts the detector afresh", exc)
        return EXIT_RESTART_ME


def demo_overrides(recording: Path, recipient: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Replay the bundled recording through the whole pipeline with Gammu's dummy phone, in the
    demo's own data folder unless one is given. The folder is kept from run to run (the report
    shows this run's records): labels made there, as the report suggests, are never thrown away."""
    data_dir = Path(changes.get("storage.data_dir") or DEMO_DATA_DIR)
    modem_dir = data_dir / "dummy-modem"
    modem_dir.mkdir(parents=True, exist_ok=True)
    gammurc = data_dir / "gammurc"
    gammurc.write_text(DUMMY_GAMMURC.format(device=modem_dir.resolve()))
    return {
        "audio.source": changes.get("audio.source") or str(recording),
        "modem.gammurc": str(gammurc),
        "alerts.recipients": changes.get("alerts.recipients") or [recipient],
        "storage.data_dir": str(data_dir),
    }


def print_demo_report(config: Config) -> None:
    from alerting.outbox import Outbox, outbox_path
    from inference.vote import votes_text
    from pipeline.stats import STATS_FILE

    stats_file = Path(config.storage.data_dir) / STATS_FILE
    audio_start = json.loads(stats_file.read_text()).get("audio_start_time") if stats_file.exists() else None
    earliest = audio_start - DEMO_WINDOW_SLACK if audio_start else 0.0  # this run's events only
    records = [r for r in list_events(config, limit=1000) if r["start_time"] >= earliest]
    index = Path(config.audio.source).with_suffix(".json")
    if index.exists():
        shots = json.loads(index.read_text())["shots"]
        print(f"the recording holds {len(shots)} gunshots, at " + ", ".join(f"{s['time']:.1f} s" for s in shots))
    print(f"detections: {len(records)}")
    if not records:
        print("  (the demo's game sound effects are a weak stand-in for gunfire: see models/README.md)")
    for record in records:
        offset = f" ({record['start_time'] - audio_start:.1f} s into the recording)" if audio_start else ""
        print(
            f"  event {record['id']} at {record['local_time']}{offset}: confidence {record['confidence']:.2f} "
            f"({votes_text(record['votes'])})"
        )
    outbox = Outbox(outbox_path(Path(config.storage.data_dir)))
    try:
        rows = [row for row in outbox.rows() if row.created >= earliest]
    finally:
        outbox.close()
    print(f"texts: {len(rows)}")
    for row in rows:
        print(f"  to {row.recipient} [{row.state}]: {row.text}")
    near_misses = [r for r in list_events(config, 1000, kept="near_misses") if r["start_time"] >= earliest]
    print(f"near misses (a model said gunshot, the vote did not) kept with a clip to label: {len(near_misses)}")
    for record in near_misses:
        offset = f" ({record['start_time'] - audio_start:.1f} s into the recording)" if audio_start else ""
        print(f"  near miss {record['id']}{offset}: {votes_text(record['votes'])}, clip {record['clip']}")
    if near_misses:
        print(f"  label them: python cli.py label --near-miss ID gunshot --data-dir {config.storage.data_dir}")


def config_warnings(config: Config) -> list[str]:
    """What a valid config holds that makes the detector text no one, hear nothing live, or pay
    for more SMS parts than it needs."""
    recipients = config.alerts.recipients
    warnings = [] if recipients else [NO_RECIPIENTS]
    if FICTIONAL_NUMBER in recipients:
        warnings.append(f"alerts.recipients holds {FICTIONAL_NUMBER}, the example's fictional number: put your own")
    if "{confidence}" in config.alerts.template:
        warnings.append(
            "alerts.template states {confidence}: the first window's model probability, no calibrated chance of "
            "gunfire, and higher with a model missing (the default template leaves it out: set it again from "
            "config.example.toml, or keep it knowingly)"
        )
    if config.audio.source:
        warnings.append(
            f"audio.source is set: the detector replays {config.audio.source} once and stops, and does not listen "
            "to audio.device (leave audio.source empty for a microphone)"
        )
    return warnings + text_cost_warnings(config)


def check_gammurc(config: Config) -> None:
    """A file this user can read: the SMS process opens it only when it first texts, and one it
    cannot read would hold every alert in the outbox."""
    gammurc = config.modem.gammurc
    if not gammurc:
        return
    try:
        is_file = Path(gammurc).is_file()
        if is_file:
            with open(gammurc, "rb"):
                pass
    except OSError as exc:
        raise ValueError(f"modem.gammurc: {gammurc} {why_unreadable(Path(gammurc), exc)}") from None
    if not is_file:
        raise ValueError(f"modem.gammurc: {gammurc} is not a file{_relative_hint(gammurc)}")


def _relative_hint(path: str) -> str:
    if Path(path).is_absolute():
        return ""
    return f" (a relative path starts from the working directory, {Path.cwd()}: give an absolute one)"


def load_checked_ensemble(config: Config) -> Ensemble:
    """The models, checked against the detector settings; raises inference.model.ModelError or
    ValueError with a message that names the file or key."""
    from capture.pcm import MODEL_RATE
    from inference.frontend import hop_samples
    from inference.model import ModelError, load_ensemble

    models_dir = config.detector.models_dir
    if models_dir and not Path(models_dir).is_dir():
        raise ValueError(f"detector.models_dir: {models_dir} is not a folder{_relative_hint(models_dir)}")
    ensemble = load_ensemble(models_dir)
    if ensemble.sample_rate != MODEL_RATE:
        raise ModelError(f"the models take {ensemble.sample_rate} Hz audio; capture delivers {MODEL_RATE} Hz")
    hop_samples(config, ensemble)
    if config.detector.votes_required > len(ensemble.models):
        raise ValueError(
            f"detector.votes_required: {config.detector.votes_required} but only {len(ensemble.models)} models"
        )
    check_clips_fit_ring(config, ensemble.window_samples / ensemble.sample_rate)  # validate() assumed 2 s
    if ensemble.calibrated_at is not None:
        hop, merge_gap = ensemble.calibrated_at
        for key, value, calibrated in (
            ("hop", config.detector.hop, hop),
            ("merge_gap", config.detector.merge_gap, merge_gap),
        ):
            if not math.isclose(value, calibrated):
                log.warning(
                    "detector.%s is %g s, the models' thresholds were chosen at %g s: their false alerts per hour "
                    "at this setting were not measured",
                    key,
                    value,
                    calibrated,
                )
    return ensemble


def analyze_files(config: Config, files: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """One result dict per file, in order; unreadable files give {"file", "error"}, files damaged
    part-way their result up to the damage and "damaged". Raises (at the call, before any file)
    what load_checked_ensemble raises."""
    from inference.frontend import hop_samples
    from inference.offline import OfflineDetector

    ensemble = load_checked_ensemble(config)
    detector = OfflineDetector(
        ensemble,
        hop_samples(config, ensemble),
        config.detector.merge_gap,
        config.detector.votes_required,
        config.detector.fused_threshold,
    )
    return (_analyze_file(detector, Path(path)) for path in files)


def _analyze_file(detector: OfflineDetector, path: Path) -> dict[str, Any]:
    from capture.audio_file import AudioFileError

    try:
        result = detector.analyze_file(path)
    except AudioFileError as exc:
        return {"file": str(path), "error": str(exc)}
    line = {
        "file": str(path),
        "score": round(result.score, 4),
        "detected": result.detected,
        "events": [event.to_json() for event in result.events],
    }
    return line | ({"damaged": result.damage} if result.damage else {})


def site_threshold_replay(config: Config, days: float) -> tuple[SiteThresholds, str]:
    """The site's score log replayed (inference/site_thresholds.py), and the vote in use."""
    from inference.eventlog import EVENTS_DB, SECONDS_PER_DAY, EventLog
    from inference.model import load_ensemble
    from inference.score_log import model_set
    from inference.site_thresholds import from_event_log

    data_dir = Path(config.storage.data_dir)
    if not (data_dir / EVENTS_DB).exists():
        raise FileNotFoundError(f"{data_dir} holds no {EVENTS_DB}: give the detector's data folder (--data-dir)")
    ensemble = load_ensemble(config.detector.models_dir)
    rule = ensemble.rule(config.detector.votes_required, config.detector.fused_threshold)
    events = EventLog(data_dir)
    try:
        window = ensemble.window_samples / ensemble.sample_rate
        since = time.time() - days * SECONDS_PER_DAY
        result = from_event_log(events, since, model_set(ensemble), window, config.detector.merge_gap)
    finally:
        events.close()
    return result, rule.describe()


def list_events(config: Config, limit: int, kept: str | None = None) -> list[dict[str, Any]]:
    """The latest events, or with `kept` (near_misses or samples) the windows kept to label, with
    their local time."""
    from inference.eventlog import EVENTS_DB, EventLog

    data_dir = Path(config.storage.data_dir)
    if not (data_dir / EVENTS_DB).exists():
        return []
    zone = zoneinfo.ZoneInfo(config.site.timezone)
    log_ = EventLog(data_dir)
    try:
        records = log_.windows(kept, limit) if kept else log_.events(limit)
    finally:
        log_.close()
    return [
        {**record.to_json(), "local_time": datetime.datetime.fromtimestamp(record.start_time, zone).isoformat()}
        for record in records
    ]
