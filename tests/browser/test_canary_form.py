"""The paused canary's resume form as a person sees it in the Prefect dashboard (headless
Chromium, driven by Playwright as in test_painter.py).

A nightly deployment run with `canary=3` pauses after its canary (tests/deployments/
canary_story.py); the flow-run page offers Resume, which opens the form: the canary's headline
and gallery path (the `action` field's help), the `action` choice and the batch's request
defaults, prefilled.
The run is then cancelled through the API and must end Cancelled, nothing more paid.

The screenshot goes to the test's temporary folder, or to $INPAINT_SCREENSHOTS_DIR (README's is
made with `INPAINT_SCREENSHOTS_DIR=docs pytest tests/browser/test_canary_form.py`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Locator, expect, sync_playwright

from novita_local.server import LocalServer
from tests.deployments.canary_story import start_paused_canary
from tests.deployments.prefect_server import PrefectServer
from tests.flows.helpers import job_counts

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.server,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian Chromium is not installed at /usr/bin/chromium (apt-get install chromium):"
        " the canary's resume form was not checked in a browser",
    ),
]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
UI_TIMEOUT_MS = 60_000


@pytest.fixture
def api() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


def shots_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("INPAINT_SCREENSHOTS_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def seen(locator: Locator) -> bool:
    """Whether a person sees the element: on screen, and on top where it is (Playwright's
    visibility ignores clipping: Prefect's form description is in the page, in a box of zero
    height, and counted "visible")."""
    return bool(
        locator.evaluate(
            """e => {
              const r = e.getBoundingClientRect();
              if (r.height <= 0 || r.bottom > innerHeight || r.top < 0) return false;
              const hit = document.elementFromPoint(r.left + Math.min(20, r.width / 2),
                                                   r.top + Math.min(8, r.height / 2));
              return !!hit && (hit === e || e.contains(hit));
            }"""
        )
    )


def test_the_paused_canary_shows_its_resume_form_in_the_dashboard(
    prefect_server: PrefectServer, api: LocalServer, tmp_path: Path
) -> None:
    run = start_paused_canary(prefect_server, api, tmp_path, "canary-form")
    shot = shots_dir(tmp_path) / "canary-form.png"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(f"{prefect_server.url}/runs/flow-run/{run.run_id}")
            expect(page.get_by_text("Paused").first).to_be_visible()
            page.get_by_role("button", name="Resume").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_be_visible()
            # The form generated from CanaryDecision: what was tried and where to look, then
            # the choice and the batch's request defaults, prefilled.
            help_text = dialog.get_by_text("Look at the canary gallery first")
            expect(help_text).to_be_visible()
            help_text.scroll_into_view_if_needed()
            assert seen(help_text), "the canary's summary is covered or clipped"
            said = " ".join(help_text.inner_text().split())
            assert "Canary of canary-form: 3 of 3 done; 3 job(s) wait for your approval" in said
            assert str(run.out / "canary" / "index.html") in said
            expect(dialog.get_by_text("Action", exact=True).first).to_be_visible()
            expect(dialog.get_by_text("Defaults (Optional)", exact=True)).to_be_visible()
            values = dialog.get_by_role("textbox").evaluate_all("els => els.map(e => e.value)")
            assert "a clean, natural background" in values, values
            page.screenshot(path=str(shot))
            browser.close()

        run.resume({"action": "cancel"})
        final = run.finish()
    finally:
        run.close()

    assert final["type"] == "CANCELLED", final
    assert job_counts(api).total_submits == 3
    with Image.open(shot) as img:
        img.convert("RGB").quantize(colors=256).save(shot, optimize=True)
    with Image.open(shot) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, f"{shot} looks blank"
