"""One TOML config file, validated at start: every key has a type, a default, bounds and a doc line.

Unknown keys, wrong types and out-of-range values raise ConfigError naming the dotted key.
CLI flags are applied with `override()`, which validates again.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import tomllib
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerting.encoding import (
    GAMMU_MAX_PARTS,
    GSM7_SPLIT_PART,
    UCS2_SPLIT_PART,
    SMSEncodingError,
    text_parts,
    ucs2_characters,
)
from alerting.phone import PhoneNumberError, validate_e164
from pipeline.users import why_unreadable

DEFAULT_CONFIG_PATH = Path("config.toml")
SIM_PIN = re.compile(r"[0-9]{4,8}")  # what a SIM takes as its PIN (3GPP TS 31.102: 4 to 8 digits)
# The vote window of the shipped models (models/*.json: the longest window_samples / sample_rate); a
# clip holds at least one window (inference/aggregator.py), of models_dir's models too.
SHIPPED_WINDOW = 2.0
# s allowed, besides detector.vote_timeout (for a late model), for a decision (the models' inference)
# and the aggregator's next look at due clips (at least once a second, inference/aggregator.py
# IDLE_WAIT) after a clip's audio is in.
CLIP_WRITE_DELAY = 1.0
SECRET_SHOWN = "(set, not shown)"
# SMS parts an alert (or the site name alone) may take at its longest: 1530 GSM-7 or 670 UCS-2
# characters. Each part is paid for and takes the modem seconds to send while the next recipient's
# alert waits, and phones and networks differ in how many parts they join into one message. Gammu
# makes at most GAMMU_MAX_PARTS (50): the other texts, the site name and a few words, stay far below.
MAX_TEXT_PARTS = 10
MONTHS = range(1, 13)  # the alert's time is tried in each: time zone abbreviations differ in length


class ConfigError(ValueError):
    """A config problem; the message starts with the dotted key."""


def setting(
    default: Any,
    doc: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    path: bool = False,
    secret: bool = False,
    **kw: Any,
) -> Any:
    """A config field with a doc line and optional inclusive bounds; `path`: a leading ~ is
    expanded to the home folder; `secret`: its value is never put in a message."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "path": path, "secret": secret}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class SiteConfig:
    name: str = setting("Unnamed site", "Site name, put in every text: keep it short.")
    timezone: str = setting("UTC", "IANA time zone for the times in texts, e.g. Africa/Nairobi.")


@dataclass(frozen=True)
class AudioConfig:
    device: str = setting("default", "ALSA PCM to capture from, e.g. plughw:CARD=Device (see arecord -L).")
    rate: int = setting(16000, "Capture sample rate in Hz; resampled to the models' rate if different.", 8000, 192000)
    channels: int = setting(1, "Channels to open the device with; they are averaged to mono.", 1, 8)
    period: float = setting(0.25, "ALSA period in seconds (one read; shorter: less delay, more CPU).", 0.01, 1.0)
    ring_seconds: float = setting(
        60.0,
        "Seconds of audio kept in the shared-memory ring; it must hold a one-window event's clip (a longer "
        "one is saved in pieces).",
        10.0,
        600.0,
    )
    source: str = setting("", "Replay this WAV/FLAC file at real time instead of the device.", path=True)
    reopen_max_backoff: float = setting(30.0, "Longest wait between attempts to reopen a failed device, s.", 1.0, 600.0)


@dataclass(frozen=True)
class DetectorConfig:
    models_dir: str = setting(
        "", "Folder with the .tflite models and .json sidecars; empty: the shipped models/.", path=True
    )
    hop: float = setting(0.5, "Seconds between window starts; windows overlap by window - hop.", 0.1, 2.0)
    votes_required: int = setting(
        0,
        "0: the vote chosen on validation (models/ensemble.json: fused or k of n); k: k models must say "
        "'gunshot', each at its own threshold.",
        0,
        16,
    )
    fused_threshold: float = setting(
        0.0,
        "0: the vote chosen on validation; p (0 to 1): a gunshot when the mean log-odds of all models reaches "
        "logit(p), a site's own threshold (python cli.py site-thresholds shows what each costs here).",
        0.0,
        0.999999,
    )
    vote_timeout: float = setting(1.5, "Seconds after a window's first vote to decide without late models.", 0.2, 30.0)
    merge_gap: float = setting(
        2.0,
        "Positive windows no farther apart than this (s) belong to one event: as a shot makes about 3 s of "
        "positive windows, shots up to about merge_gap + 3 s apart are one event and one text.",
        0.0,
        60.0,
    )


@dataclass(frozen=True)
class ModemConfig:
    gammurc: str = setting(
        "",
        "Path to a Gammu config file; when set, it gives device, connection and model (the other keys apply).",
        path=True,
    )
    device: str = setting("/dev/ttyUSB0", "Modem serial device; prefer a stable /dev/serial/by-id/... name.", path=True)
    connection: str = setting("at", "Gammu connection, e.g. at, at115200.")
    model: str = setting("", "Gammu model, usually empty (auto).")
    pin: str = setting("", "SIM PIN (4 to 8 digits, in quotes), if the SIM asks for one.", secret=True)
    smsc: str = setting("", "SMS centre number in E.164 form; empty takes the one stored on the SIM.")
    retry_initial: float = setting(5.0, "First wait after a failed send, s (doubles up to retry_max).", 0.1, 3600.0)
    retry_max: float = setting(
        60.0,
        "Longest wait between send attempts, s: an alert waits up to this long (+25 %) after the modem is back.",
        1.0,
        86400.0,
    )
    network_check: float = setting(
        300.0, "How often the modem's network registration is checked while idle, s.", 10.0, 86400.0
    )


SUMMARY_INTERVAL = 15 * 60.0  # s: the longest an event over alerts.max_per_hour waits for its summary
# No {confidence} by default: the mean of the models' probabilities in the first window is no
# calibrated chance (a volley's opening window read 63 % where its event reached 97 %; with a model
# missing, alerts read surer, not less sure), and a reader takes it for one.
DEFAULT_TEMPLATE = "{site}: possible gunshot at {time}.{note}"


@dataclass(frozen=True)
class AlertsConfig:
    recipients: list[str] = setting([], "Phone numbers in E.164 form, e.g. +447700900123, each once.")
    template: str = setting(
        DEFAULT_TEMPLATE,
        "Text of an alert; fields: {site} {time} {confidence} {note} ({confidence}: the models' mean probability "
        "in the first window, not a calibrated chance). At its longest (a long note, sent again late as "
        f"a repeat) it must fit {MAX_TEXT_PARTS} SMS parts.",
    )
    max_per_hour: int = setting(
        10,
        "Alert and summary texts per recipient per rolling hour; events beyond it go out in summary texts, "
        f"at least every {SUMMARY_INTERVAL / 60:g} min (so at most this + {3600 / SUMMARY_INTERVAL:g} texts an hour).",
        1,
        1000,
    )


@dataclass(frozen=True)
class StorageConfig:
    data_dir: str = setting(
        "./data", "Folder for events, evidence clips and the outbox (relative: to the working directory).", path=True
    )
    clips: bool = setting(True, "Save a clip (FLAC) of each event, near miss and background sample.")
    clip_pre_roll: float = setting(2.0, "Seconds of audio kept before an event in its clip.", 0.0, 20.0)
    clip_post_roll: float = setting(2.0, "Seconds of audio kept after an event in its clip.", 0.0, 20.0)
    retention_days: float = setting(
        30.0, "Clips, closed events, near misses and samples older than this are deleted, unless labelled.", 1.0, 3650.0
    )
    near_misses_per_hour: int = setting(
        4,
        "Near misses (windows a model called a gunshot but the vote turned down) kept per hour, with a clip "
        "to label and train on (python cli.py label, export-labels); 0: off.",
        0,
        60,
    )
    background_samples_per_day: int = setting(
        4,
        "Windows kept per day at random times, whatever they hold, with a clip to label as the site's ordinary "
        "sound (python cli.py label --sample); 0: off.",
        0,
        1440,
    )
    min_free_mb: float = setting(
        200.0, "Free space kept on the data folder's disk: older clips are deleted, new ones skipped.", 0.0, 1e6
    )


@dataclass(frozen=True)
class HealthConfig:
    silence_alert_after: float = setting(
        900.0, "Text the recipients when the microphone gave only silence (or nothing) this long, s.", 5.0, 86400.0
    )
    silence_dbfs: float = setting(
        -85.0, "Audio quieter than this (RMS, dBFS) counts as silence: a dead or unplugged microphone.", -130.0, -20.0
    )
    heartbeat_hours: float = setting(
        0.0,
        "Text the recipients that the detector runs (alerts sent, lost audio, restarts) every this many hours, "
        "counted from the last such text, also across restarts; 0: off.",
        0.0,
        720.0,
    )


@dataclass(frozen=True)
class Config:
    site: SiteConfig = field(default_factory=SiteConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    modem: ModemConfig = field(default_factory=ModemConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    health: HealthConfig = field(default_factory=HealthConfig)


def load_config(path: Path | None) -> Config:
    """Read and validate `path`; None (or the default path, when absent) gives the defaults."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.exists():
            return validate(Config())
        path = DEFAULT_CONFIG_PATH
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))  # -sig: Notepad's byte-order mark
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (copy config.example.toml)") from None
    except PermissionError as exc:
        raise ConfigError(f"config file {path} {why_unreadable(Path(path), exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return validate(_build(Config, raw, ""))


def override(config: Config, changes: dict[str, Any]) -> Config:
    """Apply {"section.key": value} changes (from CLI flags) and validate again."""
    sections: dict[str, dict[str, Any]] = {}
    for dotted, value in changes.items():
        section, key = dotted.split(".", 1)
        sections.setdefault(section, {})[key] = value
    replaced = {name: dataclasses.replace(getattr(config, name), **values) for name, values in sections.items()}
    return validate(dataclasses.replace(config, **replaced))


def validate(config: Config) -> Config:
    """Expands ~ in paths, then checks that span a field's type: bounds, time zone, phone numbers,
    modem settings, the data folder and the clips against the ring."""
    config = _expand_paths(config)
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        for f in dataclasses.fields(value):
            _check_bounds(f"{section.name}.{f.name}", getattr(value, f.name), f.metadata)
    try:
        zoneinfo.ZoneInfo(config.site.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"site.timezone: unknown time zone {config.site.timezone!r} (use an IANA name like Europe/Paris)"
        ) from None
    _check_recipients(config.alerts.recipients)
    try:
        config.alerts.template.format(site="", time="", confidence="", note="")
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"alerts.template: bad placeholder {exc} (use {{site}} {{time}} {{confidence}} {{note}})"
        ) from None
    _check_text_lengths(config)
    if config.detector.votes_required and config.detector.fused_threshold:
        raise ConfigError("detector.fused_threshold: set it or detector.votes_required, not both (0 turns one off)")
    if config.modem.retry_initial > config.modem.retry_max:
        raise ConfigError("modem.retry_initial: must not exceed modem.retry_max")
    _check_pin(config.modem.pin)
    if config.modem.smsc:
        try:
            validate_e164(config.modem.smsc)
        except PhoneNumberError as exc:
            raise ConfigError(f"modem.smsc: {exc} (or leave it empty to use the SIM's)") from None
    _check_data_dir(config.storage.data_dir)
    check_clips_fit_ring(config, SHIPPED_WINDOW)
    return config


def _expand_paths(config: Config) -> Config:
    """The config with a leading ~ (or ~user) of every path setting expanded to the home folder."""
    replaced = {}
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        changes = {}
        for f in dataclasses.fields(value):
            path = getattr(value, f.name)
            if f.metadata.get("path") and isinstance(path, str) and path.startswith("~"):
                try:
                    changes[f.name] = str(Path(path).expanduser())
                except RuntimeError as exc:  # no such user, or no home folder
                    raise ConfigError(f"{section.name}.{f.name}: cannot expand ~ in {path!r} ({exc})") from None
                _refuse_literal_tilde(f"{section.name}.{f.name}", path, changes[f.name])
        if changes:
            replaced[section.name] = dataclasses.replace(value, **changes)
    return dataclasses.replace(config, **replaced) if replaced else config


def _refuse_literal_tilde(key: str, path: str, expanded: str) -> None:
    """Versions before 2026-12-07 took a leading ~ literally: `data_dir = "~/gsdata"` made a folder
    named ~ in the working directory. Expanded now, it would name another, empty folder and leave
    the texts waiting in the old one unsent, so a start with both possible is refused."""
    literal = Path(path)
    if literal.exists() and literal.resolve() != Path(expanded).resolve():
        raise ConfigError(
            f"{key}: {path!r} now means {expanded} (~ is your home folder), but {literal.resolve()} exists: "
            f"what an older version made of it (its texts waiting, events, clips). Move it: "
            f"mv '{literal.resolve()}' '{expanded}' (or give the full path of the one to use)"
        )


def _check_recipients(recipients: list[str]) -> None:
    """Every number E.164 and listed once (twice would text it twice and count twice in max_per_hour)."""
    first_at: dict[str, int] = {}
    for i, number in enumerate(recipients):
        try:
            validate_e164(number)
        except PhoneNumberError as exc:
            raise ConfigError(f"alerts.recipients[{i}]: {exc}") from None
        if number in first_at:
            raise ConfigError(
                f"alerts.recipients[{i}]: {number} is already alerts.recipients[{first_at[number]}] (list it once)"
            )
        first_at[number] = i


def _check_text_lengths(config: Config) -> None:
    """The site name (in every text) and the longest alert fit MAX_TEXT_PARTS SMS parts, also when sent
    again as a repeat, late: a longer text waits for no good, and past GAMMU_MAX_PARTS none can send it."""
    from alerting.outbox import LONGEST_PREFIX  # here: importing this module needs no sqlite3

    repeat = f"with the longest prefix a text may get, {LONGEST_PREFIX.strip()!r}"
    _check_parts("site.name", LONGEST_PREFIX + config.site.name, f"a text of it alone, {repeat},", "shorten it")
    what = f"the longest alert it gives (with site.name, the longest {{time}}, 100% and every {{note}}), {repeat},"
    _check_parts("alerts.template", LONGEST_PREFIX + _longest_alert(config), what, "shorten it or site.name")


def _longest_alert(config: Config, confidence: float = 1.0, notes: bool = True) -> str:
    """The longest alert text `config` gives, made by the code that makes alerts: 100% confidence,
    every note (unless not `notes`), and the longest local time in the year (e.g. Lord Howe
    Island's +11 and +1030)."""
    from alerting.compose import EventAlert, alert_text  # compose imports this module

    year = datetime.datetime.now(datetime.UTC).year
    starts = (datetime.datetime(year, month, 1, tzinfo=datetime.UTC).timestamp() for month in MONTHS)
    alerts = (EventAlert(0, start, confidence, degraded=notes, clock_synchronised=not notes) for start in starts)
    return max((alert_text(config, alert) for alert in alerts), key=len)


def _check_parts(key: str, text: str, what: str, fix: str) -> None:
    """ConfigError naming `key` when `text` takes more than MAX_TEXT_PARTS SMS parts."""
    try:
        parts = len(text_parts(text))
    except SMSEncodingError:
        parts = None
    if parts is not None and parts <= MAX_TEXT_PARTS:
        return
    count = f"more than {GAMMU_MAX_PARTS}" if parts is None else parts
    wide = ucs2_characters(text)
    why = (
        f" ({wide[0]!r} is not in GSM-7: all of it goes as UCS-2, {UCS2_SPLIT_PART} characters a part)" if wide else ""
    )
    raise ConfigError(
        f"{key}: {what} takes {count} SMS parts, {len(text)} characters{why}; at most {MAX_TEXT_PARTS} are "
        f"allowed: {fix}"
    )


def text_cost_warnings(config: Config) -> list[str]:
    """A warning when a typical alert (no note, not a repeat, the longest local time of the year)
    takes more than one SMS part: each part is paid for, and every text of a site name that forces
    UCS-2 takes two or three times the parts. It names the setting and the characters to blame."""
    typical = _longest_alert(config, confidence=0.99, notes=False)
    try:
        parts = len(text_parts(typical))
    except SMSEncodingError:
        parts = GAMMU_MAX_PARTS + 1  # validate() refuses it before this
    if parts <= 1:
        return []
    cost = f"a typical alert takes {parts} SMS parts ({len(typical)} characters), each paid for"
    literal = re.sub(r"\{\w*\}", "", config.alerts.template)  # what the template itself writes
    blamed = [
        (key, ucs2_characters(text)) for key, text in (("site.name", config.site.name), ("alerts.template", literal))
    ]
    if wide := [(key, chars) for key, chars in blamed if chars]:
        return [
            f"{key}: {cost}: {', '.join(map(repr, chars))} {'is' if len(chars) == 1 else 'are'} not in the GSM-7 "
            f"alphabet, so every text goes as UCS-2 ({UCS2_SPLIT_PART} characters a part, not "
            f"{GSM7_SPLIT_PART}); write it without them to make texts cheaper"
            for key, chars in wide
        ]
    return [f"site.name or alerts.template: {cost}: shorten them to make texts cheaper"]


def _check_pin(pin: str) -> None:
    """Empty, or what a SIM takes: a wrong one uses up one of its three tries. The message never
    shows the PIN (the journal may be read by others), only its length and the characters that
    are not digits."""
    if not pin or SIM_PIN.fullmatch(pin):
        return
    wrong = [f"{char!r} (character {i})" for i, char in enumerate(pin, 1) if char not in "0123456789"]
    got = f"{len(pin)} characters, not digits: {', '.join(wrong)}" if wrong else f"{len(pin)} digits"
    raise ConfigError(f"modem.pin: must be 4 to 8 digits (or empty for a SIM without PIN), got {got}")


def _check_data_dir(data_dir: str) -> None:
    """The data folder, or the first of its parents that exists, must be a folder: a file there
    would make every write fail at start, taken for a failing card."""
    for path in (Path(data_dir), *Path(data_dir).parents):
        if os.path.isdir(path):
            return
        if os.path.lexists(path):
            what = "a file, not a folder" if os.path.isfile(path) else "not a folder"
            where = "" if path == Path(data_dir) else f", so {data_dir} cannot be made in it"
            raise ConfigError(f"storage.data_dir: {path} is {what}{where} (give a folder; it is made if missing)")


def check_clips_fit_ring(config: Config, window: float) -> None:
    """Raise ConfigError unless the audio ring still holds the whole clip of an event when the
    aggregator cuts it (inference/aggregator.py), with a vote window of `window` s.

    A clip spans clip_pre_roll before its first window's start to clip_post_roll after its last
    window's end: pre + window + post for a one-window event, near miss or sample. It is cut once
    the post-roll is in, but an event's only once it has closed: when a window starting more than
    merge_gap after its end (up to one hop more) is decided, merge_gap + hop + window after its end.
    The ring must hold that back from the newest row, plus one audio.period (the write in progress
    reuses the oldest rows), detector.vote_timeout (a window waits that long for a late model) and
    CLIP_WRITE_DELAY. A longer event's clip is not cut at close alone: whatever of it the aggregator
    has not saved is saved as a piece once it is half a ring old, so the ring holds the clip of an
    event of any length (unless the aggregator is held up for half a ring: then silence stands in
    for what was overwritten, logged, counted and recorded in the event's clip_lost)."""
    storage, detector = config.storage, config.detector
    if not storage.clips:
        return
    close_wait = detector.merge_gap + detector.hop + window
    after = max(storage.clip_post_roll, close_wait)
    cut_delay = config.audio.period + detector.vote_timeout + CLIP_WRITE_DELAY
    needed = storage.clip_pre_roll + window + after + cut_delay
    if needed <= config.audio.ring_seconds:
        return
    if storage.clip_post_roll >= close_wait:
        after_text = f"storage.clip_post_roll {storage.clip_post_roll:g} s"
        shorten = "storage.clip_pre_roll or storage.clip_post_roll"
    else:
        after_text = (
            f"the wait for the event to close (detector.merge_gap {detector.merge_gap:g} s + detector.hop "
            f"{detector.hop:g} s + the window)"
        )
        shorten = "storage.clip_pre_roll or detector.merge_gap"
    raise ConfigError(
        f"audio.ring_seconds: {config.audio.ring_seconds:g} s cannot hold a whole clip, which needs {needed:g} s: "
        f"storage.clip_pre_roll {storage.clip_pre_roll:g} s + the {window:g} s window + {after_text} + "
        f"{cut_delay:g} s to cut it (audio.period, detector.vote_timeout and the aggregator's delay); "
        f"raise audio.ring_seconds to {math.ceil(needed)} or shorten {shorten}"
    )


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{dotted}: unknown key (known here: {known})")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = _build(kind, value, f"{dotted}.")
        else:
            values[key] = _coerce(dotted, value, kind, fields[key].metadata.get("secret", False))
    return cls(**values)


def _coerce(dotted: str, value: Any, kind: Any, secret: bool = False) -> Any:
    """`value` as `kind`, or ConfigError; the value is named in it unless `secret`."""
    origin = typing.get_origin(kind)
    if origin is list:
        (item_kind,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(f"{dotted}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(f"{dotted}[{i}]", item, item_kind) for i, item in enumerate(value)]
    if isinstance(kind, types.UnionType):
        raise TypeError(f"unsupported config type {kind}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        shown = " (not shown; write it in quotes)" if secret else f" {value!r}"
        raise ConfigError(f"{dotted}: expected {kind.__name__}, got {type(value).__name__}{shown}")
    return value


def _check_bounds(dotted: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{dotted}: {value!r} is not a finite number")
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{dotted}: {value!r} is out of range ({lo} to {hi})")


def describe(config: Config) -> list[tuple[str, Any, str]]:
    """(dotted key, value, doc) for every setting, for `check-config`; a secret one set is not shown
    (its output may go to the journal)."""
    rows = []
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        for f in dataclasses.fields(value):
            shown = getattr(value, f.name)
            if f.metadata.get("secret") and shown:
                shown = SECRET_SHOWN
            rows.append((f"{section.name}.{f.name}", shown, f.metadata["doc"]))
    return rows


FICTIONAL_NUMBER = "+447700900123"  # reserved by Ofcom for drama: never a real phone (the example's, the demo's)
EXAMPLE_VALUES = {"site.name": "North gate", "site.timezone": "Africa/Nairobi", "alerts.recipients": [FICTIONAL_NUMBER]}
EXAMPLE_HEADER = """# Gunshot detector configuration. Copy to config.toml and edit; every key is optional.
# Validate with: python cli.py check-config --config config.toml
# (Made by `python -c "import pipeline.config as c; print(c.example_text(), end='')"`; a test keeps it current.)
"""


def example_text() -> str:
    """The commented example config: every key with its doc line, range and default."""
    lines = [EXAMPLE_HEADER]
    config = Config()
    for section in dataclasses.fields(config):
        lines.append(f"[{section.name}]")
        value = getattr(config, section.name)
        for f in dataclasses.fields(value):
            meta = f.metadata
            bounds = f" Range {meta['lo']:g} to {meta['hi']:g}." if meta.get("lo") is not None else ""
            lines.append(f"# {meta['doc']}{bounds}")
            example = EXAMPLE_VALUES.get(f"{section.name}.{f.name}", getattr(value, f.name))
            lines.append(f"{f.name} = {_toml(example)}")
        lines.append("")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)
