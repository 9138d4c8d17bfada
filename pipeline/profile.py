"""`python cli.py profile`: run the whole multiprocess pipeline for a while and report, per process,
CPU per second of audio, memory, counters and latencies (the figures a Pi owner checks).

CPU is counted from the first vote on (steady state); start-up is reported as its own figure."""

from __future__ import annotations

import json
import time
from typing import Any

from pipeline.config import Config
from pipeline.run import load_checked_ensemble
from pipeline.supervisor import Supervisor

ONE_CORE_MS_PER_S = 1000.0


class Profiler:
    """Runs a supervisor until `duration` seconds of audio were captured (or the replayed source
    ended and drained, or a Ctrl-C), then takes the figures."""

    def __init__(self, config: Config, duration: float) -> None:
        self.config = config
        self.duration = duration
        self.supervisor = Supervisor(config, load_checked_ensemble(config))
        self.started = 0.0
        self.first_vote_after: float | None = None
        self.report: dict[str, Any] = {}

    def run(self) -> dict[str, Any]:
        self.started = time.monotonic()
        self.supervisor.start()
        self.supervisor.run(until=self._duration_reached, last_look=self._take_figures)
        return self.report

    def _duration_reached(self) -> bool:
        sup = self.supervisor
        if self.first_vote_after is None and sup.stats.slot("aggregator").get("processed") > 0:
            self.first_vote_after = time.monotonic() - self.started
            sup.reporter.collect()  # CPU marks from here: steady state, start-up excluded
        return sup.audio.write_pos >= self.duration * sup.ensemble.sample_rate

    def _take_figures(self) -> None:
        """At the end of the run, whatever ended it (the duration, the source, a Ctrl-C)."""
        snapshot = self.supervisor.reporter.collect()
        aggregator = snapshot["processes"]["aggregator"]
        sms = snapshot["processes"]["sms"]
        self.report = {
            **snapshot,
            "pipeline": {
                "windows_decided": aggregator.get("processed", 0),
                "windows_decided_without_every_model": aggregator.get("partial_votes", 0),
                "lost_samples": snapshot["lost_samples"],
                "unheard_samples": snapshot["unheard_samples"],
                "overruns": snapshot["overruns"],
                "window_end_to_vote_ms": {"p50": aggregator.get("p50_ms"), "p99": aggregator.get("p99_ms")},
                "event_start_to_sms_ms": {"p50": sms.get("p50_ms"), "p99": sms.get("p99_ms")},
                "queue_high_water_bytes": {n: p.get("queue_hwm", 0) for n, p in snapshot["processes"].items()},
                "startup_to_first_vote_s": self.first_vote_after,
            },
        }


COLUMNS = (
    ("process", 18, lambda n, p: n),
    ("cpu ms/s", 9, lambda n, p: _num(p.get("cpu_ms_per_audio_s"), 2)),
    ("% core", 7, lambda n, p: _num(_pct(p.get("cpu_ms_per_audio_s")), 2)),
    ("RSS MB", 7, lambda n, p: _num(p.get("rss_mb"), 1)),
    ("PSS MB", 7, lambda n, p: _num(p.get("pss_mb"), 1)),
    ("USS MB", 7, lambda n, p: _num(p.get("uss_mb"), 1)),
    ("items", 7, lambda n, p: _num(p.get("processed"), 0)),
    ("dropped", 8, lambda n, p: _num(p.get("dropped"), 0)),
    ("errors", 7, lambda n, p: _num(p.get("errors"), 0)),
    ("restarts", 9, lambda n, p: _num(p.get("restarts"), 0)),
)


def _pct(ms_per_s: float | None) -> float | None:
    return None if ms_per_s is None else 100.0 * ms_per_s / ONE_CORE_MS_PER_S


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    lines = ["".join(title.rjust(width) if i else title.ljust(width) for i, (title, width, _) in enumerate(COLUMNS))]
    rows = [*report["processes"].items(), ("total", report["total"])]
    for name, figures in rows:
        cells = [get(name, figures) for _, _, get in COLUMNS]
        lines.append(
            "".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, (_, w, _)) in enumerate(zip(cells, COLUMNS, strict=True))
            )
        )
    lines.append("")
    lines.append(json.dumps(report["pipeline"], indent=1))
    return "\n".join(lines)
