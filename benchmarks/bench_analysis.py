"""CPU cost of the analysis path per second of audio, side by side in one run (ratios, not seconds,
are what to compare: this machine is shared and noisy).

    python benchmarks/bench_analysis.py [--seconds 120] [--repeats 3] [--pipeline-seconds 60]

Rows (CPU time of this process; each pinned to one BLAS/LiteRT/TensorFlow thread, as the detector):
  ours: features            numpy log-mel streams, computed once per hop (what the front end does)
  ours: analysis            features + the three TFLite models + vote + events, one process (the
                            offline path: the same code as the live processes, on in-memory rings)
  prototype: features       librosa mel spectrograms of every 2 s window at the prototype's two
                            resolutions (models/training/prototype.py)
  prototype: analysis       those features + its three full-size float Keras models, one
                            `predict` per model per window, and its 2-of-3 vote (needs tensorflow)
  scaling                   our analysis with 1, 2, 3 models and a hop of 0.25, 0.5, 1 s
  multiprocess pipeline     `cli.py profile --json` on the same audio replayed at real time: the
                            analysis processes (front end, workers, aggregator) and the total
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
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


def cpu_ms_per_audio_second(work: Callable[[], object], audio_seconds: float, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return 1000.0 * best / audio_seconds


def ours(audio: np.ndarray, ensemble: Ensemble) -> dict[str, Callable[[], object]]:
    frontends = [LogMelFrontend(spec) for spec in ensemble.logmel_specs().values()]
    hop = round(HOP_S * RATE)

    def features_per_hop() -> None:  # as the front end: each hop's new frames, once
        for f in frontends:
            step = hop // f.spec.hop_length * f.spec.hop_length
            for start in range(0, len(audio) - f.spec.n_fft, step):
                f.frames(audio[start : start + step + f.spec.n_fft - f.spec.hop_length])

    detector = OfflineDetector(ensemble, hop, MERGE_GAP_S)
    return {"ours: features (per hop)": features_per_hop, REFERENCE: lambda: detector.run([audio])}


def scaling(audio: np.ndarray, ensemble: Ensemble) -> dict[str, Callable[[], object]]:
    rows = {}
    for count in range(1, len(ensemble.models) + 1):
        subset = Ensemble(ensemble.models[:count], votes_required=1)
        detector = OfflineDetector(subset, round(HOP_S * RATE), MERGE_GAP_S)
        rows[f"scaling: {count} model(s) {'+'.join(m.id for m in subset.models)}, hop 0.5 s"] = lambda d=detector: (
            d.run([audio])
        )
    for hop_s in SCALING_HOPS_S:
        detector = OfflineDetector(ensemble, round(hop_s * RATE), MERGE_GAP_S)
        rows[f"scaling: 3 models, hop {hop_s} s"] = lambda d=detector: d.run([audio])
    return rows


def prototype(audio: np.ndarray) -> dict[str, Callable[[], object]]:
    """The 2019 design as re-created in models/training/prototype.py (librosa, float Keras)."""
    try:
        import librosa  # noqa: F401
    except ImportError:
        print("librosa not installed: the prototype rows are skipped (./setup.sh --test installs it)")
        return {}
    from models.training import prototype as proto

    windows = [audio[i : i + proto.WINDOW_SAMPLES] for i in range(0, len(audio), proto.WINDOW_SAMPLES)]

    def features() -> None:
        for window in windows:
            proto.prototype_features(window)

    features()  # numba's first-call compilation is not counted
    rows = {"prototype: librosa features per 2 s window": features}
    try:
        import tensorflow as tf
    except ImportError:
        print("tensorflow not installed: the prototype's models are skipped (./setup.sh --train installs it)")
        return rows
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    models = proto.build_prototype_models()

    def analysis() -> None:
        for window in windows:
            inputs = proto.prototype_features(window)
            probs = {m: float(models[m].predict(inputs[m][None], verbose=0)[0, 1]) for m in proto.MODEL_IDS}
            proto.prototype_vote(probs)

    analysis()  # graph tracing on the first call is not counted
    params = sum(model.count_params() for model in models.values())
    rows[f"prototype: analysis (features, 3 float Keras models, {params / 1e6:.1f} M params)"] = analysis
    return rows


def pipeline(audio: np.ndarray, seconds: float) -> dict[str, float]:
    """The multiprocess detector (`cli.py profile`) on this audio at real time: CPU ms per audio s."""
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as folder:
        wav = Path(folder) / "stream.wav"
        soundfile.write(wav, audio[: round(seconds * RATE)], RATE, subtype="PCM_16")
        command = [sys.executable, str(ROOT / "cli.py"), "profile", "--json", "--source", str(wav)]
        result = subprocess.run(
            [*command, "--duration", str(seconds), "--data-dir", folder], capture_output=True, text=True, check=True
        )
    report = json.loads(result.stdout)
    processes = report["processes"]
    analysis = sum(p["cpu_ms_per_audio_s"] for name, p in processes.items() if name.startswith(ANALYSIS_PROCESSES))
    return {
        "multiprocess pipeline: analysis processes (front end, 3 workers, aggregator)": analysis,
        "multiprocess pipeline: every process (capture, SMS, supervisor too)": report["total"]["cpu_ms_per_audio_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pipeline-seconds", type=float, default=60.0, help="0: skip the multiprocess run")
    args = parser.parse_args()
    audio = int16_to_float(float_to_int16(stream_with_shots(args.seconds, [(args.seconds / 2, "hedgewars-shotgun")])))
    ensemble = load_ensemble("")
    rows = {**ours(audio, ensemble), **prototype(audio), **scaling(audio, ensemble)}
    results = {name: cpu_ms_per_audio_second(work, args.seconds, args.repeats) for name, work in rows.items()}
    if args.pipeline_seconds:
        results.update(pipeline(audio, min(args.pipeline_seconds, args.seconds)))
    reference = results[REFERENCE]
    print(f"{'path':78s} {'CPU ms per audio s':>18s} {'x ours':>8s}")
    for name, ms in results.items():
        print(f"{name:78s} {ms:18.3f} {ms / reference:8.2f}")


if __name__ == "__main__":
    main()
