"""v-prediction (ModelConfig.prediction = "v"): the conversion to eps, the v loss, and one trained step.

The closed forms: with x_t = a x0 + s eps (a = sqrt(abar), s = sqrt(1 - abar)) and v = a eps - s x0,
eps = s x_t + a v and x0 = a x_t - s v; the v MSE is the eps MSE / abar."""
import pytest
import torch

from mmdiff.config import TINY, ModelConfig
from mmdiff.diffusion.joint import JointLayout, model_denoiser, v_to_eps
from mmdiff.diffusion.loss import diffusion_loss, draw_noisy_batch
from mmdiff.diffusion.schedule import Schedule

LAYOUT = JointLayout((2, 3, 4, 4), (1, 40))
SCHEDULE = Schedule()


def ab(t):
    return SCHEDULE.alpha_bar(t).double()[:, None]                   # (B, 1)


@pytest.mark.parametrize("per_modality", [False, True])
def test_v_to_eps_recovers_the_noise(per_modality):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, LAYOUT.size, generator=g, dtype=torch.float64)
    eps = torch.randn(6, LAYOUT.size, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 300, 650, 900, 999]) if not per_modality else \
        torch.tensor([[0, 999], [10, 900], [300, 300], [650, 0], [900, 10], [999, 650]])
    x_t, v = torch.empty_like(x0), torch.empty_like(x0)
    for k, s in enumerate(LAYOUT.slices.values()):
        a = ab(t if t.ndim == 1 else t[:, k])
        x_t[:, s] = a.sqrt() * x0[:, s] + (1 - a).sqrt() * eps[:, s]
        v[:, s] = a.sqrt() * eps[:, s] - (1 - a).sqrt() * x0[:, s]
    assert torch.allclose(v_to_eps(v, x_t, t, LAYOUT, SCHEDULE), eps, rtol=0, atol=1e-12)


class ConstantV(torch.nn.Module):
    """A 'model' whose v output is fixed: (video (B, 2, 3, 4, 4), audio (B, 1, 40))."""

    def __init__(self, video, audio):
        super().__init__()
        self.config = TINY.replace(prediction="v")
        self.video, self.audio = video, audio

    def forward(self, video, audio, t, **_):
        return self.video.expand_as(video), self.audio.expand_as(audio)


def test_denoiser_of_a_v_model_implies_its_data_prediction():
    g = torch.Generator().manual_seed(1)
    vv, va = torch.randn(1, 2, 3, 4, 4, generator=g), torch.randn(1, 1, 40, generator=g)
    model = ConstantV(vv, va)
    x = torch.randn(3, LAYOUT.size, generator=g)
    t = torch.tensor([5, 500, 995])
    eps = model_denoiser(model, LAYOUT, schedule=SCHEDULE)(x, t)
    x0 = SCHEDULE.predict_x0(x, t, eps)                              # from eps, as the samplers do
    a = ab(t).float()
    v = LAYOUT.pack(vv.expand(3, -1, -1, -1, -1), va.expand(3, -1, -1))
    assert torch.allclose(x0, a.sqrt() * x - (1 - a).sqrt() * v, atol=2e-4)    # x0 = a x_t - s v
    with pytest.raises(ValueError, match="schedule"):
        model_denoiser(model, LAYOUT)


def test_the_v_loss_is_the_mse_of_v():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(5, LAYOUT.size, generator=g)
    model = ConstantV(torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 1, 40))         # predicts v = 0
    terms = diffusion_loss(model_denoiser(model, LAYOUT, schedule=SCHEDULE), LAYOUT, SCHEDULE, x0,
                           torch.Generator().manual_seed(7), prediction="v")
    batch = draw_noisy_batch(LAYOUT, SCHEDULE, x0, torch.Generator().manual_seed(7))      # the same draw
    a = ab(batch.t).float()
    v = a.sqrt() * batch.noise - (1 - a).sqrt() * x0                                     # (B, D) true v
    for m, s in LAYOUT.slices.items():
        assert terms[m].item() == pytest.approx((v[:, s] ** 2).mean().item(), rel=1e-4)
    eps_terms = diffusion_loss(model_denoiser(model, LAYOUT, schedule=SCHEDULE), LAYOUT, SCHEDULE, x0,
                               torch.Generator().manual_seed(7))                        # same error, eps MSE
    assert eps_terms["video"].item() < terms["video"].item()                              # 1 / abar >= 1
    with pytest.raises(ValueError, match="prediction"):
        diffusion_loss(lambda x, t: x, LAYOUT, SCHEDULE, x0, prediction="x0")


def test_config_keeps_old_checkpoints_as_eps_and_refuses_unknown_targets():
    d = TINY.to_dict()
    d.pop("prediction")
    assert ModelConfig.from_dict(d).prediction == "eps"
    with pytest.raises(ValueError, match="prediction"):
        TINY.replace(prediction="x0")
