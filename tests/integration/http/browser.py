"""Driving the system Chromium with Playwright, and axe-core inside it.

There is no browser download here: Playwright launches Debian's
``/usr/bin/chromium`` (``IDENTITY_TEST_CHROMIUM`` overrides). axe-core comes
from npm into a cache directory (``scripts/test`` installs it; the fixture
does too when it is missing). Without Chromium the browser tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("IDENTITY_TEST_CHROMIUM", "/usr/bin/chromium")
AXE_DIR = Path(os.environ.get("IDENTITY_TEST_AXE_DIR", Path.home() / ".cache" / "identity-axe"))
AXE_FILE = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(
    os.environ.get("IDENTITY_TEST_ARTIFACTS", Path(__file__).parents[3] / "test-artifacts")
)


def axe_source() -> str:
    if not AXE_FILE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("axe-core is not installed and npm is missing")
        subprocess.run(
            [npm, "install", "--silent", "--prefix", str(AXE_DIR), "axe-core"],
            check=True,
            timeout=180,
        )
    return AXE_FILE.read_text()


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).is_file():  # noqa: ASYNC240 - once per test, before the browser
        pytest.skip(f"no Chromium at {CHROMIUM}")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            await browser.close()


SERIOUS = ("serious", "critical")


async def axe_findings(page: Any, source: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page (evaluated through DevTools,
    so the page's CSP, which allows no inline script, is not weakened for it)."""
    await page.evaluate(source)
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.html).slice(0, 3)}))"
    )
    return [finding for finding in result if finding["impact"] in SERIOUS]


DESKTOP = {"width": 1280, "height": 720}  # Playwright's default viewport
PHONE = {"width": 375, "height": 667}  # an iPhone SE's CSS pixels

# What a page at phone width must not do: lack the viewport tag (a phone would lay it
# out 980px wide and shrink it), scroll sideways, put a control past either edge, or
# give a text field a font under 16px (iOS Safari zooms in on focusing those).
_PHONE_PROBLEMS = """() => {
  const root = document.documentElement;
  const width = root.clientWidth;
  const problems = [];
  const viewport = document.querySelector('meta[name=viewport]');
  if (!viewport || !viewport.content.includes('width=device-width')) {
    problems.push('no <meta name=viewport content=width=device-width>');
  }
  if (root.scrollWidth > width) problems.push(`scrolls sideways: ${root.scrollWidth} > ${width}`);
  const text = 'input:not([type]), input[type=text], input[type=email], input[type=password], ' +
    'input[type=tel], input[type=url], input[type=search], input[type=number], select, textarea';
  for (const el of document.querySelectorAll('input, select, textarea, button, a.button')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;  // not shown
    const name = el.outerHTML.slice(0, 80);
    if (box.left < 0 || box.right > width + 0.5) {
      problems.push(`${name} spans ${box.left}..${box.right} of ${width}`);
    }
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (el.matches(text) && size < 16) problems.push(`${name} has font-size ${size}px`);
  }
  return problems;
}"""


async def phone_problems(page: Any) -> list[str]:
    """What is wrong with the page at phone width (the page is left at that width)."""
    await page.set_viewport_size(PHONE)
    result: list[str] = await page.evaluate(_PHONE_PROBLEMS)
    return result


def screenshot_path(name: str) -> Path:
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


async def axe_findings_of_copy(
    helper: Any, url: str, html: str, source: str
) -> list[dict[str, Any]]:
    """axe-core on a copy of a page whose own JavaScript is off: the same HTML served at
    the same origin (so its stylesheets load) to a page where scripts may run."""
    await helper.route(url, lambda route: route.fulfill(body=html, content_type="text/html"))
    await helper.goto(url)
    await helper.unroute(url)
    return await axe_findings(helper, source)
