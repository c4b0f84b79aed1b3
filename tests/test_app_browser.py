"""End to end in a real headless browser, at 1280 and 1920 pixels wide: load the page, pick samples,
read the true label and the marks, the scenes outline, the OOD verdict, the disabled controls and
the zero-shot vs learned view."""

import tempfile

import numpy as np
import pytest
from PIL import Image

from app import handlers
from app.inputs import sample_caption, sample_classes, sample_keys, thumbnail_caption
from app.models import METHOD_TITLES, load_models
from scripts.app_screenshot import CHROMIUM, launch_chromium, open_app
from vlp_core.engine.metrics import patch_coverage

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Debian's chromium at {CHROMIUM}: "
                                "`apt-get update && apt-get install -y chromium`")
WIDTHS = (1280, 1920)
CUT_OFF_CAPTIONS = """() => [...document.querySelectorAll('.caption-label')]
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth).map(e => e.textContent)"""
MOVE_SLIDER = """([label, value]) => {
    const slider = document.querySelector(`input[type=range][aria-label="range slider for ${label}"]`);
    slider.value = value;
    slider.dispatchEvent(new Event('input', {bubbles: true}));
}"""
# the gallery never needs sideways scrolling, and every thumbnail, scrolled into view inside it,
# lies wholly in its visible box with nothing covering its corners or centre: the captions of
# those that do not (or "sideways" when the grid is wider than the gallery)
UNREACHABLE_SAMPLES = """() => {
    const wrap = document.querySelector('#samples .grid-wrap');
    if (wrap.scrollWidth > wrap.clientWidth + 1) return ['sideways'];
    return [...wrap.querySelectorAll('.thumbnail-item')].filter(item => {
        item.scrollIntoView({block: 'nearest', inline: 'nearest'});
        const box = wrap.getBoundingClientRect(), own = item.getBoundingClientRect();
        const inside = own.left >= box.left - 1 && own.right <= box.right + 1 && own.top >= box.top - 1
            && own.bottom <= box.bottom + 1;
        const points = [[(own.left + own.right) / 2, (own.top + own.bottom) / 2], [own.left + 4, own.top + 4],
                        [own.right - 4, own.top + 4], [own.left + 4, own.bottom - 4], [own.right - 4, own.bottom - 4]];
        return !(inside && points.every(([x, y]) => item.contains(document.elementFromPoint(x, y))));
    }).map(item => item.textContent.trim());
}"""
# records whether the views' column was marked stale and the Apply button said it was busy
RECORD_BUSY = """() => {
    window.busySeen = {stale: false, button: false};
    const views = document.getElementById('views');
    new MutationObserver(() => {
        if (views.classList.contains('stale')) window.busySeen.stale = true;
        if ([...document.querySelectorAll('button')].some(b => b.textContent.includes('Encoding the classes')
                                                           && b.disabled)) window.busySeen.button = true;
    }).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}"""
SLIDER_STATE = """(label) => {
    const slider = document.querySelector(`input[type=range][aria-label="range slider for ${label}"]`);
    return slider ? slider.disabled : null;
}"""
IMAGE_PIXELS = """async (id) => {
    const img = document.querySelector(`#${id} img`);
    await img.decode();
    const canvas = document.createElement('canvas');
    [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    return [canvas.width, canvas.height, Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data)];
}"""


@pytest.fixture(scope="module")
def local_models(tiny):
    """The same models as the served app (the tiny CLIP, no prompt checkpoints), to know its answers."""
    return load_models(tiny, tempfile.mkdtemp())


def _pick(page, key: str, thumbnail: bool = False) -> None:
    """Pick a sample by its name in the sample dropdown, or by clicking its gallery thumbnail, and
    wait until every view shows it."""
    if thumbnail:
        page.locator("#samples").get_by_text(thumbnail_caption(key), exact=True).click()
    else:
        page.get_by_label("…or pick a sample by name").click()
        page.get_by_role("option", name=sample_caption(key), exact=True).click()
    page.get_by_text(f"Image: SynthWorld {sample_caption(key)}").wait_for(timeout=30_000)
    page.locator("#views:not(.stale)").wait_for(timeout=30_000)


def _session(local_models, key: str):
    return handlers.load_sample(local_models, key, ", ".join(sample_classes(key))).session


@pytest.mark.parametrize("width", WIDTHS)
def test_the_page_at_a_width(app_server, local_models, width, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_app(browser, app_server.local_url, {"width": width, "height": 900})
            assert page.evaluate(UNREACHABLE_SAMPLES) == []  # every sample can be reached and clicked
            assert page.evaluate(CUT_OFF_CAPTIONS) == []
            _check_marks_on_a_wrong_prediction(page, local_models)
            _check_the_scenes_outline(page, local_models)
            _check_the_ood_verdict_and_disabled_controls(page)
            _check_zero_shot_vs_learned(page)
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    pixels = np.asarray(Image.open(tmp_path / "page.png").convert("L"), dtype=np.float64)
    assert pixels.shape[1] == width and pixels.std() > 20  # not a blank page


def _check_marks_on_a_wrong_prediction(page, local_models) -> None:
    """A sample that some methods get right and DiSa gets wrong: the true label shows, each
    method's mark is the model's, and DiSa's map for its (wrong) prediction says so."""
    def mixed(session) -> bool:
        return any(session.right(name) for name in METHOD_TITLES) and not session.right("disa")

    key = next(key for key in sample_keys() if mixed(_session(local_models, key)))  # those the page lists
    session = _session(local_models, key)
    _pick(page, key, thumbnail=True)
    page.get_by_role("tab", name="Live predictions").click()
    marks = page.locator("#predictions-marks")
    marks.get_by_text(f"True label: {session.label}").wait_for(timeout=30_000)
    expected = [f"{session.classes[session.predicted(name)]} {'✓' if session.right(name) else '✗'}"
                for name in METHOD_TITLES]
    assert [cell.inner_text().strip() for cell in marks.locator("tbody td").all()[1:]] == expected
    page.get_by_role("tab", name="DiSa saliency").click()
    page.get_by_label("Saliency query class").click()
    page.get_by_role("option", name="(predicted class)", exact=True).click()
    page.locator("#disa-summary").get_by_text(f"the true class is {session.label}").wait_for(timeout=30_000)


def _check_the_scenes_outline(page, local_models) -> None:
    """A `scenes` sample: the outline and the trust checks cover both shapes the label names."""
    key = "scenes/test/3"
    session = _session(local_models, key)
    _pick(page, key)
    page.get_by_role("tab", name="DiSa saliency").click()
    objects = int((patch_coverage(session.mask, local_models.grid) > 0).sum())
    summary = page.locator("#disa-summary")
    summary.get_by_text(f"IoU of the {objects} most salient patches with the {objects} patches on the object").wait_for(
        timeout=30_000)
    assert "every object the true class names" in summary.inner_text()
    width, height, data = page.evaluate(IMAGE_PIXELS, "disa-masked")
    picture = np.array(data, dtype=np.uint8).reshape(height, width, 4)[..., :3].astype(int)
    green = (picture[..., 1] > 200) & (picture[..., 0] < 120) & (picture[..., 2] < 120)
    scale = width / session.mask.shape[1]
    for shape in (0, 1):  # each shape's outline is drawn: green pixels within its box
        ys, xs = np.nonzero(_object_map(key, session.mask.shape[0]) == shape)
        box = green[int(ys.min() * scale):int((ys.max() + 1) * scale), int(xs.min() * scale):int((xs.max() + 1) * scale)]
        assert box.sum() > 20, f"no outline around object {shape}"


def _object_map(key: str, size: int) -> np.ndarray:
    from vlp_core.data.synthworld import get_suite, render_objects

    suite, split, index = key.split("/")
    return render_objects(get_suite(suite).scene(split, int(index)), size)[1]


def _check_the_ood_verdict_and_disabled_controls(page) -> None:
    """Back on a `shapes` sample: the OOD verdict at the default threshold (95 % TPR) gives its
    FPR; the k sliders that cannot act are disabled, and say so."""
    _pick(page, "shapes/test/3")
    page.get_by_role("tab", name="GalLoP local prompts").click()
    verdict = page.locator("#ood-verdict")
    verdict.get_by_text("95.0 %", exact=False).first.wait_for(timeout=30_000)
    text = verdict.inner_text()
    assert "at this threshold" in text and "(ID: the TPR)" in text and "(FPR95)" in text
    assert ("of the ood images are too" in text) or ("of the shapes images (ID) are too" in text)
    assert page.locator("#ood-roc img").count() == 1
    assert page.evaluate(SLIDER_STATE, "k (all prompts): tick *Same k* to use it") is True
    assert page.evaluate(SLIDER_STATE, "k1") is False
    page.get_by_label("Same k for every local prompt").check()
    page.locator("input[aria-label='range slider for k1: off while *Same k* is ticked']").wait_for(timeout=10_000)
    assert page.evaluate(SLIDER_STATE, "k (all prompts)") is False
    assert page.evaluate(SLIDER_STATE, "k1: off while *Same k* is ticked") is True
    page.evaluate(MOVE_SLIDER, ["k (all prompts)", 7])
    page.get_by_text("prompt 4 · k = 7").first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Attributions").click()
    page.get_by_label("Grad-CAM (penultimate block)").check()
    page.locator("input[aria-label='range slider for Integration steps: integrated gradients only']").wait_for(
        timeout=10_000)
    assert page.evaluate(SLIDER_STATE, "Integration steps: integrated gradients only") is True


def _check_zero_shot_vs_learned(page) -> None:
    """The zero-shot map, the learned one and their difference, for both DiSa and GalLoP."""
    page.get_by_role("tab", name="What the prompts learned").click()
    for name in ("disa", "gallop"):
        for part in ("zero_shot", "learned", "difference"):
            page.locator(f"#learned-{name}-{part} img").wait_for(timeout=30_000)
    page.locator("#learned-summary").get_by_text("How different GalLoP's local prompts are").wait_for(timeout=30_000)
    page.locator("#learned-words").get_by_text("local 1").first.wait_for(timeout=30_000)


def test_typed_class_names_stay_text(app_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_app(browser, app_server.local_url)
            classes = page.get_by_label("Classes (comma or new line separated; type novel ones too)")
            classes.fill("<b>bold</b>, <B>BOLD</B>, https://example.com, www.example.org, circle")
            page.get_by_role("button", name="Apply classes").click()
            page.get_by_text("duplicate name(s): <B>BOLD</B>").first.wait_for(timeout=30_000)  # shown as typed
            assert page.locator("b", has_text="BOLD").count() == 0  # never rendered as HTML
            page.get_by_role("tab", name="DiSa saliency").click()
            page.get_by_label("Saliency query class").click()
            page.get_by_role("option", name="https://example.com · —", exact=True).click()
            page.locator("#disa-summary").get_by_text("https://example.com").wait_for(timeout=30_000)
            assert page.locator("#views a[href*='example']").count() == 0  # no URL became a link
            classes.fill(" , ")
            page.get_by_role("button", name="Apply classes").click()
            page.locator("#class-progress").get_by_text("class list is empty").wait_for(timeout=30_000)
            classes.fill("circle, square")
            page.evaluate(RECORD_BUSY)
            page.get_by_role("button", name="Apply classes").click()
            page.get_by_text("classes: 2 (your own list)").wait_for(timeout=30_000)
            page.locator("#views:not(.stale)").wait_for(timeout=30_000)
            seen = page.evaluate("() => window.busySeen")
            assert seen["stale"] and seen["button"]  # the views were marked stale and the button said it was busy
            assert "class list is empty" not in page.locator("#class-progress").inner_text()  # no stale warning
            assert page.get_by_text("class list is empty").count() == 0
        finally:
            browser.close()
