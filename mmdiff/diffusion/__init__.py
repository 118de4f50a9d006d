"""Diffusion process, samplers and zero-shot guidance over the joint (video, audio) state."""
from mmdiff.diffusion.guidance import Condition, classifier_free_denoiser, conditioned_denoiser
from mmdiff.diffusion.joint import JointLayout, model_denoiser
from mmdiff.diffusion.loss import diffusion_loss
from mmdiff.diffusion.samplers import SAMPLERS, sample_ddim, sample_ddpm, sample_dpm_solver, sample_dpmpp
from mmdiff.diffusion.schedule import Schedule

__all__ = ["Schedule", "JointLayout", "model_denoiser", "diffusion_loss", "SAMPLERS", "sample_ddpm",
           "sample_ddim", "sample_dpmpp", "sample_dpm_solver", "Condition", "conditioned_denoiser",
           "classifier_free_denoiser"]
