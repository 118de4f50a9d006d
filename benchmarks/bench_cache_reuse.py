"""Real features of a folder that was moved, touched and grown: what the content-keyed cache recomputes.

    python -m benchmarks.bench_cache_reuse --work runs/cache-reuse [--num 256] [--extra 16]

Three `python -m eval.run --metric fvd,kvd,av-align-peaks --runs 1` calls (I3D = the real weights), each in its own
process, NUM real clips (synthetic, seed 99) against NUM fake ones (seed 5):
1. `real/` into an empty cache;
2. the same clips after `real/` was renamed to `moved/`, every file's mtime set to now (a copy without -p does
   this) and EXTRA new clips (seed 7) added: the same cache;
3. `moved/` again into an empty cache: what every call did before features were keyed by content (the folder's
   path, names, sizes and mtimes were the key, so call 2 recomputed all of its clips).
For each call: wall time and how many real clips had features computed (rows the call added to the real bank).

    python -m benchmarks.bench_cache_reuse --hash FOLDER

times only the file digests of FOLDER's clips: first with an empty memo, then remembered.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._util import machine
from benchmarks.bench_fvd_spread import make_folder

METRICS = "fvd,kvd,av-align-peaks"


def evaluate(real: Path, fake: Path, n: int, cache: Path, out: Path, weights_dir: str | None) -> dict:
    """One eval.run call: wall seconds, its results and the real rows in its cache afterwards."""
    cmd = [sys.executable, "-m", "eval.run", "--metric", METRICS, "--real", str(real), "--fake", str(fake),
           "--num-samples", str(n), "--runs", "1", "--cache-dir", str(cache), "--out", str(out), "--overwrite",
           "--device", "cpu", *(["--weights-dir", weights_dir] if weights_dir else [])]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"error: eval.run failed ({done.returncode}): {done.stderr[-2000:]}")
    wall = time.perf_counter() - t0
    res = json.loads(out.read_text())
    return {"wall_s": round(wall, 1), "fvd": round(res["runs"][0]["fvd"], 3),
            "bank_rows": bank_rows(cache, res["feature_banks"]["real"]["i3d"])}


def bank_rows(cache: Path, bank: str) -> int:
    from eval.bank import FeatureBank

    return len(FeatureBank.named(cache, bank).load())


def time_digests(folder: Path) -> None:
    import tempfile

    from eval.clips import list_clips
    from eval.sources import file_digests

    files = list_clips(folder)
    size = sum(f.stat().st_size for f in files) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        for what in ("empty memo", "remembered"):
            t0 = time.perf_counter()
            file_digests(files, Path(tmp) / "clip-digests.json")
            print(f"{len(files)} files, {size:.0f} MB, {what}: {time.perf_counter() - t0:.3f} s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", help="folder for the clips, the caches and the results (emptied)")
    ap.add_argument("--hash", metavar="FOLDER", help="only time the file digests of FOLDER's clips")
    ap.add_argument("--num", type=int, default=256, help="clips per set, N (default 256)")
    ap.add_argument("--extra", type=int, default=16, help="clips added to the moved folder (default 16)")
    ap.add_argument("--weights-dir", default=None, help="folder holding the I3D weights (default: eval's lookup)")
    args = ap.parse_args(argv)
    if args.hash:
        return time_digests(Path(args.hash))
    if not args.work:
        ap.error("--work is required (or --hash FOLDER)")
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    real, fake = make_folder(work / "real", args.num, 99), make_folder(work / "fake", args.num, 5)
    extra = make_folder(work / "extra", args.extra, 7)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}; N = {args.num}, +{args.extra} clips",
          flush=True)
    first = evaluate(real, fake, args.num, work / "cache", work / "first.json", args.weights_dir)
    print("1 fresh cache:", first, flush=True)

    moved = work / "moved"
    real.rename(moved)
    for f in extra.glob("*.mp4"):
        shutil.copy(f, moved / f"extra-{f.name}")
    now = time.time_ns()
    for f in moved.iterdir():
        os.utime(f, ns=(now, now))
    again = evaluate(moved, fake, args.num, work / "cache", work / "again.json", args.weights_dir)
    again["computed"] = again["bank_rows"] - first["bank_rows"]
    print("2 moved, touched, grown; same cache:", again, flush=True)
    fresh = evaluate(moved, fake, args.num, work / "cache-fresh", work / "fresh.json", args.weights_dir)
    print("3 the same folder, empty cache (every clip computed, as before content keys):", fresh, flush=True)
    summary = {"machine": machine(), "num": args.num, "extra": args.extra, "first": first, "moved": again,
               "fresh": fresh}
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {work / 'summary.json'}")


if __name__ == "__main__":
    main()
