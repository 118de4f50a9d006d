"""Samplers against the authors' solver code on a closed-form model (tests/data/dpm_solver/make_reference.py).

Data x0 ~ N(mu, diag(std^2)) under the project's schedule has an exact noise prediction, so a solver's output
depends only on the solver. The references are MM-Diffusion's `multimodal_dpm_solver_plus.py` in its released
setting and LuChengTHU's `dpm_solver_pytorch.py` (DPM-Solver++), run unchanged on the same initial noise.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdiff.diffusion.samplers import logsnr_timesteps, sample_dpmpp, singlestep_orders
from mmdiff.diffusion.schedule import Schedule
from mmdiff.generate import PUBLIC_SAMPLER, SamplerOptions, run_sampler

REF = np.load(Path(__file__).parent / "data" / "dpm_solver" / "reference.npz", allow_pickle=False)


def gaussian_model(schedule, seen=None):
    """The exact eps at the integer level the sampler hands over (the discrete abar at that index)."""
    mu, std = torch.from_numpy(REF["mu"]), torch.from_numpy(REF["std"])

    def denoise(x, t):
        if seen is not None:
            seen.append(int(t[0]))
        ab = schedule.alpha_bar(t)[:, None]                                         # (B, 1) float64
        eps = (1 - ab).sqrt() * (x.double() - ab.sqrt() * mu) / (ab * std ** 2 + 1 - ab)
        return eps.to(x.dtype)

    return denoise


def pf_endpoint(abar_end):
    """Exact probability-flow endpoint from x_T at level T-1: z = (x - sqrt(ab) mu) / sqrt(ab std^2 + 1 - ab)
    is conserved along the ODE for Gaussian data."""
    ab_T = Schedule().alphas_cumprod[-1].item()
    mu, std, x_T = REF["mu"], REF["std"], REF["x_T"]
    z = (x_T - np.sqrt(ab_T) * mu) / np.sqrt(ab_T * std ** 2 + 1 - ab_T)
    return np.sqrt(abar_end) * mu + np.sqrt(abar_end * std ** 2 + 1 - abar_end) * z


def rel_err(out: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(out.double().numpy() - ref).max() / np.abs(ref).max())


def public(x, steps, seen=None):
    s = Schedule()
    return run_sampler(SamplerOptions(PUBLIC_SAMPLER, steps=steps), gaussian_model(s, seen), x, s, None, None)


def test_reference_problem_uses_our_schedule():
    torch.testing.assert_close(torch.from_numpy(REF["abar"]), Schedule().alphas_cumprod, rtol=1e-13, atol=0)


@pytest.mark.parametrize("key, steps", [("mmd_f64", 20), ("mmd_f64_11", 11)])
def test_public_sampler_equals_mm_diffusion_float64(key, steps):
    seen = []
    out = public(torch.from_numpy(REF["x_T"]), steps, seen)
    assert seen == REF[f"{key}_levels"].tolist()           # the same truncated integer levels, in order
    assert rel_err(out, REF[key]) < 1e-9                    # measured: 1.1e-15 (20 steps), 5.8e-15 (11)


def test_public_sampler_equals_mm_diffusion_as_released_in_float32():
    # The released script runs float32 (alphas_cumprod cast to float32); our coefficients stay float64, so the
    # gap is float32 rounding: measured 2.0e-5, the same as the reference's own float32-float64 gap (2.0e-5).
    seen = []
    out = public(torch.from_numpy(REF["x_T"]).float(), 20, seen)
    assert out.dtype == torch.float32 and seen == REF["mmd_f32_levels"].tolist()
    assert rel_err(out, REF["mmd_f32"]) < 5e-5


def test_dpm_solver_pp_equals_luchengthu_on_its_grid():
    s = Schedule()
    assert logsnr_timesteps(s, 20) == REF["dpmpp_levels"].tolist()
    out = sample_dpmpp(gaussian_model(s), torch.from_numpy(REF["x_T"]), s)         # defaults: 20 steps, order 3
    assert rel_err(out, REF["dpmpp_grid"]) < 1e-9                                  # measured: 7.2e-16


def test_both_land_near_the_probability_flow_endpoint():
    # Stated 20-step errors (max over 16 x 32 values; measured 0.0256 and 0.0198, RMS 0.0044 and 0.0032). The
    # public sampler stops at level 0 and feeds the network truncated levels; DPM-Solver++ ends on clean data.
    ab0 = Schedule().alphas_cumprod[0].item()
    err_public = np.abs(public(torch.from_numpy(REF["x_T"]), 20).numpy() - pf_endpoint(ab0))
    s = Schedule()
    err_pp = np.abs(sample_dpmpp(gaussian_model(s), torch.from_numpy(REF["x_T"]), s).numpy() - pf_endpoint(1.0))
    assert err_public.max() < 0.03 and err_pp.max() < 0.025
    assert np.sqrt((err_public ** 2).mean()) < 0.005 and np.sqrt((err_pp ** 2).mean()) < 0.004
    # ... and far nearer than doing nothing (x_T itself is ~1 away)
    assert np.abs(REF["x_T"] - pf_endpoint(1.0)).mean() > 0.3


def test_public_setting_has_no_clamp_and_no_audio_projection():
    opts = SamplerOptions(PUBLIC_SAMPLER)
    assert (opts.steps, opts.order, opts.clip_denoised, opts.zero_mean_audio) == (20, 3, False, False)
    assert SamplerOptions("dpm-solver++").clip_denoised and SamplerOptions("dpm-solver++").zero_mean_audio


def test_singlestep_orders_spend_exactly_the_steps():
    assert singlestep_orders(20, 3) == [3] * 6 + [2]                   # the released setting
    assert singlestep_orders(21, 3) == [3] * 6 + [2, 1] and singlestep_orders(19, 3) == [3] * 6 + [1]
    assert singlestep_orders(7, 2) == [2, 2, 2, 1] and singlestep_orders(2, 3) == [2]
    for steps in range(1, 30):
        for order in (1, 2, 3):
            assert sum(singlestep_orders(steps, order)) == steps


def test_public_sampler_reports_every_model_evaluation():
    seen = []
    s = Schedule()
    run_sampler(SamplerOptions(PUBLIC_SAMPLER), gaussian_model(s), torch.from_numpy(REF["x_T"][:2]), s, None,
                seen.append)
    assert [i["step"] for i in seen] == list(range(1, 21)) and {i["steps"] for i in seen} == {20}
    assert [i["t"] for i in seen] == REF["mmd_f64_levels"].tolist()


def test_generate_runs_the_public_sampler_seeded():
    import mmdiff
    from mmdiff.generate import generate

    model = mmdiff.build_model("tiny").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():                   # random weights in the zero-initialised layers: a non-trivial eps
        for p in model.parameters():
            if not p.abs().sum():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    runs = [generate(model, 1, SamplerOptions(name, steps=3), seed=7)
            for name in (PUBLIC_SAMPLER, PUBLIC_SAMPLER, "dpm-solver++")]
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not torch.equal(runs[0][0], runs[2][0]) and torch.isfinite(runs[0][1]).all()
