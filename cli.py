"""Command line of the gunshot detector: logs go to stderr, results to stdout."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import sqlite3
import sys
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import click

from pipeline.config import FICTIONAL_NUMBER, ConfigError, describe, load_config, override
from pipeline.process import configure_logging
from pipeline.users import user_name

__version__ = "0.1.0"

DEMO_RECORDING = Path(__file__).parent / "assets" / "demo.flac"
SHIPPED_MODELS = Path(__file__).parent / "models"
DEMO_RECIPIENT = FICTIONAL_NUMBER
STREAM_SEED = 0  # the streaming proxy's mixture (never one the thresholds were chosen on: train.CALIBRATION_SEEDS)

log = logging.getLogger("cli")


class FiniteFloat(click.FloatRange):
    """A number in range that is finite: click's FloatRange lets nan through (no comparison fails)."""

    def convert(self, value, param, ctx) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


POSITIVE = FiniteFloat(min=0.0, min_open=True)


def _load(config_path: Path | None, changes: dict) -> object:
    try:
        config = load_config(config_path)
        return override(config, {k: v for k, v in changes.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None


FILE_TROUBLE = (
    "is the data folder (storage.data_dir, --data-dir) this user's? Run as the detector's user "
    "(sudo -u gunshot .venv/bin/python cli.py ...); a read-only or failing SD card shows in `dmesg`"
)


DATA_FOLDER_COMMANDS = frozenset({"events", "label", "site-thresholds", "export-labels", "stats", "test-modem"})


class Commands(click.Group):
    """A file or database error of a command that reads the data folder (a folder of another
    user, a read-only or failing SD card): what failed and what to look at, not a traceback (-v:
    the traceback too). Other commands' errors, and a closed pipe, keep their own."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise
        except (OSError, sqlite3.Error) as exc:
            if ctx.params.get("verbose") or ctx.invoked_subcommand not in DATA_FOLDER_COMMANDS:
                raise
            raise click.ClickException(f"{_what_failed(exc)}: {FILE_TROUBLE}") from None


@contextlib.contextmanager
def _as_click_error(*kinds: type[Exception]) -> Iterator[None]:
    """Errors of these kinds (their messages name the file and what is wrong) as a clear error."""
    try:
        yield
    except kinds as exc:
        raise click.ClickException(str(exc)) from None


def _what_failed(exc: OSError | sqlite3.Error) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    return f"{exc}"


@click.group(cls=Commands)
@click.version_option(__version__, prog_name="gunshot-detector")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Real-time gunshot detector: listens to a microphone, texts phone numbers when it hears gunfire."""
    # The data folder holds the SIM PIN's record, phone numbers, every text sent and audio clips
    # (speech included): what this makes (the detector's processes inherit it) is for its user and
    # group, not every local account. The unit sets UMask=0027 too, but a command run by hand with
    # `sudo -u gunshot` gets sudo's umask 0022. Not `train`: its models are read by the service's user
    # (trained as root, or copied over with their modes), and they hold no clip.
    if ctx.invoked_subcommand != "train":
        os.umask(0o027)
    configure_logging(logging.DEBUG if verbose else logging.INFO)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML config file (default: ./config.toml if present, else built-in defaults).",
)


@main.command()
@config_option
@click.option("--device", help="ALSA PCM to capture from (e.g. plughw:CARD=Device).")
@click.option("--rate", type=int, help="Capture sample rate in Hz.")
@click.option("--source", type=click.Path(path_type=Path), help="Replay this audio file at real time instead.")
@click.option("--gammurc", type=click.Path(path_type=Path), help="Gammu config file to use instead of [modem].")
@click.option("--recipient", "recipients", multiple=True, help="Phone number (E.164); repeatable; replaces the list.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Folder for events, clips and the outbox.")
@click.option("--demo", is_flag=True, help="Replay the bundled recording with Gammu's dummy phone, then exit.")
def start(config_path, device, rate, source, gammurc, recipients, data_dir, demo) -> None:
    """Run the detector until SIGTERM/Ctrl-C (or, with --source/--demo, the end of the recording)."""
    from pipeline.run import demo_overrides, print_demo_report, run_detector

    _one_source(device, source)
    if demo and (device or rate or gammurc):
        raise click.UsageError(
            "--demo replays its recording with Gammu's dummy phone: drop --device, --rate, --gammurc"
        )
    changes = {
        **_source_changes(device, source),
        "audio.rate": rate,
        "modem.gammurc": str(gammurc) if gammurc else None,
        "alerts.recipients": list(recipients) or None,
        "storage.data_dir": str(data_dir) if data_dir else None,
    }
    if demo:
        changes = {**changes, **demo_overrides(DEMO_RECORDING, DEMO_RECIPIENT, changes)}
    config = _load(config_path, changes)
    code = run_detector(config)
    if demo:
        print_demo_report(config)
    sys.exit(code)


def _one_source(device: str | None, source: Path | None) -> None:
    if device and source:
        raise click.UsageError("give --device (a microphone) or --source (a recording), not both")


def _source_changes(device: str | None, source: Path | None) -> dict[str, str | None]:
    """The config changes the flags make: --device also clears a recording set in the config file."""
    if device:
        return {"audio.device": device, "audio.source": ""}
    return {"audio.source": str(source) if source else None}


@main.command("test-modem")
@config_option
@click.option("--gammurc", type=click.Path(path_type=Path), help="Gammu config file to use instead of [modem].")
@click.option("--send", "send_to", help="Also send a test text to this number (E.164).")
def test_modem_command(config_path, gammurc, send_to) -> None:
    """Initialise the modem and print its identity, SIM, network and signal."""
    from alerting.modem import ModemError
    from alerting.phone import PhoneNumberError, validate_e164
    from alerting.sender import check_modem

    config = _load(config_path, {"modem.gammurc": str(gammurc) if gammurc else None})
    try:
        if send_to:
            validate_e164(send_to)
        report = check_modem(config, send_to)
    except (ModemError, PhoneNumberError) as exc:
        raise click.ClickException(str(exc)) from None
    for key, value in report.items():
        click.echo(f"{key}: {value}")


@main.command()
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text")
def analyze(config_path, files, fmt) -> None:
    """Detect gunshots in audio files with the same models, windows, vote and merging as `start`."""
    from inference.model import ModelError
    from pipeline.run import analyze_files

    config = _load(config_path, {})
    try:
        lines = analyze_files(config, files)
    except (ModelError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    failures = 0
    for line in lines:
        failures += "error" in line or "damaged" in line
        if fmt == "jsonl":
            click.echo(json.dumps(line))
        elif "error" in line:
            click.echo(f"{line['file']}: ERROR {line['error']}")
        else:
            spans = ", ".join(f"{e['start']:.2f}-{e['end']:.2f} s ({e['confidence']:.2f})" for e in line["events"])
            found = "GUNSHOT " + spans if spans else "no gunshot"
            damaged = f" (scored up to the damage: {line['damaged']})" if "damaged" in line else ""
            click.echo(f"{line['file']}: score {line['score']:.3f} {found}{damaged}")
    if failures:
        sys.exit(1)


@main.command()
@config_option
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (default from the config).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text")
@click.option(
    "--near-misses", is_flag=True, help="List the near misses (a model said gunshot, the vote did not) instead."
)
@click.option("--samples", is_flag=True, help="List the background samples (random windows) instead.")
def events(config_path, data_dir, limit, fmt, near_misses, samples) -> None:
    """List recorded events (or near misses, or background samples), with their clips and labels."""
    from pipeline.run import list_events

    config = _load(config_path, {"storage.data_dir": str(data_dir) if data_dir else None})
    _records_folder(config)
    _note_records_in_memory(Path(config.storage.data_dir))
    kept = _kept_table(near_misses, samples)
    records = list_events(config, limit, kept)
    if not records:
        click.echo(f"none recorded yet in {config.storage.data_dir}", err=True)
    for record in records:
        click.echo(json.dumps(record) if fmt == "jsonl" else _event_line(record))


def _records_folder(config) -> Path:
    """The data folder, if the detector ever recorded there (else a clear error)."""
    from inference.eventlog import EVENTS_DB

    folder = Path(config.storage.data_dir)
    if not (folder / EVENTS_DB).exists():
        memory = _in_memory(folder, EVENTS_DB)
        hint = f" (the detector keeps its events in memory: --data-dir {memory})" if memory else ""
        raise click.ClickException(f"{folder} holds no {EVENTS_DB}: give the detector's data folder (--data-dir){hint}")
    return folder


def _in_memory(folder: Path, name: str) -> Path | None:
    """The in-memory stand-in of `folder` if it holds `name`: the detector could not write the
    folder (pipeline/storage.py)."""
    from pipeline.storage import volatile_data_dir

    memory = volatile_data_dir(folder)
    return memory if (memory / name).exists() else None


def _note_records_in_memory(folder: Path) -> None:
    from inference.eventlog import EVENTS_DB

    if memory := _in_memory(folder, EVENTS_DB):
        click.echo(
            f"note: the detector also kept records in memory when {folder} could not be written: "
            f"list them with --data-dir {memory}",
            err=True,
        )


def _event_line(record: dict) -> str:
    from inference.vote import probability_text

    votes = " ".join(f"{m}={probability_text(p)}" for m, p in record["votes"].items())
    parts = [f"#{record['id']}", record["local_time"], f"conf {record['confidence']:.2f}", f"[{votes}]"]
    if "state" in record:  # events have one, near misses and samples not
        parts.append(record["state"] + (" degraded" if record["degraded"] else ""))
    parts.append(f"clip {record['clip'] or '-'}")
    if record["clip_lost"]:  # the ring overwrote part of it before it was saved
        parts.append(f"({record['clip_lost']:.1f} s of it lost: silence)")
    if record["label"]:
        parts.append(f"labelled {record['label']}" + (f" ({record['category']})" if record["category"] else ""))
    return " ".join(parts)


@main.command()
@config_option
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (default from the config).")
@click.option("--near-miss", is_flag=True, help="RECORD_ID is a near miss's, not an event's.")
@click.option("--sample", is_flag=True, help="RECORD_ID is a background sample's, not an event's.")
@click.option("--category", help="What it is, e.g. rifle, shotgun, door_slam (default: gunshot or field_other).")
@click.argument("record_id", type=int)
@click.argument("label", type=click.Choice(["gunshot", "other"]))
def label(config_path, data_dir, near_miss, sample, category, record_id, label) -> None:
    """Label an event, near miss or background sample after listening to its clip: labelled clips
    are kept past the retention and become training data (export-labels)."""
    from inference.eventlog import CLIP_PREFIX, EVENTS, NEAR_MISSES, SAMPLES, EventLog

    config = _load(config_path, {"storage.data_dir": str(data_dir) if data_dir else None})
    folder = _records_folder(config)
    table = _kept_table(near_miss, sample) or EVENTS
    what = CLIP_PREFIX[table].replace("-", " ")
    records = EventLog(folder)
    try:
        found = records.set_label(table, record_id, label, category)
    finally:
        records.close()
    if not found:
        flag = {EVENTS: "", NEAR_MISSES: " --near-misses", SAMPLES: " --samples"}[table]
        raise click.ClickException(
            f"no {what} {record_id} in {folder} (list them: python cli.py events{flag} --data-dir {folder})"
        )
    click.echo(f"{what} {record_id}: {label}" + (f" ({category})" if category else ""))


def _kept_table(near_miss: bool, sample: bool) -> str | None:
    """The table of kept windows that the flags name (None: events)."""
    from inference.eventlog import NEAR_MISSES, SAMPLES

    if near_miss and sample:
        raise click.UsageError("give --near-miss(es) or --sample(s), not both")
    return NEAR_MISSES if near_miss else SAMPLES if sample else None


@main.command("site-thresholds")
@config_option
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (default from the config).")
@click.option("--days", type=POSITIVE, default=30.0, show_default=True, help="Replay this many days back.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def site_thresholds(config_path, data_dir, days, fmt) -> None:
    """What a fused threshold of this site's own would have cost (false alerts per hour) and heard
    (labelled gunshots), replayed from the scores the detector logged here."""
    from inference.model import ModelError
    from pipeline.run import site_threshold_replay

    config = _load(config_path, {"storage.data_dir": str(data_dir) if data_dir else None})
    try:
        result, current = site_threshold_replay(config, days)
    except (FileNotFoundError, ModelError) as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(result.to_json()))
        return
    click.echo(f"listened with every model voting: {result.hours} h; records labelled gunshot: {result.gunshots}")
    click.echo(f"now: {current}")
    click.echo("fused threshold | false alerts | per hour | labelled gunshots heard")
    for c in result.costs:
        rate = "-" if c.false_alerts_per_hour is None else f"{c.false_alerts_per_hour:.3f}"  # nothing listened yet
        click.echo(f"{c.threshold:15g} | {c.false_alerts:12d} | {rate:>8} | {c.gunshots_heard}")
    click.echo(_proposal(result))


def _proposal(result) -> str:
    from inference.site_thresholds import MIN_HOURS, TARGET_ALERTS_PER_HOUR

    if result.hours < MIN_HOURS:
        return f"no proposal yet: {result.hours} of {MIN_HOURS:g} hours listened"
    if result.proposed is None:
        return f"no threshold here stays at or under {TARGET_ALERTS_PER_HOUR} false alerts per hour"
    return (
        f"proposed: [detector] fused_threshold = {result.proposed:g} (the lowest at or under "
        f"{TARGET_ALERTS_PER_HOUR} false alerts per hour here; unlabelled events count as false alerts)"
    )


@main.command("export-labels")
@config_option
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (default from the config).")
@click.option("--source", help="Source name of these clips in the manifest (default: from site.name).")
@click.option("--fold", type=click.Choice(["train", "val"]), default="train", show_default=True)
@click.option(
    "--with-manifest",
    "base",
    type=click.Path(path_type=Path),
    help="Also list this manifest's clips (e.g. ../shared/data/manifest.csv), so that train takes both.",
)
def export_labels(config_path, out, data_dir, source, fold, base) -> None:
    """Write the labelled clips and a training manifest into OUT (python cli.py train --manifest OUT/manifest.csv)."""
    from models.training.field_clips import ExportError, export_labelled, source_name

    config = _load(config_path, {"storage.data_dir": str(data_dir) if data_dir else None})
    try:
        summary = export_labelled(
            Path(config.storage.data_dir), out, source or source_name(config.site.name), fold, base
        )
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        if not _on_the_way_to(out, exc):
            raise  # the data folder's: Commands says what to look at
        raise click.ClickException(f"{_what_failed(exc)}: {_out_trouble(out)}") from None
    click.echo(
        f"{summary.manifest}: {summary.clips} labelled clips ({summary.gunshots} gunshots)"
        f" after {summary.base_rows} rows of the base manifest"
    )
    if summary.without_clip:
        click.echo(f"{summary.without_clip} labelled records have no clip left (disk space floor): not exported")


def _on_the_way_to(out: Path, exc: OSError) -> bool:
    """Whether `exc` is about `out`, a file in it or a folder made on the way to it."""
    if not exc.filename:
        return False
    failed, folder = Path(os.path.abspath(exc.filename)), Path(os.path.abspath(out))
    return failed == folder or folder in failed.parents or failed in folder.parents


def _out_trouble(out: Path) -> str:
    where = "" if out.is_absolute() else f" (a relative OUT starts from the working directory, {Path.cwd()})"
    return (
        f"the output folder OUT ({out}){where} cannot be written here: give a folder this user ({user_name()}) "
        "may write, as an absolute path"
    )


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--fold", type=click.Choice(["val", "train", "all"]), default="val", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option(
    "--stream-hours",
    type=FiniteFloat(min=0.0),
    default=0.0,
    show_default=True,
    help="Also run the streaming proxy: this many hours of validation background with inserted shots (0: off).",
)
@click.option("--seed", type=int, default=STREAM_SEED, show_default=True, help="Seed of the streaming mixture.")
@click.option(
    "--summary",
    type=click.Path(path_type=Path),
    help="Also write the streaming figures without the list of missed shots here (e.g. models/reports/streaming.json).",
)
@config_option
def evaluate(manifest, fold, out, stream_hours, seed, summary, config_path) -> None:
    """Score a labelled manifest with the shipped models, vote and thresholds (the `analyze` path)."""
    from models.training.evaluate import evaluate_manifest, evaluate_stream
    from models.training.streaming import memory_shortfall

    if not manifest.exists():
        raise click.ClickException(f"manifest {manifest} does not exist")
    if stream_hours > 0 and (shortfall := memory_shortfall(stream_hours)):
        raise click.ClickException(f"--stream-hours {stream_hours:g} {shortfall}")
    config = _load(config_path, {})
    models_dir = config.detector.models_dir or SHIPPED_MODELS
    with _as_click_error(ValueError):
        report = evaluate_manifest(manifest, models_dir, out, fold)
    click.echo(json.dumps({k: report[k] for k in ("ensemble", "per_source", "clips")}, indent=1, default=float))
    if stream_hours > 0:
        detector = config.detector
        with _as_click_error(ValueError):
            stream = evaluate_stream(manifest, models_dir, out, detector.hop, detector.merge_gap, stream_hours, seed)
        for long_list in ("missed", "inserted"):
            stream.pop(long_list)
        click.echo(json.dumps(stream, indent=1))
        if summary is not None:
            summary.parent.mkdir(parents=True, exist_ok=True)
            summary.write_text(json.dumps(stream, indent=1) + "\n")


@main.command("test-mic")
@config_option
@click.option("--device", help="ALSA PCM to capture from.")
@click.option("--rate", type=int, help="Capture sample rate in Hz.")
@click.option("--seconds", type=POSITIVE, default=5.0, show_default=True)
def test_mic(config_path, device, rate, seconds) -> None:
    """Show the microphone's input level and clipping for a few seconds."""
    from capture.alsa_source import DeviceError
    from capture.meter import measure

    config = _load(config_path, {"audio.device": device, "audio.rate": rate})
    try:
        for level in measure(config, seconds):
            click.echo(str(level))
    except DeviceError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("check-config")
@config_option
@click.option("--quiet", is_flag=True, help="Print nothing when the config is valid (for a service's start).")
def check_config(config_path, quiet) -> None:
    """Validate a config file, the models and files it names, and print every setting (and warnings)."""
    from capture.preflight import PreflightError, check_source
    from inference.model import ModelError
    from pipeline.run import check_gammurc, config_warnings, load_checked_ensemble

    config = _load(config_path, {})
    try:
        load_checked_ensemble(config)
        check_gammurc(config)
        if config.audio.source:  # not the device: one missing at boot must not stop the service (start waits for it)
            check_source(config)
    except (ModelError, PreflightError, ValueError) as exc:
        raise click.ClickException(f"config: {exc}") from None
    for warning in config_warnings(config):
        click.echo(f"warning: {warning}", err=True)
    if quiet:
        return
    for key, value, doc in describe(config):
        click.echo(f"{key} = {value!r}    # {doc}")


@main.command()
@config_option
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (default from the config).")
def stats(config_path, data_dir) -> None:
    """Show the latest per-process figures written by a running detector."""
    from pipeline.stats import STATS_FILE
    from pipeline.supervisor import detector_running

    config = _load(config_path, {"storage.data_dir": str(data_dir) if data_dir else None})
    folder = Path(config.storage.data_dir)
    memory = _in_memory(folder, STATS_FILE)
    candidates = [folder / STATS_FILE, *([memory / STATS_FILE] if memory else [])]
    written = [path for path in candidates if path.exists()]
    if not written:
        raise click.ClickException(
            f"{folder / STATS_FILE} does not exist: is the detector running on this data folder?"
        )
    path = max(written, key=lambda path: path.stat().st_mtime)
    if path.parent != folder:
        click.echo(f"note: {folder} could not be written: these figures are from memory ({path})", err=True)
    if not detector_running(path.parent):
        written_at = datetime.datetime.fromtimestamp(path.stat().st_mtime, zoneinfo.ZoneInfo(config.site.timezone))
        click.echo(f"note: no detector runs on {path.parent} now: these figures are from {written_at:%c %Z}", err=True)
    click.echo(path.read_text())


@main.command()
@config_option
@click.option("--source", type=click.Path(path_type=Path), help="Replay this audio file (default: the demo).")
@click.option("--device", help="Profile on a live ALSA device instead.")
@click.option(
    "--duration",
    type=POSITIVE,
    default=30.0,
    show_default=True,
    help="Seconds of audio to run for (at most the source's length).",
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (default: a temporary one).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def profile(config_path, source, device, duration, data_dir, as_json) -> None:
    """Run the full pipeline for a while and print CPU, memory, counters and latencies per process."""
    import tempfile

    from capture.preflight import PreflightError, check_source
    from inference.model import ModelError
    from pipeline.profile import Profiler, format_table
    from pipeline.run import demo_overrides
    from pipeline.storage import UnsafeFolder
    from pipeline.supervisor import AlreadyRunning

    _one_source(device, source)
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="gunshot-profile-"))
    changes = {"storage.data_dir": str(data_dir), "audio.source": str(source) if source else None}
    changes.update(demo_overrides(DEMO_RECORDING, DEMO_RECIPIENT, changes))  # Gammu's dummy phone: no one is texted
    if device:
        changes.update(_source_changes(device, None))
    config = _load(config_path, changes)
    with _as_click_error(PreflightError, ModelError, ValueError, AlreadyRunning, UnsafeFolder):
        check_source(config)
        report = Profiler(config, duration).run()
    click.echo(json.dumps(report, indent=1) if as_json else format_table(report))


@main.command()
@click.option(
    "--manifest", type=click.Path(path_type=Path), default=Path("../shared/data/manifest.csv"), show_default=True
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("models"), show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the training schedule.")
@click.option("--quick", is_flag=True, help="A short schedule, for a smoke test.")
@click.option(
    "--leave-one-source-out",
    "loso",
    is_flag=True,
    help="Instead: per gunshot source, train without it and evaluate on it (into --out, default models/runs/loso).",
)
@click.option(
    "--held-out",
    multiple=True,
    metavar="SOURCE",
    help="With --leave-one-source-out: only these folds (repeatable); earlier folds of the same recipe are kept.",
)
@click.option(
    "--calibrate-only",
    is_flag=True,
    help="Only choose new thresholds and vote for the models in --out (with --leave-one-source-out: its folds).",
)
@click.option(
    "--extra-negatives",
    "extra",
    multiple=True,
    metavar="GROUP",
    help="Also train on this group of negatives from Debian game data: games (with espeak-ng speech) "
    "or minetest; repeatable (measured: models/README.md).",
)
@click.option(
    "--copies-scale",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Make this many times the augmented windows of each clip (measured, not shipped: models/README.md).",
)
@click.option(
    "--retrain", is_flag=True, help="Train every model again, also those trained before with the same settings."
)
def train(manifest, out, epochs, quick, loso, held_out, calibrate_only, extra, copies_scale, retrain) -> None:
    """Train the three CNNs and export them to TFLite (needs the `train` extra: TensorFlow).

    Run again after a stop, it keeps the models it trained before with the same windows, code and
    epochs (--out/cache/trained-MODEL.json) and trains the rest."""
    if held_out and not loso:
        raise click.UsageError("--held-out names the folds of --leave-one-source-out: give that too")
    try:
        from models.training import loso as leave_one_source_out
        from models.training.data import ManifestError
        from models.training.extra_negatives import sources_of
        from models.training.train import main as train_main
    except ImportError as exc:
        raise click.ClickException(f"training needs TensorFlow: pip install -e '.[train]' ({exc})") from None
    if not manifest.exists():
        raise click.ClickException(f"manifest {manifest} does not exist")
    try:
        sources_of(tuple(extra))
    except ValueError as exc:
        raise click.ClickException(f"--extra-negatives: {exc}") from None
    if retrain and calibrate_only:
        raise click.ClickException("--retrain trains, --calibrate-only does not: choose one")
    if loso:
        out = Path("models/runs/loso") if out == Path("models") else out
        epochs = epochs or leave_one_source_out.LOSO_EPOCHS
        try:
            leave_one_source_out.main(
                manifest,
                out,
                epochs,
                calibrate_only,
                tuple(held_out),
                extra=tuple(extra),
                copies_scale=copies_scale,
                retrain=retrain,
            )
        except ManifestError as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError as exc:
            raise click.ClickException(f"--held-out: {exc}") from None
        return
    if calibrate_only:
        from models.training.train import recalibrate

        with _as_click_error(ManifestError):
            recalibrate(manifest, out)
        return
    with _as_click_error(ManifestError):
        train_main(
            manifest, out, epochs=epochs, quick=quick, extra=tuple(extra), copies_scale=copies_scale, retrain=retrain
        )


if __name__ == "__main__":
    main()
