"""End to end in a real headless browser: load the page, pick a sample, see the views update."""

import numpy as np
import pytest
from PIL import Image

from app.screenshot import CHROMIUM, launch_chromium, open_app

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Debian's chromium at {CHROMIUM}: "
                                "`apt-get update && apt-get install -y chromium`")


def test_pick_a_sample_and_move_to_gallop(app_server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    shot = tmp_path / "app.png"
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_app(browser, app_server.local_url)
            page.get_by_text("ood · test/3 · flower").first.click()  # a gallery thumbnail's caption
            page.get_by_text("Image: SynthWorld ood · test/3").wait_for(timeout=30_000)
            page.get_by_role("tab", name="GalLoP local prompts").click()
            page.get_by_text("local prompt 4: top-20").first.wait_for(timeout=30_000)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape[0] >= 900 and pixels.std() > 20  # not a blank page
