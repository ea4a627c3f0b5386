"""The web page in a real headless Chromium (Debian's, driven by Playwright): type a prompt, wait
for the image, read the reasoning. The screenshot is kept in test-artifacts/."""

import shutil
from pathlib import Path

import pytest

from thinkgen import ThinkGenPipeline

from .test_serve import Server

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = ROOT / "thinkgen" / "assets" / "shapeworld"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium's own network services are refused on this closed network; they only slow it down
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine: `make test` installs Debian's package "
                                             "where it can (apt, as root); install it to run this test")
def test_the_page_thinks_and_draws_in_a_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    server = Server(ThinkGenPipeline.from_pretrained(EMBEDDED), capacity=8)  # the model `make demo` runs
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 900, "height": 900})
            page.goto(server.url + "/")
            page.fill("#prompt", "as many squares as a tricycle has wheels, in the colour of a ripe banana")
            page.fill("#steps", "20")
            page.click("#go")
            page.wait_for_selector("#final", timeout=60_000)
            reasoning, rewrite = page.inner_text("#reasoning"), page.inner_text("#rewrite")
            image = page.get_attribute("#final", "src")
            artifacts = ROOT / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "serve-page.png"), full_page=True)
            history = page.locator("#history img").count()
            error = page.inner_text("#error")
            browser.close()
    finally:
        server.close()
    assert error == "" and image.startswith("data:image/png;base64,")
    assert "yellow" in rewrite and reasoning.strip()  # the embedded model reasons its way to the colour
    assert history == 1 and (artifacts / "serve-page.png").stat().st_size > 1000
