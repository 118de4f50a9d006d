"""Checks shared by the model tests."""
import torch


def dead_parameters(model: torch.nn.Module, cfg, steps: int = 3):
    """Train `steps` Adam steps towards identity on one random clip; return (names of parameters whose
    gradient is still missing or zero, last video output, last audio output)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    v = torch.randn(1, *cfg.video_shape) if "video" in cfg.modalities else None
    a = torch.randn(1, *cfg.audio_shape) if "audio" in cfg.modalities else None
    t = torch.tensor([300])
    for _ in range(steps):
        opt.zero_grad()
        ev, ea = model(v, a, t)
        loss = sum(((e - x) ** 2).mean() for e, x in ((ev, v), (ea, a)) if e is not None)
        loss.backward()
        opt.step()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    return dead, ev, ea
