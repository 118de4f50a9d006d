"""The published AV-Align against the project's own peak scores, clip by clip, on the reference clips of
tests/data/av_align (cut from opencv-doc and sonic-pi media, plus mmdiff.data.synthetic clips).

    python -m benchmarks.compare_av_align

Columns: the published script's score (reference.json, made by TempoTokens' av_align.py at bf0b1e3),
eval.av_align.av_align on the same decoded inputs, and eval.change_peaks.change_peak_align with its two
video detectors: "flow" (Lucas-Kanade, relative threshold: eval.run's `av-align` before issue 18) and
"change" (abrupt-change peaks: metric `av-align-peaks`). Then the Pearson correlation of each with the
published score over the clips.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from eval.av_align import av_align
from eval.change_peaks import change_peak_align
from tests.av_align_reference import CLIPS, read_as_published


def main() -> None:
    rows = []
    for name in sorted(CLIPS):
        _, rgb, fps, audio, rate = read_as_published(name)
        rows.append((name, CLIPS[name]["score"], av_align(rgb, audio, fps, rate),
                     change_peak_align(rgb, audio, fps, rate, video_events="flow"),
                     change_peak_align(rgb, audio, fps, rate, video_events="change")))
    print("| clip | published script | eval.av_align | old flow variant (LK) | change peaks |\n|---|---|---|---|---|")
    for name, *vals in rows:
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    cols = np.array([r[1:] for r in rows])                       # (clips, 4)
    for label, idx in (("real", [i for i, r in enumerate(rows) if not r[0].startswith("synthetic")]),
                       ("synthetic", [i for i, r in enumerate(rows) if r[0].startswith("synthetic")])):
        print(f"| mean, {label} ({len(idx)}) | " + " | ".join(f"{v:.3f}" for v in cols[idx].mean(0)) + " |")
    r = [stats.pearsonr(cols[:, 0], cols[:, j]).statistic for j in (1, 2, 3)]
    print(f"Pearson r with the published script over {len(rows)} clips: eval.av_align {r[0]:.3f}, "
          f"old flow variant {r[1]:.3f}, change peaks {r[2]:.3f}")


if __name__ == "__main__":
    main()
