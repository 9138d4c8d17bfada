"""The field-data loop for real: a running detector keeps a shot that one model alone heard as a
near miss with its clip (no text), a person lists and labels it on the command line, and
export-labels writes a manifest that the training loader reads, after the base manifest's rows.
Background samples go through the same commands. The run's score log is checked too."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from cli import DEMO_RECIPIENT, DEMO_RECORDING, main
from inference.eventlog import NEAR_MISSES, SAMPLES, EventLog
from inference.model import load_ensemble
from inference.score_log import model_set
from models.training.data import load_clips
from models.training.field_clips import MANIFEST_COLUMNS, ExportError, export_labelled, source_name
from pipeline.run import demo_overrides
from tests.detector_run import PIPELINE_SHOTS, RATE, DetectorRun, cli, listening_config, stream_with_shots
from tests.other_user import NOBODY, as_nobody, needs_root, open_folder

NEVER = 2.0  # a threshold no probability reaches
SHOT_AT = 4.0  # s into the recording


def only_mel_fine_can_say_gunshot(models_dir) -> None:
    """The pipeline-test models (mel_fine hears PIPELINE_SHOTS at every offset: test_pipeline_shots)
    with the other two deaf: 2 of 3 is never reached, so each shot mel_fine hears is a near miss."""
    for model_id in ("wave", "mel_coarse"):
        sidecar = models_dir / f"{model_id}.json"
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "threshold": NEVER}))


def base_manifest(folder) -> tuple:
    """A one-clip manifest of the training data's form."""
    (folder / "audio").mkdir(parents=True)
    soundfile.write(folder / "audio" / "quiet.flac", np.zeros(RATE, dtype=np.float32), RATE)
    path = folder / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS)
        writer.writeheader()
        row = ("audio/quiet.flac", "other", "silence", "lab", "made here", "CC0", "16000", "1.0", "lab_0", "val")
        writer.writerow(dict(zip(MANIFEST_COLUMNS, row, strict=True)))
    return path


def test_a_shot_one_model_hears_is_kept_labelled_and_exported_for_training(tmp_path):
    recording = tmp_path / "shot.wav"
    soundfile.write(recording, stream_with_shots(8.0, [(SHOT_AT, PIPELINE_SHOTS[0])]), RATE, subtype="PCM_16")
    run = DetectorRun(tmp_path, config_lines=listening_config(tmp_path, "default", RATE))
    only_mel_fine_can_say_gunshot(tmp_path / "pipeline-models")
    run.start("--source", str(recording))
    run.wait_until(lambda: run.process.poll() is not None, 60, "the end of the recording")
    assert run.stop() == 0
    data = str(run.data_dir)

    listed = cli("events", "--near-misses", "--format", "jsonl", "--data-dir", data)
    (near_miss,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert near_miss["votes"]["mel_fine"] >= 0.8 and near_miss["label"] is None
    assert run.events() == [] and run.texts() == []
    models = model_set(load_ensemble(tmp_path / "pipeline-models"))
    _, scores, listened = EventLog(run.data_dir).window_scores(0.0, models)  # the score log, at shutdown
    assert 5.0 <= listened <= 8.0 and scores.max() >= 0.5  # the near miss's window among them
    clip, rate = soundfile.read(run.data_dir / near_miss["clip"], dtype="float32")
    assert rate == RATE and clip.shape[0] >= 4 * RATE  # the window and its pre- and post-roll

    assert cli("label", "--near-miss", str(near_miss["id"] + 1), "gunshot", "--data-dir", data).returncode == 1
    labelled = cli("label", "--near-miss", str(near_miss["id"]), "gunshot", "--category", "shotgun", "--data-dir", data)
    assert labelled.returncode == 0, labelled.stderr

    out = tmp_path / "export"
    base = base_manifest(tmp_path / "base")
    args = ("export-labels", str(out), "--data-dir", data, "--with-manifest", str(base))
    refused = cli(*args, "--source", "lab")
    assert refused.returncode == 1 and "already in" in refused.stderr
    exported = cli(*args, "--source", "test_range")
    assert exported.returncode == 0, exported.stderr

    quiet, shot = load_clips(out / "manifest.csv", tmp_path / "cache")
    assert (quiet.source, quiet.label, quiet.fold) == ("lab", 0, "val")
    assert (shot.source, shot.label, shot.category, shot.fold) == ("test_range", 1, "shotgun", "train")
    assert shot.split_group.startswith("test_range_")
    assert np.allclose(shot.audio, clip, atol=1e-4)


def test_a_background_sample_is_listed_labelled_and_exported_as_the_site_s_background(tmp_path):
    """The detector's sampling is tested in tests/test_background_sample.py; here, the CLI on its records."""
    data = tmp_path / "data"
    log = EventLog(data)
    sample = log.add_window(SAMPLES, time.time(), 0.1, {"wave": 0.1}, {"wave": "v"})
    log.attach_clip(SAMPLES, sample, np.zeros(RATE, dtype=np.int16), RATE)
    listed = cli("events", "--samples", "--format", "jsonl", "--data-dir", str(data))
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [sample]
    both = cli("label", "--near-miss", "--sample", str(sample), "other", "--data-dir", str(data))
    assert both.returncode == 2 and "not both" in both.stderr
    missing = cli("label", "--sample", str(sample + 1), "other", "--data-dir", str(data))
    assert missing.returncode == 1 and "events --samples" in missing.stderr
    assert cli("label", "--sample", str(sample), "other", "--data-dir", str(data)).returncode == 0
    assert cli("export-labels", str(tmp_path / "out"), "--data-dir", str(data), "--source", "farm").returncode == 0
    (row,) = csv.DictReader((tmp_path / "out" / "manifest.csv").open())
    assert (row["label"], row["category"], row["source"]) == ("other", "background", "farm")


@needs_root
def test_an_out_folder_this_user_cannot_write_is_named_not_the_data_folder():
    """As the README's `sudo -u gunshot` from root's repository folder: the data folder is the
    user's, OUT (relative) is not writable there. Run as nobody (root writes anywhere)."""
    with open_folder() as folder:
        data = folder / "data"
        log = EventLog(data)
        sample = log.add_window(SAMPLES, time.time(), 0.1, {"wave": 0.1}, {"wave": "v"})
        log.attach_clip(SAMPLES, sample, np.zeros(RATE, dtype=np.int16), RATE)
        log.set_label(SAMPLES, sample, "other", None)
        log.close()
        for path in (data, *data.rglob("*")):
            os.chown(path, NOBODY, NOBODY)

        def export() -> tuple[int, str]:
            os.chdir(folder)  # root's, 0755
            result = CliRunner().invoke(main, ["export-labels", "field", "--data-dir", str(data), "--source", "farm"])
            return result.exit_code, result.output

        code, output = as_nobody(export)
    assert code == 1
    assert output.startswith(
        f"Error: Permission denied: field: the output folder OUT (field) (a relative OUT starts from the working "
        f"directory, {folder}) cannot be written here: give a folder this user (nobody) may write"
    )
    assert "data folder" not in output


def test_export_says_what_is_wrong_and_what_to_do(tmp_path):
    data = tmp_path / "data"
    with pytest.raises(ExportError, match=r"holds no events\.sqlite"):
        export_labelled(data, tmp_path / "out", "site")
    log = EventLog(data)
    near_miss = log.add_window(NEAR_MISSES, time.time(), 0.5, {"wave": 0.99}, {"wave": "v"})
    log.attach_clip(NEAR_MISSES, near_miss, np.zeros(RATE, dtype=np.int16), RATE)
    with pytest.raises(ExportError, match=r"no labelled clips .*\(python cli\.py label\)"):
        export_labelled(data, tmp_path / "out", "site")
    log.set_label(NEAR_MISSES, near_miss, "other", None)
    with pytest.raises(ExportError, match="lower-case letters"):
        export_labelled(data, tmp_path / "out", "North gate")
    with pytest.raises(ExportError, match="does not exist"):
        export_labelled(data, tmp_path / "out", "site", base_manifest=tmp_path / "no.csv")
    summary = export_labelled(data, tmp_path / "out", source_name("North gate!"))
    assert (summary.clips, summary.gunshots, summary.base_rows) == (1, 0, 0)
    (row,) = csv.DictReader((tmp_path / "out" / "manifest.csv").open())
    assert (row["source"], row["category"], row["label"]) == ("north_gate", "field_other", "other")


def test_a_second_demo_keeps_the_labels_made_in_the_first(tmp_path, monkeypatch):
    """The demo's report tells the user to label its near misses in its folder: a later demo run
    must not throw those labels away (it used to empty the folder first)."""
    monkeypatch.chdir(tmp_path)
    folder = Path(demo_overrides(DEMO_RECORDING, DEMO_RECIPIENT, {})["storage.data_dir"])
    log = EventLog(folder)
    near_miss = log.add_window(NEAR_MISSES, time.time(), 0.7, {"wave": 0.9}, {})
    log.set_label(NEAR_MISSES, near_miss, "gunshot", None)
    log.close()
    demo_overrides(DEMO_RECORDING, DEMO_RECIPIENT, {})
    assert [record.label for record in EventLog(folder).windows(NEAR_MISSES)] == ["gunshot"]
