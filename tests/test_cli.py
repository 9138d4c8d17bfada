"""The commands a person runs, on their success paths, through `python cli.py` as a person would:
what they print, and that the config file and the flags are what they act on."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest
import soundfile

from cli import DEMO_RECORDING
from inference.eventlog import EVENTS, NEAR_MISSES, EventLog
from inference.model import load_ensemble
from pipeline.config import Config, ConfigError, load_config, override
from pipeline.profile import format_table
from pipeline.run import check_gammurc, demo_overrides, list_events
from pipeline.storage import private_dir, volatile_data_dir
from pipeline.supervisor import LOCK_FILE
from tests.detector_run import (
    ASSETS,
    PIPELINE_SHOTS,
    RATE,
    RECIPIENTS,
    ROOT,
    DetectorRun,
    cli,
    listening_config,
    pipeline_test_models,
    stream_with_shots,
)
from tests.gammu_env import dummy_gammurc
from tests.other_user import NOBODY, as_nobody, needs_root, open_folder
from tests.test_alerting_support import sent_texts

A = "+447700900123"
SHOT_AT = 5.0  # s into a 10 s file


def config_file(tmp_path, *lines: str):
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_test_modem_sends_a_test_text_through_the_modem_the_flag_names(tmp_path):
    config = config_file(tmp_path, "[storage]", f'data_dir = "{tmp_path / "data"}"')
    result = cli("test-modem", "--config", str(config), "--gammurc", str(dummy_gammurc(tmp_path)), "--send", A)
    assert result.returncode == 0, result.stderr
    assert "manufacturer: Gammu" in result.stdout.splitlines()
    assert re.search(rf"^test text: sent to {re.escape(A)} ", result.stdout, re.MULTILINE)
    ((recipient, text),) = sent_texts(tmp_path)
    assert recipient == A and "test text from the gunshot detector" in text


def test_check_config_prints_the_settings_of_the_file_it_checks_but_not_the_pin(tmp_path):
    config = config_file(tmp_path, "[audio]", "rate = 48000", "[site]", 'name = "Dam wall"', "[modem]", 'pin = "4711"')
    result = cli("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^audio\.rate = 48000 ", result.stdout, re.MULTILINE)
    assert re.search(r"^site\.name = 'Dam wall' ", result.stdout, re.MULTILINE)
    assert re.search(r"^modem\.pin = '\(set, not shown\)' ", result.stdout, re.MULTILINE)
    assert "4711" not in result.stdout
    quiet = cli("check-config", "--quiet", "--config", str(config))  # the service's ExecStartPre
    assert (quiet.returncode, quiet.stdout) == (0, "")


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (["[detector]", 'models_dir = "models/site"'], "detector.models_dir: models/site is not a folder (a relative"),
        (["[modem]", 'gammurc = "/etc/no-gammurc"'], "modem.gammurc: /etc/no-gammurc is not a file"),
        (["[audio]", 'source = "/no/recording.flac"'], "audio.source: /no/recording.flac"),
    ],
)
def test_check_config_checks_the_files_the_config_names(tmp_path, lines, error):
    """As the service's ExecStartPre: the service runs in its data folder, where a relative path
    written for the repository's folder is not."""
    result = cli("check-config", "--quiet", "--config", str(config_file(tmp_path, *lines)))
    assert result.returncode == 1 and error in result.stderr


@needs_root
def test_check_config_refuses_a_gammurc_this_user_cannot_read():
    """The SMS process opens it only when it first texts: one the detector's user cannot read
    would pass the service's ExecStartPre and hold every alert in the outbox. Run as nobody (root
    reads any file): the message names the setting, the user and the fix."""
    with open_folder() as folder:
        gammurc = dummy_gammurc(folder)
        config = override(Config(), {"modem.gammurc": str(gammurc)})
        gammurc.chmod(0o644)
        assert as_nobody(check_gammurc, config) is None
        gammurc.chmod(0o600)  # root's alone, as an admin may protect it
        with pytest.raises(ValueError) as refused:
            as_nobody(check_gammurc, config)
        message = str(refused.value)
        assert message.startswith(f"modem.gammurc: {gammurc} cannot be read by this user (nobody, uid {NOBODY}) ")
        assert message.endswith(f"sudo chgrp nogroup {gammurc} && sudo chmod 640 {gammurc}")
        gammurc.chmod(0o644)
        folder.chmod(0o700)
        with pytest.raises(ValueError, match=f"its folder {folder} cannot be entered"):
            as_nobody(check_gammurc, config)


@needs_root
def test_a_config_file_the_detector_s_user_cannot_read_is_refused_with_the_fix():
    """README's install makes the config 0640 root:gunshot; one left root's alone (0600) is named
    with the user and the fix, not only "Permission denied"."""
    with open_folder() as folder:
        path = folder / "config.toml"
        shutil.copy(ROOT / "config.example.toml", path)
        path.chmod(0o600)
        with pytest.raises(ConfigError) as refused:
            as_nobody(load_config, path)
        message = str(refused.value)
        assert message.startswith(f"config file {path} cannot be read by this user (nobody, uid {NOBODY}) ")
        assert message.endswith(f"sudo chgrp nogroup {path} && sudo chmod 640 {path}")
        os.chown(path, -1, NOBODY)  # the fix it gives: nogroup is gid 65534 here
        path.chmod(0o640)
        assert as_nobody(load_config, path) == load_config(path)


ARABIC_NAME = (
    "\u0645\u062e\u064a\u0645 \u0627\u0644\u0634\u0645\u0627\u0644 \u0627\u0644\u0634\u0631\u0642\u064a"  # UCS-2
)


@pytest.mark.parametrize(
    ("lines", "warning"),
    [
        (["[alerts]", "recipients = []"], "alerts.recipients is empty"),
        (["[alerts]", f'recipients = ["{A}"]'], "the example's fictional number"),
        (["[audio]", f'source = "{DEMO_RECORDING}"'], "does not listen to audio.device"),
        (["[alerts]", 'template = "{site}: possible gunshot at {time} (confidence {confidence})."'], "no calibrated"),
        (
            [
                "[site]",
                f'name = "Ndovu camp \u2013 {ARABIC_NAME}"',
            ],
            "site.name: a typical alert takes 2 SMS parts",
        ),
    ],
)
def test_check_config_warns_of_a_config_that_texts_no_one_hears_nothing_live_or_pays_for_more_parts(
    tmp_path, lines, warning
):
    result = cli("check-config", "--quiet", "--config", str(config_file(tmp_path, *lines)))
    assert result.returncode == 0 and result.stderr.startswith("warning: ") and warning in result.stderr


def test_stats_shows_what_the_running_detector_wrote_and_says_when_none_runs(tmp_path):
    figures = {"time": 1.0, "lost_samples": 1600, "processes": {"capture": {"pid": 42}}}
    (tmp_path / "stats.json").write_text(json.dumps(figures))
    with (tmp_path / LOCK_FILE).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a running detector holds it
        result = cli("stats", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == figures and "no detector runs" not in result.stderr
    stopped = cli("stats", "--data-dir", str(tmp_path))
    assert json.loads(stopped.stdout) == figures and f"note: no detector runs on {tmp_path} now" in stopped.stderr


@pytest.fixture
def memory_of(tmp_path):
    """The real in-memory folder of tmp_path/card, as a detector that could not write it made it."""
    card = tmp_path / "card"
    card.mkdir()
    yield card, private_dir(volatile_data_dir(card), create=True)
    shutil.rmtree(volatile_data_dir(card), ignore_errors=True)


def test_stats_and_events_point_to_what_a_detector_unable_to_write_its_folder_keeps_in_memory(memory_of):
    card, memory = memory_of
    (card / "stats.json").write_text('{"time": 1.0}')
    (memory / "stats.json").write_text('{"time": 2.0}')
    os.utime(card / "stats.json", (1.0, 1.0))  # the card's figures stopped when it failed
    result = cli("stats", "--data-dir", str(card))
    assert json.loads(result.stdout) == {"time": 2.0} and f"from memory ({memory / 'stats.json'})" in result.stderr
    EventLog(memory).close()
    result = cli("events", "--data-dir", str(card))
    assert result.returncode == 1 and f"keeps its events in memory: --data-dir {memory}" in result.stderr
    EventLog(card).close()
    result = cli("events", "--data-dir", str(card))
    assert result.returncode == 0 and f"list them with --data-dir {memory}" in result.stderr


def test_analyze_prints_each_event_s_span_and_the_file_s_best_score(tmp_path):
    path = tmp_path / "shot.wav"
    soundfile.write(path, stream_with_shots(10.0, [(SHOT_AT, PIPELINE_SHOTS[0])]), RATE, subtype="PCM_16")
    models = config_file(tmp_path, "[detector]", f'models_dir = "{pipeline_test_models(tmp_path)}"')
    found = json.loads(cli("analyze", "--config", str(models), "--format", "jsonl", str(path)).stdout)
    (event,) = found["events"]
    assert event["start"] <= SHOT_AT <= event["end"] <= 10.0
    assert found["score"] == round(event["confidence"], 4)  # the event holds the file's best window
    text = cli("analyze", "--config", str(models), str(path)).stdout.strip()
    span = f"{event['start']:.2f}-{event['end']:.2f} s ({event['confidence']:.2f})"
    assert text == f"{path}: score {found['score']:.3f} GUNSHOT {span}"


@pytest.mark.parametrize(("votes_required", "found"), [(1, "GUNSHOT"), (2, "no gunshot")])
def test_analyze_votes_as_the_config_says(tmp_path, votes_required, found):
    """One model passes on anything, the others on nothing: 1 of 3 hears a shot everywhere, 2 of 3 nowhere."""
    models = pipeline_test_models(tmp_path)
    for model_id, threshold in {"wave": 0.0, "mel_fine": 0.9999999, "mel_coarse": 0.9999999}.items():
        sidecar = models / f"{model_id}.json"
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "threshold": threshold}))
    path = tmp_path / "background.wav"
    soundfile.write(path, stream_with_shots(4.0, []), RATE, subtype="PCM_16")
    config = config_file(tmp_path, "[detector]", f'models_dir = "{models}"', f"votes_required = {votes_required}")
    assert found in cli("analyze", "--config", str(config), str(path)).stdout


def test_the_demo_takes_the_recording_and_the_number_it_is_given(tmp_path):
    given = {"audio.source": str(tmp_path / "mine.flac"), "alerts.recipients": [A], "storage.data_dir": str(tmp_path)}
    changes = demo_overrides(tmp_path / "demo.flac", "+12025550143", given)
    assert (changes["audio.source"], changes["alerts.recipients"]) == (given["audio.source"], [A])
    default = demo_overrides(tmp_path / "demo.flac", "+12025550143", {"storage.data_dir": str(tmp_path)})
    assert (default["audio.source"], default["alerts.recipients"]) == (str(tmp_path / "demo.flac"), ["+12025550143"])


def test_events_lists_the_latest_records_in_the_site_s_time_and_says_what_each_is(tmp_path):
    log = EventLog(tmp_path)
    start = 1_796_000_000.0  # 2026-11-30 00:53:20 UTC
    event = log.open_event(start, 0.9, {"wave": 0.9, "mel_fine": 0.8}, {}, True)
    log.close_event(event, (start, start + 2.5), 0.9, {"wave": 0.9, "mel_fine": 0.8}, True, 2)
    log.set_label(EVENTS, event, "gunshot", "rifle")
    for k in range(3):
        log.add_window(NEAR_MISSES, start + 60.0 * k, 0.5, {"wave": 0.5}, {})
    log.close()
    config = override(Config(), {"storage.data_dir": str(tmp_path), "site.timezone": "Africa/Nairobi"})
    (record,) = list_events(config, limit=10)
    assert record["local_time"] == "2026-11-30T03:53:20+03:00"
    assert [r["id"] for r in list_events(config, limit=2, kept=NEAR_MISSES)] == [2, 3]  # the latest two
    shown = cli("events", "--data-dir", str(tmp_path)).stdout.strip()
    assert shown.startswith(f"#{event} ") and shown.endswith(
        "conf 0.90 [wave=0.90 mel_fine=0.80] closed degraded clip - labelled gunshot (rifle)"
    )


PROFILED_SECONDS, PROFILED_SHOT_AT = 8.0, 2.0


def test_profile_reports_every_process_and_how_long_a_shot_took_to_become_a_text(tmp_path):
    path = tmp_path / "shot.wav"
    audio = stream_with_shots(PROFILED_SECONDS, [(PROFILED_SHOT_AT, PIPELINE_SHOTS[0])])
    soundfile.write(path, audio, RATE, subtype="PCM_16")
    config = config_file(tmp_path, "[detector]", f'models_dir = "{pipeline_test_models(tmp_path)}"')
    result = cli(
        "profile", "--config", str(config), "--source", str(path), "--data-dir", str(tmp_path / "data"), "--json"
    )
    assert result.returncode == 0, result.stderr
    report, ensemble = json.loads(result.stdout), load_ensemble(str(pipeline_test_models(tmp_path)))
    models = [f"model.{model.id}" for model in ensemble.models]
    assert list(report["processes"]) == ["supervisor", "capture", "frontend", *models, "aggregator", "sms"]
    running = [figures for name, figures in report["processes"].items() if name != "capture"]  # its file ended
    assert all(figures["rss_mb"] > 0 and figures["cpu_ms_per_audio_s"] >= 0 for figures in running)
    pipeline = report["pipeline"]
    every_window = (len(audio) - ensemble.window_samples) // round(Config().detector.hop * RATE) + 1
    assert pipeline["windows_decided"] == every_window  # the source ended and the run drained
    assert (pipeline["lost_samples"], pipeline["windows_decided_without_every_model"]) == (0, 0)
    assert report["processes"]["sms"]["processed"] == 1 and pipeline["event_start_to_sms_ms"]["p50"] > 0
    assert pipeline["window_end_to_vote_ms"]["p50"] > 0 and pipeline["startup_to_first_vote_s"] > 0
    table = format_table(report).splitlines()
    assert [line.split()[0] for line in table[1 : len(report["processes"]) + 2]] == [*report["processes"], "total"]


def test_profile_stops_at_its_duration_when_the_source_is_longer(tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(path, stream_with_shots(PROFILED_SECONDS, []), RATE, subtype="PCM_16")
    duration = PROFILED_SECONDS / 2
    result = cli("profile", "--source", str(path), "--duration", str(duration), "--data-dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert duration <= json.loads(result.stdout)["audio_seconds"] < PROFILED_SECONDS


def test_verbose_reaches_the_processes_the_command_starts():
    """The pipeline's processes set up their logging afresh (process_setup): -v must reach them."""
    child = "from pipeline.process import configure_logging as c; import logging; c(); print(logging.getLogger().level)"
    parent = (
        "import logging, subprocess, sys; from pipeline.process import configure_logging as c; c(logging.DEBUG); "
        f"subprocess.run([sys.executable, '-c', {child!r}])"
    )
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == str(logging.DEBUG)


def test_events_and_label_on_an_empty_log_say_so_and_where(tmp_path):
    EventLog(tmp_path).close()
    listed = cli("events", "--near-misses", "--data-dir", str(tmp_path))
    assert (listed.returncode, listed.stdout) == (0, "") and f"none recorded yet in {tmp_path}" in listed.stderr
    labelled = cli("label", "--near-miss", "3", "gunshot", "--data-dir", str(tmp_path))
    assert labelled.returncode == 1 and f"python cli.py events --near-misses --data-dir {tmp_path}" in labelled.stderr


def test_start_scores_the_end_of_a_replayed_recording_as_analyze_does(tmp_path):
    """A recording shorter than a window (and the last part-window of any): before, `start` decided
    nothing in it, while `analyze` (which completes the last window with zeros) heard the shot.
    Started with umask 0022, what it makes in its data folder is still closed to other users."""
    shot = ASSETS / "shots" / f"{PIPELINE_SHOTS[1]}.flac"  # under a second
    models = config_file(tmp_path, "[detector]", f'models_dir = "{pipeline_test_models(tmp_path)}"')
    (found,) = [
        json.loads(line)
        for line in cli("analyze", "--config", str(models), "--format", "jsonl", str(shot)).stdout.splitlines()
    ]
    assert len(found["events"]) == 1
    run = DetectorRun(tmp_path, config_lines=listening_config(tmp_path, "default", RATE))
    previous = os.umask(0o022)  # as `sudo -u gunshot` or a login shell leaves it
    try:
        run.start("--source", str(shot))
    finally:
        os.umask(previous)
    modes: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while run.process.poll() is None:  # the SQLite -wal/-shm files are there while the detector runs
        assert time.monotonic() < deadline, f"timed out waiting for the end of the recording:\n{run.output()}"
        modes |= _modes(run.data_dir)
        time.sleep(0.02)
    modes |= _modes(run.data_dir)  # before this test's own queries make any file
    assert run.stop() == 0
    assert len(run.events()) == 1 and len(run.texts()) == len(RECIPIENTS)
    # Nothing it made in its data folder (the PIN's record, numbers, texts, clips) is open to other users.
    made = {"", "events.sqlite-wal", "outbox.sqlite-shm", "stats.json", LOCK_FILE, "clips", "clips/event-000001.flac"}
    assert made <= modes.keys(), sorted(modes)
    assert {name: oct(mode) for name, mode in modes.items() if mode & 0o007} == {}


def _modes(folder) -> dict[str, int]:
    """Permission bits of `folder` ("") and of everything in it, by path relative to it."""
    found = {}
    for path in (folder, *folder.rglob("*")) if folder.exists() else ():
        with contextlib.suppress(FileNotFoundError):  # SQLite removes its -wal and -shm files at the end
            found[str(path.relative_to(folder)) if path != folder else ""] = stat.S_IMODE(path.stat().st_mode)
    return found
