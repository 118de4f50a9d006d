"""The uint8 <-> model-layout conversion (mmdiff.data.pixels) and the upload -> condition tensor."""
import numpy as np
import pytest
import torch

from mmdiff.data.pixels import frames_to_model, model_to_frames
from mmdiff.uploads import condition_tensor


def test_every_level_round_trips_and_endpoints_are_exact():
    levels = np.arange(256, dtype=np.uint8)
    frames = np.stack([levels.reshape(16, 16)] * 3, -1)[None]            # (1, 16, 16, 3)
    model = frames_to_model(frames)
    assert model.shape == (1, 3, 16, 16) and model.dtype == torch.float32
    assert model.min() == -1 and model.max() == 1
    assert torch.allclose(model[0, 0].flatten(), torch.arange(256) / 127.5 - 1)
    np.testing.assert_array_equal(model_to_frames(model), frames)


def test_channel_axis_moves_and_leading_axes_stay():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 4, 5, 7, 3), dtype=np.uint8)       # (N, F, H, W, 3)
    model = frames_to_model(frames)                                       # (N, F, 3, H, W)
    assert model.shape == (2, 4, 3, 5, 7)
    assert model[1, 2, 0, 3, 4] == frames[1, 2, 3, 4, 0] / 127.5 - 1
    assert model[1, 2, 2, 3, 4] == frames[1, 2, 3, 4, 2] / 127.5 - 1
    np.testing.assert_array_equal(model_to_frames(model), frames)
    np.testing.assert_array_equal(model_to_frames(model.numpy()), frames)   # numpy in, too
    flipped = frames[:, :, :, ::-1]                                       # negative strides are fine
    np.testing.assert_array_equal(model_to_frames(frames_to_model(flipped)), flipped)


def test_out_of_range_values_clamp_and_round_to_nearest():
    video = torch.tensor([-3.0, -1.0, 0.0, 1 / 127.5 * 0.49 - 1, 2.0]).view(1, 1, 5).expand(3, 1, 5)
    np.testing.assert_array_equal(model_to_frames(video)[0, :, 0], [0, 0, 128, 0, 255])


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 3), np.uint8)])
def test_frames_to_model_rejects_wrong_dtype_or_layout(bad):
    with pytest.raises(ValueError, match="uint8"):
        frames_to_model(bad)


@pytest.mark.parametrize("bad", [torch.zeros(4, 4, 3, dtype=torch.uint8), torch.zeros(2, 4, 4, 3)])
def test_model_to_frames_rejects_wrong_dtype_or_layout(bad):
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        model_to_frames(bad)


def test_condition_tensor_layouts():
    frames = np.full((16, 8, 8, 3), 255, np.uint8)
    video = condition_tensor("video", frames)
    assert video.shape == (1, 16, 3, 8, 8) and bool((video == 1).all())
    audio = condition_tensor("audio", np.linspace(-1, 1, 100))
    assert audio.shape == (1, 1, 100) and audio.dtype == torch.float32
    assert audio[0, 0, 0] == -1 and audio[0, 0, -1] == 1
