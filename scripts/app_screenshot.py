"""Screenshot the running app in headless Debian chromium: `python scripts/app_screenshot.py [--out-dir DIR]`.

Serves the app in-process on 127.0.0.1 (same flags as `app/main.py`), opens it in
`/usr/bin/chromium` through playwright (never `playwright install`: install the browser with
`apt-get install -y chromium`) and saves one full-page PNG per tab of `SHOTS` (the README's
pictures), each once every picture of the tab has loaded and been painted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `app` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}  # the narrowest layout the browser test checks
READY_TEXT = "Saliency query:"  # drawn by the first view once the page has loaded
DEFAULT_OUT_DIR = Path(__file__).resolve().parents[1] / "assets" / "screenshots"
SHOTS = {"app.png": "DiSa saliency", "gallop.png": "GalLoP local prompts",  # file -> tab shown
         "learned.png": "What the prompts learned"}
PICTURES_PAINTED = """() => {
  const shown = [...document.querySelectorAll('[role=tabpanel] img')].filter(img => img.offsetParent !== null);
  return shown.length > 0 && shown.every(img => img.complete && img.naturalWidth > 0);
}"""


def launch_chromium(playwright):
    """Debian's chromium, headless, through a playwright instance (`sync_playwright()`)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def open_app(browser, url: str, viewport: dict | None = None):
    """A page showing the app at `url` in a window of `viewport` (default VIEWPORT), after its first
    views are drawn."""
    page = browser.new_page(viewport=viewport or VIEWPORT)
    page.goto(url, wait_until="load")
    page.get_by_text(READY_TEXT).wait_for(timeout=60_000)
    return page


def show_tab(page, tab: str) -> None:
    """Select `tab` and wait until every picture in it has loaded."""
    page.get_by_role("tab", name=tab).click()
    page.wait_for_function(PICTURES_PAINTED, timeout=60_000)
    page.wait_for_timeout(500)  # one more paint after the last picture decoded


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    from app.main import load, parse_args, serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR))
    own, app_argv = parser.parse_known_args(argv)
    args = parse_args(app_argv)
    demo = serve(load(args.model, args.pretrained, args.prompts))
    out_dir = Path(own.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = open_app(browser, demo.local_url)
            for name, tab in SHOTS.items():
                show_tab(page, tab)
                page.screenshot(path=str(out_dir / name), full_page=True)
                print(f"saved {out_dir / name} ({tab})")
            browser.close()
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
