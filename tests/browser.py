"""A real browser (headless Chromium) draws a netfit page: which figures it laid out, and were they drawn.

Used by the run report's and the study report's tests; the figures are read back from a full-page
screenshot, so a figure the browser cannot decode, or one drawn blank, fails the test.
"""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

__all__ = ["browser_figures", "assert_drawn"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no chromium to render the report with: install it (`apt-get install chromium`; "
                "scripts/system-packages.sh does it when it runs as root or with sudo)", pytrace=False)


def _chromium_run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--force-device-scale-factor=1", f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


# Run in a copy of the page: where the browser laid each figure out, and whether it decoded it.
_PROBE = """<script>window.addEventListener("load", () => {
  const found = [...document.querySelectorAll("img")].map(i => { const r = i.getBoundingClientRect();
    return [i.id, Math.round(r.left + scrollX), Math.round(r.top + scrollY), Math.round(r.width),
            Math.round(r.height), i.naturalWidth].join(","); });
  const out = document.createElement("pre"); out.id = "probe";
  out.textContent = document.documentElement.scrollHeight + ";" + found.join(";");
  document.body.appendChild(out); });</script>"""

WIDTH = 1100


def browser_figures(page: Path, work: Path) -> dict[str, np.ndarray]:
    """Each <img> of ``page`` as the browser drew it: {id: pixels of its box in a full-page screenshot}."""
    from PIL import Image

    probe = work / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = _chromium_run(["--virtual-time-budget=10000", f"--window-size={WIDTH},1000", "--dump-dom",
                         probe.as_uri()], work / "profile").stdout
    match = re.search(r'<pre id="probe">([^<]*)</pre>', dom)
    assert match, f"the probe did not run in chromium: {dom[-500:]}"
    height, *boxes = match.group(1).split(";")
    shot = work / "page.png"
    # The page itself, unmodified, in a window as tall as the page, so that every figure is on screen.
    _chromium_run([f"--window-size={WIDTH},{height}", f"--screenshot={shot}", page.as_uri()], work / "profile")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    figures = {}
    for box in filter(None, boxes):
        name, left, top, width, height_, natural = box.rsplit(",", 5)
        left, top, width, height_, natural = map(int, (left, top, width, height_, natural))
        assert natural > 0, f"chromium could not decode the image {name}"
        assert width > 100 and height_ > 100, f"{name} is drawn {width}x{height_} pixels: too small to read"
        figures[name] = pixels[top + 2:top + height_ - 2, left + 2:left + width - 2]
    return figures


def assert_drawn(figures: dict[str, np.ndarray], expected: set[str]) -> None:
    assert set(figures) == expected, f"figures drawn: {sorted(figures)}, expected: {sorted(expected)}"
    for name, region in figures.items():
        ink = (region < 200).mean()  # share of pixels with lines, text, bars or cells: a blank figure has none
        assert region.std() > 8 and ink > 0.01, f"{name} is blank in the browser (std {region.std():.1f}, ink {ink:.3f})"
