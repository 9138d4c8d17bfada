import dataclasses
import subprocess
import sys

import pytest

from pipeline.config import Config, ConfigError, load_config, override
from pipeline.run import load_checked_ensemble

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[site]\nnmae = 'x'", "site.nmae: unknown key"),
        ("[sight]\nname = 'x'", "sight: unknown key"),
        ("[audio]\nrate = 'fast'", "audio.rate: expected int"),
        ("[audio]\nrate = 100", "audio.rate: 100 is out of range"),
        ("[audio]\nperiod = true", "audio.period: expected float"),
        ("[alerts]\nrecipients = '+447700900123'", "alerts.recipients: expected a list"),
        ("[alerts]\nrecipients = ['+447700900123', '07700 900123']", "alerts.recipients[1]"),
        ("[alerts]\ntemplate = '{site} {oops}'", "alerts.template: bad placeholder"),
        ("[alerts]\ntemplate = '{time.hour}'", "alerts.template: bad placeholder"),
        ("[site]\ntimezone = 'Mars/Olympus'", "site.timezone: unknown time zone"),
        ("[detector]\nvotes_required = -1", "detector.votes_required: -1 is out of range"),
        ("[detector]\nvotes_required = true", "detector.votes_required: expected int, got bool"),
        ("[modem]\nretry_initial = 500.0\nretry_max = 100.0", "modem.retry_initial"),
        ("[audio\nrate = 1", "not valid TOML"),
        ("[detector]\nvote_timeout = nan", "detector.vote_timeout: nan is not a finite number"),
        ("[health]\nsilence_alert_after = inf", "health.silence_alert_after: inf is not a finite number"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, text))


def bounded_settings() -> list[tuple[str, float, float]]:
    config = Config()
    return [
        (f"{section.name}.{f.name}", f.metadata["lo"], f.metadata["hi"])
        for section in dataclasses.fields(config)
        for f in dataclasses.fields(getattr(config, section.name))
        if f.metadata["lo"] is not None and f.metadata["hi"] is not None
    ]


@pytest.mark.parametrize(("key", "lo", "hi"), bounded_settings(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_setting_takes_the_ends_of_its_documented_range(key, lo, hi):
    section, name = key.split(".")
    kind = type(getattr(getattr(Config(), section), name))  # the default's type: int or float
    for value in (lo, hi):
        try:
            override(Config(), {key: kind(value)})
        except ConfigError as exc:  # a rule between keys (retry_initial <= retry_max) may object
            assert "out of range" not in str(exc) and "expected" not in str(exc), exc


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_example_config_is_valid_and_flags_override_it():
    config = load_config(ROOT / "config.example.toml")
    changed = override(config, {"audio.rate": 48000, "alerts.recipients": ["+12025550123"]})
    assert (changed.audio.rate, changed.alerts.recipients) == (48000, ["+12025550123"])
    with pytest.raises(ConfigError, match=r"audio\.rate"):
        override(config, {"audio.rate": 5})


def test_cli_reports_bad_config_without_traceback(tmp_path):
    path = write(tmp_path, "[alerts]\nrecipients = ['12345']\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "alerts.recipients[0]" in result.stderr
    assert "Traceback" not in result.stderr


RUNTIME_MODULES = [
    "cli",
    "pipeline.supervisor",
    "pipeline.run",
    "capture.process",
    "inference.frontend",
    "inference.worker",
    "inference.aggregator",
    "inference.offline",
    "alerting.sender",
]


def test_runtime_never_imports_tensorflow_or_librosa():
    code = (
        "import sys\n"
        f"for m in {RUNTIME_MODULES!r}: __import__(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'librosa', 'numba', 'keras'))\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_example_config_documents_every_key_as_the_code_does():
    from pipeline.config import example_text

    assert (ROOT / "config.example.toml").read_text() == example_text()


def test_settings_the_thresholds_were_not_chosen_at_are_warned_about(caplog):
    load_checked_ensemble(Config())
    assert "were chosen at" not in caplog.text
    load_checked_ensemble(override(Config(), {"detector.hop": 0.25, "detector.merge_gap": 5.0}))
    assert "detector.hop is 0.25 s, the models' thresholds were chosen at 0.5 s" in caplog.text
    assert "detector.merge_gap is 5 s" in caplog.text
