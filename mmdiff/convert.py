"""Convert the released MM-Diffusion checkpoints (researchmm/MM-Diffusion) into mmdiff checkpoints.

    python -m mmdiff.convert mm-diffusion AIST++.pt --release aist++ --out aist.pt
    python -m mmdiff.convert mm-diffusion Landscape_SR.pt --release landscape-sr --out landscape_sr.pt
    python -m mmdiff.convert mm-diffusion model.pt --args public_args.json --out mine.pt

The authors publish plain state dicts of their `MultimodalUNet` (`AIST++.pt`, `Landscape.pt`) and of
their super-resolution U-Net (`AIST++_SR.pt`, `Landscape_SR.pt`), links in the README of
researchmm/MM-Diffusion. A release name picks the public model arguments its sampling script uses
(`RELEASES`); `--args` takes a JSON object of the public code's own model arguments, by their names in
its `multimodal_script_util` (missing ones take its defaults), for any other configuration.

The multimodal network becomes `ModelConfig` with the released-architecture switches (`MM_DIFFUSION`);
each public tensor maps to one of ours, reshaped where the layout differs (a Conv1d temporal kernel
becomes a (k, 1) Conv2d, 1x1 convs become Linear or 1x1 Conv2d). A file that does not match the chosen
layout is refused, naming the first missing, unexpected or mis-shaped key. fp16 tensors are accepted
and stored as fp32. The file is read with `torch.load(weights_only=True)`: nothing is unpickled.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmdiff.checkpoint import atomic_torch_save, checkpoint_dict
from mmdiff.cliargs import fail
from mmdiff.config import DiffusionConfig, ModelConfig
from mmdiff.outdir import OutputDirError, check_output_file

SOURCES = ("mm-diffusion",)
FPS = 10                    # the public data loaders read 10-fps video (AIST++, Landscape: 16 frames = 1.6 s)

# The public model arguments of each released file (ssh_scripts/multimodal_sample_sr.sh MODEL_FLAGS /
# SRMODEL_FLAGS on top of the script_util defaults; dropout 0.1 as multimodal_train.sh trained them).
_MULTIMODAL = {
    "video_size": "16,3,64,64", "audio_size": "1,25600", "num_channels": 128, "num_res_blocks": 2,
    "channel_mult": "", "num_heads": 4, "num_head_channels": 64, "num_heads_upsample": -1,
    "cross_attention_resolutions": "2,4,8", "cross_attention_windows": "1,4,8", "cross_attention_shift": True,
    "video_attention_resolutions": "2,4,8", "audio_attention_resolutions": "-1", "dropout": 0.1,
    "class_cond": False, "use_checkpoint": False, "use_scale_shift_norm": True, "resblock_updown": True,
    "use_fp16": True, "video_type": "2d+1d", "audio_type": "1d", "learn_sigma": False,
    "diffusion_steps": 1000, "noise_schedule": "linear",
}
_SUPER_RESOLUTION = {
    "sr_attention_resolutions": "8,16,32", "large_size": 256, "small_size": 64, "sr_learn_sigma": True,
    "sr_num_channels": 192, "sr_num_heads": 4, "sr_num_res_blocks": 2, "sr_resblock_updown": True,
    "use_fp16": True, "sr_use_scale_shift_norm": True, "sr_diffusion_steps": 1000, "noise_schedule": "linear",
}


@dataclass(frozen=True)
class Release:
    file: str                 # the name the authors publish it under
    kind: str                 # "joint" (MultimodalUNet) or "sr" (the 64 -> 256 image U-Net)
    args: dict[str, Any]


RELEASES: dict[str, Release] = {
    "landscape": Release("Landscape.pt", "joint", _MULTIMODAL),
    "aist++": Release("AIST++.pt", "joint", _MULTIMODAL),
    "landscape-sr": Release("Landscape_SR.pt", "sr", _SUPER_RESOLUTION),
    "aist++-sr": Release("AIST++_SR.pt", "sr", _SUPER_RESOLUTION),
}

# multimodal_script_util.model_and_diffusion_defaults(): what the public argparser fills in.
PUBLIC_DEFAULTS: dict[str, Any] = {
    "video_size": "16,3,64,64", "audio_size": "1,25600", "num_channels": 128, "num_res_blocks": 2,
    "num_heads": 4, "num_heads_upsample": -1, "num_head_channels": -1, "cross_attention_resolutions": "2,4,8",
    "cross_attention_windows": "1,4,8", "cross_attention_shift": True, "video_attention_resolutions": "2,4,8",
    "audio_attention_resolutions": "-1", "channel_mult": "", "dropout": 0.0, "class_cond": False,
    "use_checkpoint": False, "use_scale_shift_norm": True, "resblock_updown": False, "use_fp16": False,
    "video_type": "2d+1d", "audio_type": "1d", "learn_sigma": False, "diffusion_steps": 1000,
    "noise_schedule": "linear", "timestep_respacing": "", "use_kl": False, "predict_xstart": False,
    "rescale_timesteps": False, "rescale_learned_sigmas": False,
}
_DEFAULT_MULT = {512: "0.5,1,1,2,2,4,4", 256: "1,1,2,2,4,4", 128: "1,1,2,3,4", 64: "1,2,3,4"}


class ConvertError(ValueError):
    """The source file or the public arguments do not fit a conversion (one line, for `error: ...`)."""


# --- public arguments -> our configs ------------------------------------------------------------------
def _ints(value, name: str) -> list[int]:
    """"2,4,8", [2, 4, 8] or 2 -> [2, 4, 8]; ConvertError for anything but whole numbers."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    try:
        out = [float(v) for v in items if not (isinstance(v, str) and not v.strip())]
    except (TypeError, ValueError):
        out = [0.5]
    if any(v != int(v) for v in out):
        raise ConvertError(f"public argument {name}={value!r} is not a list of whole numbers")
    return [int(v) for v in out]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConvertError(message)


def public_args(args: dict[str, Any]) -> dict[str, Any]:
    """`args` over the public defaults; unknown names are refused."""
    if not isinstance(args, dict):
        raise ConvertError(f"public arguments must be a JSON object of name -> value, got {type(args).__name__}")
    unknown = sorted(set(args) - set(PUBLIC_DEFAULTS))
    if unknown:
        raise ConvertError(f"unknown public model argument {unknown[0]!r} (the names of multimodal_script_util."
                           "model_and_diffusion_defaults, e.g. num_channels, cross_attention_windows)")
    out = dict(PUBLIC_DEFAULTS)
    for name, value in args.items():           # typed as the public argparser types them (by the default)
        default = PUBLIC_DEFAULTS[name]
        if isinstance(default, bool) and isinstance(value, str):
            if value.lower() not in ("yes", "true", "t", "y", "1", "no", "false", "f", "n", "0"):
                raise ConvertError(f"public argument {name}={value!r} is not a boolean")
            value = value.lower() in ("yes", "true", "t", "y", "1")
        elif isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
            try:
                value = type(default)(float(value)) if type(default) is float else int(value)
            except ValueError:
                raise ConvertError(f"public argument {name}={value!r} is not a {type(default).__name__}") from None
        out[name] = value
    return out


def configs_from_public_args(args: dict[str, Any]) -> tuple[ModelConfig, DiffusionConfig]:
    """The ModelConfig and DiffusionConfig that rebuild the public `MultimodalUNet` made from `args`.

    ConvertError for settings the public code cannot run or this project does not implement.
    """
    a = public_args(args)
    for name, supported in (("class_cond", False), ("learn_sigma", False), ("use_scale_shift_norm", True),
                            ("resblock_updown", True), ("predict_xstart", False), ("video_type", "2d+1d"),
                            ("audio_type", "1d"), ("noise_schedule", "linear")):
        _require(a[name] == supported, f"public argument {name}={a[name]!r} is not supported (only {supported!r})")
    frames, channels, height, width = _ints(a["video_size"], "video_size")
    audio_channels, samples = _ints(a["audio_size"], "audio_size")
    _require(height == width, f"video_size {a['video_size']!r}: only square frames are supported")
    _require(audio_channels == 1, f"audio_size {a['audio_size']!r}: only mono audio is supported")
    mult = a["channel_mult"] or _DEFAULT_MULT.get(width)
    _require(mult is not None, f"no default channel_mult for video size {width}; pass channel_mult")
    try:
        channel_mult = tuple(int(m) for m in str(mult).split(","))
    except ValueError:
        raise ConvertError(f"channel_mult {mult!r}: only whole multipliers are supported") from None
    cross = _ints(a["cross_attention_resolutions"], "cross_attention_resolutions")
    windows = _ints(a["cross_attention_windows"], "cross_attention_windows")
    video_attn = _ints(a["video_attention_resolutions"], "video_attention_resolutions")
    _require(sorted(video_attn) == sorted(cross), "video_attention_resolutions must equal "
             f"cross_attention_resolutions here (got {video_attn} and {cross})")
    _require(_ints(a["audio_attention_resolutions"], "audio_attention_resolutions") == [-1],
             "audio self-attention outside the middle block (audio_attention_resolutions) is not supported")
    _require(int(a["num_head_channels"]) > 0, "num_head_channels=-1 (RS-MMA with num_heads heads) is not "
             "supported; the released models use num_head_channels 64")
    _require(len(windows) == len(cross), f"{len(windows)} cross_attention_windows for {len(cross)} resolutions")
    scales = []
    for ds in cross:
        level = ds.bit_length() - 1
        _require(ds > 0 and 2 ** level == ds and level < len(channel_mult),
                 f"cross-attention resolution {ds} is not a downsampling rate of this U-Net")
        scales.append(level + 1)
    _require(samples * FPS % frames == 0, f"audio_size {samples} at {frames} frames / {FPS} fps is not a whole "
                                          "sample rate")
    steps = int(a["diffusion_steps"])
    try:
        cfg = ModelConfig(
            video_frames=frames, video_size=width, video_channels=channels, fps=FPS, audio_samples=samples,
            audio_rate=samples * FPS // frames, base_channels=int(a["num_channels"]), channel_mult=channel_mult,
            num_res_blocks=int(a["num_res_blocks"]), attention_scales=tuple(scales), cross_windows=tuple(windows),
            head_dim=int(a["num_head_channels"]), time_embed_dim=int(a["num_channels"]),
            audio_dilation_cycle=10, audio_downsample=4, dropout=float(a["dropout"]),
            random_shift=bool(a["cross_attention_shift"]), inference_shift="random",
            audio_dilation_schedule="public", self_attention_heads=int(a["num_heads"]),
            self_attention_norm="group", video_head="3d", middle_cross=list(windows) == [1, 4, 8])
        # guided-diffusion's linear schedule scales its ends by 1000 / steps
        dcfg = DiffusionConfig(num_timesteps=steps, beta_start=1e-4 * 1000 / steps, beta_end=0.02 * 1000 / steps)
    except (ValueError, TypeError) as e:
        raise ConvertError(f"these public arguments give no valid mmdiff config: {e}") from None
    return cfg, dcfg


# --- the key layout: our parameter <-> the public one ------------------------------------------------------
# How a public tensor's shape follows from ours (weights; biases and norms keep their shape).
_TAILS = {"same": None, "temporal": (-1,), "point3d": (1, 1, 1), "lin1d": (1,), "lin3d": (1, 1, 1)}

_RES = [("video_in_layers.0.GroupNorm", "video.in_norm", "same"),
        ("video_in_layers.2.video_conv_spatial", "video.in_conv.spatial", "same"),
        ("video_in_layers.2.video_conv_temporal", "video.in_conv.temporal", "temporal"),
        ("audio_in_layers.0.GroupNorm", "audio.in_norm", "same"),
        ("audio_in_layers.2.audio_conv", "audio.in_conv", "same"),
        ("emb_layers.1", "emb.1", "same"),
        ("video_out_layers.0.GroupNorm", "video.out_norm", "same"),
        ("video_out_layers.3.video_conv", "video.out_conv.conv", "point3d"),
        ("audio_out_layers.0.GroupNorm", "audio.out_norm", "same"),
        ("audio_out_layers.3.audio_conv", "audio.out_conv", "same")]
_SKIP = [("video_skip_connection.video_conv", "video.skip.conv", "point3d"),
         ("audio_skip_connection.audio_conv", "audio.skip", "same")]
_SELF = [("norm.GroupNorm", "norm", "same"), ("qkv", "qkv", "lin1d"), ("proj_out", "proj", "lin1d")]
_CROSS = [("v_norm.GroupNorm", "video_norm", "same"), ("a_norm.GroupNorm", "audio_norm", "same"),
          ("v_qkv", "video_qkv", "lin1d"), ("a_qkv", "audio_qkv", "lin1d"),
          ("video_proj_out.video_conv", "video_out", "lin3d"), ("audio_proj_out.audio_conv", "audio_out", "lin1d")]


def _block_modules(spec, public: str, ours: str) -> list[tuple[str, str, str]]:
    """(public module, our module, shape rule) of one MM-Block's residual block and self-attention."""
    pairs = [(f"{public}.{p}", f"{ours}.{o}", r) for p, o, r in _RES]
    if spec.cin != spec.cout:
        pairs += [(f"{public}.{p}", f"{ours}.{o}", r) for p, o, r in _SKIP]
    if spec.video_attention:
        for part in ("spatial", "temporal"):
            pairs += [(f"{public}.{part}_attention_block.{p}", f"{ours}.video_attn.{part}.{o}", r) for p, o, r in _SELF]
    if spec.audio_attention:
        pairs += [(f"{public}.audio_attention_block.{p}", f"{ours}.audio_attn.attn.{o}", r) for p, o, r in _SELF]
    return pairs


def _cross_modules(public: str, ours: str) -> list[tuple[str, str, str]]:
    return [(f"{public}.{p}", f"{ours}.cross.{o}", r) for p, o, r in _CROSS]


def module_pairs(cfg: ModelConfig) -> list[tuple[str, str, str]]:
    """Every (public module, our module, shape rule) of the public MultimodalUNet that `cfg` rebuilds,
    grouped by block."""
    from mmdiff.nn.unet import block_specs

    down, middle, up = block_specs(cfg)
    pairs = [("time_embed.0", "time_mlp.0", "same"), ("time_embed.2", "time_mlp.2", "same"),
             ("input_blocks.0.0.video_conv.video_conv_spatial", "video_in.spatial", "same"),
             ("input_blocks.0.0.video_conv.video_conv_temporal", "video_in.temporal", "temporal"),
             ("input_blocks.0.0.audio_conv.audio_conv", "audio_in", "same")]
    for i, spec in enumerate(down):
        pairs += _block_modules(spec, f"input_blocks.{i + 1}.0", f"down.{i}")
        if spec.cross_window:
            pairs += _cross_modules(f"input_blocks.{i + 1}.1", f"down.{i}")
    pairs += _block_modules(middle[0], "middle_blocks.0", "middle.0")
    if middle[0].cross_window:
        pairs += _cross_modules("middle_blocks.1", "middle.0")
    pairs += _block_modules(middle[1], f"middle_blocks.{2 if middle[0].cross_window else 1}", "middle.1")
    out, sub = -1, 0
    for j, spec in enumerate(up):
        if spec.resample == "up":            # the public code's up-sampling block ends the preceding output block
            pairs += _block_modules(spec, f"output_blocks.{out}.{sub}", f"up.{j}")
            continue
        out += 1
        pairs += _block_modules(spec, f"output_blocks.{out}.0", f"up.{j}")
        sub = 1
        if spec.cross_window:
            pairs += _cross_modules(f"output_blocks.{out}.1", f"up.{j}")
            sub = 2
    pairs += [("video_out.0.GroupNorm", "video_out.0", "same"), ("video_out.2.video_conv", "video_out.2", "same"),
              ("audio_out.0.GroupNorm", "audio_out.0", "same"), ("audio_out.2.audio_conv", "audio_out.2", "same")]
    return pairs


def _public_shape(ours: tuple[int, ...], rule: str, leaf: str) -> tuple[int, ...]:
    tail = _TAILS[rule]
    if leaf != "weight" or tail is None:
        return ours
    if tail == (-1,):
        return ours[:-1]                  # (O, I, k, 1) -> (O, I, k)
    return ours[:2] + tail


def key_layout(cfg: ModelConfig) -> dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """public key -> (our key, public shape, our shape)."""
    from mmdiff.nn.unet import CoupledUNet

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in CoupledUNet(cfg).state_dict().items()}
    layout = {}
    for public, ours, rule in module_pairs(cfg):
        for leaf in ("weight", "bias"):
            our_key = f"{ours}.{leaf}"
            layout[f"{public}.{leaf}"] = (our_key, _public_shape(shapes[our_key], rule, leaf), shapes[our_key])
    covered = {v[0] for v in layout.values()}
    assert covered == set(shapes), f"key map misses {sorted(set(shapes) - covered)[:3]}"   # a bug here, not the file's
    return layout


def check_layout(state_dict: dict, layout: dict) -> None:
    """ConvertError naming the first unexpected, mis-shaped or missing key of `state_dict`."""
    for key, value in state_dict.items():
        if key not in layout:
            raise ConvertError(f"unexpected key {key!r}: the file does not match the chosen layout "
                               f"({len(state_dict)} keys, the layout has {len(layout)})")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ConvertError(f"key {key!r} holds {getattr(value, 'dtype', type(value).__name__)}, not a float tensor")
        if tuple(value.shape) != layout[key][1]:
            raise ConvertError(f"key {key!r} has shape {tuple(value.shape)}, the chosen layout needs "
                               f"{layout[key][1]}")
    for key in layout:
        if key not in state_dict:
            raise ConvertError(f"missing key {key!r}: the file does not match the chosen layout")


def convert_mm_diffusion(state_dict: dict, args: dict) -> dict:
    """A released (or any) public `MultimodalUNet` state dict -> an mmdiff checkpoint dict (fp32 weights
    stored as EMA, as an inference export) that `mmdiff.checkpoint.load_model` loads.

    :param args: the public model arguments by their multimodal_script_util names (missing ones: its defaults).
    """
    if not isinstance(state_dict, dict):
        raise ConvertError(f"expected a state dict (name -> tensor), found {type(state_dict).__name__}")
    cfg, dcfg = configs_from_public_args(args)
    layout = key_layout(cfg)
    check_layout(state_dict, layout)
    weights = {ours: state_dict[key].detach().to(torch.float32).reshape(our_shape).contiguous()
               for key, (ours, _, our_shape) in layout.items()}
    return checkpoint_dict(model_config=cfg, diffusion_config=dcfg, model=None, ema=weights,
                           train_args={"converted_from": "researchmm/MM-Diffusion", "public_args": public_args(args)})


def convert_release(state_dict: dict, release: str | None = None, args: dict | None = None) -> dict:
    """Convert with a release's arguments (`RELEASES`) or explicit public `args` (a multimodal model)."""
    if (release is None) == (args is None):
        raise ConvertError("give either a release name or public model arguments")
    if release is None:
        return convert_mm_diffusion(state_dict, args)
    if release not in RELEASES:
        raise ConvertError(f"unknown release {release!r}; choose one of {sorted(RELEASES)}")
    rel = RELEASES[release]
    if rel.kind == "sr":
        try:
            from mmdiff.convert_sr import convert_sr_state_dict
        except ImportError:
            raise ConvertError(f"release {release!r} is a super-resolution model, and this mmdiff has no "
                               "super-resolution converter (mmdiff/convert_sr.py)") from None
        try:
            ckpt = convert_sr_state_dict(state_dict, dict(rel.args))
        except ConvertError:
            raise
        except ValueError as e:                          # the SR converter's refusal, as one line
            raise ConvertError(str(e).splitlines()[0] if str(e) else "the SR converter refused the file") from None
    else:
        ckpt = convert_mm_diffusion(state_dict, dict(rel.args))
    ckpt["train_args"] = {**ckpt.get("train_args", {}), "release": release, "release_file": rel.file}
    return ckpt


# --- files ----------------------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict:
    """A public checkpoint file -> its state dict (torch.load with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path} does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:        # corrupt, truncated, or holding pickled code weights_only refuses
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise ConvertError(f"{path} is not a readable torch state dict ({first[:200]})") from None
    if isinstance(sd, dict) and "format" in sd and "model_config" in sd:
        raise ConvertError(f"{path} is already an mmdiff checkpoint")
    if not isinstance(sd, dict):
        raise ConvertError(f"{path} holds a {type(sd).__name__}, not a state dict")
    return sd


def convert_file(src: str | Path, dst: str | Path, release: str | None = None, args: dict | None = None,
                 overwrite: bool = False) -> Path:
    """Read `src`, convert it, and write the mmdiff checkpoint atomically to `dst` (refusing to replace
    an existing file unless `overwrite`)."""
    dst = Path(dst)
    check_output_file(dst, "converted.pt")
    if dst.exists() and not overwrite:
        raise ConvertError(f"{dst} exists; pass --overwrite to replace it")
    if Path(src).resolve() == dst.resolve():
        raise ConvertError("--out must differ from the source file")
    return atomic_torch_save(convert_release(read_state_dict(src), release, args), dst)


PUBLIC_MULTIMODAL_KEY = "input_blocks.0.0.video_conv.video_conv_spatial.weight"   # marks a MultimodalUNet file


def converted_upload(path: str | Path, args: dict | None = None) -> Path | None:
    """For a released MM-Diffusion multimodal file (AIST++.pt or Landscape.pt: one architecture), the path
    of its mmdiff conversion, written once beside it (hidden, named by the source's content hash);
    None when the file is no public multimodal state dict. ConvertError when it is one that does not fit.
    :param args: public model arguments (default: the releases')."""
    from mmdiff.atomic import file_sha256

    path = Path(path)
    try:
        sd = read_state_dict(path)
    except ConvertError:
        return None
    if PUBLIC_MULTIMODAL_KEY not in sd:
        return None
    dst = path.parent / f".{path.stem}.{file_sha256(path)[:16]}.mmdiff.pt"
    if not dst.is_file():
        ckpt = convert_mm_diffusion(sd, dict(args if args is not None else RELEASES["aist++"].args))
        ckpt["train_args"]["release"] = "AIST++.pt or Landscape.pt (uploaded; same architecture)"
        atomic_torch_save(ckpt, dst)
    return dst


def _read_args(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConvertError(f"cannot read --args {path}: {e}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmdiff.convert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", choices=SOURCES, help="whose checkpoint format the file is in")
    ap.add_argument("src", help="the public checkpoint file (a state dict, e.g. AIST++.pt)")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--release", choices=sorted(RELEASES), help="which released file it is (picks its arguments)")
    group.add_argument("--args", metavar="FILE.json",
                       help="JSON object of the public code's model arguments (multimodal_script_util names)")
    ap.add_argument("--out", required=True, help="the mmdiff checkpoint to write")
    ap.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    opts = ap.parse_args(argv)
    try:
        args = _read_args(opts.args) if opts.args else None
        out = convert_file(opts.src, opts.out, opts.release, args, opts.overwrite)
    except (ConvertError, OutputDirError) as e:
        return fail(e)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
