"""What the rings' memory fences cost: a period's write, a window's read and a loss lookup, timed
with the fences and with them replaced by a no-op, alternately in one run.

    .venv/bin/python -m benchmarks.bench_ring
"""

from __future__ import annotations

import timeit
from unittest import mock

import numpy as np

from pipeline.layout import AUDIO_SHAPE
from pipeline.ring import Ring

RATE = 16000
PERIOD = RATE // 4  # capture's default period (audio.period = 0.25 s)
WINDOW = 2 * RATE
CALLS, ROUNDS = 20000, 5


def timings() -> dict[str, float]:
    """Microseconds per call."""
    ring = Ring.in_memory(60 * RATE, AUDIO_SHAPE, RATE)
    chunk = np.ones(PERIOD, dtype=np.int16)
    ring.write(np.zeros(WINDOW, dtype=np.int16))
    ring.skip(10)
    calls = {
        "write a period": lambda: ring.write(chunk),
        "read a 2 s window": lambda: ring.read(ring.write_pos - WINDOW, WINDOW),
        "look up losses": lambda: ring.holds_loss(ring.write_pos - WINDOW, ring.write_pos),
    }
    return {name: timeit.timeit(call, number=CALLS) / CALLS * 1e6 for name, call in calls.items()}


def main() -> None:
    fenced, bare = [], []
    for _ in range(ROUNDS):
        fenced.append(timings())
        with mock.patch("pipeline.ring.fence", lambda: None):
            bare.append(timings())
    print(f"{'us per call (median of ' + str(ROUNDS) + ')':28} {'fenced':>8} {'no fence':>9} {'ratio':>6}")
    for name in fenced[0]:
        with_fence = float(np.median([t[name] for t in fenced]))
        without = float(np.median([t[name] for t in bare]))
        print(f"{name:28} {with_fence:8.2f} {without:9.2f} {with_fence / without:6.2f}")


if __name__ == "__main__":
    main()
