"""Sampling speed of this code against a pinned older commit, on one machine (issue 21: "a pinned older commit run
in the same benchmark").

    git worktree add /tmp/old dd2052f          # the code of the 2026-11-22 protocol run
    python -m benchmarks.bench_commits --old /tmp/old --ckpt /tmp/old/mmdiff/assets/tiny-synthetic.pt

Each round times `mmdiff.generate.generate` of `--batch` clips (DPM-Solver++, `--steps`) once with the older
tree's `mmdiff` and once with this one's, in separate processes (one package cannot be imported twice in one
process), alternating which goes first; both load the same checkpoint, so only the code differs. Every
process warms up with a 2-step batch of 2 first. Prints one JSON line per timing (with the mean of the video
batch, which must agree between the trees when their samplers do) and a markdown table of the medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# Runs inside the child process, with PYTHONPATH set to the tree under test; prints one JSON line.
CHILD = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[4]))
import mmdiff.generate as g
from mmdiff.checkpoint import load_model
loaded = load_model(sys.argv[1])
model, schedule = loaded if isinstance(loaded, tuple) else (loaded, None)
batch, steps = int(sys.argv[2]), int(sys.argv[3])
g.generate(model, 2, g.SamplerOptions("dpm-solver++", steps=2), seed=0, schedule=schedule)
t0 = time.perf_counter()
video, _ = g.generate(model, batch, g.SamplerOptions("dpm-solver++", steps=steps), seed=0, schedule=schedule)
wall = time.perf_counter() - t0
print(json.dumps({"module": g.__file__, "s_per_clip": round(wall / batch, 4),
                  "video_mean": round(float(video.float().mean()), 6)}))
"""


def time_tree(tree: Path, ckpt: str, batch: int, steps: int, threads: int) -> dict:
    """One timing of `generate` with the `mmdiff` package of `tree` (a source checkout; run from it, since `-c`
    puts the working directory ahead of PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    out = subprocess.run([sys.executable, "-c", CHILD, str(Path(ckpt).resolve()), str(batch), str(steps),
                          str(threads)], env=env, cwd=tree, capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if not row["module"].startswith(str(tree.resolve())):
        raise SystemExit(f"error: {tree} did not provide mmdiff (imported {row['module']})")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_commits", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True, type=Path, help="source tree of the older commit (git worktree)")
    p.add_argument("--ckpt", required=True, help="checkpoint both trees load (the older tree's own, so it can)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not (args.old / "mmdiff" / "generate.py").is_file():
        p.error(f"{args.old} holds no mmdiff/generate.py: pass a checkout of the project")
    trees = {"old": args.old, "this": Path(__file__).resolve().parents[1]}
    times: dict[str, list[float]] = {name: [] for name in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(trees)[::-1]
        for name in order:
            row = time_tree(trees[name], args.ckpt, args.batch, args.steps, args.threads)
            print(json.dumps({"round": r, "code": name, **row, "load_avg": os.getloadavg()[0]}), flush=True)
            times[name].append(row["s_per_clip"])
    print(f"\n| code | s per clip (batch {args.batch}, {args.steps} steps): median of {args.rounds} | runs |")
    print("|---|---:|---|")
    for name, tt in times.items():
        print(f"| {name} ({trees[name]}) | {statistics.median(tt):.3f} | {' / '.join(f'{t:.3f}' for t in tt)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
