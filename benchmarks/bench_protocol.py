"""Peak memory and wall time of the FVD/KVD(/FAD) protocol as N grows (memory must stay flat in N).

    python -m benchmarks.bench_protocol --weights-dir DIR --num-samples 32 128 [--metric fvd,kvd]

Each N runs in a fresh process (peak RSS from getrusage) on synthetic in-memory clips (16 frames,
64x64, 1.6 s of 16 kHz audio; drifting gratings with noise), fresh cache, one run. Reports wall
time, clips/s and peak RSS; the per-clip cost extrapolates to the 2,048-sample protocol.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


class SyntheticSource:
    """Deterministic clips made on the fly: nothing is held beyond the current batch."""

    def __init__(self, n: int, seed: int, frames: int = 16, size: int = 64, rate: int = 16000, fps: int = 10) -> None:
        self.n, self.seed, self.frames, self.size, self.rate, self.fps = n, seed, frames, size, rate, fps

    pool_size = property(lambda self: self.n)
    identity = property(lambda self: {"kind": "synthetic", "seed": self.seed, "n": self.n})

    def describe(self) -> str:
        return f"synthetic(seed={self.seed})"

    def clip(self, i: int):
        from mmdiff.data.av_io import AVClip as Clip

        rng = np.random.default_rng([self.seed, i])
        t, y, x = np.meshgrid(np.arange(self.frames), np.arange(self.size), np.arange(self.size), indexing="ij")
        k = rng.uniform(0.05, 0.3, 3)
        v = np.stack([np.sin(k[c] * (x + (c + 1) * t) + k[(c + 1) % 3] * y) for c in range(3)], -1)
        video = np.clip(127.5 + 100 * v + rng.normal(0, 10, v.shape), 0, 255).astype(np.uint8)   # (F, H, W, 3)
        n = int(self.frames / self.fps * self.rate)
        audio = (0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * np.arange(n) / self.rate)
                 + rng.normal(0, 0.05, n)).astype(np.float32)
        return Clip(video, audio, self.fps, self.rate, f"synthetic-{i}")

    def batches(self, indices, batch_size):
        for s in range(0, len(indices), batch_size):
            idx = [int(i) for i in indices[s: s + batch_size]]
            yield idx, [self.clip(i) for i in idx]


def child(n: int, metric: str, weights_dir: str, batch: int) -> dict:
    import torch

    from eval.protocol import ProtocolConfig, evaluate

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as cache:
        cfg = ProtocolConfig(metrics=tuple(metric.split(",")), num_samples=n, runs=1, batch_size=batch,
                             weights_dir=weights_dir, cache_dir=cache, video_size=64, device="cpu")
        t = time.perf_counter()
        res = evaluate(cfg, SyntheticSource(n, 1), SyntheticSource(n, 2))
        wall = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"num_samples": n, "wall_s": wall, "clips_per_s": 2 * n / wall, "peak_rss_mb": peak_mb,
            **{k: v["mean"] for k, v in res["summary"].items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights-dir", required=True, help="folder with i3d-kinetics-400.ckpt (and AudioCLIP-Full-Training.pt for fad)")
    p.add_argument("--num-samples", type=int, nargs="+", default=[32, 128], help="values of N to measure")
    p.add_argument("--metric", default="fvd,kvd", help="metrics, as for eval.run")
    p.add_argument("--batch-size", type=int, default=16, help="clips per feature batch")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.metric, args.weights_dir, args.batch_size)))
        return 0
    for n in args.num_samples:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_protocol", "--weights-dir", args.weights_dir,
                              "--metric", args.metric, "--batch-size", str(args.batch_size), "--child", str(n)],
                             check=True, capture_output=True, text=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
