"""The CPU fast path (mmdiff/nn/fastpath.py) computes what the plain path computes, to float32 rounding."""
import pytest
import torch
from torch.nn import functional as F

import mmdiff
from mmdiff.diffusion.schedule import Schedule
from mmdiff.generate import SamplerOptions, generate
from mmdiff.nn import fastpath
from mmdiff.nn.attention import window_index
from mmdiff.nn.layers import VideoConv, VideoPointwise


def per_frame_sdpa(q, k, v, idx, head_dim):
    """Reference: for each frame i, SDPA of its queries over the concatenated keys of the frames idx[i]."""
    b, f, lq, c = q.shape
    heads = lambda x: x.reshape(b, x.shape[1], c // head_dim, head_dim).transpose(1, 2)  # noqa: E731
    rows = []
    for i in range(f):
        keys = torch.cat([k[:, j] for j in idx[i].tolist()], dim=1)           # (B, S*Lk, C)
        vals = torch.cat([v[:, j] for j in idx[i].tolist()], dim=1)
        out = F.scaled_dot_product_attention(heads(q[:, i]), heads(keys), heads(vals))
        rows.append(out.transpose(1, 2).reshape(b, lq, c))
    return torch.stack(rows, dim=1).reshape(b * f, lq, c)                     # (B*F, Lq, C)


@pytest.mark.parametrize("frames,window,shift,lq,lk,head_dim", [
    (5, 5, 0, 7, 3, 8),      # window spans all frames: one attention per clip on the fast path
    (5, 5, 2, 1, 9, 12),
    (6, 1, 4, 11, 5, 16),
    (7, 3, 5, 4, 13, 4),
])
@pytest.mark.parametrize("fast", [True, False])
def test_window_attention_matches_per_frame_sdpa(frames, window, shift, lq, lk, head_dim, fast):
    g = torch.Generator().manual_seed(frames * 100 + lq)
    c = 2 * head_dim
    qkv = torch.randn(2, frames, max(lq, lk), 3 * c, generator=g) * 2   # chunks are strided views, as in RS-MMA
    q, k, v = qkv[:, :, :lq, :c], qkv[:, :, :lk, c:2 * c], qkv[:, :, :lk, 2 * c:]
    idx = window_index(frames, window, shift)
    with fastpath.use(fast):
        got = fastpath.window_attention(q, k, v, idx, head_dim)
    torch.testing.assert_close(got, per_frame_sdpa(q, k, v, idx, head_dim), rtol=1e-5, atol=1e-5)


def test_frame_windows_equal_advanced_indexing():
    x = torch.randn(3, 6, 5, 8)[..., ::2]                                     # a strided input
    idx = window_index(6, 4, 3)
    with fastpath.use(True):
        assert torch.equal(fastpath.frame_windows(x, idx), x[:, idx])


@pytest.mark.parametrize("cin,cout,frames,size", [(5, 7, 3, 6), (16, 16, 4, 5), (3, 16, 2, 1)])
def test_video_convs_equal_plain(cin, cout, frames, size, perturbed):
    torch.manual_seed(cin)
    conv = perturbed(VideoConv(cin, cout), std=0.3)
    with torch.no_grad():
        conv.temporal.weight.add_(torch.randn_like(conv.temporal.weight) * 0.3)   # a real temporal mix
    point = VideoPointwise(cout, cin)
    x = torch.randn(2, cin, frames, size, size)
    with torch.no_grad(), fastpath.use(False):
        plain = point(conv(x))
    with torch.no_grad(), fastpath.use(True):
        y = conv(x)
        fast = point(y)
    assert y.is_contiguous(memory_format=torch.channels_last_3d) or size == 1
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def noisy_tiny() -> torch.nn.Module:
    """The tiny network with every weight perturbed (zero-initialised layers too), so every path carries signal."""
    torch.manual_seed(0)
    model = mmdiff.build_model("tiny")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_tiny_sampling_fast_equals_plain():
    """A few DPM-Solver++ steps of the tiny network with random (perturbed) weights, same seed, both paths."""
    model = noisy_tiny()
    opts = SamplerOptions(steps=3)
    outs = {}
    for fast in (False, True):
        with fastpath.use(fast):
            outs[fast] = generate(model, 1, opts, seed=5, schedule=Schedule())
    for plain, fast in zip(outs[False], outs[True]):
        assert plain.abs().max() > 0.1 and plain.std() > 0.01                  # the clips carry signal
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)


def test_chunked_batches_equal_one_batch_and_share_the_shifts(monkeypatch):
    """Batches above CPU_CHUNK run chunk by chunk with the same RS-MMA shifts (inference_shift "random")."""
    monkeypatch.setattr(fastpath, "CPU_CHUNK", 2)
    model = noisy_tiny()
    opts = SamplerOptions(steps=2)
    with fastpath.use(False):
        plain = generate(model, 3, opts, seed=7)
    fast = generate(model, 3, opts, seed=7)
    for p_, f_ in zip(plain, fast):
        torch.testing.assert_close(f_, p_, rtol=1e-4, atol=1e-4)


@pytest.fixture
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_parallel_chunks_equal_the_plain_batch_and_restore_the_threads(monkeypatch, two_torch_threads):
    """With 2 torch threads and a shift that draws nothing, chunks run on 2 worker threads (batch 3 -> 2 + 1)."""
    monkeypatch.setattr(fastpath, "CPU_CHUNK", 2)
    calls = []
    original = fastpath._in_parallel
    monkeypatch.setattr(fastpath, "_in_parallel",
                        lambda d, chunks, w: calls.append(([c[0].shape[0] for c in chunks], w)) or original(d, chunks, w))
    model = noisy_tiny()
    opts = SamplerOptions(steps=2)
    with fastpath.use(False):
        plain = generate(model, 3, opts, seed=7, shift="zero")
    fast = generate(model, 3, opts, seed=7, shift="zero")
    assert calls and calls[0] == ([2, 1], 2)                                  # every model call ran in parallel
    assert torch.get_num_threads() == 2                                       # restored afterwards
    for p_, f_ in zip(plain, fast):
        assert p_.std() > 0.01
        torch.testing.assert_close(f_, p_, rtol=1e-4, atol=1e-4)
    calls.clear()
    generate(model, 3, opts, seed=7)            # this model draws its shifts: chunks run one at a time
    assert not calls


def _guided_step(both):
    """One classifier-free guided call of the shipped text model (guidance 6, random caption), x and t fixed."""
    from mmdiff.checkpoint import default_checkpoint, load_model
    from mmdiff.diffusion.guidance import classifier_free_denoiser
    from mmdiff.diffusion.joint import JointLayout, model_denoiser

    model, schedule = load_model(default_checkpoint())
    g = torch.Generator().manual_seed(0)
    text = torch.randn(1, model.config.text_dim, generator=g)                   # (1, text_dim)
    layout = JointLayout.from_config(model.config)
    x = torch.randn(1, layout.size, generator=g)                               # (1, D)
    t = torch.tensor([700])
    guided = classifier_free_denoiser(model_denoiser(model, layout, text, shift=0, schedule=schedule),
                                      model_denoiser(model, layout, shift=0, schedule=schedule), 6.0, both=both)
    with torch.inference_mode():
        return guided(x, t)


def test_guidance_pair_runs_on_two_workers_and_equals_the_calls_in_turn(monkeypatch, two_torch_threads):
    """A single guided clip: its conditional and unconditional forwards run on two worker threads, same output."""
    workers = []
    original = fastpath._in_parallel
    monkeypatch.setattr(fastpath, "_in_parallel", lambda d, jobs, w: workers.append(w) or original(d, jobs, w))
    both = fastpath.pair_runner(torch.device("cpu"), 0)
    parallel = _guided_step(both)
    assert workers == [2] and torch.get_num_threads() == 2                  # ran in parallel; threads restored
    in_turn = _guided_step(None)
    assert in_turn.std() > 0.1
    # one thread per forward sums in another order than two: float32 rounding (about 1e-6 per forward), which the
    # guidance (cond + 6 (cond - uncond)) multiplies by up to 13; the batch-chunk test above allows the same 1e-4
    torch.testing.assert_close(parallel, in_turn, rtol=1e-4, atol=1e-4)


def test_guidance_pair_stays_in_turn_where_it_must(two_torch_threads):
    """No pair runner for a drawing shift or the plain path; inside a parallel section (batch chunks on workers)
    and with parallel chunks switched off, the two calls run in turn on the calling thread."""
    import threading

    assert fastpath.pair_runner(torch.device("cpu"), torch.Generator()) is None
    with fastpath.use(False):
        assert fastpath.pair_runner(torch.device("cpu"), 0) is None
    both = fastpath.pair_runner(torch.device("cpu"), 0)
    here = threading.get_ident
    with fastpath._one_torch_thread():
        assert both(here, here) == (here(), here())
    with fastpath.use_parallel(False):
        assert both(here, here) == (here(), here())
    meet = threading.Barrier(2, timeout=10)                  # passes only if both calls run at the same time

    def together():
        meet.wait()
        return here()

    ran_on = both(together, together)
    assert here() not in ran_on and ran_on[0] != ran_on[1]                  # two worker threads


def test_overlapping_parallel_sections_restore_the_user_setting(two_torch_threads):
    """Two sampling jobs whose parallel sections overlap (studio): the last one out restores torch's 2 threads,
    and a job starting inside the other's section still sees 2 workers."""
    outer = fastpath._one_torch_thread()
    inner = fastpath._one_torch_thread()
    outer.__enter__()
    assert torch.get_num_threads() == 1 and fastpath.cpu_workers() == 2
    inner.__enter__()
    outer.__exit__(None, None, None)
    assert torch.get_num_threads() == 1                                       # the other job is still inside
    inner.__exit__(None, None, None)
    assert torch.get_num_threads() == 2 and fastpath.cpu_workers() == 2


def test_chunk_size_splits_for_every_worker():
    assert [fastpath.chunk_size(b, 2) for b in (1, 2, 3, 4, 8, 16)] == [1, 1, 2, 2, 4, 4]
    assert [fastpath.chunk_size(b, 1) for b in (1, 4, 16)] == [1, 4, 4]


def test_env_var_selects_plain_path(monkeypatch):
    import importlib

    monkeypatch.setenv("MMDIFF_FAST", "0")
    try:
        assert not importlib.reload(fastpath).enabled()
    finally:
        monkeypatch.delenv("MMDIFF_FAST")
        importlib.reload(fastpath)
    assert fastpath.enabled()
