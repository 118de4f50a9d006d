"""mmdiff: a small, trainable rebuild of MM-Diffusion (Ruan et al., CVPR 2023).

Public API:
- `PRESETS`: preset name -> `ModelConfig` ("paper" = "mm-diffusion" = the released model, "tiny" = CPU preset)
- `build_model(preset_or_config)`: the coupled U-Net, `model(video, audio, t) -> (eps_video, eps_audio)`
- `ModelConfig`, `DiffusionConfig`
Heavy modules (torch) load on first use, so `import mmdiff` has no side effects.
"""
from mmdiff.config import PRESETS, DiffusionConfig, ModelConfig, resolve_config

__all__ = ["PRESETS", "ModelConfig", "DiffusionConfig", "resolve_config", "build_model"]


def build_model(preset_or_config):
    """Build the coupled audio-video U-Net for a preset name, config dict or `ModelConfig`."""
    from mmdiff.nn.unet import CoupledUNet

    return CoupledUNet(resolve_config(preset_or_config))
