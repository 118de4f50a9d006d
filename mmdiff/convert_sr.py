"""MM-Diffusion's released super-resolution weights -> an mmdiff SR checkpoint (`mmdiff.convert` calls this).

The public upsampler (`AIST++_SR.pt`, `Landscape_SR.pt`; guided-diffusion's 64 -> 256 U-Net, built by
`image_sr_create_model_and_diffusion` in researchmm/MM-Diffusion's mm_diffusion/script_util.py) is a plain
state dict. `convert_sr_state_dict(state_dict, args)` checks it against the layout that `args` (the public
code's own argument names and values, as its argparser takes them) describe, renames every tensor to
`SRUNet`'s layout with the switches of `SRConfig` that reproduce the public network (`resample_first`,
`attention="adm"`, `num_heads`), reorders the attention's legacy q/k/v rows, casts fp16 to fp32, and returns
an inference checkpoint dict (EMA slot) that `mmdiff.checkpoint.load_sr_model` loads, e.g. through
`mmdiff.sample --upscale PATH` once written with `atomic_torch_save`.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from mmdiff.config import DiffusionConfig, SRConfig

# image_sr_model_and_diffusion_defaults() of the public code: what its argparser starts from.
PUBLIC_SR_DEFAULTS: dict[str, Any] = {
    "sr_num_channels": 128, "sr_num_res_blocks": 2, "sr_num_heads": 4, "sr_num_heads_upsample": -1,
    "sr_num_head_channels": -1, "sr_attention_resolutions": "16,8", "sr_dropout": 0.0, "sr_class_cond": False,
    "use_checkpoint": False, "sr_use_scale_shift_norm": True, "sr_resblock_updown": False, "use_fp16": False,
    "noise_schedule": "linear", "use_kl": False, "predict_xstart": False, "rescale_timesteps": False,
    "rescale_learned_sigmas": False, "sr_learn_sigma": True, "large_size": 256, "small_size": 128,
    "sr_diffusion_steps": 1000, "sr_timestep_respacing": "",
}

# The SR flags of ssh_scripts/multimodal_sample_sr.sh (SRMODEL_FLAGS, SR_DIFFUSION_FLAGS; the same flags train
# both releases in ssh_scripts/image_sr_train.sh) over the defaults.
_RELEASED_SR_ARGS = {**PUBLIC_SR_DEFAULTS, "sr_attention_resolutions": "8,16,32", "large_size": 256,
                     "small_size": 64, "sr_learn_sigma": True, "sr_num_channels": 192, "sr_num_heads": 4,
                     "sr_num_res_blocks": 2, "sr_resblock_updown": True, "use_fp16": True,
                     "sr_use_scale_shift_norm": True, "sr_diffusion_steps": 1000, "sr_timestep_respacing": "ddim25"}
SR_RELEASES: dict[str, dict[str, Any]] = {"landscape-sr": dict(_RELEASED_SR_ARGS),
                                          "aist++-sr": dict(_RELEASED_SR_ARGS)}

_CHANNEL_MULT = {512: (1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 64: (1, 2, 3, 4)}   # by large_size


class ConversionError(ValueError):
    """The weights or arguments do not describe a network this converter can rebuild exactly."""


def _str2bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("yes", "true", "t", "y", "1", "no", "false", "f", "n", "0"):
        return v.lower() in ("yes", "true", "t", "y", "1")
    raise ConversionError(f"argument {name}: expected a boolean, got {v!r}")


def public_sr_args(args: dict[str, Any]) -> dict[str, Any]:
    """The public defaults updated with `args`, each parsed as the public argparser would (type of its
    default; "True"/"8,16,32" strings accepted). Keys that are not SR arguments are ignored (a file of the
    sampling script's arguments also holds the joint model's)."""
    out = dict(PUBLIC_SR_DEFAULTS)
    for name, default in PUBLIC_SR_DEFAULTS.items():
        if name not in args:
            continue
        v = args[name]
        try:
            if isinstance(default, bool):
                out[name] = _str2bool(name, v)
            elif isinstance(default, int):
                if isinstance(v, bool) or float(v) != int(float(v)):
                    raise ValueError
                out[name] = int(float(v))
            elif isinstance(default, float):
                out[name] = float(v)
            else:
                out[name] = ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)
        except (TypeError, ValueError):
            raise ConversionError(f"argument {name}: expected a {type(default).__name__}, got {v!r}") from None
    return out


def sr_config_from_args(args: dict[str, Any]) -> tuple[SRConfig, DiffusionConfig]:
    """The `SRConfig` and `DiffusionConfig` of the network and process that the public code builds from `args`."""
    a = public_sr_args(args)
    refuse = [(a["sr_class_cond"], "sr_class_cond True (the public code has 0 classes)"),
              (not a["sr_use_scale_shift_norm"], "sr_use_scale_shift_norm False (mmdiff's blocks are scale-shift)"),
              (not a["sr_resblock_updown"], "sr_resblock_updown False (mmdiff resamples in residual blocks)"),
              (a["predict_xstart"], "predict_xstart True (mmdiff's SR model predicts the noise)"),
              (a["noise_schedule"] != "linear", f"noise_schedule {a['noise_schedule']!r} (only 'linear')"),
              (a["rescale_timesteps"] and a["sr_diffusion_steps"] != 1000,
               "rescale_timesteps True with sr_diffusion_steps != 1000")]
    for bad, what in refuse:
        if bad:
            raise ConversionError(f"cannot convert a public SR model with {what}")
    if a["large_size"] not in _CHANNEL_MULT:
        raise ConversionError(f"large_size {a['large_size']} is not one the public code builds "
                              f"({sorted(_CHANNEL_MULT)})")
    mult = _CHANNEL_MULT[a["large_size"]]
    try:
        ds = [int(r) for r in a["sr_attention_resolutions"].split(",") if r.strip()]
    except ValueError:
        raise ConversionError(f"argument sr_attention_resolutions: expected comma-separated integers, got "
                              f"{a['sr_attention_resolutions']!r}") from None
    scales = tuple(sorted({int(math.log2(d)) + 1 for d in ds if d > 0 and d & (d - 1) == 0 and d < 2 ** len(mult)}))
    head_channels = a["sr_num_head_channels"]
    heads = 0 if head_channels != -1 else a["sr_num_heads"]
    if a["sr_num_heads_upsample"] not in (-1, a["sr_num_heads"]) and head_channels == -1:
        raise ConversionError(f"sr_num_heads_upsample {a['sr_num_heads_upsample']} differs from sr_num_heads "
                              f"{a['sr_num_heads']}; mmdiff uses one head count")
    steps = a["sr_diffusion_steps"]
    try:
        cfg = SRConfig(low_size=a["small_size"], high_size=a["large_size"], base_channels=a["sr_num_channels"],
                       channel_mult=mult, num_res_blocks=a["sr_num_res_blocks"], attention_scales=scales,
                       head_dim=head_channels if head_channels != -1 else SRConfig.head_dim, num_heads=heads,
                       time_embed_dim=a["sr_num_channels"], time_embed_mult=4, dropout=a["sr_dropout"],
                       learn_sigma=a["sr_learn_sigma"], resample_first=True, attention="adm")
        diffusion = DiffusionConfig(num_timesteps=steps, beta_start=1e-4 * 1000 / steps,
                                    beta_end=0.02 * 1000 / steps)
    except (ValueError, ZeroDivisionError) as e:
        raise ConversionError(f"these arguments describe no network mmdiff builds: {e}") from None
    return cfg, diffusion


def _block_pairs(ours: str, res: str, attn: str | None, block) -> list[tuple[str, str, str]]:
    """(our module, public module, kind) of one SRBlock: its residual block and attention."""
    pairs = [(f"{ours}.res.in_norm", f"{res}.in_layers.0", "same"),
             (f"{ours}.res.in_conv", f"{res}.in_layers.2", "same"),
             (f"{ours}.emb.1", f"{res}.emb_layers.1", "same"),
             (f"{ours}.res.out_norm", f"{res}.out_layers.0", "same"),
             (f"{ours}.res.out_conv", f"{res}.out_layers.3", "same")]
    if not isinstance(block.res.skip, torch.nn.Identity):
        pairs.append((f"{ours}.res.skip", f"{res}.skip_connection", "same"))
    if block.attn is not None:
        pairs += [(f"{ours}.attn.norm", f"{attn}.norm", "same"), (f"{ours}.attn.qkv", f"{attn}.qkv", "qkv"),
                  (f"{ours}.attn.proj", f"{attn}.proj_out", "conv1d")]
    return pairs


def _module_pairs(model) -> list[tuple[str, str, str]]:
    """Every (our module, public module, kind), in the public state dict's order."""
    pairs = [("time_mlp.0", "time_embed.0", "same"), ("time_mlp.2", "time_embed.2", "same"),
             ("stem", "input_blocks.0.0", "same")]
    for i, block in enumerate(model.down):
        pairs += _block_pairs(f"down.{i}", f"input_blocks.{i + 1}.0", f"input_blocks.{i + 1}.1", block)
    pairs += _block_pairs("middle.0", "middle_block.0", "middle_block.1", model.middle[0])
    pairs += _block_pairs("middle.1", "middle_block.2", None, model.middle[1])
    j, used = -1, 0                      # public output block, and how many of its layers are taken
    for k, (block, takes_skip) in enumerate(zip(model.up, model.up_takes_skip)):
        if takes_skip:                   # a new output block: ResBlock, [attention], [upsampling ResBlock]
            j, used = j + 1, 1 + (block.attn is not None)
            pairs += _block_pairs(f"up.{k}", f"output_blocks.{j}.0", f"output_blocks.{j}.1", block)
        else:
            pairs += _block_pairs(f"up.{k}", f"output_blocks.{j}.{used}", None, block)
    pairs += [("head.0", "out.0", "same"), ("head.2", "out.2", "same")]
    return pairs


def public_sr_layout(cfg: SRConfig) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """public key -> (our key, public shape, kind), in the public state dict's order, for a converted `cfg`."""
    from mmdiff.nn.sr_unet import SRUNet

    with torch.device("meta"):
        model = SRUNet(cfg)
    ours = model.state_dict()
    layout = {}
    for our_mod, pub_mod, kind in _module_pairs(model):
        for param in ("weight", "bias"):
            key = f"{our_mod}.{param}"
            if key in ours:
                shape = tuple(ours[key].shape)
                layout[f"{pub_mod}.{param}"] = (key, shape + (1,) * (kind != "same" and param == "weight"), kind)
    covered = {v[0] for v in layout.values()}
    assert covered == set(ours), sorted(set(ours) - covered)[:3]      # every tensor of ours has a public source
    return layout


def _mismatch(state_dict: dict, layout: dict) -> str | None:
    """One sentence naming the first missing, unexpected and mis-shaped key, or None when the layout matches."""
    missing = [k for k in layout if k not in state_dict]
    unexpected = [k for k in state_dict if k not in layout]
    misshaped = [k for k in layout if k in state_dict and (not isinstance(state_dict[k], torch.Tensor)
                                                           or tuple(state_dict[k].shape) != layout[k][1])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), first {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), first {unexpected[0]!r}")
    if misshaped:
        k = misshaped[0]
        found = tuple(state_dict[k].shape) if isinstance(state_dict[k], torch.Tensor) else type(state_dict[k]).__name__
        parts.append(f"{len(misshaped)} mis-shaped key(s), first {k!r}: {found} in the file, {layout[k][1]} expected")
    return "; ".join(parts) or None


def _qkv_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Legacy ADM rows [head][q, k, v][channel] -> [q, k, v][head][channel] (weight (3C, C) or bias (3C,))."""
    rest = w.shape[1:]
    return w.reshape(heads, 3, -1, *rest).transpose(0, 1).reshape(w.shape)


def convert_sr_state_dict(state_dict: dict, args: dict[str, Any]) -> dict:
    """A public MM-Diffusion SR state dict and its arguments -> an mmdiff "sr" checkpoint dict (fp32 weights in
    its EMA slot), loadable by `mmdiff.checkpoint.load_sr_model` once saved.

    :param args: the public code's argument names and values (e.g. `SR_RELEASES["landscape-sr"]`).
    Raises ConversionError naming the first missing / unexpected / mis-shaped key, or the argument it cannot take.
    """
    from mmdiff.checkpoint import checkpoint_dict

    if not isinstance(state_dict, dict):
        raise ConversionError(f"expected a state dict (key -> tensor), got {type(state_dict).__name__}")
    cfg, diffusion = sr_config_from_args(args)
    layout = public_sr_layout(cfg)
    problem = _mismatch(state_dict, layout)
    if problem:
        raise ConversionError(f"the weights do not match the public SR layout of these arguments: {problem}")
    weights = {}
    for pub_key, (our_key, _, kind) in layout.items():
        t = state_dict[pub_key]
        if not t.is_floating_point():
            raise ConversionError(f"{pub_key!r} holds {t.dtype} values, not floating point weights")
        t = t.detach().to("cpu", torch.float32)
        if kind != "same" and t.ndim == 3:
            t = t[..., 0]                                       # Conv1d (C', C, 1) -> Linear (C', C)
        if kind == "qkv":
            t = _qkv_rows(t, cfg.heads(t.shape[0] // 3))
        weights[our_key] = t.contiguous()
    # The layout of mmdiff.checkpoint.save_checkpoint, as export_inference writes it (EMA slot only).
    return checkpoint_dict(model_config=cfg, diffusion_config=diffusion, model=None, ema=weights,
                           train_args={"converted_from": "researchmm/MM-Diffusion SR",
                                       "public_args": public_sr_args(args)})


__all__ = ["convert_sr_state_dict", "sr_config_from_args", "public_sr_layout", "public_sr_args", "SR_RELEASES",
           "PUBLIC_SR_DEFAULTS", "ConversionError"]
