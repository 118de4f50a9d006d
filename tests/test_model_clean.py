"""The next default model's probability-flow ODE stays clean (issue 20): deterministic samplers on fixed seeds
pass eval.cleanliness's check against real clips of the synthetic generator.

`assets/tiny-synthetic-v.pt` is the shipped model fine-tuned with v-prediction (README, "The next default
model"). On 64 seeds it gives 0 dirty clips with DPM-Solver++ 20 and with DDIM 20 eta 0; the shipped
`mmdiff/assets/tiny-synthetic.pt` fails this same check (9 and 16 of 16 dirty, BENCHMARKS.md)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CANDIDATE = ROOT / "assets" / "tiny-synthetic-v.pt"


@pytest.fixture(scope="module")
def criterion_and_model():
    from benchmarks.clean_samples import real_scores
    from eval.cleanliness import Criterion
    from mmdiff.checkpoint import load_model

    model, _ = load_model(CANDIDATE)
    return Criterion.from_real(real_scores(256, 99, model.config)), model


@pytest.mark.parametrize("setting", ["dpm-solver++:20", "ddim:20:0"])
def test_deterministic_samples_are_clean(criterion_and_model, setting):
    from benchmarks.clean_samples import dirty_count, parse_setting

    criterion, model = criterion_and_model
    assert model.config.prediction == "v" and model.config.text_dim == 0
    got = dirty_count(model, parse_setting(setting, zero_mean=True, clip=True), num=6, seed=0, criterion=criterion)
    assert got["dirty"] == 0, got
