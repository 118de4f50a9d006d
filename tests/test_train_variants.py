"""mmdiff.train's ablation and CMMD flags: parsing and validation, and one real step of each variant
through the CLI (synthetic cache, tiny preset, 1 step) with its terms in log.csv."""
import csv

import pytest
import torch

from mmdiff.checkpoint import load_checkpoint
from mmdiff.config import PAPER, TINY
from mmdiff.data import synthetic
from mmdiff.train import main, parse_args, variant_config


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    synthetic.main(["--out", str(out), "--num", "4", "--seed", "0", "--preset", "tiny", "--cache", "--quiet"])
    return out


def parse(*flags):
    return parse_args(["--data", "d", "--out", "o", *flags])


def test_flags_build_the_ablation_config():
    args = parse("--cross-windows", "4,4", "--modalities", "video", "--cross-fusion", "easy")
    cfg = variant_config(args, TINY)
    assert cfg.cross_windows == (4, 4) and cfg.modalities == ("video",) and cfg.cross_fusion == "easy"
    assert variant_config(parse(), TINY) == TINY
    assert variant_config(parse("--preset", "paper", "--cross-windows", "8,8,8"), PAPER).cross_windows == (8, 8, 8)
    assert parse("--preset", "paper-w444").preset == "paper-w444"


@pytest.mark.parametrize("flags,match", [
    (["--cross-windows", "1,4,8"], "2 attention scales"),               # tiny has scales (2, 3)
    (["--cross-windows", "1,x"], "comma-separated integers"),
    (["--preset", "paper", "--cross-windows", "1,4"], "3 attention scales"),
    (["--modalities", "audio", "--cond-prob", "0.5"], "need both modalities"),
    (["--modalities", "video", "--contrastive-weight", "0.1"], "need both modalities"),
    (["--cond-prob", "1.5"], "cond-prob"),
    (["--contrastive-weight", "0.1", "--batch-size", "1"], "batch-size >= 2"),
    (["--modalities", "speech"], "invalid choice"),
])
def test_bad_flags_are_refused(flags, match, capsys):
    with pytest.raises(SystemExit):
        parse(*flags)
    assert match in capsys.readouterr().err


def run(tmp_path, cache, name, *flags):
    out = tmp_path / name
    assert main(["--data", str(cache), "--out", str(out), "--preset", "tiny", "--steps", "1", "--batch-size", "2",
                 "--preview-every", "0", "--log-every", "1", "--workers", "0", "--clips-per-item", "1", *flags]) == 0
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, load_checkpoint(out / "last.pt")


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_single_stream_run(tmp_path, cache, modality):
    rows, ckpt = run(tmp_path, cache, modality, "--modalities", modality)
    other = "audio" if modality == "video" else "video"
    assert rows[0][modality] and not rows[0].get(other) and float(rows[0]["loss"]) == pytest.approx(float(rows[0][modality]))
    assert ckpt["model_config"]["modalities"] == [modality]


def test_cmmd_run_logs_the_contrastive_term(tmp_path, cache):
    rows, ckpt = run(tmp_path, cache, "cmmd", "--cross-fusion", "easy", "--cross-windows", "4,4",
                     "--contrastive-weight", "0.5", "--cond-prob", "0.5")
    r = {k: float(v) for k, v in rows[0].items() if v}
    assert r["contrastive"] > 0
    assert r["loss"] == pytest.approx(r["video"] + r["audio"] + 0.5 * r["contrastive"], rel=1e-5)
    assert ckpt["model_config"]["cross_fusion"] == "easy" and ckpt["model_config"]["cross_windows"] == [4, 4]
    assert ckpt["train_args"]["contrastive_weight"] == 0.5 and ckpt["train_args"]["cond_prob"] == 0.5
    assert torch.isfinite(torch.tensor(list(r.values()))).all()


def test_v_prediction_run_trains_saves_and_samples(tmp_path, cache):
    from mmdiff.checkpoint import load_model
    from mmdiff.generate import SamplerOptions, generate

    assert variant_config(parse("--prediction", "v"), TINY).prediction == "v"
    rows, ckpt = run(tmp_path, cache, "v", "--prediction", "v")
    assert ckpt["model_config"]["prediction"] == "v"
    assert all(torch.isfinite(torch.tensor(float(rows[0][k]))) for k in ("loss", "video", "audio"))
    model, schedule = load_model(tmp_path / "v" / "last.pt")
    assert model.config.prediction == "v"
    video, audio = generate(model, num=1, options=SamplerOptions("ddim", steps=3), seed=0, schedule=schedule)
    assert torch.isfinite(video).all() and torch.isfinite(audio).all()
