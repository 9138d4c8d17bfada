"""One TOML config file, validated at start: every key has a type, a default, bounds and a doc line.

Unknown keys, wrong types and out-of-range values raise ConfigError naming the dotted key.
CLI flags are applied with `override()`, which validates again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerting.phone import PhoneNumberError, validate_e164

DEFAULT_CONFIG_PATH = Path("config.toml")


class ConfigError(ValueError):
    """A config problem; the message starts with the dotted key."""


def setting(default: Any, doc: str, lo: float | None = None, hi: float | None = None, **kw: Any) -> Any:
    """A config field with a doc line and optional inclusive bounds."""
    meta = {"doc": doc, "lo": lo, "hi": hi}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class SiteConfig:
    name: str = setting("Unnamed site", "Site name, put in every text.")
    timezone: str = setting("UTC", "IANA time zone for the times in texts, e.g. Africa/Nairobi.")


@dataclass(frozen=True)
class AudioConfig:
    device: str = setting("default", "ALSA PCM to capture from, e.g. plughw:CARD=Device (see arecord -L).")
    rate: int = setting(16000, "Capture sample rate in Hz; resampled to the models' rate if different.", 8000, 192000)
    channels: int = setting(1, "Channels to open the device with; they are averaged to mono.", 1, 8)
    period: float = setting(0.25, "ALSA period in seconds (one read; shorter: less delay, more CPU).", 0.01, 1.0)
    ring_seconds: float = setting(60.0, "Seconds of audio kept in the shared-memory ring.", 10.0, 600.0)
    source: str = setting("", "Replay this WAV/FLAC file at real time instead of the device.")
    reopen_max_backoff: float = setting(30.0, "Longest wait between attempts to reopen a failed device, s.", 1.0, 600.0)


@dataclass(frozen=True)
class DetectorConfig:
    models_dir: str = setting("", "Folder with the .tflite models and .json sidecars; empty: the shipped models/.")
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
    merge_gap: float = setting(2.0, "Positive windows closer than this (s) belong to one event.", 0.0, 60.0)


@dataclass(frozen=True)
class ModemConfig:
    gammurc: str = setting("", "Path to a Gammu config file; when set, the keys below are ignored.")
    device: str = setting("/dev/ttyUSB0", "Modem serial device; prefer a stable /dev/serial/by-id/... name.")
    connection: str = setting("at", "Gammu connection, e.g. at, at115200.")
    model: str = setting("", "Gammu model, usually empty (auto).")
    pin: str = setting("", "SIM PIN, if the SIM asks for one.")
    smsc: str = setting("", "SMS centre number; empty takes the one stored on the SIM.")
    retry_initial: float = setting(5.0, "First wait after a failed send, s (doubles up to retry_max).", 0.1, 3600.0)
    retry_max: float = setting(300.0, "Longest wait between send attempts, s.", 1.0, 86400.0)
    network_check: float = setting(
        300.0, "How often the modem's network registration is checked while idle, s.", 10.0, 86400.0
    )


DEFAULT_TEMPLATE = "{site}: possible gunshot at {time} (confidence {confidence}).{note}"


@dataclass(frozen=True)
class AlertsConfig:
    recipients: list[str] = setting([], "Phone numbers in E.164 form, e.g. +447700900123.")
    template: str = setting(DEFAULT_TEMPLATE, "Text of an alert; fields: {site} {time} {confidence} {note}.")
    max_per_hour: int = setting(
        10, "Alert texts per recipient per hour; events beyond it go out as one summary text.", 1, 1000
    )


@dataclass(frozen=True)
class StorageConfig:
    data_dir: str = setting(
        "./data", "Folder for events, evidence clips and the outbox (relative: to the working directory)."
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
        0.0, "Text the recipients that the detector runs (with its figures) every this many hours; 0: off.", 0.0, 720.0
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
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (copy config.example.toml)") from None
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
    """Checks that span a field's type: bounds, time zone, phone numbers, modem settings."""
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
    for i, number in enumerate(config.alerts.recipients):
        try:
            validate_e164(number)
        except PhoneNumberError as exc:
            raise ConfigError(f"alerts.recipients[{i}]: {exc}") from None
    try:
        config.alerts.template.format(site="", time="", confidence="", note="")
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"alerts.template: bad placeholder {exc} (use {{site}} {{time}} {{confidence}} {{note}})"
        ) from None
    if config.detector.votes_required and config.detector.fused_threshold:
        raise ConfigError("detector.fused_threshold: set it or detector.votes_required, not both (0 turns one off)")
    if config.modem.retry_initial > config.modem.retry_max:
        raise ConfigError("modem.retry_initial: must not exceed modem.retry_max")
    return config


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
            values[key] = _coerce(dotted, value, kind)
    return cls(**values)


def _coerce(dotted: str, value: Any, kind: Any) -> Any:
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
        raise ConfigError(f"{dotted}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _check_bounds(dotted: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{dotted}: {value!r} is not a finite number")
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{dotted}: {value!r} is out of range ({lo} to {hi})")


def describe(config: Config) -> list[tuple[str, Any, str]]:
    """(dotted key, value, doc) for every setting, for `check-config` and the example file."""
    rows = []
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        for f in dataclasses.fields(value):
            rows.append((f"{section.name}.{f.name}", getattr(value, f.name), f.metadata["doc"]))
    return rows


EXAMPLE_VALUES = {"site.name": "North gate", "site.timezone": "Africa/Nairobi", "alerts.recipients": ["+447700900123"]}
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
