"""Trained bidirectional conditioning (--cond-prob): the given stream enters clean at t = 0 and its loss is
masked; one timestep per stream in the U-Net; sampling with Condition(mode="trained")."""
import pytest
import torch

import mmdiff
from mmdiff.config import TINY
from mmdiff.diffusion import Condition, JointLayout, Schedule, conditioned_denoiser, diffusion_loss
from mmdiff.diffusion.loss import draw_noisy_batch
from mmdiff.generate import SamplerOptions, generate

LAYOUT = JointLayout((2, 1, 2, 2), (1, 6))
V, A = LAYOUT.slices["video"], LAYOUT.slices["audio"]
SMALL = TINY.replace(base_channels=8, head_dim=8)


def x0_batch(b=6, seed=0):
    return torch.randn(b, LAYOUT.size, generator=torch.Generator().manual_seed(seed))


def test_given_stream_is_clean_at_t0_and_the_other_is_noised():
    x0 = x0_batch()
    seen = []

    def denoise(x, t):
        seen.append((x.clone(), t.clone()))
        return torch.zeros_like(x)

    diffusion_loss(denoise, LAYOUT, Schedule(), x0, torch.Generator().manual_seed(0), cond_prob=1.0)
    x, t = seen[0]
    assert t.shape == (6, 2)
    for b in range(6):
        k = 0 if torch.equal(x[b, V], x0[b, V]) else 1
        given, other = (V, A)[k], (A, V)[k]
        assert torch.equal(x[b, given], x0[b, given]) and t[b, k] == 0
        assert not torch.allclose(x[b, other], x0[b, other]) and t[b, 1 - k] >= 0


def test_given_stream_loss_is_masked():
    x0 = x0_batch()

    def denoise(x, t, bad_given):
        eps = torch.zeros_like(x)
        if bad_given:                                     # a terrible prediction, only on the given streams
            eps[:, V] += 1e6 * (t[:, :1] == 0)
            eps[:, A] += 1e6 * (t[:, 1:] == 0)
        return eps

    g = lambda: torch.Generator().manual_seed(5)          # noqa: E731 - same draw for both runs
    batch = draw_noisy_batch(LAYOUT, Schedule(), x0, g(), cond_prob=1.0)
    assert batch.given.sum(dim=1).eq(1).all() and batch.given.any(dim=0).all()   # both directions present
    assert (batch.t > 0).all()                            # so t == 0 marks exactly the given streams
    clean = diffusion_loss(lambda x, t: denoise(x, t, False), LAYOUT, Schedule(), x0, g(), cond_prob=1.0)
    bad = diffusion_loss(lambda x, t: denoise(x, t, True), LAYOUT, Schedule(), x0, g(), cond_prob=1.0)
    for k in ("video", "audio", "loss"):
        assert bad[k].item() == pytest.approx(clean[k].item())
    # ... and the masked terms average over the clips that generate the stream
    per_clip = ((0 - batch.noise[:, A]) ** 2).mean(dim=1)
    assert clean["audio"].item() == pytest.approx(per_clip[~batch.given[:, 1]].mean().item(), rel=1e-6)


def test_cond_prob_draws_each_direction_half_the_time_and_never_both():
    batch = draw_noisy_batch(LAYOUT, Schedule(), x0_batch(4000), torch.Generator().manual_seed(1), cond_prob=0.4)
    frac = batch.given.float().mean(dim=0)
    assert torch.allclose(frac, torch.tensor([0.2, 0.2]), atol=0.025), frac
    assert not batch.given.all(dim=1).any()


def test_no_cond_prob_keeps_the_shared_timestep():
    batch = draw_noisy_batch(LAYOUT, Schedule(), x0_batch(), torch.Generator().manual_seed(1))
    assert batch.model_t().shape == (6,) and not batch.given.any()
    with pytest.raises(ValueError, match="joint"):
        draw_noisy_batch(JointLayout((2, 1, 2, 2), None), Schedule(), torch.zeros(2, 8), cond_prob=0.5)


def test_unet_takes_one_timestep_per_stream(perturbed):
    torch.manual_seed(0)
    model = perturbed(mmdiff.build_model(SMALL.replace(inference_shift="zero"))).eval()   # no random RS-MMA shift
    v, a = torch.randn(2, *SMALL.video_shape), torch.randn(2, *SMALL.audio_shape)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        shared = model(v, a, t)
        pair = model(v, a, torch.stack([t, t], dim=1))
        clean_video = model(v, a, torch.stack([torch.zeros_like(t), t], dim=1))
    assert torch.allclose(shared[0], pair[0], atol=1e-6) and torch.allclose(shared[1], pair[1], atol=1e-6)
    assert (clean_video[0] - shared[0]).abs().max() > 1e-4       # the video stream knows it is clean
    with pytest.raises(ValueError, match=r"\(2,\) or \(2, 2\)"):
        model(v, a, torch.zeros(2, 3, dtype=torch.long))


def test_trained_condition_feeds_the_clean_stream_at_t0():
    cond = torch.randn(1, 8)
    seen = []

    def denoise(x, t):
        seen.append((x.clone(), t.clone()))
        return torch.zeros_like(x)

    guided = conditioned_denoiser(denoise, LAYOUT, Schedule(), Condition("video", cond, mode="trained"))
    guided(torch.randn(3, LAYOUT.size), torch.full((3,), 400))
    x, t = seen[0]
    assert torch.equal(x[:, V], cond.expand(3, -1))
    assert t.tolist() == [[0, 400]] * 3
    guided = conditioned_denoiser(denoise, LAYOUT, Schedule(), Condition("audio", torch.randn(1, 6), mode="trained"))
    guided(torch.randn(2, LAYOUT.size), torch.full((2,), 50))
    assert seen[-1][1].tolist() == [[50, 0]] * 2


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_generate_with_a_trained_condition(modality):
    torch.manual_seed(0)
    model = mmdiff.build_model(SMALL)
    shape = SMALL.video_shape if modality == "video" else SMALL.audio_shape
    value = torch.rand(1, *shape) * 2 - 1
    video, audio = generate(model, 2, SamplerOptions("ddim", steps=2), condition=Condition(modality, value, "trained"))
    given = video if modality == "video" else audio
    assert torch.equal(given, value.expand(2, *shape))
    assert video.shape == (2, *SMALL.video_shape) and audio.shape == (2, *SMALL.audio_shape)


def test_min_t_draws_levels_only_from_there_up_and_refuses_a_level_outside_the_schedule():
    batch = draw_noisy_batch(LAYOUT, Schedule(), x0_batch(4000), torch.Generator().manual_seed(1), min_t=300)
    assert int(batch.t.min()) >= 300 and int(batch.t.max()) == 999
    assert abs(float(batch.t.float().mean()) - 649.5) < 10                    # uniform on [300, 999]
    for bad in (-1, 1000):
        with pytest.raises(ValueError, match="min_t must be in"):
            draw_noisy_batch(LAYOUT, Schedule(), x0_batch(), torch.Generator().manual_seed(1), min_t=bad)
