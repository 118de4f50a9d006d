"""Checkpoints, EMA and the sharded batch stream (no data files needed)."""
import pickle

import pytest
import torch

import mmdiff
from mmdiff.checkpoint import CheckpointError, export_inference, load_checkpoint, load_model, save_checkpoint
from mmdiff.config import TINY, DiffusionConfig
from mmdiff.training.distributed import batch_indices
from mmdiff.training.ema import EMA


def small_ckpt(path, step=3):
    model = mmdiff.build_model(TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(torch.randn(1, *TINY.video_shape), torch.randn(1, *TINY.audio_shape), torch.tensor([1]))[0].sum().backward()
    opt.step()
    save_checkpoint(path, model_config=TINY, diffusion_config=DiffusionConfig(), model=model.state_dict(),
                    ema=model.state_dict(), optimizer=opt.state_dict(), step=step, rng={"torch": torch.get_rng_state()})
    return model


def test_checkpoint_round_trip_rebuilds_its_model(tmp_path):
    model = small_ckpt(tmp_path / "c.pt")
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert ckpt["step"] == 3 and ckpt["model_config"] == TINY.to_dict()
    loaded, schedule = load_model(tmp_path / "c.pt")
    assert loaded.config == TINY and schedule.num_timesteps == 1000
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_truncated_checkpoint_gets_a_clear_error(tmp_path):
    small_ckpt(tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "t.pt")


@pytest.mark.parametrize("mmap", [False, True])
def test_a_text_file_is_not_a_checkpoint_rather_than_corrupt(tmp_path, mmap):
    """app.py reads the card with mmap, where torch calls a text file an mmap RuntimeError; a truncated zip
    stays 'truncated or corrupt' either way."""
    (tmp_path / "notes.txt").write_text("my notes\n" * 20)
    with pytest.raises(CheckpointError, match=r"notes\.txt is not a checkpoint \(not a file written by torch\.save"):
        load_checkpoint(tmp_path / "notes.txt", mmap=mmap)
    small_ckpt(tmp_path / "c.pt")
    (tmp_path / "t.pt").write_bytes((tmp_path / "c.pt").read_bytes()[:3000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "t.pt", mmap=mmap)


def test_foreign_checkpoints_are_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an mmdiff checkpoint"):
        load_checkpoint(tmp_path / "other.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled code ran",))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": "mmdiff-checkpoint", "x": Evil()}, f)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_inference_export_is_small_and_loads(tmp_path):
    small_ckpt(tmp_path / "c.pt")
    export_inference(tmp_path / "c.pt", tmp_path / "e.pt")
    assert (tmp_path / "e.pt").stat().st_size < 0.6 * (tmp_path / "c.pt").stat().st_size
    model, _ = load_model(tmp_path / "e.pt")
    assert model.config == TINY


def test_ema_warmup_and_decay():
    lin = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(lin.weight, 0.0)
    ema = EMA(lin, decay=0.5)
    torch.nn.init.constant_(lin.weight, 1.0)
    ema.update(lin)                          # effective decay min(0.5, 2/11) = 2/11
    assert ema.shadow["weight"].item() == pytest.approx(9 / 11)
    ema.update(lin)                          # min(0.5, 3/12) = 0.25
    assert ema.shadow["weight"].item() == pytest.approx(1 - 0.25 * 2 / 11)


def test_batches_partition_each_epoch_across_ranks():
    n, batch, world = 40, 4, 2
    per_epoch = n // world // batch
    for epoch in range(2):
        seen = []
        for rank in range(world):
            for k in range(per_epoch):
                e, idx = batch_indices(n, batch, seed=1, step=epoch * per_epoch + k, rank=rank, world=world)
                assert e == epoch and len(idx) == batch
                seen += idx
        assert sorted(seen) == list(range(n))            # every clip exactly once per epoch
    assert batch_indices(n, batch, 1, 3, 0, 2) == batch_indices(n, batch, 1, 3, 0, 2)
    assert batch_indices(n, batch, 1, 0, 0, 2)[1] != batch_indices(n, batch, 1, per_epoch, 0, 2)[1]
    with pytest.raises(ValueError, match="too few"):
        batch_indices(3, 4, 0, 0, 0, 1)
