"""Paper ablations as configs: Table 3 window sizes, no random shift, single streams, easy fusion; old
configs (saved before a field existed) still load as they were."""
import pytest
import torch

import mmdiff
from mmdiff.checkpoint import default_checkpoint, load_checkpoint, load_model
from mmdiff.config import ABLATION_PRESETS, PAPER, TABLE3_WINDOWS, TINY, ModelConfig, ablation_config, resolve_config
from mmdiff.nn.attention import RSMMA

SMALL = TINY.replace(base_channels=8, head_dim=8)


def test_config_dicts_saved_before_cross_fusion_load_unchanged():
    for cfg in (TINY, PAPER):
        old = {k: v for k, v in cfg.to_dict().items() if k != "cross_fusion"}
        assert ModelConfig.from_dict(old) == cfg and ModelConfig.from_dict(old).cross_fusion == "rsmma"


def test_checkpoint_written_before_the_new_fields_still_loads(tmp_path):
    import torch

    ckpt = load_checkpoint(default_checkpoint())               # the shipped model takes text; the first ones did not
    for field in ("cross_fusion", "text_dim", "text_encoder", "text_scale"):  # fields added after the first checkpoints
        ckpt["model_config"].pop(field, None)
    for part in ("model", "ema"):
        if ckpt.get(part):
            ckpt[part] = {k: v for k, v in ckpt[part].items() if not k.startswith("text_mlp.")}
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    model, _ = load_model(old)
    assert model.config.cross_fusion == "rsmma" and any(isinstance(m, RSMMA) for m in model.modules())
    fresh = ModelConfig()
    assert model.config == load_model()[0].config.replace(text_dim=fresh.text_dim, text_encoder=fresh.text_encoder,
                                                          text_scale=fresh.text_scale)


def test_cross_fusion_is_validated():
    with pytest.raises(ValueError, match="cross_fusion"):
        TINY.replace(cross_fusion="concat")


def test_ablation_config_validates_window_count():
    assert ablation_config(TINY, windows=[4, 8]).cross_windows == (4, 8)
    with pytest.raises(ValueError, match="2 attention scales"):
        ablation_config(TINY, windows=(1, 4, 8))
    with pytest.raises(ValueError, match="RS-MMA window 32"):
        ablation_config(TINY, windows=(1, 32))
    assert ablation_config(TINY) is TINY
    assert ablation_config(TINY, random_shift=False).random_shift is False


def test_named_ablations_resolve():
    assert {f"paper-{k}" for k in TABLE3_WINDOWS} <= set(ABLATION_PRESETS)
    assert resolve_config("paper-w444").cross_windows == (4, 4, 4)
    assert resolve_config("paper-w111").cross_windows == (1, 1, 1)
    assert resolve_config("paper-w888").cross_windows == (8, 8, 8)
    assert resolve_config("paper-w148") == PAPER
    assert resolve_config("paper-no-rs") == PAPER.replace(random_shift=False)
    assert resolve_config("paper-v").modalities == ("video",) and resolve_config("paper-a").modalities == ("audio",)
    assert resolve_config("paper-easy").cross_fusion == "easy"
    with pytest.raises(ValueError, match="paper-w444"):
        resolve_config("paper-w999")


@pytest.mark.parametrize("name", [f"paper-{k}" for k in TABLE3_WINDOWS])
def test_table3_paper_configs_build_with_their_windows(name):
    cfg = resolve_config(name)
    with torch.device("meta"):
        model = mmdiff.build_model(cfg)
        ev, ea = model(torch.randn(1, *cfg.video_shape), torch.randn(1, *cfg.audio_shape), torch.tensor([3]))
    assert ev.shape == (1, *cfg.video_shape) and ea.shape == (1, *cfg.audio_shape)
    blocks = [m for m in model.modules() if isinstance(m, RSMMA)]
    by_width = {}
    for b in blocks:
        by_width.setdefault(b.video_qkv.in_features, set()).add(b.window)
    # scale s has width 128 * mult[s-1]; the middle block (width 512) attends over all 16 frames
    assert by_width[256] == {cfg.cross_windows[0]} and by_width[384] == {cfg.cross_windows[1]}
    assert by_width[512] == {cfg.cross_windows[2], 16}


@pytest.mark.parametrize("windows", [(1, 1), (4, 4), (8, 8), (1, 4)])
def test_window_configs_run_a_real_forward(windows, perturbed):
    cfg = ablation_config(SMALL, windows=windows)
    torch.manual_seed(0)
    model = perturbed(mmdiff.build_model(cfg)).eval()
    v, a = torch.randn(1, *cfg.video_shape), torch.randn(1, *cfg.audio_shape)
    with torch.no_grad():
        ev, ea = model(v, a, torch.tensor([400]))
    assert ev.shape == v.shape and ea.shape == a.shape and torch.isfinite(ev).all() and torch.isfinite(ea).all()


@pytest.mark.parametrize("modalities", [("video",), ("audio",)])
def test_single_stream_submodel_takes_a_training_step(modalities):
    from mmdiff.diffusion import JointLayout, Schedule
    from mmdiff.train import joint_loss_fn

    cfg = ablation_config(SMALL, modalities=modalities)
    torch.manual_seed(0)
    model = mmdiff.build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = (torch.rand(2, *cfg.video_shape) * 2 - 1, torch.rand(2, *cfg.audio_shape) * 2 - 1)  # as the dataset gives
    terms = joint_loss_fn(JointLayout.from_config(cfg), Schedule())(model, batch, torch.Generator().manual_seed(0))
    assert set(terms) == {"loss", *modalities}
    terms["loss"].backward()
    opt.step()
    assert all(p.grad is not None for p in model.parameters())
