"""Screenshot the running app in headless Debian chromium: `python app/screenshot.py [--out PNG]`.

Serves the app in-process on 127.0.0.1 (same flags as `app/main.py`), opens it in
`/usr/bin/chromium` through playwright (never `playwright install`: install the browser with
`apt-get install -y chromium`), waits for the views and saves a full-page PNG.
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
VIEWPORT = {"width": 1400, "height": 1000}
READY_TEXT = "Saliency query:"  # drawn by the first view once the page has loaded
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "screenshots" / "app.png"


def launch_chromium(playwright):
    """Debian's chromium, headless, through a playwright instance (`sync_playwright()`)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def open_app(browser, url: str):
    """A page showing the app at `url`, after its first views are drawn."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url, wait_until="load")
    page.get_by_text(READY_TEXT).wait_for(timeout=60_000)
    return page


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    from app.main import load, parse_args, serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--tab", default=None, help="tab to show, e.g. 'GalLoP local prompts'")
    own, app_argv = parser.parse_known_args(argv)
    args = parse_args(app_argv)
    demo = serve(load(args.model, args.pretrained, args.prompts))
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = open_app(browser, demo.local_url)
            if own.tab:
                page.get_by_role("tab", name=own.tab).click()
                page.wait_for_timeout(1000)
            Path(own.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=own.out, full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"saved {own.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
