"""Render an HTML page in headless Chromium: a screenshot and the JavaScript errors it logged.

Started with ``--enable-logging=stderr --log-level=0``, Chromium prints every console message, whatever its
level, to stderr as ``...:INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)``, the message possibly
spanning several lines; uncaught exceptions and unhandled promise rejections arrive as ``"Uncaught ..."``
messages. To tell ``console.error``/``console.warn`` from ``console.log``, the page is rendered with a small
script first in ``<head>`` that prefixes their messages with ``ERROR_MARK``/``WARNING_MARK``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import numpy as np

ERROR_MARK = "[console.error]"
WARNING_MARK = "[console.warn]"
CONSOLE_MESSAGE = re.compile(r':CONSOLE(?::\d+|\(\d+\))\] "(?P<message>.*?)", source: ', flags=re.DOTALL)
LEVEL_MARKING_SCRIPT = """<script>
for (const [level, mark] of [["error", "%s"], ["warn", "%s"]]) {
  const log = console[level].bind(console)
  console[level] = (...args) => log(mark, ...args)
}
</script>""" % (ERROR_MARK, WARNING_MARK)


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome executable on PATH, None if there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path is not None:
            return path
    return None


@dataclass
class RenderedPage:
    """What headless Chromium made of a page."""

    screenshot: np.ndarray  # [H, W, 3] floats in [0, 1]
    console: list[str]  # every console message, in order
    errors: list[str]  # uncaught exceptions, unhandled rejections and console.error messages
    warnings: list[str]  # console.warn messages

    def non_white_fraction(self, threshold: float = 0.98) -> float:
        """The fraction of pixels darker than ``threshold`` in some channel."""
        return float((self.screenshot < threshold).any(axis=-1).mean())

    def pixels_of_color(self, hex_color: str, tolerance: float = 0.05, min_opacity: float = 0.2) -> int:
        """The number of pixels showing ``hex_color`` blended over white with opacity at least ``min_opacity``:
        pixels on the segment from white to the colour, within ``tolerance``."""
        color = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
        direction = color - 1.0
        offsets = self.screenshot - 1.0
        opacity = np.clip(offsets @ direction / (direction @ direction), 0.0, 1.0)
        distance = np.linalg.norm(offsets - opacity[..., None] * direction, axis=-1)
        return int(((distance < tolerance) & (opacity >= min_opacity)).sum())


def render_page(html: str, *, chromium: str, window: tuple[int, int] = (1400, 1000),
                virtual_time_ms: int = 5000, after_load_script: str | None = None,
                timeout_s: float = 60) -> RenderedPage:
    """Open ``html`` from a file in a fresh headless Chromium profile, with no network, and screenshot it
    after ``virtual_time_ms`` of (virtual) page time. ``after_load_script`` runs once the page has loaded."""
    head = re.search(r"<head[^>]*>", html, flags=re.IGNORECASE)
    head_end = head.end() if head else 0
    page = html[:head_end] + LEVEL_MARKING_SCRIPT + html[head_end:]
    if after_load_script is not None:
        page += f"<script>window.addEventListener('load', () => {{ {after_load_script} }})</script>"
    with tempfile.TemporaryDirectory(prefix="explorer-browser-") as directory:
        directory = Path(directory)
        page_path, screenshot_path = directory / "page.html", directory / "screenshot.png"
        page_path.write_text(page, encoding="utf-8")
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND",
                   f"--user-data-dir={directory / 'profile'}", f"--screenshot={screenshot_path}",
                   f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={virtual_time_ms}",
                   "--enable-logging=stderr", "--log-level=0", page_path.as_uri()]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if not screenshot_path.exists():
            raise RuntimeError(f"chromium wrote no screenshot (exit {finished.returncode}):\n{finished.stderr[-3000:]}")
        screenshot = matplotlib.image.imread(screenshot_path)[..., :3]
    console = [match["message"] for match in CONSOLE_MESSAGE.finditer(finished.stderr)]
    errors = [message for message in console if message.startswith(("Uncaught", ERROR_MARK))]
    warnings = [message for message in console if message.startswith(WARNING_MARK)]
    return RenderedPage(screenshot, console, errors, warnings)


def when_rendered(plot_name: str, action: str) -> str:
    """JavaScript running ``action`` once Bokeh has rendered the page (its document is idle), with the view of
    the plot ``plot_name`` as ``view``."""
    return """
const attempt = () => {
  const document = window.Bokeh && Bokeh.documents.length ? Bokeh.documents[0] : null
  const view = document && document.is_idle ? Bokeh.index.find_one(document.get_model_by_name("%s")) : null
  if (view == null) {
    setTimeout(attempt, 100)
    return
  }
  %s
}
attempt()
""" % (plot_name, action)
