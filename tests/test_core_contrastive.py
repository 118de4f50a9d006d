"""CMMD contrastive term: InfoNCE against closed forms, what the model sees for matched and mismatched
pairs, and how the term enters the loss dict."""
import math

import pytest
import torch

from mmdiff.diffusion import JointLayout, Schedule, diffusion_loss
from mmdiff.diffusion.contrastive import contrastive_term, info_nce, mismatched_x0, scored_streams

LAYOUT = JointLayout((2, 1, 2, 2), (1, 6))          # 8 video values, then 6 audio values per clip
V, A = LAYOUT.slices["video"], LAYOUT.slices["audio"]


def test_info_nce_of_identity_similarity_has_its_closed_form():
    b, tau = 4, 0.5
    logits = torch.eye(b) / tau                           # each row: 1/tau on the match, 0 on the b-1 others
    expected = math.log(math.exp(1 / tau) + b - 1) - 1 / tau
    assert info_nce(logits, torch.arange(b)).item() == pytest.approx(expected, rel=1e-6)
    assert info_nce(torch.zeros(b, b), torch.arange(b)).item() == pytest.approx(math.log(b))   # no information


def test_info_nce_prefers_aligned_embeddings_to_shuffled_ones():
    g = torch.Generator().manual_seed(0)
    z_v = torch.nn.functional.normalize(torch.randn(6, 5, generator=g), dim=1)
    z_a = torch.nn.functional.normalize(z_v + 0.1 * torch.randn(6, 5, generator=g), dim=1)
    aligned = info_nce(z_v @ z_a.T / 0.1, torch.arange(6))
    shuffled = info_nce(z_v @ z_a.roll(1, dims=0).T / 0.1, torch.arange(6))
    assert aligned < math.log(6) < shuffled


def test_contrastive_term_closed_form_and_direction():
    noise = torch.zeros(4, LAYOUT.size)
    scored = scored_streams(torch.zeros(4, 2, dtype=torch.bool))
    low, high = torch.full((4, LAYOUT.size), 0.1), torch.full((4, LAYOUT.size), 0.2)   # MSE 0.01 and 0.04
    tau = 0.5
    # softplus(log(e+ / e-) / tau) = log(1 + (e+ / e-) ** (1 / tau))
    better_matched = contrastive_term(low, high, noise, scored, LAYOUT, tau)
    assert better_matched.item() == pytest.approx(math.log(1 + 0.25 ** 2), rel=1e-5)
    assert contrastive_term(low, low, noise, scored, LAYOUT, tau).item() == pytest.approx(math.log(2))
    assert contrastive_term(high, low, noise, scored, LAYOUT, tau) > math.log(2) > better_matched
    # only the scored stream counts: error in the other stream changes nothing
    noisy_context = low.clone()
    noisy_context[scored[:, 1], V.start:V.stop] = 5.0   # rows scoring audio get a bad video prediction
    noisy_context[scored[:, 0], A.start:A.stop] = 5.0   # rows scoring video a bad audio one
    assert contrastive_term(low, noisy_context, noise, scored, LAYOUT, tau).item() == pytest.approx(math.log(2))


def test_scored_streams():
    given = torch.tensor([[False, False], [False, False], [True, False], [False, True]])
    scored = scored_streams(given)
    assert scored.tolist() == [[False, True], [True, False], [False, True], [True, False]]


def test_mismatched_pairs_swap_only_the_context():
    x0 = torch.arange(3 * LAYOUT.size, dtype=torch.float32).view(3, LAYOUT.size)
    scored = scored_streams(torch.zeros(3, 2, dtype=torch.bool))          # audio, video, audio
    neg = mismatched_x0(LAYOUT, x0, scored)
    assert torch.equal(neg[0, A], x0[0, A]) and torch.equal(neg[0, V], x0[1, V])
    assert torch.equal(neg[1, V], x0[1, V]) and torch.equal(neg[1, A], x0[2, A])
    assert torch.equal(neg[2, A], x0[2, A]) and torch.equal(neg[2, V], x0[0, V])       # wraps around
    with pytest.raises(ValueError, match="at least 2 clips"):
        mismatched_x0(LAYOUT, x0[:1], scored[:1])


class Recorder:
    """A denoiser that records its inputs and predicts a fixed function of them."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t):
        self.calls.append((x.detach().clone(), t.clone()))
        return 0.5 * x


def x0_batch(b=4, seed=0):
    return torch.randn(b, LAYOUT.size, generator=torch.Generator().manual_seed(seed))


def test_model_sees_matched_and_mismatched_halves_in_one_pass():
    x0, rec = x0_batch(), Recorder()
    terms = diffusion_loss(rec, LAYOUT, Schedule(), x0, torch.Generator().manual_seed(1), contrastive_weight=0.3)
    assert len(rec.calls) == 1
    x, t = rec.calls[0]
    assert x.shape == (8, LAYOUT.size) and torch.equal(t[:4], t[4:])
    pos, neg = x[:4], x[4:]
    scored = scored_streams(torch.zeros(4, 2, dtype=torch.bool))
    for b in range(4):
        keep, swap = (A, V) if scored[b, 1] else (V, A)
        assert torch.equal(pos[b, keep], neg[b, keep])                  # scored stream: same input
        assert not torch.allclose(pos[b, swap], neg[b, swap])            # context: another clip's
    assert set(terms) == {"loss", "video", "audio", "contrastive"}
    expected = terms["video"] + terms["audio"] + 0.3 * terms["contrastive"]
    assert terms["loss"].item() == pytest.approx(expected.item())


def test_conditioned_clips_swap_their_clean_condition():
    x0, rec = x0_batch(), Recorder()
    diffusion_loss(rec, LAYOUT, Schedule(), x0, torch.Generator().manual_seed(2), cond_prob=1.0,
                   contrastive_weight=1.0)
    x, t = rec.calls[0]
    assert t.shape == (8, 2)
    for b in range(4):
        k = 0 if torch.equal(x[b, V], x0[b, V]) else 1                    # the given (clean) stream
        s = (V, A)[k]
        assert t[b, k] == 0 and t[4 + b, k] == 0                          # every clip has a given stream at t = 0
        assert torch.equal(x[b, s], x0[b, s])                             # matched: its own clean condition
        assert torch.equal(x[4 + b, s], x0[(b + 1) % 4, s])               # mismatched: the next clip's, clean
        other = (A, V)[k]
        assert torch.equal(x[b, other], x[4 + b, other])


def test_contrastive_off_adds_nothing_and_keeps_the_random_stream():
    x0 = x0_batch()
    r1, r2 = Recorder(), Recorder()
    plain = diffusion_loss(r1, LAYOUT, Schedule(), x0, torch.Generator().manual_seed(3))
    on = diffusion_loss(r2, LAYOUT, Schedule(), x0, torch.Generator().manual_seed(3), contrastive_weight=0.1)
    assert set(plain) == {"loss", "video", "audio"}
    assert torch.equal(r1.calls[0][0], r2.calls[0][0][:4])              # same t and noise either way
    assert on["video"].item() == pytest.approx(plain["video"].item())
