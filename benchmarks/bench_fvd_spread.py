"""How much FVD / KVD move at small N: two disjoint draws of the same distribution, so the true distance is 0.

    python -m benchmarks.bench_fvd_spread --work runs/fvd-spread [--nums 16 64 256] [--pairs 5]

Pair p compares two synthetic folders made with different seeds (`python -m mmdiff.data.synthetic --num POOL
--seed S`; a seed gives an independent draw of the same distribution) with
`python -m eval.run --metric fvd,kvd --num-samples N --runs 1`, once per N, smallest N first. Everything the
true distance (0) does not explain is the bias and noise of N clips per set: the studio's Evaluate tab quotes
these numbers (eval.spread) when N is small. Features are cached in WORK/cache (per clip), so a stopped run
resumes, and each N's results are added to WORK/spread.json as soon as all its pairs are done (so a large N
can be run later with fewer pairs: `--nums 256 --pairs 2` on the same WORK).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._util import machine

METRICS = ("fvd", "kvd")


def make_folder(out: Path, num: int, seed: int) -> Path:
    """A synthetic folder of `num` clips drawn with `seed` (kept when it is already there)."""
    if not (out / f"clip_{num - 1:05d}.mp4").is_file():
        subprocess.run([sys.executable, "-m", "mmdiff.data.synthetic", "--out", str(out), "--num", str(num),
                        "--seed", str(seed), "--quiet", "--overwrite"], check=True)
    return out


def distance(real: Path, fake: Path, n: int, work: Path, weights_dir: str | None) -> dict[str, float]:
    """FVD and KVD of one pair of folders at N = n (eval.run in its own process; results JSON read back)."""
    out = work / f"n{n}-{real.name}-{fake.name}.json"
    if not out.is_file():
        cmd = [sys.executable, "-m", "eval.run", "--metric", ",".join(METRICS), "--real", str(real),
               "--fake", str(fake), "--num-samples", str(n), "--runs", "1", "--cache-dir", str(work / "cache"),
               "--out", str(out), "--device", "cpu"]
        subprocess.run(cmd + (["--weights-dir", weights_dir] if weights_dir else []), check=True,
                       stdout=subprocess.DEVNULL)
    summary = json.loads(out.read_text())["summary"]
    return {m: float(summary[m]["mean"]) for m in METRICS}


def spread(values: list[dict[str, float]]) -> dict:
    """Mean, sample std and the values of each metric over the pairs."""
    out = {}
    for m in METRICS:
        x = np.array([v[m] for v in values])
        out[m] = {"mean": round(float(x.mean()), 2), "std": round(float(x.std(ddof=1)), 2) if len(x) > 1 else 0.0,
                  "values": [round(float(v), 2) for v in x]}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="folder for the synthetic clips, the feature cache and results")
    ap.add_argument("--nums", type=int, nargs="+", default=[16, 64, 256], help="N clips per set (default 16 64 256)")
    ap.add_argument("--pairs", type=int, default=5, help="independent pairs of folders per N (default 5)")
    ap.add_argument("--seed", type=int, default=1000, help="pair p uses seeds SEED+2p and SEED+2p+1 (default 1000)")
    ap.add_argument("--weights-dir", default=None, help="folder holding the I3D weights (default: eval's lookup)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pool = max(args.nums)
    folders = [(make_folder(work / f"syn{args.seed + 2 * p}", pool, args.seed + 2 * p),
                make_folder(work / f"syn{args.seed + 2 * p + 1}", pool, args.seed + 2 * p + 1))
               for p in range(args.pairs)]
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}; {args.pairs} pairs, pool {pool}",
          flush=True)
    record = work / "spread.json"                  # runs with other --nums / --pairs add their N to it
    results: dict = json.loads(record.read_text()) if record.is_file() else {}
    for n in sorted(args.nums):
        t0 = time.perf_counter()
        values = [distance(a, b, n, work, args.weights_dir) for a, b in folders]
        results[str(n)] = {**spread(values), "pairs": len(values), "seconds": round(time.perf_counter() - t0, 1),
                           "load_average": round(os.getloadavg()[0], 2)}
        record.write_text(json.dumps(results, indent=1))
        r = results[str(n)]
        print(f"| {n} | {r['fvd']['mean']:.1f} ± {r['fvd']['std']:.1f} | {r['kvd']['mean']:.2f} ± "
              f"{r['kvd']['std']:.2f} | {r['seconds']:.0f} s, load {r['load_average']} |", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
