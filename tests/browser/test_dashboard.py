"""What a person sees: the HTML gallery and the Prefect UI's flow-run page, in headless Chromium.

Uses the nightly story (tests/deployments/nightly_story.py): a deployment run on a real Prefect
server that failed, was retried and completed. Chromium renders each page with its JavaScript
(`--virtual-time-budget`), and the checks read the rendered DOM, not the HTML sent:

- every image of the gallery decodes in the browser (naturalWidth, via a probe page), after the
  failed run (a placeholder where the mask was missing) and after the Retry;
- the flow-run page shows the run, its state and Retry; its Artifacts tab lists the summary,
  report table, progress and gallery link; the summary artifact renders as markdown.

Screenshots go to the test's temporary folder, or to $INPAINT_SCREENSHOTS_DIR (README's are
made with `INPAINT_SCREENSHOTS_DIR=docs pytest tests/browser`).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.deployments.nightly_story import NightlyStory
from tests.deployments.prefect_server import PrefectServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.server,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless Chromium is not installed (Debian: apt-get install chromium; "
        ".ci/run installs it): the dashboard and gallery were not checked in a browser",
    ),
]
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
RENDER_MS = "20000"  # virtual time: the single-page app fetches from the API, then renders

PROBE = """<!doctype html><meta charset="utf-8"><title>probe</title>
<iframe id="g" src="{src}" style="width:1400px;height:4000px"></iframe>
<script>
const frame = document.getElementById("g");
frame.onload = async () => {{
  const imgs = [...frame.contentDocument.images];
  imgs.forEach((img) => (img.loading = "eager"));
  const loaded = (img) =>
    img.complete ? null : new Promise((done) => (img.onload = img.onerror = done));
  await Promise.all(imgs.map(loaded));
  const out = document.createElement("pre");
  out.id = "result";
  out.textContent = JSON.stringify(
    imgs.map((img) => [img.getAttribute("src"), img.naturalWidth, img.naturalHeight]));
  document.body.appendChild(out);
}};
</script>
"""


def shots_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("INPAINT_SCREENSHOTS_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def chromium(tmp_path: Path, *args: str) -> list[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    return [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]


def run_all(commands: dict[str, list[str]], timeout: float = 120) -> dict[str, str]:
    """Run the Chromium commands side by side; each one's stdout (the DOM for --dump-dom)."""
    procs = {
        name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for name, cmd in commands.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"chromium failed on {name}"
        out[name] = stdout
    return out


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def small_png(path: Path) -> None:
    """Keep committed screenshots small: a 256-colour palette, optimised."""
    with Image.open(path) as img:
        img.convert("RGB").quantize(colors=256).save(path, optimize=True)


def assert_not_blank(path: Path) -> None:
    with Image.open(path) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, f"{path} looks blank"


def probe(tmp_path: Path, gallery: Path) -> list[str]:
    page = tmp_path / f"probe-{gallery.parent.name}.html"
    page.write_text(PROBE.format(src=gallery.as_uri()), encoding="utf-8")
    return chromium(
        tmp_path,
        "--allow-file-access-from-files",
        f"--virtual-time-budget={RENDER_MS}",
        "--dump-dom",
        page.as_uri(),
    )


def rendered_images(dom: str, gallery: Path) -> list[str]:
    """The gallery's images as Chromium decoded them; each must match its file's size."""
    match = re.search(r'<pre id="result">(.*?)</pre>', dom, flags=re.S)
    assert match, f"the probe page did not report the images of {gallery}"
    images: list[list[Any]] = json.loads(html.unescape(match.group(1)))
    for src, width, height in images:
        assert width > 0 and height > 0, f"{src} did not render"
        with Image.open(gallery.parent / src) as img:
            assert img.size == (width, height), src
    return [src for src, _, _ in images]


def test_gallery_images_render_in_chromium(nightly: NightlyStory, tmp_path: Path) -> None:
    final = nightly.scenario.out / "index.html"
    failed = nightly.first_gallery
    shot = shots_dir(tmp_path) / "gallery.png"

    out = run_all(
        {
            "final": probe(tmp_path, final),
            "failed": probe(tmp_path, failed),
            "shot": chromium(
                tmp_path,
                f"--screenshot={shot}",
                "--window-size=1200,1000",
                f"--virtual-time-budget={RENDER_MS}",
                failed.as_uri(),
            ),
        }
    )

    # After the Retry every input succeeded: original, mask and result for each of the four.
    assert len(rendered_images(out["final"], final)) == 12
    # After the failed run: rocket.jpg had no mask and no result, only placeholders.
    assert len(rendered_images(out["failed"], failed)) == 10
    assert "no mask" in visible_text(failed.read_text(encoding="utf-8"))
    small_png(shot)
    assert_not_blank(shot)


async def test_flow_run_page_shows_the_run_and_its_artifacts(
    prefect_server: PrefectServer, nightly: NightlyStory, tmp_path: Path
) -> None:
    run_id = nightly.first.flow_run_id
    async with prefect_server.client() as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        summaries = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["inpaint-nightly-summary"]))
        )
    failed_summary = min(summaries, key=lambda a: a.created)  # the failed attempt's
    ui = prefect_server.url
    shots = shots_dir(tmp_path)
    budget = f"--virtual-time-budget={RENDER_MS}"

    pages = run_all(
        {
            "run": chromium(tmp_path, budget, "--dump-dom", f"{ui}/runs/flow-run/{run_id}"),
            "artifacts": chromium(
                tmp_path, budget, "--dump-dom", f"{ui}/v2/runs/flow-run/{run_id}?tab=Artifacts"
            ),
            "summary": chromium(
                tmp_path, budget, "--dump-dom", f"{ui}/artifacts/artifact/{failed_summary.id}"
            ),
            "shot-run": chromium(
                tmp_path,
                budget,
                "--window-size=1400,1000",
                f"--screenshot={shots / 'dashboard.png'}",
                f"{ui}/v2/runs/flow-run/{run_id}?tab=Artifacts",
            ),
            "shot-summary": chromium(
                tmp_path,
                budget,
                "--window-size=1400,1000",
                f"--screenshot={shots / 'dashboard-summary.png'}",
                f"{ui}/v2/artifacts/artifact/{failed_summary.id}",
            ),
        }
    )

    run_page = visible_text(pages["run"])
    assert "inpaint nightly" in run_page and "Completed" in run_page, run_page[:2000]
    assert "Retry" in run_page and "Artifacts" in run_page
    artifacts_tab = visible_text(pages["artifacts"])
    for kind in ("summary", "report", "progress", "gallery"):
        assert f"inpaint-nightly-{kind}" in artifacts_tab, artifacts_tab[:2000]
    summary = visible_text(pages["summary"])
    assert "Top failure reasons" in summary and "MISSING_MASK" in summary, summary[:2000]
    assert "**" not in summary.split("Show raw data")[0], "markdown was not rendered"
    for name in ("dashboard.png", "dashboard-summary.png"):
        small_png(shots / name)
        assert_not_blank(shots / name)
