"""CPU cost of the analysis path per second of audio, side by side in one run (ratios, not seconds,
are what to compare: this machine is shared and noisy).

    python benchmarks/bench_analysis.py [--seconds 120] [--repeats 3]

Rows:
  ours: features        numpy log-mel streams, computed once per hop (what the front end does)
  ours: analysis        features + the three TFLite models + vote + events (the offline path,
                        single process, the same code as the live processes)
  prototype: features   librosa melspectrogram of every 2 s window, two resolutions (needs librosa)
Each process is pinned to one BLAS/LiteRT thread, as in the detector.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from capture.pcm import float_to_int16, int16_to_float  # noqa: E402
from inference.features import LogMelFrontend  # noqa: E402
from inference.model import load_ensemble  # noqa: E402
from inference.offline import OfflineDetector  # noqa: E402
from tests.detector_run import stream_with_shots  # noqa: E402

PROTOTYPE_WINDOW = 2.0  # s, no overlap, as in the 2019 prototype
HOP = 8000


def cpu_ms_per_audio_second(work, audio_seconds: float, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return 1000.0 * best / audio_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    audio = int16_to_float(float_to_int16(stream_with_shots(args.seconds, [(args.seconds / 2, "hedgewars-shotgun")])))
    ensemble = load_ensemble("")
    specs = list(ensemble.logmel_specs().values())
    frontends = [LogMelFrontend(spec) for spec in specs]
    detector = OfflineDetector(ensemble, HOP, merge_gap=2.0)

    def features_per_hop() -> None:  # as the front end: each hop's new frames, once
        for f in frontends:
            step = HOP // f.spec.hop_length * f.spec.hop_length
            for start in range(0, len(audio) - f.spec.n_fft, step):
                f.frames(audio[start : start + step + f.spec.n_fft - f.spec.hop_length])

    rows = {
        "ours: features (per hop)": features_per_hop,
        "ours: analysis (features, 3 models, vote)": lambda: detector.run([audio]),
    }
    try:
        import librosa

        window = int(PROTOTYPE_WINDOW * 16000)

        def prototype_features() -> None:
            for start in range(0, len(audio) - window + 1, window):
                for spec in specs:
                    librosa.feature.melspectrogram(
                        y=audio[start : start + window],
                        sr=16000,
                        n_fft=spec.n_fft,
                        hop_length=spec.hop_length,
                        n_mels=spec.n_mels,
                        fmin=spec.fmin,
                        fmax=spec.fmax,
                    )

        prototype_features()  # numba's first-call compilation is not counted
        rows["prototype: librosa features per 2 s window"] = prototype_features
    except ImportError:
        print("librosa not installed: the prototype row is skipped (./setup.sh --test installs it)")
    results = {name: cpu_ms_per_audio_second(work, args.seconds, args.repeats) for name, work in rows.items()}
    reference = results["ours: analysis (features, 3 models, vote)"]
    print(f"{'path':48s} {'CPU ms per audio s':>20s} {'x ours: analysis':>18s}")
    for name, ms in results.items():
        print(f"{name:48s} {ms:20.3f} {ms / reference:18.2f}")


if __name__ == "__main__":
    main()
