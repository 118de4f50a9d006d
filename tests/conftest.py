import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("MMDIFF_TEST_THREADS", min(2, os.cpu_count() or 1))))


@pytest.fixture
def perturbed():
    """Give a module's zero-initialised layers random weights so every path carries signal."""

    def _perturb(module: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in module.parameters():
                if not p.abs().sum():
                    p.copy_(torch.randn(p.shape, generator=g) * std)
        return module

    return _perturb
