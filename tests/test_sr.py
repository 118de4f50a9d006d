"""The super-resolution stage: the paper preset's size, conditioning, learned-variance math against closed
forms, Table A.1's degradations, shared initial noise, training, checkpoints and the --upscale CLI."""
import json
import math

import numpy as np
import pytest
import torch

from mmdiff.checkpoint import CheckpointError, load_model, load_sr_model, save_checkpoint
from mmdiff.config import SR_PAPER, SR_TINY, TINY, DiffusionConfig, SRConfig
from mmdiff.data import synthetic
from mmdiff.data.av_io import probe, read_av
from mmdiff.data.cache import CacheConfigMismatch
from mmdiff.data.sr_data import Degradation, SRFrameDataset, degrade, downsample, jpeg_roundtrip
from mmdiff.diffusion.loss import hybrid_loss
from mmdiff.diffusion.schedule import Schedule
from mmdiff.diffusion.vlb import (discretized_gaussian_nll, learned_log_variance, normal_kl,
                                  posterior_log_variance, vlb_term)
from mmdiff.generate import SamplerOptions
from mmdiff.nn.sr_unet import SRUNet, upsample_condition
from mmdiff.training.distributed import DistInfo
from mmdiff.training.loop import Trainer, TrainConfig
from mmdiff.upscale import initial_noise, sr_predictor, upscale

# Same structure as the tiny preset, small enough to train in a test: 8 -> 32 pixels.
MICRO = SR_TINY.replace(low_size=8, high_size=32, base_channels=16, head_dim=16, time_embed_dim=16)


# --- the network --------------------------------------------------------------------------------------
def test_paper_preset_has_the_papers_311m_parameters():
    with torch.device("meta"):
        model = SRUNet(SR_PAPER)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 311.03e6) / 311.03e6 < 0.05, n
    assert SR_PAPER.high_size == 256 and SR_PAPER.low_size == 64 and SR_PAPER.learn_sigma


def test_paper_preset_output_shape_on_the_meta_device():
    with torch.device("meta"):
        model = SRUNet(SR_PAPER)
        x = torch.empty(2, 3, 256, 256)
        out = model(x, x, torch.zeros(2, dtype=torch.long))
    assert out.shape == (2, 6, 256, 256)            # eps and the variance interpolation v


def test_conditioning_reaches_the_output(perturbed):
    torch.manual_seed(0)
    model = perturbed(SRUNet(MICRO)).eval()
    x = torch.randn(2, 3, 32, 32)
    low_up = torch.randn(2, 3, 32, 32, requires_grad=True)
    t = torch.tensor([10, 500])
    out = model(x, low_up, t)
    grad, = torch.autograd.grad(out[:, :3].square().sum(), low_up)
    assert grad.abs().sum() > 0
    other = model(x, torch.randn(2, 3, 32, 32), t)
    assert (other - out).abs().max() > 1e-3


def test_bad_shapes_get_a_clear_error():
    model = SRUNet(MICRO)
    with pytest.raises(ValueError, match=r"low_up must have shape \(N, 3, 32, 32\)"):
        model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))


def test_config_round_trip_and_validation():
    assert SRConfig.from_dict(SR_PAPER.to_dict()) == SR_PAPER
    with pytest.raises(ValueError, match="whole multiple"):
        SRConfig(low_size=48, high_size=128)
    with pytest.raises(ValueError, match="residual_scale must be > 0"):
        SR_TINY.replace(residual_scale=0.0)
    old = {k: v for k, v in SR_TINY.to_dict().items() if k != "residual_scale"}   # saved before the field existed
    assert SRConfig.from_dict(old).residual_scale == 1.0


# --- learned variance: closed forms ---------------------------------------------------------------------
def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2, lv1, lv2 = (torch.randn(50, generator=g) for _ in range(4))
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m1, (0.5 * lv1).exp()),
                                            torch.distributions.Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), ref, rtol=1e-5, atol=1e-6)


def test_learned_variance_spans_posterior_variance_to_beta():
    s = Schedule()
    t = torch.tensor([1, 100, 999])
    lo = learned_log_variance(s, t, -torch.ones(3, 1)).flatten().double()
    hi = learned_log_variance(s, t, torch.ones(3, 1)).flatten().double()
    beta = s.betas[t]
    post = beta * (1 - s.alpha_bar(t - 1)) / (1 - s.alpha_bar(t))
    torch.testing.assert_close(hi, beta.log(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lo, post.log(), rtol=1e-6, atol=1e-6)
    assert posterior_log_variance(s, torch.tensor([0])) == posterior_log_variance(s, torch.tensor([1]))


def test_bound_term_is_zero_for_the_true_posterior_and_positive_otherwise():
    s = Schedule()
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([5, 50, 400, 900])
    x_t = s.q_sample(x0, t, noise)
    exact = vlb_term(s, x0, x_t, t, noise, -torch.ones_like(x0))          # true eps, v = -1 (posterior var)
    assert exact.abs().max() < 1e-4, exact
    off = vlb_term(s, x0, x_t, t, noise + 0.1, torch.zeros_like(x0))
    assert (off > exact).all()


def test_discretised_likelihood_sums_to_one_over_the_256_levels():
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1                # every 8-bit value
    for mean, log_var in ((0.1, -3.0), (-0.97, -6.0), (0.5, 0.0)):
        nll = discretized_gaussian_nll(levels, torch.full_like(levels, mean), torch.full_like(levels, log_var))
        assert abs(float((-nll).exp().sum()) - 1.0) < 1e-6


def test_bound_term_at_t0_is_the_decoder_nll_in_bits():
    s = Schedule()
    x0 = torch.zeros(1, 3, 4, 4)
    t = torch.zeros(1, dtype=torch.long)
    x_t = s.q_sample(x0, t, torch.zeros_like(x0))
    got = vlb_term(s, x0, x_t, t, torch.zeros_like(x0), torch.ones_like(x0))
    std = math.sqrt(float(s.betas[0]))                                       # v = 1: variance beta_0
    p = math.erf((1 / 255) / std / math.sqrt(2))                              # mass of the bin around 0
    assert abs(float(got) - (-math.log(p) / math.log(2))) < 1e-4


# --- data: Table A.1 degradations ----------------------------------------------------------------------
def test_downsample_is_the_block_mean():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    ref = frame.reshape(4, 4, 4, 4, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(downsample(frame, 4).astype(np.float64) - ref).max() <= 0.5 + 1e-9


def test_degradation_probabilities_and_ranges():
    low = np.full((8, 8, 3), 128, np.uint8)
    noise, jpeg = [], []
    for i in range(400):
        _, applied = degrade(low, np.random.default_rng(i), Degradation())
        noise.append(applied.get("noise_sigma"))
        jpeg.append(applied.get("jpeg_quality"))
    sigmas = [s for s in noise if s is not None]
    qualities = [q for q in jpeg if q is not None]
    assert 0.42 < len(sigmas) / 400 < 0.58 and 0.42 < len(qualities) / 400 < 0.58
    assert 0 <= min(sigmas) and max(sigmas) <= 20 and max(sigmas) > 15
    assert min(qualities) >= 20 and max(qualities) <= 80 and len(set(qualities)) > 30


def test_jpeg_roundtrip_degrades_with_lower_quality():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    err = {q: np.abs(jpeg_roundtrip(frame, q).astype(int) - frame).mean() for q in (20, 80)}
    assert err[20] > err[80] > 0


@pytest.fixture(scope="module")
def sr_cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("sr-syn")
    synthetic.main(["--out", str(out), "--num", "4", "--seed", "0", "--size", "32", "--cache", "--quiet"])
    return out


def test_dataset_pairs_and_flip(sr_cache):
    ds = SRFrameDataset(sr_cache, MICRO, seed=3, frames_per_item=4)
    assert len(ds) == 16
    high, low = ds[0]
    assert high.shape == (3, 32, 32) and low.shape == (3, 8, 8)
    assert -1 <= float(high.min()) and float(high.max()) <= 1
    h, lo, info = SRFrameDataset(sr_cache, MICRO, seed=3, frames_per_item=4, degradation=Degradation(0, (0, 0), 0, (20, 80), 0)).pair(5)
    np.testing.assert_array_equal(lo, downsample(h, 8))                      # no degradation: exact area mean
    assert info["flip"] is False
    flips = [SRFrameDataset(sr_cache, MICRO, seed=s, frames_per_item=4).pair(0)[2]["flip"] for s in range(40)]
    assert 8 < sum(flips) < 32


def test_dataset_rejects_a_cache_of_the_wrong_size(sr_cache):
    with pytest.raises(CacheConfigMismatch, match="--size 128"):
        SRFrameDataset(sr_cache, SR_TINY)


# --- sampling: shared noise, chunking ------------------------------------------------------------------
def test_initial_noise_is_shared_across_frames_or_not():
    g = torch.Generator().manual_seed(0)
    shared = initial_noise(2, 3, 5, "shared", g, "cpu").view(2, 3, 5)
    assert torch.equal(shared[:, 0], shared[:, 2]) and not torch.equal(shared[0, 0], shared[1, 0])
    indep = initial_noise(2, 3, 5, "independent", g, "cpu").view(2, 3, 5)
    assert not torch.equal(indep[:, 0], indep[:, 1])


def test_upscale_identical_frames_identically_with_shared_noise(perturbed):
    torch.manual_seed(0)
    model = perturbed(SRUNet(MICRO))
    frame = torch.rand(1, 1, 3, 8, 8) * 2 - 1
    video = frame.expand(1, 3, 3, 8, 8)                                       # a still clip
    opts = SamplerOptions("ddim", steps=3)
    shared = upscale(model, video, opts, seed=1, noise="shared", batch_frames=2)
    assert shared.shape == (1, 3, 3, 32, 32)
    # (batches of 2 and 1 frames take different float paths: equal up to ~1e-4, not bit for bit)
    torch.testing.assert_close(shared[0, 0], shared[0, 2], atol=2e-3, rtol=0)
    whole = upscale(model, video, opts, seed=1, noise="shared", batch_frames=3)
    torch.testing.assert_close(shared, whole, atol=2e-3, rtol=0)              # chunking does not matter
    torch.testing.assert_close(whole[0, 0], whole[0, 2])                      # one batch: bit for bit
    indep = upscale(model, video, opts, seed=1, noise="independent")
    assert (indep[0, 0] - indep[0, 2]).abs().max() > 0.05


def test_upscale_rejects_the_wrong_input_size():
    with pytest.raises(ValueError, match=r"\(B, F, 3, 8, 8\)"):
        upscale(SRUNet(MICRO), torch.zeros(1, 2, 3, 16, 16))


# --- training and checkpoints --------------------------------------------------------------------------
def _fixed_loss(model, high, low):
    with torch.no_grad():
        pred = sr_predictor(model, upsample_condition(low, MICRO.high_size))
        return float(sum(hybrid_loss(pred, Schedule(), high, torch.Generator().manual_seed(k))["loss"]
                         for k in range(4)))


def _trainer(run, cache, steps, resume=False):
    from mmdiff.train_sr import sr_loss_fn

    torch.manual_seed(0)
    ds = SRFrameDataset(cache, MICRO, seed=0, frames_per_item=4)
    tcfg = TrainConfig(steps=steps, batch_size=4, lr=2e-3, ema=0.9, save_every=steps, log_every=1, seed=0,
                       workers=0, preview_every=10 ** 9)
    return Trainer(run, SRUNet(MICRO), MICRO, DiffusionConfig(), ds, sr_loss_fn(Schedule()), tcfg,
                   DistInfo(0, 1, 0, torch.device("cpu")), resume=resume)


def test_a_few_sr_steps_lower_the_loss_and_resume(tmp_path, sr_cache):
    t = _trainer(tmp_path / "run", sr_cache, steps=15)
    high, low = (torch.stack(z) for z in zip(*[t.dataset[i] for i in range(4)]))
    before = _fixed_loss(t.model, high, low)
    t.run()
    assert _fixed_loss(t.model, high, low) < 0.8 * before
    header = (tmp_path / "run" / "log.csv").read_text().splitlines()[0]
    assert header.startswith("step,loss,mse,vlb,")
    again = _trainer(tmp_path / "run", sr_cache, steps=17, resume=True)
    assert again.step == 15
    model, _ = load_sr_model(tmp_path / "run" / "last.pt")
    assert model.config == MICRO
    with pytest.raises(CheckpointError, match="pass it with --upscale"):
        load_model(tmp_path / "run" / "last.pt")


def test_joint_checkpoint_is_refused_as_an_sr_model(tmp_path):
    import mmdiff

    path = save_checkpoint(tmp_path / "j.pt", model_config=TINY, diffusion_config=DiffusionConfig(),
                           model=None, ema=mmdiff.build_model(TINY).state_dict())
    with pytest.raises(CheckpointError, match="pass it with --ckpt"):
        load_sr_model(path)


# --- the CLI: sample --upscale keeps the audio and the duration ------------------------------------------
def test_train_sr_cli_then_sample_with_upscale(tmp_path):
    from mmdiff import sample, train_sr

    data = tmp_path / "data128"
    synthetic.main(["--out", str(data), "--num", "2", "--seed", "0", "--size", "128", "--cache", "--quiet"])
    run = tmp_path / "sr"
    assert train_sr.main(["--data", str(data), "--preset", "tiny", "--out", str(run), "--steps", "2",
                          "--batch-size", "2", "--workers", "0", "--preview-every", "0"]) == 0
    out = tmp_path / "samples"
    assert sample.main(["--num", "1", "--out", str(out), "--steps", "2", "--upscale", str(run / "last.pt"),
                        "--upscale-steps", "2"]) == 0
    clip = out / "sample_000000.mp4"
    info = probe(clip)
    assert info.has_audio and abs(info.duration - TINY.duration) < 0.15
    decoded = read_av(clip, fps=TINY.fps, size=None, audio_rate=TINY.audio_rate)
    assert decoded.video.shape == (TINY.video_frames, 128, 128, 3)
    assert decoded.audio.shape == (TINY.audio_samples,) and np.abs(decoded.audio).max() > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["upscale"]["steps"] == 2 and len(manifest["upscale"]["sha256"]) == 64


def test_diffusion_space_round_trip_for_frame_and_residual_modes():
    from mmdiff.nn.sr_unet import from_diffusion_space, to_diffusion_space

    g = torch.Generator().manual_seed(0)
    high = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    low_up = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    for cfg in (SR_PAPER, SR_TINY):
        x = to_diffusion_space(cfg, high, low_up)
        torch.testing.assert_close(from_diffusion_space(cfg, x, low_up), high)
    assert not SR_PAPER.residual and SR_TINY.residual                       # the paper diffuses frames
    assert SR_TINY.residual_scale == 8.0
    torch.testing.assert_close(to_diffusion_space(SR_TINY, high, low_up), (high - low_up) * 8.0)


def test_sr_denoiser_clamps_x0_to_the_frames_data_range_in_both_modes(perturbed):
    from mmdiff.nn.sr_unet import from_diffusion_space, to_diffusion_space
    from mmdiff.upscale import sr_denoiser

    schedule = Schedule()
    g = torch.Generator().manual_seed(3)
    low_up = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    t = torch.tensor([900, 40])
    for cfg in (MICRO.replace(residual=False), MICRO):
        torch.manual_seed(0)
        model = perturbed(SRUNet(cfg)).eval()
        x = torch.randn(2, 3 * 32 * 32, generator=g) * 3
        with torch.no_grad():
            raw = sr_denoiser(model, low_up)(x, t).view(2, 3, 32, 32)
            eps = sr_denoiser(model, low_up, schedule)(x, t).view(2, 3, 32, 32)
        x_img = x.view(2, 3, 32, 32)
        x0_raw, x0 = schedule.predict_x0(x_img, t, raw), schedule.predict_x0(x_img, t, eps)
        # brute force, pixel by pixel: the frame in [-1, 1], and (residual mode) a correction of at most
        # 1 / residual_scale over the bilinear frame
        frame = (x0_raw / cfg.residual_scale + low_up) if cfg.residual else x0_raw
        expected = to_diffusion_space(cfg, frame.clamp(-1, 1), low_up).clamp(-1, 1)
        torch.testing.assert_close(x0, expected, atol=1e-4, rtol=1e-4)
        assert ((frame < -1) | (frame > 1)).any() and ((frame > -1) & (frame < 1)).any()   # both cases occur
        out = from_diffusion_space(cfg, x0, low_up)
        assert out.abs().max() <= 1 + 1e-6
        if cfg.residual:
            assert (out - low_up.clamp(-1, 1)).abs().max() <= 1 / cfg.residual_scale + 1e-5
            # the frame bound is the tighter one where the bilinear frame is near the edge of the range
            assert ((low_up > 1 - 1 / cfg.residual_scale) & (x0_raw > 1)).any()



def test_weights_without_raw_copy_or_of_another_shape_get_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "ema-only.pt", model_config=MICRO, diffusion_config=DiffusionConfig(),
                           model=None, ema=SRUNet(MICRO).state_dict())
    assert load_sr_model(path)[0].config == MICRO
    with pytest.raises(CheckpointError, match="holds only EMA weights .* use_ema=True"):
        load_sr_model(path, use_ema=False)
    wider = SRUNet(MICRO.replace(base_channels=32, head_dim=32)).state_dict()     # same keys, other shapes
    bad = save_checkpoint(tmp_path / "bad.pt", model_config=MICRO, diffusion_config=DiffusionConfig(),
                          model=None, ema=wider)
    with pytest.raises(CheckpointError, match="bad.pt: weights do not match its config .*size mismatch"):
        load_sr_model(bad)


# --- the shipped SR model -----------------------------------------------------------------------------
def test_shipped_sr_model_beats_an_untrained_one_on_held_out_synthetic_frames():
    """The asset is the tiny preset and has learned something: on two held-out frames (a seed it was not
    trained on) 5 DDIM steps land within a few dB of bilinear (~32 dB); random weights give ~23.5 dB."""
    from benchmarks.bench_sr import heldout, psnr
    from mmdiff.checkpoint import DEFAULT_SR_CHECKPOINT

    model, schedule = load_sr_model(DEFAULT_SR_CHECKPOINT)
    assert model.config == SR_TINY
    gt, low = heldout(1, SR_TINY.high_size, SR_TINY.low_size, seed=999)
    gt, low = gt[:, :2], low[:, :2]                                     # (1, 2, 3, 128, 128), (1, 2, 3, 32, 32)
    out = upscale(model, low, SamplerOptions("ddim", steps=5), seed=0, schedule=schedule)
    assert out.shape == gt.shape and out.abs().max() <= 1
    assert psnr(out, gt) > 27.0


def test_upscale_flag_alone_names_the_shipped_sr_model():
    from eval.run import parse_args as eval_args
    from mmdiff.checkpoint import DEFAULT_SR_CHECKPOINT
    from mmdiff.sample import parse_args as sample_args

    assert sample_args(["--out", "o", "--upscale"]).upscale == str(DEFAULT_SR_CHECKPOINT)
    assert sample_args(["--out", "o", "--upscale", "runs/sr/last.pt"]).upscale == "runs/sr/last.pt"
    assert sample_args(["--out", "o"]).upscale is None
    assert eval_args(["--real", "r", "--ckpt", "c", "--upscale"]).upscale == str(DEFAULT_SR_CHECKPOINT)
