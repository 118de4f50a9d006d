"""The prompt check reads the synthetic generator's own labels back from its clips, and not from anything else."""
import numpy as np
import pytest

from eval.prompt_follow import agreement, event_count, recognise
from mmdiff.data.synthetic import CLASSES, make_clip

RATE = 8000


@pytest.fixture(scope="module")
def real():
    clips = [make_clip(i, 99, 16, 10.0, 32, RATE) for i in range(160)]             # held-out seed
    video = np.stack([c.video for c in clips])                                      # (N, 16, 32, 32, 3) uint8
    audio = np.stack([c.audio for c in clips])                                      # (N, 12800)
    classes = np.array([c.spec.cls for c in clips])
    events = np.array([len(c.spec.events) for c in clips])
    return video, audio, classes, events


def test_real_clips_give_back_their_labels(real):
    video, audio, classes, events = real
    assert set(classes) == set(range(len(CLASSES))) and set(events) == {1, 2, 3, 4}   # every label is tried
    assert agreement(recognise(video, audio, RATE), classes, events) == \
        {"colour_shape": 1.0, "pitch": 1.0, "events": 1.0, "all": 1.0}


def test_labels_of_other_clips_do_not_match(real):
    video, audio, classes, events = real
    order = np.random.default_rng(0).permutation(len(classes))
    got = agreement(recognise(video, audio, RATE), classes[order], events[order])
    assert got["colour_shape"] < 0.45 and got["pitch"] < 0.45 and got["events"] < 0.5 and got["all"] < 0.15


def test_each_cue_comes_from_its_own_stream(real):
    video, audio, classes, events = real
    rolled = recognise(video, np.roll(audio, 1, axis=0), RATE)        # another clip's soundtrack
    assert (rolled.video_class == classes).all()
    assert (rolled.audio_class == np.roll(classes, 1)).all() and (rolled.events == np.roll(events, 1)).all()


def test_silence_has_no_events_and_white_noise_no_caption_count():
    rng = np.random.default_rng(0)
    quiet = 0.002 * rng.standard_normal((2, 12800))                    # the generator's hiss level
    hiss = 0.3 * rng.standard_normal((2, 12800))                       # loud and flat: no count a caption uses
    assert event_count(quiet, RATE).tolist() == [0, 0]
    assert (event_count(hiss, RATE) > 4).all()
    clicks = np.zeros((1, 12800))
    clicks[0, [2000, 6000, 10000]] = 0.9                               # three clicks 0.5 s apart
    assert event_count(clicks, RATE).tolist() == [3]
