"""MM-Diffusion's released super-resolution model: the `mm-diffusion-sr` preset, the converter of the public
state dicts (mmdiff.convert_sr), equivalence with the public code's outputs on the same weights, and its SR
sampling (DDIM on the ddim25 respacing, shared noise). References: tests/data/mm_diffusion_sr/ (made by
make_reference.py there from researchmm/MM-Diffusion at the commit recorded in reduced.json)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdiff.checkpoint import atomic_torch_save, checkpoint_config, load_sr_model, load_weights, save_checkpoint
from mmdiff.config import SR_MM_DIFFUSION, SR_PAPER, SR_PRESETS, DiffusionConfig, SRConfig, resolve_sr_config
from mmdiff.convert_sr import (SR_RELEASES, ConversionError, convert_sr_state_dict, public_sr_layout,
                               sr_config_from_args)
from mmdiff.diffusion.samplers import spaced_timesteps
from mmdiff.diffusion.schedule import Schedule
from mmdiff.generate import SamplerOptions
from mmdiff.nn.sr_unet import SRUNet, upsample_condition
from mmdiff.upscale import SR_SAMPLING, initial_noise, stride_timesteps, upscale

DATA = Path(__file__).parent / "data" / "mm_diffusion_sr"
META = json.loads((DATA / "reduced.json").read_text())
REF = np.load(DATA / "reduced.npz")


def _make_reference():
    spec = importlib.util.spec_from_file_location("mm_diffusion_sr_reference", DATA / "make_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE_REFERENCE = _make_reference()


@pytest.fixture(scope="module")
def reduced_weights():
    """The public model's seeded weights (float16, public key names), as make_reference.py drew them."""
    weights = MAKE_REFERENCE.random_weights(META["layout"], META["seeds"]["weights"])
    assert MAKE_REFERENCE.weights_sha256(weights) == META["weights_sha256"]     # the same weights as the reference
    return weights


@pytest.fixture(scope="module")
def reduced_model(reduced_weights, tmp_path_factory):
    """The converted reduced model, saved and loaded back through the SR loader (strict keys)."""
    path = tmp_path_factory.mktemp("sr") / "reduced.pt"
    atomic_torch_save(convert_sr_state_dict(reduced_weights, META["args"]), path)
    model, schedule = load_sr_model(path)
    return model, schedule


def _assert_close(ours: torch.Tensor, ref: np.ndarray, rtol: float = 1e-5) -> None:
    ref = torch.from_numpy(ref)
    err = (ours - ref).abs().max().item()
    assert err <= rtol * ref.abs().max().item(), (err, ref.abs().max().item())


# --- the preset ---------------------------------------------------------------------------------------------
def test_mm_diffusion_sr_preset_is_the_released_network_to_the_parameter():
    with torch.device("meta"):
        model = SRUNet(SR_PRESETS["mm-diffusion-sr"])
    assert sum(p.numel() for p in model.parameters()) == 311_027_910
    assert sr_config_from_args(SR_RELEASES["landscape-sr"])[0] == SR_MM_DIFFUSION
    assert sr_config_from_args(SR_RELEASES["aist++-sr"])[0] == SR_MM_DIFFUSION
    assert resolve_sr_config("mm-diffusion-sr") == SR_MM_DIFFUSION


def test_old_sr_configs_rebuild_unchanged():
    old = {k: v for k, v in SR_PAPER.to_dict().items() if k not in ("resample_first", "attention", "num_heads")}
    cfg = SRConfig.from_dict(old)
    assert cfg == SR_PAPER and not cfg.resample_first and cfg.attention == "token" and cfg.num_heads == 0
    with pytest.raises(ValueError, match="attention must be one of"):
        SRConfig(attention="flash")
    with pytest.raises(ValueError, match="not a multiple of num_heads 5"):
        SR_MM_DIFFUSION.replace(num_heads=5)


def test_released_layout_is_what_the_converter_expects():
    """layout.json: the public code's own state dict (key -> shape) for the released flags."""
    released = json.loads((DATA / "layout.json").read_text())
    layout = public_sr_layout(SR_MM_DIFFUSION)
    assert list(layout) == list(released)
    assert {k: v[1] for k, v in layout.items()} == {k: tuple(v) for k, v in released.items()}


# --- equivalence with the public code -----------------------------------------------------------------------
def test_converted_reduced_model_matches_the_public_forward(reduced_model):
    model, _ = reduced_model
    cfg = model.config
    assert cfg.resample_first and cfg.attention == "adm" and cfg.num_heads == 4 and cfg.attention_scales == (3, 4)
    x_t, t = torch.from_numpy(REF["x_t"]), torch.from_numpy(REF["t"])
    low_up = upsample_condition(torch.from_numpy(REF["low_res"]), cfg.high_size)
    with torch.no_grad():
        out = model(x_t, low_up, t)                                  # (2, 6, 64, 64): eps and the variance half
    assert out.shape == REF["output"].shape
    _assert_close(out, REF["output"])
    assert (REF["output"][0] - REF["output"][1]).std() > 0.1        # the two inputs give different outputs


def test_public_sampling_matches_the_public_ddim25_run(reduced_model):
    """SR_SAMPLING["public"]: the released script's DDIM 25 (ddim25 respacing, eta 0, clip_denoised, one noise
    map per clip drawn from the call's generator) gives the public sampler's state and sample."""
    model, schedule = reduced_model
    d = META["ddim"]
    assert stride_timesteps(1000, 25) == d["timesteps"]
    low = torch.from_numpy(REF["ddim_low_res"])
    video = low.view(d["clips"], d["frames"], *low.shape[1:])                   # (B, F, 3, 16, 16)
    states = {}

    def keep(info):
        states[info["step"]] = (info["t"], info["x"].clone())

    out = upscale(model, video, seed=META["seeds"]["noise"], schedule=schedule, callback=keep,
                  **SR_SAMPLING["public"].kwargs())                             # (B, F, 3, 64, 64)
    assert [states[i][0] for i in sorted(states)] == d["timesteps"][::-1]
    _assert_close(states[12][1].view(REF["ddim_step12"].shape), REF["ddim_step12"], rtol=1e-4)
    _assert_close(out.flatten(0, 1), REF["ddim_sample"], rtol=1e-4)
    # our default grid (linspace 999 .. 0) is another one: only the "stride" spacing is the public run
    assert spaced_timesteps(schedule, 25)[::-1] != d["timesteps"]


def test_public_sampling_draws_its_shared_noise_from_the_calls_generator(perturbed):
    cfg = SR_MM_DIFFUSION.replace(low_size=8, high_size=32, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                                  attention_scales=(2,), time_embed_dim=32)
    model, schedule = perturbed(SRUNet(cfg)).eval(), Schedule()
    video = torch.rand(1, 2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1   # (B, F, 3, h, w)
    public = SR_SAMPLING["public"]
    assert public.options.sampler == "ddim" and public.options.steps == 25 and public.options.eta == 0.0
    assert public.options.clip_denoised and public.noise == "shared" and public.spacing == "stride"
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = upscale(model, video, seed=3, schedule=schedule, **public.kwargs())
    assert torch.equal(torch.get_rng_state(), before)                          # the global RNG is untouched
    torch.manual_seed(99)
    b = upscale(model, video, seed=3, schedule=schedule, **public.kwargs())
    assert torch.equal(a, b)                                                    # one seed, one sample
    assert not torch.equal(a, upscale(model, video, seed=4, schedule=schedule, **public.kwargs()))
    x_T = initial_noise(1, 2, 12, "shared", torch.Generator().manual_seed(3), "cpu")
    assert torch.equal(x_T[0], x_T[1])


def test_sample_cli_upscales_as_the_public_script_with_stride_spacing(perturbed, tmp_path):
    """`mmdiff.sample --upscale SR.pt --upscale-spacing stride` (with the default DDIM 25, shared noise) is
    SR_SAMPLING["public"]."""
    from types import SimpleNamespace

    from mmdiff.sample import UpscaleOptions, load_upscaler, parse_args

    args = parse_args(["--out", str(tmp_path / "o"), "--upscale", "sr.pt", "--upscale-spacing", "stride"])
    opts = UpscaleOptions(args.upscale, args.upscale_sampler, args.upscale_steps, args.upscale_noise,
                          spacing=args.upscale_spacing)
    assert (opts.sampler, opts.steps, opts.noise, opts.spacing) == ("ddim", 25, "shared", "stride")
    cfg = SR_MM_DIFFUSION.replace(low_size=8, high_size=32, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                                  attention_scales=(2,), time_embed_dim=32)
    model = perturbed(SRUNet(cfg)).eval()
    path = save_checkpoint(tmp_path / "sr.pt", model_config=cfg, diffusion_config=DiffusionConfig(), model=None,
                           ema=model.state_dict())
    upscaler = load_upscaler(UpscaleOptions(str(path), spacing="stride"), SimpleNamespace(video_size=8), "cpu")
    video = torch.rand(1, 2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    expected = upscale(model, video, seed=5, schedule=Schedule(), **SR_SAMPLING["public"].kwargs())
    assert torch.equal(upscaler(video, 5), expected)
    with pytest.raises(SystemExit):
        parse_args(["--out", "o", "--upscale", "sr.pt", "--upscale-spacing", "stride", "--upscale-sampler", "ddpm"])


def test_stride_spacing_is_for_ddim_only(reduced_model):
    model, schedule = reduced_model
    video = torch.zeros(1, 1, 3, 16, 16)
    with pytest.raises(ValueError, match="'stride' for DDIM only"):
        upscale(model, video, SamplerOptions("dpm-solver++", steps=5), schedule=schedule, spacing="stride")
    with pytest.raises(ValueError, match="no integer stride gives exactly 7"):
        stride_timesteps(10, 7)


# --- the converter ------------------------------------------------------------------------------------------
def test_full_released_layout_converts_and_loads_strictly():
    """Random weights in the full released layout (fp16, as the released scripts run) -> convert -> strict load
    (load_weights: the SR loader's step after reading the file; the reduced model goes through the file)."""
    g = torch.Generator().manual_seed(0)
    pool = torch.randn(1 << 20, generator=g).half()                     # slices of one random pool: fast
    released = json.loads((DATA / "layout.json").read_text())
    state = {}
    for k, shape in released.items():
        n, start = int(np.prod(shape)), int(torch.randint(0, 1 << 19, (1,), generator=g))
        state[k] = pool[start:start + n].repeat((n + (1 << 19) - 1) // (1 << 19))[:n].view(shape)
    ckpt = convert_sr_state_dict(state, SR_RELEASES["landscape-sr"])
    assert ckpt["kind"] == "sr" and ckpt["model"] is None
    with torch.device("meta"):
        model = SRUNet(checkpoint_config(ckpt, "landscape_sr", "sr"))
    model = load_weights(model.to_empty(device="cpu"), ckpt, "landscape_sr", use_ema=True, device="cpu")
    assert model.config == SR_MM_DIFFUSION and ckpt["diffusion_config"] == DiffusionConfig().to_dict()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ours = dict(model.named_parameters())["down.9.attn.proj.weight"]     # a Conv1d (C, C, 1) -> Linear (C, C)
    assert torch.equal(ours, state["input_blocks.10.1.proj_out.weight"][..., 0].float())


def test_qkv_rows_are_reordered_from_the_legacy_packing(reduced_weights):
    """ADM's qkv rows are [head][q, k, v][channel]; ours [q, k, v][head][channel]: head 1's q rows move."""
    ckpt = convert_sr_state_dict(reduced_weights, META["args"])
    pub = reduced_weights["middle_block.1.qkv.weight"][..., 0].float()          # (3 * 128, 128), 4 heads of 32
    ours = ckpt["ema"]["middle.0.attn.qkv.weight"]
    assert torch.equal(ours[32:64], pub[96:128])       # q of head 1: rows 32..63 here, 96..127 there
    assert torch.equal(ours[128:160], pub[32:64])      # k of head 0


def test_mismatches_are_refused_naming_the_first_key(reduced_weights):
    args = META["args"]
    missing = dict(reduced_weights)
    del missing["input_blocks.2.0.in_layers.2.weight"]
    with pytest.raises(ConversionError, match=r"1 missing key\(s\), first 'input_blocks.2.0.in_layers.2.weight'"):
        convert_sr_state_dict(missing, args)
    extra = {**reduced_weights, "label_emb.weight": torch.zeros(3, 128)}
    with pytest.raises(ConversionError, match=r"1 unexpected key\(s\), first 'label_emb.weight'"):
        convert_sr_state_dict(extra, args)
    shaped = {**reduced_weights, "out.2.weight": torch.zeros(3, 32, 3, 3)}
    with pytest.raises(ConversionError, match=r"mis-shaped key\(s\), first 'out.2.weight': \(3, 32, 3, 3\) in the "
                                              r"file, \(6, 32, 3, 3\) expected"):
        convert_sr_state_dict(shaped, args)
    with pytest.raises(ConversionError, match="missing key"):
        convert_sr_state_dict(reduced_weights, SR_RELEASES["aist++-sr"])       # reduced weights, released args


def test_arguments_the_converter_cannot_rebuild_are_refused():
    with pytest.raises(ConversionError, match="sr_resblock_updown False"):
        sr_config_from_args({**SR_RELEASES["landscape-sr"], "sr_resblock_updown": "False"})
    with pytest.raises(ConversionError, match="large_size 128"):
        sr_config_from_args({**SR_RELEASES["landscape-sr"], "large_size": 128})
    with pytest.raises(ConversionError, match="argument sr_num_channels: expected a int"):
        sr_config_from_args({**SR_RELEASES["landscape-sr"], "sr_num_channels": "wide"})
    with pytest.raises(ConversionError, match="sr_attention_resolutions: expected comma-separated integers"):
        sr_config_from_args({**SR_RELEASES["landscape-sr"], "sr_attention_resolutions": "8;16"})
    assert sr_config_from_args({**SR_RELEASES["landscape-sr"], "sr_attention_resolutions": [32, 16, 8]})[0] \
        == SR_MM_DIFFUSION                                                     # a JSON list, in any order
    # argparse-style strings and keys of the joint model are taken as the public argparser takes them
    cfg, _ = sr_config_from_args({**{k: str(v) for k, v in SR_RELEASES["aist++-sr"].items()}, "num_channels": 128})
    assert cfg == SR_MM_DIFFUSION
