"""End to end in a real headless browser: load the page, pick a sample, see the views update."""

import numpy as np
import pytest
from PIL import Image

from app.inputs import sample_classes
from scripts.app_screenshot import CHROMIUM, launch_chromium, open_app

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Debian's chromium at {CHROMIUM}: "
                                "`apt-get update && apt-get install -y chromium`")
CUT_OFF_CAPTIONS = """() => [...document.querySelectorAll('.caption-label')]
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth).map(e => e.textContent)"""
MOVE_SLIDER = """([label, value]) => {
    const slider = document.querySelector(`input[type=range][aria-label="range slider for ${label}"]`);
    slider.value = value;
    slider.dispatchEvent(new Event('input', {bubbles: true}));
}"""


def test_pick_a_sample_and_move_to_gallop(app_server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    shot = tmp_path / "app.png"
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_app(browser, app_server.local_url)
            assert page.evaluate(CUT_OFF_CAPTIONS) == []
            page.get_by_text("ood 3", exact=True).first.click()  # a gallery thumbnail's caption
            page.get_by_text("Image: SynthWorld ood · test/3").wait_for(timeout=30_000)
            classes = page.get_by_label("Classes (comma or new line separated; type novel ones too)")
            assert classes.input_value() == ", ".join(sample_classes("ood/test/3"))  # the ID list of `ood`
            page.get_by_role("tab", name="GalLoP local prompts").click()
            page.get_by_text("prompt 4 · k = 20").first.wait_for(timeout=30_000)
            assert page.evaluate(CUT_OFF_CAPTIONS) == []
            page.evaluate(MOVE_SLIDER, ["k1", 7])  # a view's event, sent outside the queue
            page.get_by_text("prompt 1 · k = 7").first.wait_for(timeout=30_000)
            page.screenshot(path=str(shot), full_page=True)
            classes.fill("<b>bold</b>, <B>BOLD</B>, circle")
            page.get_by_role("button", name="Apply classes").click()
            page.get_by_text("duplicate name(s): <B>BOLD</B>").wait_for(timeout=30_000)  # shown as typed
            assert page.locator("b", has_text="BOLD").count() == 0  # never rendered as HTML
        finally:
            browser.close()
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape[0] >= 900 and pixels.std() > 20  # not a blank page
