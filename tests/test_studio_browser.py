"""A real browser (Debian's chromium driven by Playwright) uses the studio: Generate, play, spectrogram, bad upload.

chromium must be installed (`.ci/run` installs it with apt-get); if it is missing this test fails.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from studio_fixtures import make_media, running_app, tiny_checkpoint

CHROMIUM = os.environ.get("MMDIFF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]


def launch_chromium(playwright):
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
                    ".ci/run does this before the tests")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    ckpt = tiny_checkpoint(root / "tiny.pt")
    media = make_media(root / "media")
    with running_app(ckpt, [root]) as (demo, url):
        yield url, media


def test_generate_play_spectrogram_and_bad_upload(served):
    from playwright.sync_api import sync_playwright

    url, media = served
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            # the studio explains itself: what the model knows, no prompt box for a model without text
            scope = page.locator("#gen-scope")
            scope.wait_for(state="visible", timeout=60_000)
            assert "unconditional" in scope.inner_text() and "out of distribution" in scope.inner_text()
            assert not page.locator("#gen-text").is_visible()
            example = page.get_by_text("deterministic DDIM, 20 steps, seed 3, 4 clips").first          # the examples
            example.wait_for(state="visible", timeout=30_000)
            page.locator("#gen-random-seed").click()
            page.wait_for_function("document.querySelector('#gen-seed input').value !== '0'", timeout=30_000)
            page.get_by_role("button", name="Generate", exact=True).click(timeout=60_000)
            video = page.locator("#gen-video-0 video")
            video.wait_for(state="attached", timeout=60_000)
            # playable: metadata loads, 1.6 s long, and time advances when played (muted: no audio device)
            page.wait_for_function("document.querySelector('#gen-video-0 video').readyState >= 1", timeout=30_000)
            duration = page.evaluate("document.querySelector('#gen-video-0 video').duration")
            assert abs(duration - 1.6) < 0.1, duration
            page.evaluate("() => { const v = document.querySelector('#gen-video-0 video'); v.muted = true; "
                          "return v.play(); }")
            page.wait_for_function("document.querySelector('#gen-video-0 video').currentTime > 0.2", timeout=15_000)
            assert page.evaluate("document.querySelector('#gen-video-0 video').error") is None
            # the 32-px clip is shown as its 256-px nearest-neighbour copy, pixel for pixel (no smoothing)
            size = page.evaluate("(() => { const v = document.querySelector('#gen-video-0 video'); "
                                 "const r = v.getBoundingClientRect(); return [v.videoWidth, r.width, r.height]; })()")
            assert size == [256, 256, 256], size
            # the spectrogram view rendered: an <img> that decoded to a real figure
            page.wait_for_function("(() => { const i = document.querySelector('#gen-spec-0 img'); "
                                   "return i && i.complete && i.naturalWidth > 400; })()", timeout=30_000)
            # a bad upload on the conditioning tab shows the specific error, and the page keeps working
            page.get_by_role("tab", name="Zero-shot conditioning").click()
            page.get_by_text("a red ball bounces twice").first.wait_for(state="visible", timeout=30_000)   # examples
            page.locator("#condition-upload input[type=file]").set_input_files(str(media["not_media"]))
            page.wait_for_timeout(500)
            page.locator("#condition-btn").click()
            err = page.get_by_text("not a readable audio/video file").first
            err.wait_for(state="visible", timeout=30_000)
            page.get_by_role("tab", name="Generate").click()
            assert page.locator("#gen-video-0 video").count() == 1
        finally:
            browser.close()
