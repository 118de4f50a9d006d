"""Exponential moving average of weights (paper: 0.9999), with the usual warm-up."""
from __future__ import annotations

import torch


class EMA:
    """Shadow copy of a model's floating-point state. Effective decay min(decay, (1 + n) / (10 + n)) after n
    updates, so a short run (a CPU demo) is not dominated by the random initialisation."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.9999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.is_floating_point():
                s.mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                s.copy_(v)

    def state_dict(self) -> dict:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict, updates: int) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise ValueError(f"EMA state lacks {sorted(missing)[:3]}")
        self.shadow = {k: state[k].detach().clone().float().to(self.shadow[k].device) for k in self.shadow}
        self.updates = int(updates)
