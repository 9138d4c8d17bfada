"""The step NTP sets the wall clock forward by, counted from the first start in a boot, so that a
restart after it does not age what was stamped before it (retention, the heartbeat's count)."""

import json
import time

import pytest

from alerting.clock import CLOCK_FILE, ForwardStep

DAY = 86400.0


class SteppedClock:
    """time.time set `step` s forward (back, when negative) from the real one: NTP cannot be made
    to step this machine's clock here."""

    def __init__(self, monkeypatch) -> None:
        self.step = 0.0
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + self.step)


@pytest.fixture
def clock(monkeypatch, tmp_path):
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    monkeypatch.setattr("alerting.clock.BOOT_ID", boot)
    return SteppedClock(monkeypatch)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def test_a_start_after_a_reboot_does_not_count_from_the_last_boot_s_offset(data, clock):
    """The monotonic clock starts again at a boot: the last boot's offset says nothing of a step."""
    old = {"boot_id": "boot-0", "offset": time.time() - time.monotonic() - 40 * DAY}
    (data / CLOCK_FILE).write_text(json.dumps(old))
    assert ForwardStep(data).seconds() == pytest.approx(0.0, abs=1.0)
    assert json.loads((data / CLOCK_FILE).read_text())["boot_id"] == "boot-1"  # this boot's from now on


def test_a_step_forward_after_the_clock_was_set_back_is_counted_whole(data, clock):
    """Set back a day after the first start, the detector restarted, then 3 days forward: what the
    restarted one stamped is 3 days older by the clock, not the 2 days from the first start's offset."""
    ForwardStep(data)
    clock.step = -DAY
    restarted = ForwardStep(data)
    clock.step = -DAY + 3 * DAY
    assert restarted.seconds() == pytest.approx(3 * DAY, abs=1.0)
    assert ForwardStep(data).seconds() == pytest.approx(3 * DAY, abs=1.0)  # and a later restart


def test_an_unreadable_clock_file_counts_from_this_start_and_is_written_anew(data, clock, caplog):
    (data / CLOCK_FILE).write_text("{not json")
    step = ForwardStep(data)
    assert f"{CLOCK_FILE} unreadable" in caplog.text
    clock.step = 3 * DAY
    assert step.seconds() == pytest.approx(3 * DAY, abs=1.0)
    assert ForwardStep(data).seconds() == pytest.approx(3 * DAY, abs=1.0)  # the next start knows it
    assert [p.name for p in data.iterdir()] == [CLOCK_FILE]  # no part file left
