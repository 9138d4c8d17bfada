import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from alerting.clock import UNSYNCHRONISED_NOTE
from alerting.compose import DEGRADED_NOTE
from alerting.encoding import GSM7_EXTENSION
from alerting.outbox import LONGEST_PREFIX
from inference.aggregator import Aggregator
from inference.eventlog import EventLog
from inference.model import load_ensemble
from pipeline.channel import Channel
from pipeline.config import (
    CLIP_WRITE_DELAY,
    MAX_TEXT_PARTS,
    SHIPPED_WINDOW,
    Config,
    ConfigError,
    load_config,
    override,
    text_cost_warnings,
)
from pipeline.layout import AUDIO_SHAPE, Layout
from pipeline.metrics import StatsTable
from pipeline.ring import Ring
from pipeline.run import load_checked_ensemble
from tests.conftest import own_run_id
from tests.test_aggregator import RATE, decision

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
        ("[modem]\npin = '12a'", "modem.pin: must be 4 to 8 digits (or empty for a SIM without PIN), got 3 characters"),
        ("[modem]\npin = '1234 '", "modem.pin: must be 4 to 8 digits"),
        ("[modem]\npin = '123'", "modem.pin: must be 4 to 8 digits"),
        ("[modem]\npin = '123456789'", "modem.pin: must be 4 to 8 digits"),
        ("[modem]\npin = '\uff11\uff12\uff13\uff14'", "modem.pin: must be 4 to 8 digits"),  # full-width digits
        ("[modem]\nsmsc = 'hello'", "modem.smsc: 'hello' has no leading +"),
        ("[modem]\nsmsc = '0044 7785 016005'", "modem.smsc: '0044 7785 016005' contains spaces"),
        (
            "[alerts]\nrecipients = ['+447700900123', '+12025550143', '+447700900123']",
            "alerts.recipients[2]: +447700900123 is already alerts.recipients[0]",
        ),
        (
            "[audio]\nring_seconds = 10\n[storage]\nclip_pre_roll = 20\nclip_post_roll = 20",
            "audio.ring_seconds: 10 s cannot hold a whole clip, which needs 44.75 s: storage.clip_pre_roll 20 s",
        ),
        ("[detector]\nmerge_gap = 60", "audio.ring_seconds: 60 s cannot hold a whole clip"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("pin", ["", "0000", "12345678"])
def test_a_pin_of_4_to_8_digits_or_none_is_taken(pin):
    assert override(Config(), {"modem.pin": pin}).modem.pin == pin


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[modem]\npin = '1234 '", "got 5 characters, not digits: ' ' (character 5)"),
        ("[modem]\npin = '12a4'", "got 4 characters, not digits: 'a' (character 3)"),
        ("[modem]\npin = '1234567890'", "got 10 digits"),
        ("[modem]\npin = 1234", "expected str, got int (not shown; write it in quotes)"),
    ],
)
def test_a_bad_pin_is_not_put_in_the_message(tmp_path, text, says):
    """The message goes to the journal, which others may read: a PIN nearly right is not shown,
    only its length and the characters that are not digits."""
    with pytest.raises(ConfigError, match=r"^modem\.pin: ") as caught:
        load_config(write(tmp_path, text))
    assert str(caught.value).endswith(says)
    assert "1234" not in str(caught.value) and "12a4" not in str(caught.value)


def test_an_smsc_in_e164_form_or_none_is_taken():
    assert override(Config(), {"modem.smsc": "+447785016005"}).modem.smsc == "+447785016005"
    assert override(Config(), {"modem.smsc": ""}).modem.smsc == ""


GSM7_PART = 153  # GSM-7 septets in each part of a split text
WIDEST_LORD_HOWE_TIME = len("2026-07-01 10:30:00 +1030")  # +11 in its summer (January), +1030 in winter


def septets(text: str) -> int:
    """GSM-7 septets of `text`: an extension character (the [ and ] of "[sent again] [sent 9999 h late]") takes two."""
    return len(text) + sum(char in GSM7_EXTENSION for char in text)


ROOM = MAX_TEXT_PARTS * GSM7_PART - septets(LONGEST_PREFIX)  # for the alert itself


@pytest.mark.parametrize(
    ("template", "zone"),
    [
        # the repeat prefix and both notes count: exactly MAX_TEXT_PARTS parts at the longest
        ("n" * (ROOM - septets(DEGRADED_NOTE + UNSYNCHRONISED_NOTE)) + "{note}", "UTC"),
        # the longest time of the year counts (July's, not January's, on Lord Howe Island)
        ("t" * (ROOM - WIDEST_LORD_HOWE_TIME) + "{time}", "Australia/Lord_Howe"),
    ],
)
def test_an_alert_template_is_refused_past_its_parts_at_its_longest(template, zone):
    assert override(Config(), {"alerts.template": template, "site.timezone": zone}).alerts.template == template
    with pytest.raises(ConfigError) as too_long:
        override(Config(), {"alerts.template": "+" + template, "site.timezone": zone})
    assert str(too_long.value).startswith("alerts.template: the longest alert it gives (with site.name, the longest")
    assert f"takes {MAX_TEXT_PARTS + 1} SMS parts" in str(too_long.value)
    assert str(too_long.value).endswith(f"at most {MAX_TEXT_PARTS} are allowed: shorten it or site.name")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"site.name": "N" * 1450}, "alerts.template: the longest alert it gives (with site.name, "),
        (
            {"site.name": "N" * 1600, "alerts.template": "{time}"},
            "site.name: a text of it alone, with the longest prefix ",
        ),
        ({"site.name": "Ndovu ☂ " * 80}, "('☂' is not in GSM-7: all of it goes as UCS-2, 67 characters a part)"),
        (
            {"site.name": "N" * 8000},
            "site.name: a text of it alone, with the longest prefix a text may get, '[sent again] [sent 9999 h late]', "
            "takes more than 50",
        ),
        ({"alerts.template": "{site}" * 8000}, "alerts.template: the longest alert it gives"),
    ],
)
def test_a_site_name_or_template_too_long_for_a_text_is_refused(changes, message):
    """A text past 50 parts cannot be sent at all (Gammu's EncodeSMS refuses it)."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        override(Config(), changes)


def test_typographic_characters_count_as_the_gsm7_they_are_sent_as():
    """An en dash is sent as '-' (alerting/encoding.py gsm7_form): a template of them that fits
    MAX_TEXT_PARTS GSM-7 parts is taken (as UCS-2 it would take 24)."""
    template = "\u2013" * (ROOM - septets(DEGRADED_NOTE + UNSYNCHRONISED_NOTE)) + "{note}"
    assert override(Config(), {"alerts.template": template}).alerts.template == template
    with pytest.raises(ConfigError, match=re.escape("takes 11 SMS parts")):
        override(Config(), {"alerts.template": "\u2013" + template})


LONG_SITE = (
    "Mara North Conservancy: eastern boundary gate by the old lodge road and the river crossing, "
    "gate 3 (north-east corner)"
)


@pytest.mark.parametrize(
    ("changes", "warnings"),
    [
        ({"site.name": "North gate"}, []),
        ({"site.name": "Farmer\u2019s dam \u2013 east"}, []),  # sent as "Farmer's dam - east": 1 part
        (
            {"site.name": "\u12cb\u123b \u12cb\u123b gate \u2013 \u12a0\u12cb\u123b" + " \u12cb\u123b" * 3},
            [
                "site.name: a typical alert takes 2 SMS parts (71 characters), each paid for: '\u12cb', '\u123b', "
                "'\u12a0' are not in the GSM-7 alphabet, so every text goes as UCS-2 (67 characters a part, not 153); "
                "write it without them to make texts cheaper"
            ],
        ),
        (
            {
                "site.name": "Gate 3",
                "alerts.template": "{site} \u2605 possible gunshot at {time}, confidence {confidence}.{note} Go.",
            },
            ["alerts.template: a typical alert takes 2 SMS parts (73 characters), each paid for: '\u2605' is not"],
        ),
        (
            {"site.name": LONG_SITE},
            ["site.name or alerts.template: a typical alert takes 2 SMS parts (164 characters), each paid for"],
        ),
    ],
)
def test_a_typical_alert_over_one_sms_part_is_warned_about_naming_the_setting(changes, warnings):
    """check-config (and start) warn of what makes every alert cost more than one part."""
    got = text_cost_warnings(override(Config(), {"site.timezone": "Africa/Nairobi", **changes}))
    assert len(got) == len(warnings)
    assert all(g.startswith(w) for g, w in zip(got, warnings, strict=True)), got


def test_a_data_dir_that_is_a_file_is_refused_not_taken_for_a_failing_card(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(ConfigError, match=rf"^storage\.data_dir: {afile} is a file, not a folder \(give a folder"):
        load_config(write(tmp_path, f"[storage]\ndata_dir = '{afile}'"))
    with pytest.raises(ConfigError, match=rf"^storage\.data_dir: {afile} is a file, not a folder, so .* cannot be"):
        override(Config(), {"storage.data_dir": str(afile / "data")})
    assert override(Config(), {"storage.data_dir": str(tmp_path / "new" / "data")}).storage.data_dir


PATH_SETTINGS = ["audio.source", "detector.models_dir", "modem.gammurc", "modem.device", "storage.data_dir"]


def test_a_leading_tilde_in_every_path_setting_is_the_home_folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    sections: dict[str, list[str]] = {}
    for key in PATH_SETTINGS:
        section, name = key.split(".")
        sections.setdefault(section, []).append(f"{name} = '~/{name}'")
    text = "\n".join(f"[{section}]\n" + "\n".join(lines) for section, lines in sections.items())
    loaded = load_config(write(tmp_path, text))
    flagged = override(Config(), {key: f"~/{key.split('.')[1]}" for key in PATH_SETTINGS})  # CLI flags too
    for config in (loaded, flagged):
        for key in PATH_SETTINGS:
            section, name = key.split(".")
            assert getattr(getattr(config, section), name) == str(home / name), key
    assert override(Config(), {"detector.models_dir": ""}).detector.models_dir == ""  # empty stays empty
    with pytest.raises(ConfigError, match=r"^storage\.data_dir: cannot expand ~ in '~no-such-user-here/data'"):
        override(Config(), {"storage.data_dir": "~no-such-user-here/data"})


def test_a_folder_an_older_version_named_literally_tilde_stops_the_start_with_how_to_move_it(tmp_path, monkeypatch):
    """Before ~ was expanded, `data_dir = "~/gsdata"` made ./~/gsdata: expanded now, the detector
    would start on an empty folder and leave the texts waiting there unsent (upgrade audit)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    old = tmp_path / "~" / "gsdata"
    old.mkdir(parents=True)
    (old / "outbox.sqlite").write_bytes(b"")
    says = rf"^storage\.data_dir: '~/gsdata' now means {home / 'gsdata'} .* but {old} exists"
    with pytest.raises(ConfigError, match=says):
        override(Config(), {"storage.data_dir": "~/gsdata"})
    old.rename(home / "gsdata")  # as the message says
    assert override(Config(), {"storage.data_dir": "~/gsdata"}).storage.data_dir == str(home / "gsdata")


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path):
    """Windows Notepad starts a UTF-8 file with one."""
    path = tmp_path / "config.toml"
    path.write_bytes("\ufeff[site]\nname = 'North gate'\n".encode())
    assert load_config(path).site.name == "North gate"


def test_shipped_window_is_the_shipped_models_window():
    ensemble = load_ensemble("")
    assert ensemble.window_samples / ensemble.sample_rate == SHIPPED_WINDOW


def event_clip_seconds(config: Config, tmp_path) -> float:
    """The aggregator at the pace of a live run, on a ring of audio.ring_seconds: audio comes in
    audio.period blocks, each window is decided as late as allowed (detector.vote_timeout and
    CLIP_WRITE_DELAY after its audio is in), and one
    window (20 s in) is a shot. The length of the event's clip, s."""
    config = override(config, {"storage.data_dir": str(tmp_path)})
    ensemble = load_ensemble("")
    hop, block, late = (
        round(config.detector.hop * RATE),
        round(config.audio.period * RATE),
        (config.detector.vote_timeout + CLIP_WRITE_DELAY) * RATE,
    )
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("aggregator",))
    audio = Ring.in_memory(round(config.audio.ring_seconds * RATE), AUDIO_SHAPE, RATE)
    try:
        layout = Layout("t", "", stats.segment_name, ("aggregator",), outbox=Channel("outbox"))
        agg = Aggregator(config, ensemble, audio, stats.slot("aggregator"), layout)
        shot, decided = round(20 * RATE) // hop, 0
        while decided <= shot or agg.tracker.current is not None or agg.clips:  # until its clip is written
            audio.write(np.zeros(block, dtype=np.int16))
            while decided * hop + ensemble.window_samples + late <= audio.write_pos:
                agg.handle(decision(decided, decided == shot))
                decided += 1
            agg.write_due_clips()
        agg.events.close()
    finally:
        stats.close()
    events = EventLog(tmp_path)
    (event,) = events.events()
    events.close()
    assert event.clip is not None, "clip lost"
    return len(soundfile.read(tmp_path / event.clip)[0]) / RATE


@pytest.mark.parametrize(
    "changes",
    [
        {"audio.ring_seconds": 11.75, "storage.clip_pre_roll": 2.5},  # the wait for the event to close
        {"audio.ring_seconds": 44.75, "storage.clip_pre_roll": 20.0, "storage.clip_post_roll": 20.0},  # post-roll
        {"detector.merge_gap": 50.5, "storage.clip_pre_roll": 2.25},  # a gap ending on a window start: a hop more
    ],
)
def test_clips_at_the_limit_of_the_ring_are_whole_and_a_shorter_ring_refused(tmp_path, changes):
    """A clip the ring cannot hold when the aggregator cuts it came out cut short (before: 10 s
    clips with 20 s of pre- and post-roll on a 10 s ring), or lost (a long merge gap)."""
    config = override(Config(), changes)
    storage = config.storage
    wanted = storage.clip_pre_roll + SHIPPED_WINDOW + storage.clip_post_roll
    assert event_clip_seconds(config, tmp_path) == wanted
    shorter = {"audio.ring_seconds": config.audio.ring_seconds - 0.25}
    with pytest.raises(ConfigError, match=r"^audio\.ring_seconds: .* s cannot hold a whole clip"):
        override(config, shorter)
    assert override(config, {**shorter, "storage.clips": False})  # no clips, none to cut


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


def test_the_clip_check_takes_the_window_of_the_models_in_use(monkeypatch):
    """validate() knows only the shipped models' 2 s window; the models' own is checked at load."""
    from inference import model as model_module
    from pipeline.run import load_checked_ensemble

    shipped = model_module.load_ensemble("")
    longer = [dataclasses.replace(m, window_samples=m.window_samples * 2) for m in shipped.models]
    monkeypatch.setattr(model_module, "load_ensemble", lambda _: dataclasses.replace(shipped, models=longer))
    config = override(Config(), {"audio.ring_seconds": 11.75, "storage.clip_pre_roll": 2.5})  # at the 2 s limit
    with pytest.raises(ConfigError, match=r"^audio\.ring_seconds: .* the 4 s window"):
        load_checked_ensemble(config)
