"""OpenMP's wait policy on a small CPU: torch's 2 threads alone and beside one other busy process.

    python -m benchmarks.bench_omp                       # 3 rounds of sampling forwards: idle, beside 1 and 2 busy loops
    python -m benchmarks.bench_omp --rounds 5 --work sample,train

torch's CPU threads meet at a barrier after every operator. libgomp's default lets a thread that arrives first
spin for a while before it sleeps; when another process holds one of the two cores, the spinning thread burns
the time slice its partner needs, and small-operator work (the tiny model: hundreds of operators per forward)
can run many times slower. `OMP_WAIT_POLICY=PASSIVE` makes waiting threads sleep at once. This benchmark runs
the same work in fresh processes (the policy is read when torch loads) under each setting, in turn, round by
round: on an otherwise idle machine, then beside one and two niced busy loops (what a browser, an editor or a
second job does to a laptop), and prints wall and CPU seconds per setting: medians over the rounds.

Work: "sample" = 20 forwards of the shipped tiny model at batch 1 (one DPM-Solver++ 20 clip's model calls);
"train" = 5 training steps of the tiny preset at batch 4 on random clips (forward, backward, AdamW).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {                                   # name -> environment added to the child
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}


def child(work: str) -> dict:
    """Time `work` in this process (run in a fresh child by `measure`); returns wall and CPU seconds."""
    import torch

    from mmdiff.checkpoint import load_model

    model, _ = load_model(None)
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    if work == "sample":
        v = torch.randn(1, *cfg.video_shape, generator=g)
        a = torch.randn(1, *cfg.audio_shape, generator=g)
        t = torch.full((1,), 500)

        def run():
            with torch.inference_mode():
                for _ in range(20):
                    model(v, a, t, shift=0)
    else:
        import mmdiff

        net = mmdiff.build_model("tiny").train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        v = torch.randn(4, *cfg.video_shape, generator=g)
        a = torch.randn(4, *cfg.audio_shape, generator=g)
        t = torch.randint(0, 1000, (4,), generator=g)

        def run():
            for _ in range(5):
                ev, ea = net(v, a, t, shift=0)
                (ev.square().mean() + ea.square().mean()).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
    run()                                                    # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    run()
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "threads": torch.get_num_threads()}


def measure(work: str, setting: str) -> dict:
    env = {**os.environ, **SETTINGS[setting]}
    if setting != "1 thread":
        env.pop("OMP_NUM_THREADS", None)
    if setting == "default":
        env.pop("OMP_WAIT_POLICY", None)
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_omp", "--child", work], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def rounds(work: str, n: int, label: str) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for r in range(n):
        for setting in SETTINGS:
            res = measure(work, setting)
            res["load"] = os.getloadavg()[0]
            results[setting].append(res)
            print(json.dumps({"work": work, "machine": label, "round": r, "setting": setting, **res}), flush=True)
    return results


def table(work: str, label: str, results: dict[str, list[dict]]) -> str:
    lines = []
    for setting, runs in results.items():
        walls = [r["wall"] for r in runs]
        lines.append(f"| {work} | {label} | {setting} | {statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}) "
                     f"| {statistics.median(r['cpu'] for r in runs):.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_omp", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds of every setting (default 3)")
    p.add_argument("--work", default="sample", help="sample (default), train, or both: sample,train")
    p.add_argument("--max-busy", type=int, default=2, help="also run beside 1..N busy loops (default 2)")
    p.add_argument("--nice", type=int, default=10, help="niceness of the busy loops (default 10; 0: equal priority)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    from benchmarks._util import machine

    print(machine(), f"; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for work in args.work.split(","):
        for n_busy in range(args.max_busy + 1):
            label = "idle" if n_busy == 0 else f"{n_busy} busy process(es)"
            busy = [subprocess.Popen(["nice", "-n", str(args.nice), sys.executable, "-c", "while True: pass"])
                    for _ in range(n_busy)]
            try:
                time.sleep(1.0 if busy else 0.0)
                rows.append(table(work, label, rounds(work, args.rounds, label)))
            finally:
                for b in busy:
                    b.kill()
                    b.wait()
    print("| work | machine | setting | wall s, median (min-max) | CPU s, median |\n|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
