"""Make reference.npz: the authors' DPM-Solver code, run unchanged on a closed-form model.

The model is exact: data x0 ~ N(mu, diag(std^2)) under the linear VP schedule (betas 1e-4 .. 0.02, T = 1000)
has the noise prediction

    eps*(x_t, n) = sqrt(1 - abar_n) (x_t - sqrt(abar_n) mu) / (abar_n std^2 + 1 - abar_n)

at integer level n (at a fractional level, log sqrt(abar) is interpolated linearly, as the solvers' own
'discrete' schedule does). Two public solvers sample it from the same fixed initial noise:

* MM-Diffusion's `mm_diffusion/multimodal_dpm_solver_plus.py` in the setting of its released sampling script
  (`py_scripts/multimodal_sample_sr.py`, `--sample_fn dpm_solver`): `DPM_Solver(model, alphas_cumprod=...)`
  (noise prediction, no thresholding), `.sample(x_T, steps=20, order=3, skip_type="logSNR",
  method="singlestep")`, once in float32 as the script runs it (alphas_cumprod cast to float32) and once with
  float64 as torch's default dtype. The model receives the integer levels the solver hands it; they are
  recorded. Its state is a {"video", "audio"} dict: here video (B, 2, 3, 2, 2) and audio (B, 1, 8).
* LuChengTHU/dpm-solver's `dpm_solver_pytorch.py`, DPM-Solver++ (`algorithm_type="dpmsolver++"`), multistep,
  order 3, float64, on the integer-level grid of mmdiff's `dpm-solver++` sampler (20 levels uniform in log-SNR,
  rounded to integers, 999 ... 0, given to the solver as t = (n + 1) / 1000 through `get_time_steps`), then
  `denoise_to_zero`: 19 updates + 1 final data prediction = 20 evaluations, as mmdiff's. Also its own
  recommended grid (`skip_type="logSNR"`, steps 20, continuous times), for the closed-form error only.

Run it in an environment with torch and numpy (no other dependency), given clones of the two repositories:

    python tests/data/dpm_solver/make_reference.py --mm-diffusion ~/src/MM-Diffusion --dpm-solver ~/src/dpm-solver

Upstream commits used for the stored file (checked when the clones are git work trees):
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

MM_DIFFUSION_COMMIT = "7250222114ee1eca36e32d90e8a41f12d92651e2"   # researchmm/MM-Diffusion
DPM_SOLVER_COMMIT = "52bc3fbcd5de56d60917b826b15d2b69460fc2fa"     # LuChengTHU/dpm-solver
__doc__ += f"researchmm/MM-Diffusion {MM_DIFFUSION_COMMIT}, LuChengTHU/dpm-solver {DPM_SOLVER_COMMIT}.\n"

VIDEO_SHAPE, AUDIO_SHAPE = (2, 3, 2, 2), (1, 8)          # per sample; flat joint state: video then audio
D_VIDEO, D = 24, 32
BATCH = 16


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_commit(repo: Path, expected: str) -> str:
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        print(f"warning: {repo} is not a git work tree; cannot check it is {expected}", file=sys.stderr)
        return "unknown"
    if head != expected:
        print(f"warning: {repo} is at {head}, the stored reference used {expected}", file=sys.stderr)
    return head


def problem():
    """(abar (1000,), mu (D,), std (D,), x_T (BATCH, D)), all float64 numpy, fixed."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)      # guided-diffusion's "linear" schedule
    abar = np.cumprod(1.0 - betas)
    rng = np.random.default_rng(20261206)
    mu = rng.uniform(-0.8, 0.8, D)
    std = np.exp(rng.uniform(np.log(0.05), np.log(1.0), D))
    x_T = rng.standard_normal((BATCH, D))
    return abar, mu, std, x_T


def exact_eps(x: torch.Tensor, level: torch.Tensor, abar, mu, std) -> torch.Tensor:
    """eps*(x_t, level) in float64 for x (B, D) and a scalar or (B,) level (integer or fractional)."""
    log_alpha = 0.5 * np.log(abar)
    lv = np.broadcast_to(np.asarray(level.detach().cpu().double().numpy(), dtype=np.float64), (x.shape[0],))
    ab = torch.from_numpy(np.exp(2.0 * np.interp(lv, np.arange(1000.0), log_alpha)))[:, None]   # (B, 1)
    m, s = torch.from_numpy(mu), torch.from_numpy(std)
    xd = x.detach().cpu().double()
    return (1 - ab).sqrt() * (xd - ab.sqrt() * m) / (ab * s ** 2 + 1 - ab)


class MultimodalGaussian:
    """The closed-form model behind MM-Diffusion's multimodal interface: model(video, audio, t) -> (eps_v, eps_a)."""

    video_out_channels, audio_out_channels = 3, 1          # no learned-sigma channels to strip

    def __init__(self, abar, mu, std):
        self.abar, self.mu, self.std, self.levels = abar, mu, std, []

    def __call__(self, video, audio, t):
        assert not torch.is_floating_point(t), "MM-Diffusion hands the network integer timesteps"
        self.levels.append(t.detach().cpu().numpy().copy())
        b = video.shape[0]
        x = torch.cat([video.reshape(b, -1), audio.reshape(b, -1)], 1)
        eps = exact_eps(x, t, self.abar, self.mu, self.std).to(video.dtype)
        return eps[:, :D_VIDEO].reshape(video.shape), eps[:, D_VIDEO:].reshape(audio.shape)


def split(x: torch.Tensor) -> dict:
    return {"video": x[:, :D_VIDEO].reshape(-1, *VIDEO_SHAPE), "audio": x[:, D_VIDEO:].reshape(-1, *AUDIO_SHAPE)}


def join(state: dict) -> np.ndarray:
    b = state["video"].shape[0]
    return torch.cat([state["video"].reshape(b, -1), state["audio"].reshape(b, -1)], 1).double().numpy()


def run_mm_diffusion(mmd, abar, mu, std, x_T, dtype, steps=20):
    """The released script's call, in `dtype` (float32: as released; float64: torch's default dtype)."""
    torch.set_default_dtype(dtype)
    try:
        model = MultimodalGaussian(abar, mu, std)
        solver = mmd.DPM_Solver(model=model, alphas_cumprod=torch.tensor(abar, dtype=dtype))
        x = split(torch.from_numpy(x_T).to(dtype))
        out = solver.sample(x, steps=steps, order=3, skip_type="logSNR", method="singlestep")
    finally:
        torch.set_default_dtype(torch.float32)
    levels = np.stack(model.levels)                       # (NFE, B)
    assert (levels == levels[:, :1]).all()
    return join(out), levels[:, 0].astype(np.int64)


def project_dpmpp_grid(abar, steps):
    """mmdiff's dpm-solver++ grid, computed independently: integer levels nearest to `steps` values uniform in
    log-SNR from level 999 to level 0 (distinct for steps = 20)."""
    lam = 0.5 * (np.log(abar) - np.log1p(-abar))
    targets = np.linspace(lam[-1], lam[0], steps)
    levels = [int(np.argmin(np.abs(lam - v))) for v in targets]
    assert len(set(levels)) == steps and levels[0] == 999 and levels[-1] == 0, levels
    return np.array(levels, dtype=np.int64)


def run_dpm_solver_pp(dpm, abar, mu, std, x_T, levels=None, steps=20):
    """LuChengTHU DPM-Solver++ multistep order 3 in float64: on `levels` (+ denoise to zero), or on its own
    log-SNR grid with `steps` steps when `levels` is None."""
    torch.set_default_dtype(torch.float64)
    try:
        ns = dpm.NoiseScheduleVP("discrete", alphas_cumprod=torch.tensor(abar), dtype=torch.float64)
        model_fn = dpm.model_wrapper(lambda x, t: exact_eps(x, t, abar, mu, std), ns, model_type="noise")

        class OnGrid(dpm.DPM_Solver):
            def get_time_steps(self, skip_type, t_T, t_0, N, device):
                assert N == len(levels) - 1
                return torch.from_numpy((levels + 1) / 1000.0)

        x = torch.from_numpy(x_T.copy())
        if levels is None:
            solver = dpm.DPM_Solver(model_fn, ns, algorithm_type="dpmsolver++")
            out = solver.sample(x, steps=steps, order=3, skip_type="logSNR", method="multistep")
        else:
            solver = OnGrid(model_fn, ns, algorithm_type="dpmsolver++")
            out = solver.sample(x, steps=len(levels) - 1, order=3, method="multistep", lower_order_final=True,
                                denoise_to_zero=True)
    finally:
        torch.set_default_dtype(torch.float32)
    return out.numpy()


def pf_endpoint(abar, mu, std, x_T, abar_end):
    """The probability-flow ODE's exact endpoint at abar_end from x_T at level 999: per coordinate the
    standardised value z = (x - sqrt(abar) mu) / sqrt(abar std^2 + 1 - abar) is conserved."""
    a = abar[-1]
    z = (x_T - np.sqrt(a) * mu) / np.sqrt(a * std ** 2 + 1 - a)
    return np.sqrt(abar_end) * mu + np.sqrt(abar_end * std ** 2 + 1 - abar_end) * z


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mm-diffusion", type=Path, required=True, help="clone of researchmm/MM-Diffusion")
    p.add_argument("--dpm-solver", type=Path, required=True, help="clone of LuChengTHU/dpm-solver")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("reference.npz"), help="output npz")
    args = p.parse_args()
    mmd_commit = check_commit(args.mm_diffusion, MM_DIFFUSION_COMMIT)
    dpm_commit = check_commit(args.dpm_solver, DPM_SOLVER_COMMIT)
    mmd = load_module(args.mm_diffusion / "mm_diffusion" / "multimodal_dpm_solver_plus.py", "mmd_dpm_solver")
    dpm = load_module(args.dpm_solver / "dpm_solver_pytorch.py", "dpm_solver_pytorch")

    abar, mu, std, x_T = problem()
    out = {"abar": abar, "mu": mu, "std": std, "x_T": x_T,
           "mm_diffusion_commit": np.array(mmd_commit), "dpm_solver_commit": np.array(dpm_commit)}
    out["mmd_f64"], out["mmd_f64_levels"] = run_mm_diffusion(mmd, abar, mu, std, x_T, torch.float64)
    out["mmd_f32"], out["mmd_f32_levels"] = run_mm_diffusion(mmd, abar, mu, std, x_T, torch.float32)
    out["mmd_f64_11"], out["mmd_f64_11_levels"] = run_mm_diffusion(mmd, abar, mu, std, x_T, torch.float64, 11)
    out["dpmpp_levels"] = project_dpmpp_grid(abar, 20)
    out["dpmpp_grid"] = run_dpm_solver_pp(dpm, abar, mu, std, x_T, out["dpmpp_levels"])
    own = run_dpm_solver_pp(dpm, abar, mu, std, x_T, None, 20)

    end0, end_clean = pf_endpoint(abar, mu, std, x_T, abar[0]), pf_endpoint(abar, mu, std, x_T, 1.0)
    for name, x, ref in (("MM-Diffusion DPM-Solver float64 (to level 0)", out["mmd_f64"], end0),
                         ("MM-Diffusion DPM-Solver float32 (to level 0)", out["mmd_f32"], end0),
                         ("DPM-Solver++ on mmdiff's grid (to clean)", out["dpmpp_grid"], end_clean),
                         ("DPM-Solver++ on its own log-SNR grid (to level 0)", own, end0)):
        err = x - ref
        print(f"{name}: max |err| {np.abs(err).max():.3e}, RMS err {np.sqrt((err ** 2).mean()):.3e}")
    print("MM-Diffusion integer levels (float64):", out["mmd_f64_levels"].tolist())
    print("MM-Diffusion integer levels (float32):", out["mmd_f32_levels"].tolist())
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
