"""Runs the real detector (`python cli.py start`) as a child process and watches it from outside:
its shared-memory ring and stats, its events database and its outbox."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import soundfile

from pipeline.layout import AUDIO_SHAPE
from pipeline.ring import Ring
from pipeline.shm import segment_name

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
SHIPPED_MODELS = ROOT / "models"
RATE = 16000
RECIPIENTS = ["+447700900123", "+12025550143"]
STOP_TIMEOUT = 60.0


# The pipeline tests (capture, rings, processes, vote, events, texts) need shots the models hear for
# sure. The shipped thresholds are strict (chosen for 0.5 false alerts per hour on the validation
# mixture) and game sound effects are a weak stand-in for gunfire: at them the models hear only some
# of the bundled shots, some of the time (models/README.md). These tests run the shipped models with
# thresholds at which the shots they use are heard and the test background is not; that each of
# PIPELINE_SHOTS is heard once at every offset within a hop is checked offline
# (tests/test_pipeline_shots.py), so a retrained set that breaks it fails there, not by chance in a
# real-time test. (The Wesnoth pistol is too close to them: mel_coarse 0.5-0.85 with the shipped set,
# and the test background alone reaches wave 0.71.)
PIPELINE_THRESHOLDS = {"wave": 0.9, "mel_fine": 0.8, "mel_coarse": 0.8}
PIPELINE_SHOTS = ("hedgewars-shotgun", "openarena-shotgun")
# The detector's processes as `ps` names them (15 characters kept), the supervisor's children.
CHILD_PROCESSES = (
    "gs.capture",
    "gs.frontend",
    "gs.model.wave",
    "gs.model.mel_fi",
    "gs.model.mel_co",
    "gs.aggregator",
    "gs.sms",
)


def cli(*args: str) -> subprocess.CompletedProcess:
    """`python cli.py ARGS` from the repository root, its output captured."""
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT)


def pipeline_test_models(folder: Path) -> Path:
    """A copy of the shipped models with PIPELINE_THRESHOLDS (2 of 3, never fused), for `[detector] models_dir`."""
    out = folder / "pipeline-models"
    out.mkdir(parents=True, exist_ok=True)
    for path in (*SHIPPED_MODELS.glob("*.tflite"), *SHIPPED_MODELS.glob("*.json")):
        shutil.copy(path, out / path.name)
    for model_id, threshold in PIPELINE_THRESHOLDS.items():
        sidecar = out / f"{model_id}.json"
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "threshold": threshold}))
    ensemble = out / "ensemble.json"
    index = {k: v for k, v in json.loads(ensemble.read_text()).items() if k != "fused_threshold"}
    ensemble.write_text(json.dumps({**index, "votes_required": 2}))
    return out


def listening_config(folder: Path, device: str, rate: int) -> list[str]:
    """A detector on `device` with the pipeline-test models, Gammu's dummy phone and RECIPIENTS."""
    from tests.gammu_env import dummy_gammurc

    return [
        "[detector]",
        f'models_dir = "{pipeline_test_models(folder)}"',
        "[site]",
        'name = "Test range"',
        "[audio]",
        f'device = "{device}"',
        f"rate = {rate}",
        "[modem]",
        f'gammurc = "{dummy_gammurc(folder)}"',
        "retry_initial = 0.5",
        "[alerts]",
        f"recipients = {RECIPIENTS!r}".replace("'", '"'),
    ]


def stream_with_shots(duration: float, shots: list[tuple[float, str]], seed: int = 3) -> np.ndarray:
    """A quiet outdoor-like background (wind, rumble, hiss) with bundled shots at given times."""
    rng = np.random.default_rng(seed)
    n = int(duration * RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 1.0)
    wind = np.fft.irfft(spectrum / f, n)
    wind *= np.interp(np.arange(n), np.linspace(0, n, 8), rng.uniform(0.3, 1.0, 8))
    audio = 0.01 * wind / np.sqrt(np.mean(wind**2)) + 0.001 * rng.standard_normal(n)
    for at, name in shots:
        shot, _ = soundfile.read(ASSETS / "shots" / f"{name}.flac", dtype="float32")
        i = int(at * RATE) - int(np.argmax(np.abs(shot)))
        audio[i : i + shot.shape[0]] += shot[: n - i]
    return np.clip(audio, -1, 1).astype(np.float32)


@dataclass
class DetectorRun:
    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    config_lines: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    own_group: bool = False  # a process group of its own, to be signalled as a whole (os.killpg)

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def start(self, *args: str) -> None:
        config = self.folder / "config.toml"
        config.write_text("\n".join(self.config_lines) + "\n")
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        self.log = (self.folder / "detector.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "cli.py"),
                "start",
                "--config",
                str(config),
                "--data-dir",
                str(self.data_dir),
                *args,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.folder,
            start_new_session=self.own_group,
        )

    def ring(self, timeout: float = 30.0) -> Ring:
        name = segment_name(f"{self.process.pid:x}", "audio")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return Ring.attach(name, AUDIO_SHAPE)
            except FileNotFoundError:
                self.assert_running()
                time.sleep(0.1)
        raise AssertionError(f"the detector made no audio ring in {timeout} s:\n{self.output()}")

    def wait_for_audio(self, ring: Ring, timeout: float = 30.0) -> None:
        """Until the ring's write counter moves: the capture really reads the device."""
        start = ring.write_pos
        deadline = time.monotonic() + timeout
        while ring.write_pos == start:
            self.assert_running()
            assert time.monotonic() < deadline, f"no audio captured in {timeout} s:\n{self.output()}"
            time.sleep(0.05)

    def wait_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.output()}"
            time.sleep(0.2)

    def events(self) -> list[dict]:
        return self._query("events.sqlite", "SELECT id, start_time, confidence, votes, degraded, state FROM events")

    def texts(self) -> list[dict]:
        return self._query(
            "outbox.sqlite", "SELECT id, event_id, recipient, text, kind, state, repeat, sent_at FROM texts ORDER BY id"
        )

    def _query(self, db: str, sql: str) -> list[dict]:
        path = self.data_dir / db
        if not path.exists():
            return []
        with sqlite3.connect(path, timeout=10) as connection:
            connection.row_factory = sqlite3.Row
            try:
                return [dict(row) for row in connection.execute(sql)]
            except sqlite3.OperationalError:
                return []

    def child(self, name: str) -> psutil.Process | None:
        """The detector's process named `name` (e.g. gs.model.wave), if it runs."""
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if child.name() == name:
                    return child
            except psutil.NoSuchProcess:
                continue
        return None

    def stats(self) -> dict:
        path = self.data_dir / "stats.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def assert_running(self) -> None:
        assert self.process.poll() is None, f"detector exited with {self.process.returncode}:\n{self.output()}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"detector did not stop on SIGTERM:\n{self.output()}") from None
        self.log.close()
        return code

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.folder / "detector.log").read_text()[-6000:]
