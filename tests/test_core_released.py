"""The released MM-Diffusion architecture and its converter, against outputs of the PUBLIC code.

References in tests/data/mm_diffusion/ come from researchmm/MM-Diffusion itself (make_reference.py there,
upstream commit recorded in it): a reduced MultimodalUNet with seeded random weights in the public layout,
its outputs on fixed inputs with R = 0 and with the shifts it drew, and the full released key layout.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mmdiff
from mmdiff.checkpoint import load_model
from mmdiff.config import MM_DIFFUSION, PAPER, ModelConfig
from mmdiff.convert import (RELEASES, ConvertError, configs_from_public_args, convert_mm_diffusion, key_layout,
                            main as convert_main)
from mmdiff.nn.attention import RSMMA
from mmdiff.nn.unet import CoupledUNet

DATA = Path(__file__).parent / "data" / "mm_diffusion"


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def released():
    return json.loads((DATA / "released_layout.json").read_text())


@pytest.fixture(scope="module")
def reduced():
    """(public state dict, public args, stored inputs/outputs) of the reduced reference model."""
    w = np.load(DATA / "reduced_weights.npz")
    sd = {str(k): float(w["offsets"][i]) + torch.from_numpy(w[f"q{i}"]).float() * float(w["scales"][i])
          for i, k in enumerate(w["keys"])}
    return sd, json.loads((DATA / "reduced_args.json").read_text()), dict(np.load(DATA / "reduced_io.npz"))


def build(ckpt: dict) -> CoupledUNet:
    model = CoupledUNet(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["ema"], strict=True)
    return model.eval()


def rel_err(got: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(got.numpy() - ref).max() / np.abs(ref).max())


# --- the architecture ---------------------------------------------------------------------------------
def test_mm_diffusion_preset_has_the_public_parameter_count(released):
    with torch.device("meta"):
        model = mmdiff.build_model("mm-diffusion")
    assert n_params(model) == released["parameters"] == 133_675_524
    assert PAPER == MM_DIFFUSION and mmdiff.PRESETS["paper"] == mmdiff.PRESETS["mm-diffusion"]
    assert configs_from_public_args(RELEASES["aist++"].args)[0] == MM_DIFFUSION


def test_configs_saved_before_the_switches_rebuild_unchanged():
    old = ModelConfig().to_dict()
    for field in ("audio_dilation_schedule", "self_attention_heads", "self_attention_norm", "video_head",
                  "middle_cross"):
        old.pop(field)
    with torch.device("meta"):
        model = mmdiff.build_model(old)
    assert n_params(model) == 133_668_642          # the earlier `paper` model (2D+1D head, LayerNorm)
    assert isinstance(model.down[3].video_attn.spatial.norm, torch.nn.LayerNorm)


def test_audio_dilations_are_the_public_ones(released):
    """Every public audio conv's dilation (read from the public modules) equals ours at the same key."""
    layout = key_layout(MM_DIFFUSION)
    with torch.device("meta"):
        model = mmdiff.build_model("mm-diffusion")
    modules = dict(model.named_modules())
    assert len(released["audio_dilations"]) == 11 + 2 + 15
    for name, dilation in released["audio_dilations"].items():
        ours = layout[f"{name}.weight"][0].rsplit(".", 1)[0]
        assert modules[ours].dilation[0] == dilation, name


def test_released_layout_converts_loads_strictly_and_runs(released):
    gen = torch.Generator().manual_seed(0)
    shapes = {k: torch.Size(s) for k, s in released["state_dict"].items()}
    pool = (torch.randn(max(s.numel() for s in shapes.values()), generator=gen) * 0.02).half()
    sd = {k: pool[:s.numel()].view(s) for k, s in shapes.items()}          # random fp16, as released (use_fp16)
    ckpt = convert_mm_diffusion(sd, RELEASES["landscape"].args)
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    with torch.device("meta"):
        model = CoupledUNet(cfg)
    model.load_state_dict(ckpt["ema"], strict=True, assign=True)            # strict: every key, every shape
    with torch.no_grad():
        ev, ea = model.eval()(torch.randn(1, *cfg.video_shape, generator=gen),
                              torch.randn(1, *cfg.audio_shape, generator=gen), torch.tensor([500]), shift=0)
    assert ev.shape == (1, 16, 3, 64, 64) and ea.shape == (1, 1, 25_600)
    assert torch.isfinite(ev).all() and torch.isfinite(ea).all() and ev.abs().max() > 0


# --- equivalence with the public code -------------------------------------------------------------------
@pytest.mark.parametrize("shifts", ["zero", "recorded"])
def test_reduced_model_matches_public_outputs(reduced, shifts):
    sd, args, io = reduced
    model = build(convert_mm_diffusion(sd, args))
    windowed = [b for b in model.modules() if isinstance(b, RSMMA) and b.window < b.frames]
    recorded = [int(r) for r in io[f"shifts_{shifts}"]]
    assert len(windowed) == len(recorded) == 9              # the public code drew one R per windowed block call
    for block, r in zip(windowed, recorded):                # replay them in call order
        block.draw_shift = lambda generator=None, r=r: r
    with torch.no_grad():
        ev, ea = model(torch.from_numpy(io["video"]), torch.from_numpy(io["audio"]), torch.from_numpy(io["t"]))
    assert rel_err(ev, io[f"video_out_{shifts}"]) < 1e-5
    assert rel_err(ea, io[f"audio_out_{shifts}"]) < 1e-5


def test_reference_outputs_depend_on_inputs_and_shifts(reduced):
    _, _, io = reduced
    assert len(set(io["shifts_recorded"].tolist())) > 3
    assert rel_err(torch.from_numpy(io["video_out_zero"]), io["video_out_recorded"]) > 1e-2
    assert np.abs(io["video_out_zero"][0] - io["video_out_zero"][1]).max() > 0.1


def test_fp16_file_converts_to_the_same_model(reduced):
    sd, args, io = reduced
    a = convert_mm_diffusion(sd, args)["ema"]
    b = convert_mm_diffusion({k: v.half() for k, v in sd.items()}, args)["ema"]   # the values are fp16-exact
    assert all(torch.equal(a[k], b[k]) and b[k].dtype == torch.float32 for k in a)


# --- refusals --------------------------------------------------------------------------------------------
def test_mismatched_files_name_the_first_offending_key(reduced):
    sd, args, _ = reduced
    missing = dict(sd)
    missing.pop("input_blocks.3.1.v_qkv.weight")
    with pytest.raises(ConvertError, match=r"missing key 'input_blocks.3.1.v_qkv.weight'"):
        convert_mm_diffusion(missing, args)
    with pytest.raises(ConvertError, match=r"unexpected key 'label_emb.weight'"):
        convert_mm_diffusion({**sd, "label_emb.weight": torch.zeros(3)}, args)
    bad = {**sd, "video_out.2.video_conv.weight": torch.zeros(3, 32, 1, 3, 3)}
    with pytest.raises(ConvertError, match=r"'video_out.2.video_conv.weight' has shape \(3, 32, 1, 3, 3\)"):
        convert_mm_diffusion(bad, args)
    with pytest.raises(ConvertError, match=r"key 'time_embed.0.weight' has shape"):     # wrong release for the file
        convert_mm_diffusion(sd, RELEASES["aist++"].args)


@pytest.mark.parametrize("change,message", [
    ({"learn_sigma": True}, "learn_sigma=True is not supported"),
    ({"num_head_channels": -1}, "num_head_channels=-1"),
    ({"bogus": 1}, "unknown public model argument 'bogus'"),
    ({"cross_attention_windows": "1,4"}, "2 cross_attention_windows for 3 resolutions"),
    ({"video_size": "16,3,48,64"}, "only square frames"),
])
def test_unsupported_public_arguments_are_refused(change, message):
    with pytest.raises(ConvertError, match=message):
        configs_from_public_args({**RELEASES["aist++"].args, **change})


def test_cli_converts_refuses_overwrite_and_bad_files(reduced, tmp_path, capsys):
    sd, args, _ = reduced
    src, spec, out = tmp_path / "public.pt", tmp_path / "args.json", tmp_path / "converted.pt"
    torch.save({k: v.half() for k, v in sd.items()}, src)
    spec.write_text(json.dumps(args))
    assert convert_main(["mm-diffusion", str(src), "--args", str(spec), "--out", str(out)]) == 0
    model, schedule = load_model(out)
    assert model.config.video_head == "3d" and schedule.num_timesteps == 1000
    before = out.read_bytes()
    assert convert_main(["mm-diffusion", str(src), "--args", str(spec), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err and out.read_bytes() == before
    assert convert_main(["mm-diffusion", str(src), "--args", str(spec), "--out", str(out), "--overwrite"]) == 0
    # a folder as --out, even with --overwrite: one line, the folder untouched
    (tmp_path / "outdir").mkdir()
    assert convert_main(["mm-diffusion", str(src), "--args", str(spec), "--out", str(tmp_path / "outdir"),
                         "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and "is a folder" in err and err.count("\n") == 1
    assert (tmp_path / "outdir").is_dir() and not any((tmp_path / "outdir").iterdir())
    # the wrong release for the file: one line naming the key
    assert convert_main(["mm-diffusion", str(src), "--release", "aist++", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: key 'time_embed.0.weight' has shape") and err.count("\n") == 1
    assert not (tmp_path / "x.pt").exists()
    # a pickle holding code is refused by torch.load(weights_only=True), not executed
    evil = tmp_path / "evil.pt"
    torch.save({"x": Path("nope")}, evil)
    assert convert_main(["mm-diffusion", str(evil), "--release", "aist++", "--out", str(tmp_path / "y.pt")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    # an mmdiff checkpoint is not a public file
    assert convert_main(["mm-diffusion", str(out), "--release", "aist++", "--out", str(tmp_path / "z.pt")]) == 2
    assert "already an mmdiff checkpoint" in capsys.readouterr().err


def test_sr_release_without_sr_converter_is_a_clear_error(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "mmdiff.convert_sr", None)       # as if mmdiff/convert_sr.py were absent
    src = tmp_path / "sr.pt"
    torch.save({"time_embed.0.weight": torch.zeros(2, 2)}, src)
    assert convert_main(["mm-diffusion", str(src), "--release", "aist++-sr", "--out", str(tmp_path / "o.pt")]) == 2
    assert "no super-resolution converter" in capsys.readouterr().err


def test_public_arguments_as_the_argparser_writes_them():
    strings = {k: str(v) for k, v in RELEASES["aist++"].args.items()}      # "True", "128", "0.1", "2,4,8"
    assert configs_from_public_args(strings)[0] == MM_DIFFUSION
    with pytest.raises(ConvertError, match="resblock_updown='maybe' is not a boolean"):
        configs_from_public_args({"resblock_updown": "maybe"})


# --- a converted file works where a checkpoint works ------------------------------------------------------
SMALL_ARGS = {"video_size": "16,3,16,16", "audio_size": "1,12800", "num_channels": 32, "num_res_blocks": 1,
              "channel_mult": "1,1", "num_head_channels": 32, "cross_attention_resolutions": "2",
              "cross_attention_windows": "1", "video_attention_resolutions": "2", "resblock_updown": True}


def random_public_file(path: Path, args: dict, seed: int = 0) -> Path:
    """Random weights in the public layout of `args` (its key -> shape from the converter's map)."""
    gen = torch.Generator().manual_seed(seed)
    cfg, _ = configs_from_public_args(args)
    torch.save({k: (torch.randn(shape, generator=gen) * 0.05).half() for k, (_, shape, _) in key_layout(cfg).items()},
               path)
    return path


def test_converted_file_samples_and_evaluates(tmp_path, capsys):
    from eval.run import main as eval_main
    from mmdiff.sample import main as sample_main
    from tests.eval_helpers import write_clip_folder, write_synthetic_i3d

    spec = tmp_path / "args.json"
    spec.write_text(json.dumps(SMALL_ARGS))
    src = random_public_file(tmp_path / "public.pt", SMALL_ARGS)
    ckpt = tmp_path / "converted.pt"
    assert convert_main(["mm-diffusion", str(src), "--args", str(spec), "--out", str(ckpt)]) == 0
    model, _ = load_model(ckpt)
    assert not model.config.middle_cross and model.config.audio_rate == 8000   # windows != 1,4,8: no middle RS-MMA
    out = tmp_path / "samples"
    assert sample_main(["--ckpt", str(ckpt), "--num", "1", "--sampler", "ddim", "--steps", "2", "--out", str(out),
                        "--device", "cpu", "--shift", "seeded"]) == 0
    assert (out / "sample_000000.mp4").stat().st_size > 0
    assert json.loads((out / "manifest.json").read_text())["shift"] == "seeded"
    write_synthetic_i3d(tmp_path / "weights")
    write_clip_folder(tmp_path / "real", 3, seed=1, size=16, frames=16)
    result = tmp_path / "res.json"
    assert eval_main(["--metric", "fvd", "--real", str(tmp_path / "real"), "--ckpt", str(ckpt), "--num-samples", "2",
                      "--runs", "1", "--frames", "9", "--video-size", "16", "--batch-size", "2", "--sampler", "ddim",
                      "--steps", "2", "--weights-dir", str(tmp_path / "weights"), "--cache-dir",
                      str(tmp_path / "cache"), "--device", "cpu", "--out", str(result)]) == 0
    assert np.isfinite(json.loads(result.read_text())["runs"][0]["fvd"])


def test_studio_converts_an_uploaded_public_file_once(tmp_path, monkeypatch):
    import types

    import mmdiff.convert as conv
    from studio.generate_tab import checked_checkpoint

    monkeypatch.setitem(conv.RELEASES, "aist++", conv.Release("AIST++.pt", "joint", SMALL_ARGS))  # small stand-in
    src = random_public_file(tmp_path / "AIST++.pt", SMALL_ARGS)
    ctx = types.SimpleNamespace(checkpoint_for=lambda choice, upload: Path(upload))
    path = checked_checkpoint(ctx, None, str(src))
    assert path != src and path.parent == src.parent and load_model(path)[0].config.base_channels == 32
    stamp = path.stat().st_mtime_ns
    assert checked_checkpoint(ctx, None, str(src)) == path and path.stat().st_mtime_ns == stamp   # cached
    assert conv.converted_upload(tmp_path / "args.json") is None                                     # not a state dict
    other = tmp_path / "other.pt"
    torch.save({conv.PUBLIC_MULTIMODAL_KEY: torch.zeros(1)}, other)
    with pytest.raises(Exception, match="cannot be converted: missing key|has shape"):
        checked_checkpoint(ctx, None, str(other))
