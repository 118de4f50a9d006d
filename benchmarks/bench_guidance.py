"""Zero-shot guidance on a correlated Gaussian pair, where p(audio | video) is known in closed form.

"video" and "audio" are 1-d, jointly N(0, [[1, rho], [rho, 1]]) with rho = 0.9, and the denoiser is the
exact E[eps | x_t]. Conditioning on video = 1.5, the true conditional is N(1.35, 0.19). Prints, per
sampler and lambda, the mean and std of the generated audio and the guidance loss.

    python -m benchmarks.bench_guidance
"""
from __future__ import annotations

import argparse

import torch

from mmdiff.diffusion.guidance import Condition, conditioned_denoiser, guidance_loss
from mmdiff.diffusion.joint import JointLayout
from mmdiff.diffusion.schedule import Schedule
from mmdiff.generate import SamplerOptions, run_sampler

RHO = 0.9


def exact_eps(schedule: Schedule):
    sigma = torch.tensor([[1.0, RHO], [RHO, 1.0]], dtype=torch.float64)

    def denoise(x, t):
        ab = schedule.alpha_bar(t).to(x)[:, None, None]
        cov = ab * sigma + (1 - ab) * torch.eye(2, dtype=x.dtype)
        return (1 - ab[:, :, 0]).sqrt() * torch.linalg.solve(cov, x.unsqueeze(-1)).squeeze(-1)

    return denoise


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=4000, help="samples per setting")
    ap.add_argument("--video", type=float, default=1.5, help="the given video value")
    args = ap.parse_args(argv)
    s, layout = Schedule(), JointLayout((1,), (1,))
    denoise = exact_eps(s)
    n = args.num
    given = torch.full((n, 1), args.video, dtype=torch.float64)
    probe = (torch.full((n,), 300), torch.randn(n, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    print(f"target: mean {RHO * args.video:.3f}, std {(1 - RHO ** 2) ** 0.5:.3f}")
    print("| sampler | lambda | mean a | std a | guidance loss |\n|---|---:|---:|---:|---:|")
    for sampler, steps in (("ddim", 50), ("dpm-solver++", 20), ("ddpm", 1000)):
        for lam in (0.0, 1.0, 3.0, 10.0):
            cond = Condition("video", given, "gradient", lam)
            guided = conditioned_denoiser(denoise, layout, s, cond, generator=torch.Generator().manual_seed(1))
            x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            out = run_sampler(SamplerOptions(sampler, steps=steps, order=2, clip_denoised=False), guided, x, s,
                              torch.Generator().manual_seed(2), None)
            loss = guidance_loss(denoise, layout, s, cond, out, *probe).mean()
            print(f"| {sampler}-{steps} | {lam:g} | {out[:, 1].mean():.3f} | {out[:, 1].std():.3f} | {loss:.4f} |")


if __name__ == "__main__":
    main()
