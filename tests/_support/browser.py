"""Render a local HTML file in headless Chromium: the DOM after layout, and a screenshot.

Chromium is installed by ``scripts/test.sh`` (Debian package ``chromium``, when run as root,
as ``.ci/run`` does); tests that need it skip with a reason where it is missing. Network is
disabled so a page that fetches anything shows broken images, which the tests detect through
``naturalWidth``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--hide-scrollbars", "--proxy-server=127.0.0.1:9",
         "--proxy-bypass-list=<-loopback>"]  # fmt: skip


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("SCORELAB_REQUIRE_BROWSER"):
        raise AssertionError("SCORELAB_REQUIRE_BROWSER is set but chromium is not installed")
    pytest.skip("headless Chromium is not installed (apt-get install chromium)")


def _run(args: list[str], timeout: float = 60) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def render_dom(path: Path) -> str:
    """The page's DOM after scripts ran and images loaded (``--dump-dom``). A script appended to
    a copy marks every image that failed to decode with ``data-broken``."""
    probe = (
        "<script>window.addEventListener('load',()=>{for(const i of document.images)"
        "{i.setAttribute('data-width',String(i.naturalWidth));"
        "if(!i.complete||i.naturalWidth===0)i.setAttribute('data-broken','1');}});</script>"
    )
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "page.html"
        copy.write_text(path.read_text().replace("</body>", probe + "</body>"))
        return _run(["--virtual-time-budget=5000", "--dump-dom", copy.as_uri()])


def screenshot(path: Path, out: Path, size: str = "1200,1600") -> Path:
    """A PNG screenshot of the page."""
    _run([f"--screenshot={out}", f"--window-size={size}", path.resolve().as_uri()])
    assert out.exists() and out.stat().st_size > 1000, "chromium wrote no screenshot"
    return out


def images(dom: str) -> list[tuple[int, bool]]:
    """``(natural width, broken?)`` of every ``<img>`` in a DOM from ``render_dom``."""
    out = []
    for tag in re.findall(r"<img\b[^>]*>", dom):
        width = re.search(r'data-width="(\d+)"', tag)
        out.append((int(width[1]) if width else 0, "data-broken" in tag))
    return out
