"""Bad input gets a clear error that says what is wrong and what to do: never a traceback."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from alerting.outbox import Outbox, outbox_path
from capture.audio_file import DAMAGE_STEP_SECONDS, AudioFileError, iter_audio_blocks, read_audio
from capture.process import EXIT_SOURCE_DAMAGED
from inference.eventlog import EventLog
from tests.audio_env import alsa_replay_config, write_raw
from tests.conftest import tmpfs
from tests.detector_run import RATE, RECIPIENTS, DetectorRun, listening_config, pipeline_test_models, stream_with_shots
from tests.gammu_env import dummy_gammurc

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120
DAMAGE_PRINTED_TO = 0.1  # s: "damaged between 19.5 and 19.8 s"
MAX_ANALYZE_RSS_MB = 200  # measured 72 (numpy, LiteRT, 10 s blocks); the whole file would add 230+


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def odd_files(tmp_path):
    audio = stream_with_shots(3.0, [(1.5, "openarena-shotgun")])
    files = {}
    files["empty.wav"] = tmp_path / "empty.wav"
    files["empty.wav"].write_bytes(b"")
    files["text.wav"] = tmp_path / "text.wav"
    files["text.wav"].write_text("this is not audio\n" * 100)
    full = tmp_path / "full.flac"
    soundfile.write(full, audio, 16000, subtype="PCM_16")
    files["truncated.flac"] = tmp_path / "truncated.flac"
    files["truncated.flac"].write_bytes(full.read_bytes()[: len(full.read_bytes()) // 3])
    wav = tmp_path / "full.wav"
    soundfile.write(wav, audio, 16000, subtype="PCM_16")
    files["truncated.wav"] = tmp_path / "truncated.wav"
    files["truncated.wav"].write_bytes(wav.read_bytes()[:20000])
    for name, subtype in (("u8.wav", "PCM_U8"), ("s24.wav", "PCM_24"), ("float.wav", "FLOAT")):
        files[name] = tmp_path / name
        soundfile.write(files[name], audio, 16000, subtype=subtype)
    files["96k.wav"] = tmp_path / "96k.wav"
    soundfile.write(files["96k.wav"], np.repeat(audio, 6), 96000, subtype="PCM_16")
    files["6ch.wav"] = tmp_path / "6ch.wav"
    soundfile.write(files["6ch.wav"], np.tile(audio[:, None], (1, 6)), 16000, subtype="PCM_16")
    files["short.wav"] = tmp_path / "short.wav"
    soundfile.write(files["short.wav"], audio[:4000], 16000, subtype="PCM_16")
    files["missing.wav"] = tmp_path / "missing.wav"
    return files


ERRORS = {"empty.wav", "text.wav", "missing.wav", "truncated.flac"}


def test_unreadable_files_raise_a_clear_error(odd_files):
    for name in ERRORS:
        with pytest.raises(AudioFileError, match=name.split(".")[0]):
            read_audio(odd_files[name], 16000)


@pytest.mark.parametrize("name", ["u8.wav", "s24.wav", "float.wav", "96k.wav", "6ch.wav", "short.wav", "truncated.wav"])
def test_odd_but_valid_files_decode_to_16k_mono(odd_files, name):
    audio = read_audio(odd_files[name], 16000)
    assert audio.ndim == 1 and audio.dtype == np.float32
    expected = {"short.wav": 4000}.get(name)
    if expected:
        assert len(audio) == expected
    elif name != "truncated.wav":
        assert abs(len(audio) - 48000) <= 16
    assert 0.005 < np.max(np.abs(audio)) <= 1.0


def test_streamed_blocks_equal_the_whole_file(odd_files):
    whole = read_audio(odd_files["96k.wav"], 16000)
    streamed = np.concatenate(list(iter_audio_blocks(odd_files["96k.wav"], 16000, block_seconds=0.37)))
    np.testing.assert_allclose(streamed, whole, atol=1e-4)


def test_analyze_reports_each_file_and_fails_at_the_end(odd_files, tmp_path):
    names = ["u8.wav", "empty.wav", "short.wav", "text.wav", "6ch.wav", "missing.wav"]
    result = cli("analyze", "--format", "jsonl", *(str(odd_files[n]) for n in names), cwd=tmp_path)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(line["file"]).name for line in lines] == names
    for name, line in zip(names, lines, strict=True):
        if name in ERRORS:
            assert set(line) == {"file", "error"} and line["error"]
        else:
            assert set(line) == {"file", "score", "detected", "events"}
            assert 0.0 <= line["score"] <= 1.0
            assert line["detected"] == bool(line["events"])


QUICK_SILENCE = ["[health]", "silence_alert_after = 5.0"]


def sent(run: DetectorRun) -> int:
    return sum(text["state"] == "sent" for text in run.texts())


def test_start_with_a_missing_microphone_says_so_and_still_sends_the_waiting_texts_and_the_silence(tmp_path):
    """Not an exit (under systemd: a restart loop in which nothing is ever sent): the capture keeps
    trying the device, the outbox empties, and the recipients learn that nothing is heard."""
    run = DetectorRun(tmp_path, config_lines=[*listening_config(tmp_path, "no_such_mic", 16000), *QUICK_SILENCE])
    with Outbox(outbox_path(run.data_dir)) as outbox:
        outbox.enqueue(RECIPIENTS[0], "an alert waiting since the last power cut", "alert")
    run.start()
    try:
        run.wait_until(lambda: run.assert_running() or sent(run) == 1 + len(RECIPIENTS), 60, "the texts")
    finally:
        assert run.stop() == 0
    assert "audio.device" in run.output() and "no_such_mic" in run.output() and "arecord" in run.output()
    assert "Starting anyway" in run.output()
    # libasound's own line at every reopen (measured: 719 in 12 minutes at a 1 s backoff) is a debug line
    assert "ALSA lib" not in run.output() and run.output().count("retrying every") == 1
    assert sum("microphone silent" in text["text"] for text in run.texts()) == len(RECIPIENTS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recipient", "0770 090 0123"], "alerts.recipients[0]"),
        (["--gammurc", "my-gammurc"], "modem.gammurc: my-gammurc is not a file (a relative path"),
        (["--rate", "5"], "audio.rate"),
        (["--source", "/no/such/file.wav"], "audio.source: /no/such/file.wav: no such file"),
        (["--source", "."], "audio.source: .: is a folder, not an audio file"),
        (["--source", "header-only.wav"], "audio.source: header-only.wav: holds no audio"),
        (["--source", "notes.wav"], "audio.source: notes.wav: not a readable audio file"),
    ],
)
def test_start_with_bad_flags_names_the_setting(tmp_path, args, message):
    soundfile.write(tmp_path / "header-only.wav", np.zeros(0, dtype=np.int16), 16000)
    (tmp_path / "notes.wav").write_text("not audio")
    result = cli("start", "--data-dir", str(tmp_path / "data"), *args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr


def test_start_with_an_unknown_config_key_names_it(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[audio]\ndevice = 'default'\nperiodsize = 1600\n")
    result = cli("start", "--config", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert "audio.periodsize: unknown key" in result.stderr


def test_test_modem_without_a_modem_is_a_clear_error(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f"[modem]\ndevice = '{tmp_path / 'ttyUSB9'}'\nconnection = 'at'\n")
    result = cli("test-modem", "--config", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert "ttyUSB9" in result.stderr and ("plugged in" in result.stderr or "cannot be opened" in result.stderr)


def test_an_hours_long_file_is_analysed_in_bounded_memory_with_its_shot_found(tmp_path):
    """An hour of 16 kHz audio: decoding it whole would take 230 MB of float32 (115 MB of int16)."""
    hours, shot_at = 1.0, 2500.0  # s into the file
    path = tmp_path / "long.wav"
    block = stream_with_shots(60.0, [])
    with soundfile.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as out:
        for minute in range(round(hours * 60)):
            start = minute * 60.0
            out.write(
                stream_with_shots(60.0, [(shot_at - start, "hedgewars-shotgun")])
                if start <= shot_at < start + 60
                else block
            )
    config = tmp_path / "pipeline-test.toml"  # thresholds at which the bundled shot is heard for sure
    config.write_text(f'[detector]\nmodels_dir = "{pipeline_test_models(tmp_path)}"\n')
    memory_probe = (  # VmHWM: the peak of this process's own memory (ru_maxrss would count the parent's pages)
        "import runpy, sys; sys.argv = sys.argv[1:]; exit_code = 0\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as exc:\n    exit_code = exc.code or 0\n"
        "peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1]\n"
        "print('maxrss_kb', peak, file=sys.stderr)\n"
        "sys.exit(exit_code)"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            memory_probe,
            str(ROOT / "cli.py"),
            "analyze",
            "--config",
            str(config),
            "--format",
            "jsonl",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    assert [round(event["start"]) for event in line["events"]] in ([2499], [2500], [2498])
    max_rss_mb = int(result.stderr.split("maxrss_kb")[-1].split()[0]) / 1024
    assert max_rss_mb < MAX_ANALYZE_RSS_MB, f"analyze of {hours} h peaked at {max_rss_mb:.0f} MB"


def cut_flac(path: Path, duration: float, shot_at: float, keep: float) -> Path:
    """A FLAC with one shot, cut to its first `keep` of bytes: damaged part-way, its header intact."""
    full = path.with_suffix(".full.flac")
    soundfile.write(full, stream_with_shots(duration, [(shot_at, "hedgewars-shotgun")]), 16000, subtype="PCM_16")
    path.write_bytes(full.read_bytes()[: round(len(full.read_bytes()) * keep)])
    return path


def test_analyze_scores_a_file_damaged_part_way_up_to_the_damage_and_says_where(tmp_path):
    damaged = cut_flac(tmp_path / "damaged.flac", 25.0, 3.0, keep=0.7)
    config = tmp_path / "pipeline-test.toml"
    config.write_text(f'[detector]\nmodels_dir = "{pipeline_test_models(tmp_path)}"\n')
    result = cli("analyze", "--config", str(config), "--format", "jsonl", str(damaged), cwd=tmp_path)
    assert result.returncode == 1
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    assert [round(event["start"]) for event in line["events"]] in ([2], [3])
    assert re.search(r"damaged between [\d.]+ and [\d.]+ s", line["damaged"])
    text = cli("analyze", "--config", str(config), str(damaged), cwd=tmp_path)
    assert text.returncode == 1 and text.stdout.strip().endswith(f"(scored up to the damage: {line['damaged']})")


@pytest.mark.parametrize(("duration", "shot_at"), [(8.0, 4.0), (20.0, 15.0)], ids=["first-block", "later-block"])
def test_analyze_of_a_file_cut_near_its_end_scores_all_before_the_damage_as_the_clean_file(tmp_path, duration, shot_at):
    """As the live replay does: the 10 s block that holds the damage is read again step by step, so
    only the step that holds it is lost (not the whole block, nor the whole file if it is the first)."""
    damaged = cut_flac(tmp_path / "damaged.flac", duration, shot_at, keep=0.99)
    clean, _ = soundfile.read(damaged.with_suffix(".full.flac"), dtype="int16")
    config = tmp_path / "pipeline-test.toml"
    config.write_text(f'[detector]\nmodels_dir = "{pipeline_test_models(tmp_path)}"\n')
    first = cli("analyze", "--config", str(config), "--format", "jsonl", str(damaged), cwd=tmp_path)
    (line,) = [json.loads(text) for text in first.stdout.splitlines()]
    assert "damaged" in line, line
    start, end = map(float, re.search(r"damaged between ([\d.]+) and ([\d.]+) s", line["damaged"]).groups())
    assert duration - 1.0 <= start < end <= start + DAMAGE_STEP_SECONDS + DAMAGE_PRINTED_TO / 2  # the last second
    damage_at = round(start / DAMAGE_STEP_SECONDS) * DAMAGE_STEP_SECONDS  # the steps start on multiples of it
    prefix = tmp_path / "prefix.flac"
    soundfile.write(prefix, clean[: round(damage_at * RATE)], RATE, subtype="PCM_16")
    second = cli("analyze", "--config", str(config), "--format", "jsonl", str(prefix), cwd=tmp_path)
    (clean_line,) = [json.loads(text) for text in second.stdout.splitlines()]
    assert [line[key] for key in ("score", "events")] == [clean_line[key] for key in ("score", "events")]
    assert [event["start"] <= shot_at <= event["end"] for event in line["events"]] == [True]


@pytest.mark.parametrize(("setting", "key"), [("hop = 0.3", "detector.hop"), ("votes_required = 5", "votes_required")])
def test_analyze_with_settings_the_models_cannot_take_names_the_key(tmp_path, setting, key):
    config = tmp_path / "config.toml"
    config.write_text(f"[detector]\n{setting}\n")
    result = cli("analyze", "--config", str(config), str(ROOT / "assets" / "demo.flac"), cwd=tmp_path)
    assert result.returncode != 0 and key in result.stderr


def test_start_on_a_recording_damaged_part_way_alerts_once_and_exits_saying_so(tmp_path):
    """Replaying it again after the damage (a restarted capture) would text the same shot again."""
    damaged = cut_flac(tmp_path / "damaged.flac", 12.0, 2.0, keep=0.6)
    run = DetectorRun(tmp_path, config_lines=[f'[detector]\nmodels_dir = "{pipeline_test_models(tmp_path)}"'])
    run.start("--source", str(damaged), "--recipient", RECIPIENTS[0], "--gammurc", str(dummy_gammurc(tmp_path)))
    try:
        code = run.process.wait(TIMEOUT)
    finally:
        run.stop()
    assert code == EXIT_SOURCE_DAMAGED, run.output()
    assert "the rest of the recording cannot be replayed" in run.output()
    assert [event["state"] for event in run.events()] == ["closed"]
    assert [text["state"] for text in run.texts()] == ["sent"]


@pytest.mark.parametrize("command", [("events",), ("label", "1", "gunshot")])
def test_record_commands_on_a_folder_the_detector_never_used_say_so(tmp_path, command):
    result = cli(*command, "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 1 and "holds no events.sqlite" in result.stderr


def test_a_stereo_file_is_read_as_the_mean_of_its_channels(tmp_path):
    left = np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000).astype(np.float32) / 2
    right = np.full(16000, 0.25, dtype=np.float32)
    soundfile.write(tmp_path / "stereo.wav", np.column_stack((left, right)), 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(tmp_path / "stereo.wav", 16000), (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["start", "--device", "plughw:CARD=Mic", "--source", "shots.wav"], "not both"),
        (["profile", "--device", "plughw:CARD=Mic", "--source", "shots.wav"], "not both"),
        (["start", "--demo", "--gammurc", "my-gammurc"], "drop --device, --rate, --gammurc"),
        (["start", "--demo", "--device", "plughw:CARD=Mic"], "drop --device, --rate, --gammurc"),
        (["train", "--held-out", "elp"], "--held-out names the folds of --leave-one-source-out"),
    ],
)
def test_flags_that_cannot_both_apply_are_refused_not_ignored(tmp_path, args, message):
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr


def test_profile_refuses_what_start_refuses(tmp_path):
    (tmp_path / "notes.wav").write_text("not audio")
    result = cli("profile", "--source", "notes.wav", cwd=tmp_path)
    assert result.returncode == 1 and "audio.source" in result.stderr
    result = cli("profile", "--device", "no_such_mic", "--duration", "2", cwd=tmp_path)
    assert result.returncode == 1 and "audio.device" in result.stderr and "no_such_mic" in result.stderr


QUICK_PROFILE = ["--duration", "3", "--json"]


def test_profile_on_a_live_device_texts_no_one(tmp_path):
    """It runs beside the service on the Pi: its texts go to Gammu's dummy phone, never to the
    configured modem and recipients."""
    config = tmp_path / "config.toml"
    config.write_text(
        f"[modem]\ndevice = '{tmp_path / 'ttyUSB9'}'\nconnection = 'at'\n[alerts]\nrecipients = {list(RECIPIENTS)!r}\n"
    )
    raw = write_raw(tmp_path / "mic.raw", (stream_with_shots(4.0, []) * 32767).astype(np.int16))
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "profile",
            "--config",
            str(config),
            "--device",
            "replay",
            *QUICK_PROFILE,
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        env={**os.environ, **alsa_replay_config(tmp_path, raw, clocked=False)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["processes"]["sms"]["pid"] > 0
    assert "ttyUSB9" not in result.stderr
    assert "dummy" in (tmp_path / "data" / "gammurc").read_text()


@pytest.mark.parametrize(
    "args", [["events"], ["label", "1", "gunshot"], ["site-thresholds"], ["export-labels", "out", "--source", "site"]]
)
def test_a_command_on_a_read_only_data_folder_says_what_to_do(tmp_path, args):
    """The README's failing SD card (and a folder of another user): no traceback."""
    with tmpfs(tmp_path / "card", 4) as card:
        EventLog(card / "data").close()
        subprocess.run(["mount", "-o", "remount,ro", str(card)], check=True)
        result = cli(*args, "--data-dir", str(card / "data"), cwd=tmp_path)
    assert result.returncode == 1 and "sudo -u gunshot" in result.stderr and "dmesg" in result.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["test-mic", "--seconds", "nan"], "'--seconds': 'nan' is not a finite number"),
        (["site-thresholds", "--days", "-1"], "'--days'"),
        (["events", "--limit", "0"], "'--limit'"),
        (["profile", "--duration", "0"], "'--duration'"),
    ],
)
def test_a_number_out_of_range_on_the_command_line_is_refused(tmp_path, args, option):
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and f"Invalid value for {option}" in result.stderr


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["path,label,source"], "no column category, split_group, fold"),
        (["path,label,category,source,split_group,fold"], "holds no clips"),
        (
            ["path,label,category,source,split_group,fold", "gone.flac,gunshot,rifle,s,g1,val"],
            "gone.flac: cannot be read",
        ),
        (
            ["path,label,category,source,split_group,fold", "notes.flac,gunshot,rifle,s,g1,val"],
            "notes.flac: cannot be read",
        ),
        (
            ["path,label,category,source,split_group,fold", "shot.flac,gunshot,rifle,s,g1,train"],
            "no clips in fold 'val'",
        ),
    ],
)
def test_evaluate_on_a_bad_manifest_says_what_is_wrong(tmp_path, rows, message):
    (tmp_path / "notes.flac").write_text("not audio")
    soundfile.write(tmp_path / "shot.flac", stream_with_shots(2.0, []), RATE)
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    result = cli("evaluate", "manifest.csv", "--out", "report", cwd=tmp_path)
    assert result.returncode == 1 and message in result.stderr
