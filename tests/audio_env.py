"""Real audio plumbing for tests: a private PulseAudio daemon with a null sink (a clocked
stand-in for a microphone) and ALSA configs that replay raw files through pyalsaaudio."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ALSA_BASE_CONFIG = "/usr/share/alsa/alsa.conf"
MIC_SINK = "mic"
START_TIMEOUT = 20.0

REPLAY_PCM = """pcm.replay {{
    type file
    slave.pcm "{slave}"
    file "/dev/null"
    infile "{infile}"
    format "raw"
}}
pcm.stereo_only {{
    type file
    slave.pcm {{
        type multi
        slaves.a {{ pcm "null" channels 2 }}
        bindings.0 {{ slave a channel 0 }}
        bindings.1 {{ slave a channel 1 }}
    }}
    file "/dev/null"
    infile "{infile}"
    format "raw"
}}
"""


def alsa_replay_config(folder: Path, raw_file: Path, clocked: bool) -> dict[str, str]:
    """Environment for an ALSA PCM named `replay` that reads `raw_file` (S16_LE, no header), and
    `stereo_only`: the same file as two interleaved channels, the only count it opens with (as the
    hw: device of many USB microphones).

    clocked=False: the `null` slave has no clock, the file is read as fast as the reader asks.
    clocked=True: the `pulse` slave paces the reads at real time (needs `PulseServer`), while
    the data still comes bit-exact from the file.
    """
    conf = folder / "asound.conf"
    conf.write_text(REPLAY_PCM.format(slave="pulse" if clocked else "null", infile=raw_file))
    return {"ALSA_CONFIG_PATH": f"{ALSA_BASE_CONFIG}:{conf}"}


def write_raw(path: Path, samples: np.ndarray) -> Path:
    np.asarray(samples, dtype="<i2").tofile(path)
    return path


@dataclass
class PulseServer:
    runtime_dir: Path
    rate: int
    players: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"XDG_RUNTIME_DIR": str(self.runtime_dir), "PULSE_SOURCE": f"{MIC_SINK}.monitor"}

    def play(self, wav: Path) -> None:
        self.players.append(subprocess.Popen(["paplay", f"--device={MIC_SINK}", str(wav)], env=self._full_env))

    def stop_players(self) -> None:
        for player in self.players:
            player.kill()
            player.wait()
        self.players.clear()

    def stop(self) -> None:
        self.stop_players()
        self.kill_daemon()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def kill_daemon(self) -> None:
        """The microphone vanishes: the daemon and its null sink go (the runtime folder stays)."""
        subprocess.run(["pulseaudio", "--kill"], env=self._full_env, capture_output=True, timeout=START_TIMEOUT)

    def start_daemon(self) -> None:
        """A daemon with the `mic` null sink (again, after kill_daemon: the microphone is back)."""
        for command in (
            ["pulseaudio", "-D", "--exit-idle-time=-1", "--disallow-exit"],
            ["pactl", "load-module", "module-null-sink", f"sink_name={MIC_SINK}", f"rate={self.rate}", "channels=1"],
        ):
            subprocess.run(command, env=self._full_env, check=True, capture_output=True, timeout=START_TIMEOUT)

    def suspend(self, suspended: bool) -> None:
        """Suspend the `mic` sink: a reader of its monitor blocks (no data, no error) until resumed."""
        command = ["pactl", "suspend-sink", MIC_SINK, "1" if suspended else "0"]
        subprocess.run(command, env=self._full_env, check=True, capture_output=True, timeout=START_TIMEOUT)

    @property
    def _full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}


def pulseaudio_available() -> bool:
    return all(shutil.which(tool) for tool in ("pulseaudio", "pactl", "paplay"))


def start_pulse(rate: int) -> PulseServer:
    server = PulseServer(Path(tempfile.mkdtemp(prefix="gs-pulse-")), rate)
    server.start_daemon()
    return server
