"""RS-MMA against a brute-force masked full cross-attention."""
import pytest
import torch

from mmdiff.nn.attention import RSMMA, window_index


def brute_force(block: RSMMA, video, audio, shift):
    """Full cross-attention between ALL video tokens and ALL audio tokens, masked to the RS-MMA windows."""
    b, c, f, h, w = video.shape
    t = audio.shape[-1]
    seg = t // f
    v_tok = block.video_norm(video).permute(0, 2, 3, 4, 1).reshape(b, f * h * w, c)
    a_tok = block.audio_norm(audio).transpose(1, 2)                       # (B, T, C)
    vq, vk, vv = block.video_qkv(v_tok).chunk(3, -1)
    aq, ak, av = block.audio_qkv(a_tok).chunk(3, -1)
    frame_of_v = torch.arange(f * h * w) // (h * w)                       # frame of every video token
    seg_of_a = torch.arange(t) // seg                                     # segment of every audio token
    # frame i sees segments i+R .. i+R+S-1 (mod F); segment j sees frames j+R .. j+R+S-1 (mod F)
    v_sees_a = ((seg_of_a[None, :] - frame_of_v[:, None] - shift) % f) < block.window
    a_sees_v = ((frame_of_v[None, :] - seg_of_a[:, None] - shift) % f) < block.window

    def attn(q, k, v, allowed):
        heads = c // block.head_dim
        split = lambda z: z.view(b, -1, heads, block.head_dim).transpose(1, 2)  # noqa: E731
        logits = split(q) @ split(k).transpose(-1, -2) / block.head_dim ** 0.5
        logits = logits.masked_fill(~allowed, float("-inf"))
        return (logits.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, -1, c)

    v_out = block.video_out(attn(vq, ak, av, v_sees_a)).view(b, f, h, w, c).permute(0, 4, 1, 2, 3)
    a_out = block.audio_out(attn(aq, vk, vv, a_sees_v)).transpose(1, 2)
    return video + v_out, audio + a_out


@pytest.mark.parametrize("window", [1, 3, 4, 8])
def test_rsmma_matches_masked_full_attention(window, perturbed):
    torch.manual_seed(window)
    frames, c = 8, 32
    block = perturbed(RSMMA(c, head_dim=16, window=window, frames=frames), seed=window, std=0.2).eval()
    video = torch.randn(2, c, frames, 3, 5)
    audio = torch.randn(2, c, frames * 6)
    for shift in sorted({0, 1, frames - window, int(torch.randint(0, frames - window + 1, ()))}):
        got_v, got_a = block(video, audio, shift=shift)
        ref_v, ref_a = brute_force(block, video, audio, shift)
        torch.testing.assert_close(got_v, ref_v, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_a, ref_a, atol=1e-5, rtol=1e-5)


def test_window_index_wraps_around():
    idx = window_index(frames=4, window=2, shift=3)
    assert idx.tolist() == [[3, 0], [0, 1], [1, 2], [2, 3]]


def test_shift_drawn_in_training_and_by_mode_at_inference():
    torch.manual_seed(0)
    block = RSMMA(16, 16, window=2, frames=8, random_shift=True, inference_shift="zero")
    block.train()
    draws = {block.draw_shift() for _ in range(200)}
    assert draws == set(range(0, 7))                 # R uniform on [0, F - S]
    block.eval()
    assert {block.draw_shift() for _ in range(50)} == {0}
    block.inference_shift = "random"
    assert len({block.draw_shift() for _ in range(200)}) == 7
    no_shift = RSMMA(16, 16, window=2, frames=8, random_shift=False).train()
    assert {no_shift.draw_shift() for _ in range(50)} == {0}   # the paper's "w/o RS" ablation (Table 4)
    no_shift.eval()                                  # inference_shift "random" (the default) must not
    assert {no_shift.draw_shift() for _ in range(50)} == {0}   # draw a shift the model was never trained with


def test_full_window_has_no_shift():
    block = RSMMA(16, 16, window=8, frames=8).train()
    assert {block.draw_shift() for _ in range(20)} == {0}


def test_rsmma_rejects_indivisible_audio():
    block = RSMMA(16, 16, window=2, frames=8)
    with pytest.raises(ValueError, match="divisible"):
        block(torch.randn(1, 16, 8, 2, 2), torch.randn(1, 16, 30))


# --- the shift at inference: drawn from a generator owned by the sampling call --------------------------
def test_draw_from_a_generator_leaves_the_global_rng_alone():
    block = RSMMA(16, 16, window=2, frames=8).eval()
    state = torch.get_rng_state()
    draws = [block.draw_shift(torch.Generator().manual_seed(4)) for _ in range(3)]
    assert torch.equal(torch.get_rng_state(), state) and len(set(draws)) == 1
    assert len({block.draw_shift(g) for g in [torch.Generator().manual_seed(s) for s in range(40)]}) == 7


def _sample(model, **kw):
    from mmdiff.generate import SamplerOptions, generate

    return generate(model, 1, SamplerOptions("ddim", steps=2), **kw)


@pytest.fixture(scope="module")
def shifted_model():
    """A tiny model whose RS-MMA output depends on the shift (zero-initialised layers randomised)."""
    import mmdiff
    from mmdiff.config import TINY

    torch.manual_seed(0)
    model = mmdiff.build_model(TINY).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if not p.abs().sum():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_seeded_shifts_ignore_other_users_of_the_global_rng(shifted_model):
    calls = []

    def other_job(module, args):           # as if another job re-seeded torch's global RNG between forwards
        calls.append(1)
        torch.manual_seed(len(calls) * 7919)

    ref = _sample(shifted_model, seed=3)
    handle = shifted_model.register_forward_pre_hook(other_job)
    try:
        again = _sample(shifted_model, seed=3)
    finally:
        handle.remove()
    assert calls and all(torch.equal(a, b) for a, b in zip(ref, again))
    assert not torch.equal(_sample(shifted_model, seed=3, shift="zero")[0], ref[0])   # the shifts do matter


def test_shift_modes(shifted_model):
    zero = _sample(shifted_model, seed=1, shift="zero")
    as_config = _sample(_zero_model(shifted_model), seed=1)
    assert torch.equal(zero[0], as_config[0])                        # "zero" = a model whose inference_shift is zero
    public = [_sample(shifted_model, seed=1, shift="public")[0] for _ in range(2)]
    assert not torch.equal(public[0], public[1])                     # unseeded, as the public code
    with pytest.raises(ValueError, match="unknown RS-MMA shift mode"):
        _sample(shifted_model, seed=1, shift="sometimes")


def _zero_model(model):
    zero = type(model)(model.config.replace(inference_shift="zero")).eval()
    zero.load_state_dict(model.state_dict())
    return zero
