"""High-level sampling: seeded, unconditional or conditional generation from a coupled U-Net.

`generate` is the function the CLI, the evaluation package and the studio call; it never imports a UI.
Conditions: a given video or audio stream (`Condition`, zero-shot or trained), and for a model trained
with captions a caption embedding with classifier-free guidance (`text`, `guidance_scale`).
`generate_two_step` is the text -> video -> audio pipeline of Paredes et al. (docs/text.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mmdiff.diffusion.guidance import (DEFAULT_GRADIENT_SCALE, Condition, classifier_free_denoiser, stream_scales,
                                      conditioned_denoiser)
from mmdiff.diffusion.joint import JointLayout, model_denoiser, zero_mean_audio
from mmdiff.diffusion.samplers import SAMPLERS, Callback
from mmdiff.diffusion.schedule import Schedule
from mmdiff.nn import fastpath


# What a checkpoint generates for given options, as a number: bump it whenever a change to the model or
# sampling code changes the samples, so caches keyed on generated samples (eval.protocol) are not reused.
# 2: RS-MMA uses R = 0 at inference in a model trained without the random shift.
# 3: RS-MMA shifts come from a generator owned by the call (SHIFT_MODES), not torch's global RNG.
INFERENCE_VERSION = 3

# RS-MMA's shift R at inference, per `generate` call: "seeded" draws R afresh at every block call (as the
# public code does) from a torch.Generator seeded by the call's seed, so one seed gives one sample even
# when jobs run at once; "public" draws it from an unseeded generator (the public code's behaviour: not
# reproducible); "zero" uses R = 0. A model trained without the shift uses R = 0 whatever the mode.
SHIFT_MODES = ("seeded", "public", "zero")


# The sampler of the released MM-Diffusion script (docs/samplers.md): its setting has no x0 clamp and no audio
# projection, so SamplerOptions turns both off for it and records what ran.
PUBLIC_SAMPLER = "mm-diffusion-dpm-solver"


@dataclass(frozen=True)
class SamplerOptions:
    """Which sampler and its settings. `steps` is ignored by DDPM (always the full T steps); with
    `PUBLIC_SAMPLER`, `clip_denoised` and `zero_mean_audio` are always False (the released setting)."""

    sampler: str = "dpm-solver++"
    steps: int = 20
    eta: float = 0.0            # DDIM only
    order: int = 3              # DPM-Solver++ (multistep) and the public DPM-Solver (singlestep) only
    clip_denoised: bool = True  # clamp x0 estimates to the data range [-1, 1]
    zero_mean_audio: bool = True  # project audio x0 estimates onto zero mean (joint.zero_mean_audio)

    def __post_init__(self) -> None:
        """The one check of the settings (CLI, studio jobs and eval.run construct this); the samplers
        also bound `steps` by the schedule's T, which only they know."""
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {sorted(SAMPLERS)}")
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps must be a whole number >= 1, got {self.steps}")
        object.__setattr__(self, "steps", int(self.steps))          # 20.0 from a UI slider -> 20
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")
        if self.order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver order must be 1, 2 or 3, got {self.order}")
        if self.sampler == PUBLIC_SAMPLER:
            object.__setattr__(self, "clip_denoised", False)
            object.__setattr__(self, "zero_mean_audio", False)


def run_sampler(opts: SamplerOptions, denoise, x, schedule: Schedule, generator, callback):
    """Dispatch to one sampler with the options that apply to it."""
    common = dict(callback=callback, clip_denoised=opts.clip_denoised, generator=generator)
    if opts.sampler == "ddpm":
        return SAMPLERS["ddpm"](denoise, x, schedule, **common)
    if opts.sampler == "ddim":
        return SAMPLERS["ddim"](denoise, x, schedule, steps=opts.steps, eta=opts.eta, **common)
    return SAMPLERS[opts.sampler](denoise, x, schedule, steps=opts.steps, order=opts.order, **common)


def require_text(model: torch.nn.Module) -> None:
    """ValueError unless `model` was trained with captions."""
    if not model.config.text_dim:
        raise ValueError("this model was trained without text conditioning (ModelConfig.text_dim = 0), so it "
                         "cannot take a prompt; use a model trained with `mmdiff.train --text-cond`, or leave "
                         "the prompt empty")


def encode_prompt(prompt: str | None, model: torch.nn.Module, encoder) -> torch.Tensor | None:
    """(1, text_dim) embedding of `prompt` for `model`; None for no or a blank prompt (unconditional).

    :param encoder: () -> TextEncoder, called only when there is a prompt to encode.
    ValueError when the model was trained without text.
    """
    if prompt is None or not prompt.strip():
        return None
    require_text(model)
    return encoder().encode([prompt])


def check_text(model: torch.nn.Module, text: torch.Tensor, num: int) -> torch.Tensor:
    """Validate caption embeddings for `model` and `num` samples; returns them as (1 or num, text_dim)."""
    cfg = model.config
    require_text(model)
    if text.ndim == 1:
        text = text[None]
    if text.ndim != 2 or text.shape[0] not in (1, num) or text.shape[1] != cfg.text_dim:
        raise ValueError(f"text must have shape (1 or num={num}, {cfg.text_dim}) ({cfg.text_encoder} "
                         f"embeddings), got {tuple(text.shape)}")
    return text


def text_denoiser(model: torch.nn.Module, layout: JointLayout, text: torch.Tensor | None,
                  guidance_scale: float = 1.0, shift=None, schedule: Schedule | None = None,
                  audio_guidance_scale: float | None = None):
    """The flat eps denoiser of `model`, guided towards the caption `text` (classifier-free, any sampler);
    the audio stream at `audio_guidance_scale` when given (guidance.stream_scales).
    :param shift: RS-MMA's shift source (`shift_source`), passed to every model call.
    :param schedule: turns a v-prediction model's output into eps (model_denoiser)."""
    if text is None:
        return model_denoiser(model, layout, shift=shift, schedule=schedule)
    device = next(model.parameters()).device
    return classifier_free_denoiser(model_denoiser(model, layout, text, shift=shift, schedule=schedule),
                                    model_denoiser(model, layout, shift=shift, schedule=schedule),
                                    stream_scales(layout, guidance_scale, audio_guidance_scale),
                                    both=fastpath.pair_runner(device, shift))


def draws_shifts(model: torch.nn.Module) -> bool:
    """Whether any RS-MMA block of `model` draws its shift at inference (RSMMA.draw_shift); a model trained
    without the random shift, or whose windows span all frames, never does."""
    from mmdiff.nn.attention import RSMMA

    return any(isinstance(m, RSMMA) and m.random_shift and m.inference_shift == "random" and m.window < m.frames
               for m in model.modules())


def shift_source(model: torch.nn.Module, mode: str | None, seed: int):
    """What the model's RS-MMA blocks get as `shift` for a call in `mode` (SHIFT_MODES; None: the model's
    own `inference_shift`, "random" -> "seeded"): a CPU generator, or 0 (also when the model draws nothing, which
    is the same R; an int lets fastpath.chunked run batch chunks in parallel)."""
    if mode is None:
        mode = "zero" if getattr(model.config, "inference_shift", "random") == "zero" else "seeded"
    if mode not in SHIFT_MODES:
        raise ValueError(f"unknown RS-MMA shift mode {mode!r}; choose one of {SHIFT_MODES}")
    if mode == "zero" or not draws_shifts(model):
        return 0
    gen = torch.Generator("cpu")                   # CPU: drawing R never waits for a GPU
    if mode == "seeded":
        gen.manual_seed(seed + 2)                  # seed and seed + 1 seed the noise and the condition
    else:
        gen.seed()                                 # unseeded, as the public code's `random`
    return gen


def generate(model: torch.nn.Module, num: int = 1, options: SamplerOptions | None = None, seed: int = 0,
             condition: Condition | None = None, schedule: Schedule | None = None,
             callback: Callback | None = None, text: torch.Tensor | None = None, guidance_scale: float = 1.0,
             shift: str | None = None, audio_guidance_scale: float | None = None):
    """Sample `num` clips. Returns (video (N, F, 3, H, W), audio (N, 1, T)) in [-1, 1] (None for absent streams).

    Deterministic given `seed`: the initial noise, DDPM/DDIM noise, replacement noise and RS-MMA shifts
    all come from generators seeded here (never torch's global RNG), so concurrent calls do not interact.
    With `condition`, its modality is returned exactly as given (clean).
    :param text: (1 or N, text_dim) caption embeddings (mmdiff.text.encoder) for a model trained with
        captions; None is unconditional (the null caption).
    :param guidance_scale: classifier-free guidance scale s with `text`: eps_u + s * (eps_c - eps_u);
        0 is exactly unconditional, 1 exactly conditional (no guidance).
    :param audio_guidance_scale: the audio stream's own scale (None: `guidance_scale`); 1 with a larger
        `guidance_scale` guides the video only, which keeps guidance from raising the audio's background noise
        (BENCHMARKS.md, the prompt candidate).
    :param shift: RS-MMA's shift at inference (SHIFT_MODES: "seeded", "public", "zero"); None: the model's
        `inference_shift` ("random" -> "seeded").
    """
    opts = options or SamplerOptions()
    schedule = schedule or Schedule()
    cfg = model.config
    layout = JointLayout.from_config(cfg)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        # inference_mode: no autograd bookkeeping (3-5% on CPU, BENCHMARKS.md), except for gradient guidance
        inference = fastpath.enabled() and (condition is None or condition.mode != "gradient")
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.inference_mode(inference):
            shifts = shift_source(model, shift, seed)                          # RS-MMA shifts at inference
            gen = torch.Generator(device).manual_seed(seed)
            x = torch.randn((num, layout.size), generator=gen, device=device)   # (N, D) x_T
            if text is not None:
                text = check_text(model, text, num).to(device)
            denoise = text_denoiser(model, layout, text, guidance_scale, shifts, schedule, audio_guidance_scale)
            if text is None or text.shape[0] == 1:                              # per-clip captions stay whole
                denoise = fastpath.chunked(denoise, device, shifts)
            if opts.zero_mean_audio:
                denoise = zero_mean_audio(denoise, layout, schedule)
            if condition is not None:
                cond_gen = torch.Generator(device).manual_seed(seed + 1)
                value = condition.value.reshape(condition.value.shape[0], -1).to(device)
                if value.shape[0] not in (1, num):
                    raise ValueError(f"condition batch {value.shape[0]} must be 1 or num={num}")
                condition = Condition(condition.modality, value, condition.mode, condition.scale)
                denoise = conditioned_denoiser(denoise, layout, schedule, condition, cond_gen)
            x = run_sampler(opts, denoise, x, schedule, gen, callback)
            if condition is not None:
                x[:, layout.slices[condition.modality]] = condition.value.expand(num, -1)
    finally:
        model.train(was_training)
    video, audio = layout.unpack(x)
    return (video.clamp(-1, 1) if video is not None else None,
            audio.clamp(-1, 1) if audio is not None else None)


# --- the two-step pipeline (Paredes et al.): text -> video, then (video, text) -> audio -------------------
def trained_for_conditioning(model: torch.nn.Module) -> bool:
    """Whether `model` was trained with a clean-stream condition (mmdiff.train --cond-prob > 0, read from
    its checkpoint by load_model), i.e. supports Condition(mode="trained")."""
    trained_with = getattr(model, "trained_with", None) or {}
    return float(trained_with.get("cond_prob", 0) or 0) > 0


def two_step_mode(model: torch.nn.Module) -> str:
    """How the second step conditions on the video: "trained" for a model trained for it, else zero-shot
    "replacement"."""
    return "trained" if trained_for_conditioning(model) else "replacement"


def phase_callback(callback: Callback | None, phase: int, phases: int, **extra) -> Callback | None:
    """Report the steps of sampler run `phase` (0-based) of `phases` equal runs as one progress
    (step out of phases x steps), with `extra` added to each report."""
    if callback is None:
        return None

    def report(info: dict) -> None:
        callback({**info, **extra, "step": phase * info["steps"] + info["step"], "steps": phases * info["steps"]})

    return report


def _staged(callback: Callback | None, stage: int, layout: JointLayout, video: torch.Tensor | None = None):
    """Stage 1 or 2 of the two-step pipeline as one progress; in stage 2 the x0 preview shows the given
    video instead of the sampler's unused copy of it."""
    report = phase_callback(callback, stage - 1, 2, stage=stage)
    if report is None or video is None:
        return report

    def with_video(info: dict) -> None:
        x0 = info["x0"].clone()
        x0[:, layout.slices["video"]] = video.reshape(video.shape[0], -1).to(x0)
        report({**info, "x0": x0})

    return with_video


def generate_two_step(model: torch.nn.Module, num: int = 1, options: SamplerOptions | None = None, seed: int = 0,
                      text: torch.Tensor | None = None, guidance_scale: float = 1.0, mode: str | None = None,
                      schedule: Schedule | None = None, callback: Callback | None = None,
                      condition_scale: float = DEFAULT_GRADIENT_SCALE, audio_guidance_scale: float | None = None):
    """Text -> video, then audio for that video and the same text (Paredes et al.'s sequential pipeline).

    Step 1 samples joint clips and keeps their video; step 2 samples again with that video given as a
    `Condition(modality="video", mode=mode)` and keeps the audio. Both steps use the caption `text` with
    classifier-free guidance `guidance_scale` (the audio stream `audio_guidance_scale` when given), and the same
    `seed`. Returns (video, audio) like `generate`.
    :param mode: "trained", "replacement" or "gradient"; None picks `two_step_mode(model)`.
    :param condition_scale: the gradient-guidance weight lambda (mode "gradient" only).
    """
    if set(model.config.modalities) != {"video", "audio"}:
        raise ValueError("the two-step pipeline needs a joint audio-video model")
    mode = mode or two_step_mode(model)
    layout = JointLayout.from_config(model.config)
    guided = dict(text=text, guidance_scale=guidance_scale, audio_guidance_scale=audio_guidance_scale)
    video, _ = generate(model, num, options, seed=seed, schedule=schedule, callback=_staged(callback, 1, layout),
                        **guided)
    given = Condition("video", video, mode, condition_scale)
    video_out, audio = generate(model, num, options, seed=seed, schedule=schedule, condition=given,
                                callback=_staged(callback, 2, layout, video), **guided)
    return video_out, audio
