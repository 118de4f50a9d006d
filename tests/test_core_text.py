"""Text conditioning of the coupled U-Net: the caption reaches the network through the step embedding,
configs without text are unchanged, caption dropout, classifier-free guidance as a denoiser wrapper (scale 0
is exactly unconditional, 1 exactly conditional), and the two-step text -> video -> audio pipeline.
Random caption embeddings stand in for the encoder's (tests/test_text_encoder.py covers the encoder)."""
import pytest
import torch

import mmdiff
from mmdiff.config import TINY, ModelConfig, text_config
from mmdiff.diffusion import JointLayout, Schedule
from mmdiff.diffusion.guidance import classifier_free_denoiser
from mmdiff.diffusion.joint import match_batch, model_denoiser
from mmdiff.diffusion.loss import drop_captions
from mmdiff.generate import SamplerOptions, generate, generate_two_step, two_step_mode

# A quarter of tiny's data (4 frames of 16x16, 0.4 s of audio) and narrow: the tests sample many times.
SMALL = TINY.replace(video_frames=4, video_size=16, audio_samples=3200, base_channels=8, head_dim=8)
TEXT = text_config(SMALL)
OPTS = SamplerOptions("ddim", steps=3)


def captions(n, seed=0):
    e = torch.randn(n, 384, generator=torch.Generator().manual_seed(seed))
    return e / e.norm(dim=1, keepdim=True)                                   # unit length, like MiniLM


def inputs(b=2, cfg=TEXT, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, *cfg.video_shape, generator=g), torch.randn(b, *cfg.audio_shape, generator=g),
            torch.tensor([10, 700])[:b])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = mmdiff.build_model(TEXT.replace(inference_shift="zero")).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():                          # zero-initialised output layers would hide the caption
        for p in m.parameters():
            if not p.abs().sum():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def test_config_fields_default_to_no_text_and_old_dicts_load():
    old = {k: v for k, v in TINY.to_dict().items() if k not in ("text_dim", "text_encoder")}
    assert ModelConfig.from_dict(old) == TINY and TINY.text_dim == 0 and TINY.text_encoder == ""
    assert TEXT.text_dim == 384 and TEXT.text_encoder == "all-MiniLM-L6-v2"
    assert ModelConfig.from_dict(TEXT.to_dict()) == TEXT
    assert not any("text" in k for k in mmdiff.build_model(SMALL).state_dict())   # unchanged weights
    with pytest.raises(ValueError, match="text_dim 128 does not match"):
        SMALL.replace(text_dim=128, text_encoder="all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="text_encoder must be one of"):
        SMALL.replace(text_dim=384)


def test_caption_enters_at_unit_scale_and_older_text_checkpoints_keep_theirs(model):
    """text_config scales the unit-length caption by sqrt(384) before the MLP; a config saved before
    text_scale existed rebuilds with 1.0, its old behaviour."""
    assert TEXT.text_scale == pytest.approx(384 ** 0.5)
    old = {k: v for k, v in TEXT.to_dict().items() if k != "text_scale"}
    assert ModelConfig.from_dict(old).text_scale == 1.0
    text = captions(2)
    with torch.no_grad():
        got = model._text_embedding(text, 2)
        want = model.text_mlp[2](torch.nn.functional.silu(text @ model.text_mlp[0].weight.T * 384 ** 0.5
                                                           + model.text_mlp[0].bias))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert float(model.text_mlp[0](text * 384 ** 0.5).std()) > 0.3     # unit-scale activations, not ~0.03


def test_caption_changes_the_output_and_gets_gradient(model):
    video, audio, t = inputs()
    text = captions(2)
    with torch.no_grad():
        a = model(video, audio, t, text=text)
        b = model(video, audio, t, text=captions(2, seed=1))
        null = model(video, audio, t)
        zeros = model(video, audio, t, text=torch.zeros(2, 384))
    for x, y in zip(a, b):
        assert (x - y).abs().max() > 1e-4
    for x, y in zip(null, zeros):                                   # no caption == the all-zero null caption
        assert torch.equal(x, y)
    text = text.clone().requires_grad_(True)
    eps_v, eps_a = model(video, audio, t, text=text)
    (eps_v.square().mean() + eps_a.square().mean()).backward()
    assert text.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.text_mlp.parameters())
    model.zero_grad(set_to_none=True)


def test_per_stream_timesteps_get_the_caption_too(model):
    video, audio, t = inputs()
    t2 = torch.stack([t, torch.zeros_like(t)], dim=1)                               # (B, 2): audio given clean
    with torch.no_grad():
        a = model(video, audio, t2, text=captions(2))
        b = model(video, audio, t2, text=captions(2, seed=1))
    assert (a[0] - b[0]).abs().max() > 1e-4


def test_a_new_text_model_starts_unconditional():
    m = mmdiff.build_model(TEXT).eval()
    video, audio, t = inputs()
    with torch.no_grad():
        assert torch.equal(m(video, audio, t, text=captions(2))[1], m(video, audio, t)[1])


def test_text_is_refused_by_a_model_without_text_and_checked_for_shape(model):
    video, audio, t = inputs(cfg=SMALL)
    with pytest.raises(ValueError, match="trained without text conditioning"):
        mmdiff.build_model(SMALL)(video, audio, t, text=captions(2))
    with pytest.raises(ValueError, match=r"text must be a float tensor of shape \(2, 384\)"):
        model(video, audio, t, text=torch.zeros(2, 128))
    with pytest.raises(ValueError, match="trained without text conditioning"):
        generate(mmdiff.build_model(SMALL), 1, OPTS, text=captions(1))
    with pytest.raises(ValueError, match=r"text must have shape \(1 or num=2, 384\)"):
        generate(model, 2, OPTS, text=captions(3))


def test_match_batch():
    c = captions(2)
    assert match_batch(c, 2) is c
    assert torch.equal(match_batch(c[:1], 3), c[:1].expand(3, -1))
    assert torch.equal(match_batch(c, 4), torch.cat([c, c]))           # [matched; mismatched] contrastive halves
    with pytest.raises(ValueError, match="do not fit"):
        match_batch(c, 3)


def test_caption_dropout_rate():
    text = captions(20_000)
    out = drop_captions(text, 0.1, torch.Generator().manual_seed(0))
    dropped = out.abs().sum(dim=1) == 0
    assert 0.09 < dropped.float().mean() < 0.11
    assert torch.equal(out[~dropped], text[~dropped])
    assert drop_captions(text, 0.0) is text
    assert drop_captions(text, 1.0, torch.Generator()).abs().sum() == 0
    with pytest.raises(ValueError, match="caption dropout"):
        drop_captions(text, 1.5)


def test_classifier_free_formula():
    x, t = torch.randn(2, 5), torch.tensor([3, 4])
    cond = lambda x, t: x + 1.0                                            # noqa: E731
    uncond = lambda x, t: 2.0 * x                                          # noqa: E731
    assert classifier_free_denoiser(cond, uncond, 0.0) is uncond
    assert classifier_free_denoiser(cond, uncond, 1.0) is cond
    torch.testing.assert_close(classifier_free_denoiser(cond, uncond, 3.0)(x, t), 2 * x + 3.0 * (x + 1 - 2 * x))


def test_the_audio_stream_can_have_its_own_guidance_scale(model):
    """stream_scales: video coordinates at the guidance scale, audio at its own; equal scales are one number.
    generate(audio_guidance_scale=1, guidance_scale=s) equals a hand-made per-block combination."""
    from mmdiff.diffusion.guidance import stream_scales
    layout = JointLayout.from_config(model.config)
    assert stream_scales(layout, 4.0) == 4.0 and stream_scales(layout, 4.0, 4.0) == 4.0
    scales = stream_scales(layout, 4.0, 1.0)
    assert scales.shape == (layout.size,) and bool((scales[layout.slices["video"]] == 4).all())
    assert bool((scales[layout.slices["audio"]] == 1).all())
    text = captions(1)
    x = torch.randn(2, layout.size, generator=torch.Generator().manual_seed(3))
    t = torch.full((2,), 500)
    cond, uncond = model_denoiser(model, layout, text), model_denoiser(model, layout)
    with torch.no_grad():
        got = classifier_free_denoiser(cond, uncond, scales)(x, t)
        c, u = cond(x, t), uncond(x, t)
    video, audio = layout.slices["video"], layout.slices["audio"]
    torch.testing.assert_close(got[:, video], u[:, video] + 4 * (c[:, video] - u[:, video]))
    torch.testing.assert_close(got[:, audio], c[:, audio])
    same = generate(model, 2, OPTS, seed=3, text=text, guidance_scale=4.0)
    assert all(torch.equal(a, b) for a, b in zip(generate(model, 2, OPTS, seed=3, text=text, guidance_scale=4.0,
                                                          audio_guidance_scale=4.0), same))
    split = generate(model, 2, OPTS, seed=3, text=text, guidance_scale=4.0, audio_guidance_scale=1.0)
    assert not torch.equal(split[1], same[1])


def test_guidance_scale_0_is_unconditional_and_1_is_conditional_exactly(model):
    text = captions(1)
    uncond = generate(model, 2, OPTS, seed=3)
    cond = generate(model, 2, OPTS, seed=3, text=text, guidance_scale=1.0)
    assert all(torch.equal(a, b) for a, b in zip(generate(model, 2, OPTS, seed=3, text=text, guidance_scale=0.0),
                                                 uncond))
    layout = JointLayout.from_config(model.config)
    x = torch.randn(2, layout.size, generator=torch.Generator().manual_seed(3))
    t = torch.full((2,), 500)
    with torch.no_grad():                                                 # scale 1 == the caption's own eps
        torch.testing.assert_close(
            classifier_free_denoiser(model_denoiser(model, layout, text), model_denoiser(model, layout), 1.0)(x, t),
            model_denoiser(model, layout, text.expand(2, -1))(x, t), rtol=0, atol=0)
    guided = generate(model, 2, OPTS, seed=3, text=text, guidance_scale=4.0)
    assert not torch.equal(cond[1], uncond[1]) and not torch.equal(guided[1], cond[1])


def test_guidance_works_with_every_sampler(model):
    for sampler in ("ddim", "dpm-solver++"):
        v, a = generate(model, 1, SamplerOptions(sampler, steps=2), text=captions(1), guidance_scale=2.0)
        assert torch.isfinite(v).all() and torch.isfinite(a).all()


def test_two_step_keeps_the_first_video_and_conditions_the_audio_on_it(model):
    text = captions(1)
    seen = []
    video, audio = generate_two_step(model, 2, OPTS, seed=5, text=text, guidance_scale=2.0,
                                     callback=lambda info: seen.append((info["stage"], info["step"], info["steps"])))
    first_video, first_audio = generate(model, 2, OPTS, seed=5, text=text, guidance_scale=2.0)
    assert torch.equal(video, first_video)                       # step 1's video is the result's video
    assert audio.shape == first_audio.shape and not torch.equal(audio, first_audio)
    assert [s for s, _, _ in seen] == [1, 1, 1, 2, 2, 2]
    assert [k for _, k, _ in seen] == [1, 2, 3, 4, 5, 6] and {n for _, _, n in seen} == {6}


def test_two_step_mode_follows_the_checkpoint_training(model, tmp_path):
    assert two_step_mode(model) == "replacement"                     # built here: no training record
    from mmdiff.checkpoint import load_model, save_checkpoint
    from mmdiff.config import DiffusionConfig

    for cond_prob, mode in ((0.0, "replacement"), (0.3, "trained")):
        path = save_checkpoint(tmp_path / f"c{cond_prob}.pt", model_config=model.config,
                               diffusion_config=DiffusionConfig(), model=None, ema=model.state_dict(),
                               train_args={"cond_prob": cond_prob})
        assert two_step_mode(load_model(path)[0]) == mode
    with pytest.raises(ValueError, match="joint audio-video model"):
        generate_two_step(mmdiff.build_model(text_config(SMALL.replace(modalities=("video",)))), 1, OPTS)


def test_text_model_trains_through_the_joint_loss(model):
    from mmdiff.train import joint_loss_fn

    video, audio, _ = inputs(cfg=TEXT)
    loss_fn = joint_loss_fn(JointLayout.from_config(TEXT), Schedule(), caption_dropout=0.5, contrastive_weight=0.1)
    terms = loss_fn(model.train(), (video, audio, captions(2)), torch.Generator().manual_seed(0))
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and terms["contrastive"] > 0
    assert model.text_mlp[0].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.eval()


def test_without_text_folds_the_null_caption_exactly(tmp_path, model):
    """mmdiff.checkpoint.without_text: an unconditional checkpoint whose output is the text model's with the
    null caption (both timestep layouts), with no text weights left."""
    from mmdiff.checkpoint import CheckpointError, load_model, save_checkpoint, without_text
    from mmdiff.config import DiffusionConfig

    src = save_checkpoint(tmp_path / "text.pt", model_config=model.config, diffusion_config=DiffusionConfig(),
                          model=None, ema=model.state_dict(), step=7)
    plain, _ = load_model(without_text(src, tmp_path / "plain.pt"))
    assert plain.config.text_dim == 0 and not any("text" in k for k in plain.state_dict())
    video, audio, t = inputs()
    with torch.no_grad():
        for steps in (t, torch.stack([t, t.flip(0)], dim=1)):
            for got, want in zip(plain(video, audio, steps), model(video, audio, steps)):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        differs = model(video, audio, t, text=captions(2))[0]
    assert not torch.allclose(differs, plain(video, audio, t)[0], atol=1e-4)     # a caption did matter
    with pytest.raises(CheckpointError, match="no text branch"):
        without_text(tmp_path / "plain.pt", tmp_path / "again.pt")
