"""Per-process figures of a running detector: CPU per second of audio, memory, counters.

The supervisor writes a snapshot to `<data_dir>/stats.json` every REPORT_INTERVAL seconds, which
`python cli.py stats` shows, and logs it as one JSON line at the first report, every LOG_INTERVAL
seconds and at stop: a line of about 2.6 kB a minute was 96 % of the detector's log bytes (measured
by an audit of a quiet run), and pushed the lines that matter out of a journal the Pi keeps small.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from pipeline.supervisor import Supervisor

REPORT_INTERVAL = 60.0
LOG_INTERVAL = 3600.0
STATS_FILE = "stats.json"
MB = 1024 * 1024

log = logging.getLogger(__name__)


@dataclass
class _CpuMark:
    pid: int  # a restarted process starts a new CPU count
    cpu: float  # user + system seconds
    audio: int  # audio rows written


def process_figures(pid: int) -> dict[str, float]:
    """CPU seconds so far and memory (RSS, PSS, USS in MB) of one process."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            times = process.cpu_times()
            memory = process.memory_full_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {}
    return {
        "cpu_s": times.user + times.system,
        "rss_mb": memory.rss / MB,
        "pss_mb": getattr(memory, "pss", memory.rss) / MB,
        "uss_mb": memory.uss / MB,
    }


class StatsReporter:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.path = Path(supervisor.config.storage.data_dir) / STATS_FILE
        self._marks: dict[str, _CpuMark] = {}
        self._last = time.monotonic()
        self._logged: float | None = None  # when the last snapshot was logged
        self._write_error: str | None = None  # why the file could not be written, while it cannot

    def maybe_report(self) -> dict[str, Any] | None:
        """The snapshot if one was due (and written), else None."""
        if time.monotonic() - self._last >= REPORT_INTERVAL:
            return self.report()
        return None

    def report(self, log_it: bool = False) -> dict[str, Any]:
        """Write the snapshot; log it too if `log_it` or if it is the first or LOG_INTERVAL is up."""
        self._last = time.monotonic()
        snapshot = self.collect()
        if log_it or self._logged is None or self._last - self._logged >= LOG_INTERVAL:
            log.info("stats %s", json.dumps(snapshot, separators=(",", ":")))
            self._logged = self._last
        self._write(snapshot)
        return snapshot

    def _write(self, snapshot: dict[str, Any]) -> None:
        """The file `cli.py stats` reads; a failure is logged when it starts or changes and when it
        clears, not once a minute for as long as a card stays full or unwritable."""
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(snapshot, indent=1))
            tmp.replace(self.path)
        except OSError as exc:
            if str(exc) != self._write_error:
                log.error("cannot write %s: %s (said again only if it changes)", self.path, exc)
            self._write_error = str(exc)
            return
        if self._write_error is not None:
            log.info("%s written again", self.path)
            self._write_error = None

    def collect(self) -> dict[str, Any]:
        sup = self.supervisor
        audio_rows = sup.audio.write_pos - sup.padding  # heard: not the zeros that complete the last window
        rate = sup.ensemble.sample_rate
        processes = {"supervisor": {"pid": os.getpid(), **process_figures(os.getpid())}}
        for name, managed in sup.managed.items():
            row = sup.stats.slot(name).as_dict()
            pid = int(row["pid"])
            processes[name] = {**row, **(process_figures(pid) if managed.process is not None else {})}
        for name, figures in processes.items():
            pid, mark, cpu = int(figures["pid"]), self._marks.get(name), figures.get("cpu_s")
            if mark is not None and mark.pid == pid and cpu is not None and audio_rows > mark.audio:
                figures["cpu_ms_per_audio_s"] = 1000.0 * (cpu - mark.cpu) / ((audio_rows - mark.audio) / rate)
            if cpu is not None:
                self._marks[name] = _CpuMark(pid, cpu, audio_rows)  # one a process name: no pile of dead pids
        total = {
            key: sum(p.get(key, 0.0) for p in processes.values())
            for key in ("rss_mb", "pss_mb", "uss_mb", "cpu_ms_per_audio_s")
        }
        now = time.time()
        return {
            "time": now,
            "audio_start_time": now - (time.monotonic() - sup.audio.time_of(0)) if audio_rows else None,
            "audio_seconds": audio_rows / rate,
            "lost_samples": sup.audio.lost,
            "unheard_samples": round(sum(p.get("unheard", 0.0) for p in processes.values())),  # the front end's
            "overruns": sup.audio.overruns,
            "degraded": sup.degraded,
            "total": total,
            "processes": processes,
        }
