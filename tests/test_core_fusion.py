"""CMMD easy fusion: shapes, identity at init, cross-modal flow, frame-aligned exchange; in the U-Net."""
import pytest
import torch

import mmdiff
from mmdiff.config import TINY
from mmdiff.nn.attention import RSMMA
from mmdiff.nn.fusion import EasyFusion
from model_checks import dead_parameters

C, F, H, W, SEG = 16, 4, 3, 5, 6
EASY = TINY.replace(base_channels=8, head_dim=8, cross_fusion="easy")


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, C, F, H, W, generator=g), torch.randn(2, C, F * SEG, generator=g)


def test_shapes_and_identity_at_init():
    video, audio = inputs()
    v, a = EasyFusion(C, F)(video, audio)
    assert v.shape == video.shape and a.shape == audio.shape
    assert torch.equal(v, video) and torch.equal(a, audio)       # zero-initialised outputs: the identity


def test_rejects_audio_not_split_into_frames():
    video, _ = inputs()
    with pytest.raises(ValueError, match="divisible"):
        EasyFusion(C, F)(video, torch.randn(2, C, F * SEG + 1))


def test_information_crosses_both_ways(perturbed):
    fusion = perturbed(EasyFusion(C, F))
    video, audio = (x.requires_grad_(True) for x in inputs())
    v, a = fusion(video, audio)
    grad_a_wrt_v, = torch.autograd.grad(a.square().sum(), video, retain_graph=True)
    grad_v_wrt_a, = torch.autograd.grad(v.square().sum() - video.square().sum(), audio)
    assert grad_a_wrt_v.abs().max() > 1e-4 and grad_v_wrt_a.abs().max() > 1e-4


@pytest.mark.parametrize("i", [0, 2, F - 1])
def test_exchange_is_frame_aligned(perturbed, i):
    fusion = perturbed(EasyFusion(C, F)).eval()
    video, audio = inputs()
    with torch.no_grad():
        v0, a0 = fusion(video, audio)
        bumped = video.clone()
        bumped[:, :, i] += torch.randn(2, C, H, W)                       # change frame i only
        _, a1 = fusion(bumped, audio)
        louder = audio.clone()
        louder[..., i * SEG:(i + 1) * SEG] += torch.randn(2, C, 1)        # change audio segment i only
        v2, _ = fusion(video, louder)
    da = (a1 - a0).abs().view(2, C, F, SEG).amax(dim=(0, 1, 3))         # (F,) change per audio segment
    dv = (v2 - v0).abs().amax(dim=(0, 1, 3, 4))                          # (F,) change per frame
    assert da[i] > 1e-3 and dv[i] > 1e-3
    others = [j for j in range(F) if j != i]
    assert da[others].max() < 1e-6 and dv[others].max() < 1e-6


def test_unet_uses_easy_fusion_where_rsmma_would_be():
    rsmma = mmdiff.build_model(EASY.replace(cross_fusion="rsmma"))
    easy = mmdiff.build_model(EASY)
    n_cross = sum(isinstance(m, RSMMA) for m in rsmma.modules())
    fusions = [m for m in easy.modules() if isinstance(m, EasyFusion)]
    assert len(fusions) == n_cross > 0 and not any(isinstance(m, RSMMA) for m in easy.modules())
    # two LayerNorms (2C each) and two C x C Linear layers with bias per fusion block
    widths = [f.video_to_audio.in_features for f in fusions]
    assert sum(sum(p.numel() for p in f.parameters()) for f in fusions) == sum(2 * c * c + 6 * c for c in widths)
    assert sum(p.numel() for p in easy.parameters()) < sum(p.numel() for p in rsmma.parameters())


def test_unet_with_easy_fusion_couples_the_streams(perturbed):
    torch.manual_seed(0)
    model = perturbed(mmdiff.build_model(EASY)).eval()
    v, a, t = torch.randn(1, *EASY.video_shape), torch.randn(1, *EASY.audio_shape), torch.tensor([500])
    with torch.no_grad():
        ev1, ea1 = model(v, a, t)
        ev2, _ = model(v, a + 1.0, t)
    assert ev1.shape == v.shape and ea1.shape == a.shape
    assert (ev1 - ev2).abs().max() > 1e-6


def test_every_easy_fusion_parameter_learns():
    torch.manual_seed(0)
    dead, _, _ = dead_parameters(mmdiff.build_model(EASY), EASY)
    assert not dead, dead
