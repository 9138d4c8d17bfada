"""CPU cost of the analysis path per second of audio, side by side in one run (ratios, not seconds,
are what to compare: this machine is shared and noisy).

    python benchmarks/bench_analysis.py [--seconds 120] [--repeats 3] [--pipeline-seconds 60] [--max-inputs 3]

Rows (CPU time of this process; each pinned to one BLAS/LiteRT/TensorFlow thread, as the detector):
  ours: features            numpy log-mel streams, computed once per hop (what the front end does)
  ours: analysis            features + the three TFLite models + vote + events, one process (the
                            offline path: the same code as the live processes, on in-memory rings)
  prototype: features       librosa mel spectrograms of every 2 s window at the prototype's two
                            resolutions (models/training/prototype.py)
  prototype: analysis       those features + its three full-size float Keras models, one
                            `predict` per model per window, and its 2-of-3 vote (needs tensorflow)
  scaling                   our analysis with 1, 2, 3 models and a hop of 0.25, 0.5, 1 s
  single process, real time our analysis in one fresh process fed hop by hop at real time (no
                            capture, SMS or supervisor): CPU, window end to vote, memory
  multiprocess pipeline     `cli.py profile --json` on the same audio replayed at real time: the
                            analysis processes (front end, workers, aggregator) and the total
  N concurrent inputs       N `cli.py profile` runs at once (one detector per microphone): sums

Latency: for the rows run as fast as possible, the compute time of each hop (or prototype window)
from its last sample to its vote; for the real-time rows, from the moment the window's last sample
exists to its vote (the pipeline's `window_end_to_vote`). Memory: PSS of the processes involved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import soundfile  # noqa: E402

from capture.pcm import float_to_int16, int16_to_float  # noqa: E402
from inference.features import LogMelFrontend  # noqa: E402
from inference.model import Ensemble, load_ensemble  # noqa: E402
from inference.offline import OfflineDetector  # noqa: E402
from tests.detector_run import stream_with_shots  # noqa: E402

RATE = 16000
HOP_S = 0.5
MERGE_GAP_S = 2.0
SCALING_HOPS_S = (0.25, 0.5, 1.0)
ANALYSIS_PROCESSES = ("frontend", "model.", "aggregator")
REFERENCE = "ours: analysis (features, 3 models, vote)"
MB = 2**20
Work = Callable[[list[float]], object]  # runs once, appending each hop's (window's) latency in s


@dataclass
class Row:
    cpu_ms: float  # CPU ms per audio second
    p50_ms: float | None = None  # latency, see the module docstring
    p99_ms: float | None = None
    pss_mb: float | None = None

    @classmethod
    def measured(cls, cpu_ms: float, latencies_s: list[float], pss_mb: float | None = None) -> Row:
        p50, p99 = (1000.0 * np.percentile(latencies_s, [50, 99])) if latencies_s else (None, None)
        return cls(cpu_ms, p50, p99, pss_mb)


def measure(work: Work, audio_seconds: float, repeats: int) -> Row:
    """Best CPU time of `repeats` runs; the latencies of that run."""
    best, best_latencies = float("inf"), []
    for _ in range(repeats):
        latencies: list[float] = []
        started = time.process_time()
        work(latencies)
        if (spent := time.process_time() - started) < best:
            best, best_latencies = spent, latencies
    return Row.measured(1000.0 * best / audio_seconds, best_latencies)


def hop_blocks(audio: np.ndarray, hop: int, latencies: list[float], paced: bool = False) -> Iterator[np.ndarray]:
    """Audio hop by hop; appends the time each hop took to score, from when its last sample exists
    (`paced`: at real time from the first hop) or from when it was handed over (as fast as possible)."""
    started = time.monotonic()
    for start in range(0, len(audio), hop):
        ready = time.monotonic()
        if paced:
            ready = started + (start + hop) / RATE
            time.sleep(max(0.0, ready - time.monotonic()))
        yield audio[start : start + hop]
        latencies.append(time.monotonic() - ready)


def ours(audio: np.ndarray, ensemble: Ensemble) -> dict[str, Work]:
    frontends = [LogMelFrontend(spec) for spec in ensemble.logmel_specs().values()]
    hop = round(HOP_S * RATE)

    def features_per_hop(latencies: list[float]) -> None:  # as the front end: each hop's new frames, once
        for f in frontends:
            step = hop // f.spec.hop_length * f.spec.hop_length
            for start in range(0, len(audio) - f.spec.n_fft, step):
                f.frames(audio[start : start + step + f.spec.n_fft - f.spec.hop_length])

    return {"ours: features (per hop)": features_per_hop, REFERENCE: analysis(audio, ensemble, hop)}


def analysis(audio: np.ndarray, ensemble: Ensemble, hop: int) -> Work:
    detector = OfflineDetector(ensemble, hop, MERGE_GAP_S)
    return lambda latencies: detector.run(hop_blocks(audio, hop, latencies))


def scaling(audio: np.ndarray, ensemble: Ensemble) -> dict[str, Work]:
    rows = {}
    for count in range(1, len(ensemble.models) + 1):
        subset = Ensemble(ensemble.models[:count], votes_required=1)
        name = f"scaling: {count} model(s) {'+'.join(m.id for m in subset.models)}, hop 0.5 s"
        rows[name] = analysis(audio, subset, round(HOP_S * RATE))
    for hop_s in SCALING_HOPS_S:
        rows[f"scaling: 3 models, hop {hop_s} s"] = analysis(audio, ensemble, round(hop_s * RATE))
    return rows


def prototype(audio: np.ndarray) -> dict[str, Work]:
    """The 2019 design as re-created in models/training/prototype.py (librosa, float Keras)."""
    try:
        import librosa  # noqa: F401
    except ImportError:
        print("librosa not installed: the prototype rows are skipped (./setup.sh --test installs it)")
        return {}
    from models.training import prototype as proto

    windows = [audio[i : i + proto.WINDOW_SAMPLES] for i in range(0, len(audio), proto.WINDOW_SAMPLES)]

    def features(latencies: list[float]) -> None:
        for window in windows:
            started = time.monotonic()
            proto.prototype_features(window)
            latencies.append(time.monotonic() - started)

    features([])  # numba's first-call compilation is not counted
    rows = {"prototype: librosa features per 2 s window": features}
    try:
        import tensorflow as tf
    except ImportError:
        print("tensorflow not installed: the prototype's models are skipped (./setup.sh --train installs it)")
        return rows
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    models = proto.build_prototype_models()

    def prototype_analysis(latencies: list[float]) -> None:
        for window in windows:
            started = time.monotonic()
            inputs = proto.prototype_features(window)
            probs = {m: float(models[m].predict(inputs[m][None], verbose=0)[0, 1]) for m in proto.MODEL_IDS}
            proto.prototype_vote(probs)
            latencies.append(time.monotonic() - started)

    prototype_analysis([])  # graph tracing on the first call is not counted
    params = sum(model.count_params() for model in models.values())
    rows[f"prototype: analysis (features, 3 float Keras models, {params / 1e6:.1f} M params)"] = prototype_analysis
    return rows


def single_process(seconds: float) -> Row:
    """Our analysis at real time in a fresh process (this one has loaded librosa and TensorFlow)."""
    command = [sys.executable, __file__, "--single-process-child", "--seconds", str(seconds)]
    return Row(**json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))


def single_process_child(seconds: float) -> None:
    audio, ensemble = bench_audio(seconds), load_ensemble("")
    hop = round(HOP_S * RATE)
    detector, latencies = OfflineDetector(ensemble, hop, MERGE_GAP_S), []
    started = time.process_time()
    detector.run(hop_blocks(audio, hop, latencies, paced=True))
    row = Row.measured(1000.0 * (time.process_time() - started) / seconds, latencies)
    row.pss_mb = psutil.Process().memory_full_info().pss / MB
    print(json.dumps(asdict(row)))


def profile_reports(audio: np.ndarray, seconds: float, copies: int) -> list[dict]:
    """`copies` multiprocess detectors (`cli.py profile`) at once on this audio at real time."""
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as folder:
        wav = Path(folder) / "stream.wav"
        soundfile.write(wav, audio[: round(seconds * RATE)], RATE, subtype="PCM_16")
        command = [sys.executable, str(ROOT / "cli.py"), "profile", "--json", "--source", str(wav)]
        command += ["--duration", str(seconds)]
        runs = [
            subprocess.Popen(
                [*command, "--data-dir", f"{folder}/{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for i in range(copies)
        ]
        outputs = [run.communicate() for run in runs]
    for run, (_, log) in zip(runs, outputs, strict=True):
        if run.returncode:
            raise RuntimeError(f"cli.py profile failed ({run.returncode}):\n{log[-2000:]}")
    return [json.loads(output) for output, _ in outputs]


def pipeline_row(reports: list[dict], names: tuple[str, ...] = ()) -> Row:
    """Sums of CPU and PSS over the reports (over the processes named `names...` if given); the
    worst of their window-end-to-vote latencies."""

    def summed(report: dict, key: str) -> float:
        if not names:
            return report["total"][key]
        return sum(p[key] for name, p in report["processes"].items() if name.startswith(names))

    latency = [r["pipeline"]["window_end_to_vote_ms"] for r in reports]
    return Row(
        cpu_ms=sum(summed(r, "cpu_ms_per_audio_s") for r in reports),
        p50_ms=max(x["p50"] for x in latency),
        p99_ms=max(x["p99"] for x in latency),
        pss_mb=sum(summed(r, "pss_mb") for r in reports),
    )


def pipelines(audio: np.ndarray, seconds: float, max_inputs: int) -> dict[str, Row]:
    single = profile_reports(audio, seconds, 1)
    rows = {
        "single process, real time: analysis (front end, 3 models, vote)": single_process(seconds),
        "multiprocess pipeline: analysis processes (front end, 3 workers, aggregator)": pipeline_row(
            single, ANALYSIS_PROCESSES
        ),
        "multiprocess pipeline: every process (capture, SMS, supervisor too)": pipeline_row(single),
    }
    for copies in range(2, max_inputs + 1):
        rows[f"{copies} concurrent inputs: every process of {copies} detectors"] = pipeline_row(
            profile_reports(audio, seconds, copies)
        )
    return rows


def bench_audio(seconds: float) -> np.ndarray:
    """The same audio in every run and process: background with one shot in the middle."""
    return int16_to_float(float_to_int16(stream_with_shots(seconds, [(seconds / 2, "hedgewars-shotgun")])))


def _cell(value: float | None, width: int, digits: int) -> str:
    return ("-" if value is None else f"{value:.{digits}f}").rjust(width)


def print_table(results: dict[str, Row]) -> None:
    reference = results[REFERENCE].cpu_ms
    print(f"{'path':78s} {'CPU ms/audio s':>14s} {'x ours':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'PSS MB':>7s}")
    for name, row in results.items():
        ratio = _cell(row.cpu_ms / reference, 7, 2)
        latency = _cell(row.p50_ms, 8, 1) + " " + _cell(row.p99_ms, 8, 1)
        print(f"{name:78s} {_cell(row.cpu_ms, 14, 3)} {ratio} {latency} {_cell(row.pss_mb, 7, 1)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pipeline-seconds", type=float, default=60.0, help="0: skip the real-time runs")
    parser.add_argument("--max-inputs", type=int, default=3, help="concurrent detectors, up to this many")
    parser.add_argument("--single-process-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single_process_child:
        single_process_child(args.seconds)
        return
    audio, ensemble = bench_audio(args.seconds), load_ensemble("")
    rows = {**ours(audio, ensemble), **prototype(audio), **scaling(audio, ensemble)}
    results = {name: measure(work, args.seconds, args.repeats) for name, work in rows.items()}
    if args.pipeline_seconds:
        seconds = min(args.pipeline_seconds, args.seconds)
        results.update(pipelines(bench_audio(seconds), seconds, args.max_inputs))
    print_table(results)


if __name__ == "__main__":
    main()
