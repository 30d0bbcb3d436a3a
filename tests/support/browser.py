"""A real headless Chromium (Debian's `chromium`) driven by Playwright, for the console's tests.

Browsers downloaded at test time are not available here: Playwright launches the system
Chromium by `executable_path`. `axe_violations` runs axe-core (installed by `make` from
npm) in the page through the DevTools protocol, which the page's CSP does not govern, so
the console's policy stays as strict in the test as in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.support.paths import REPO_ROOT

__all__ = ["SCREENSHOTS", "axe_violations", "chromium", "shoot"]

CHROMIUM: Final = "/usr/bin/chromium"
ARGS: Final = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
AXE: Final = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
AXE_INSTALLED: Final = AXE.is_file()
SCREENSHOTS: Final = REPO_ROOT / ".screenshots" / "console"
"""Git-ignored: what a reviewer looks at after the browser tests ran."""


def _require(what: str, ok: bool) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI (make installs it)")
    pytest.skip(f"{what} is not installed (make test installs it)")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """One browser for a module's tests (contexts are cheap; browsers are not)."""
    _require("chromium (Debian package)", bool(shutil.which(CHROMIUM)))
    _require("axe-core (npm, `make`)", AXE_INSTALLED)
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _require("playwright (the dev extra)", False)
        raise
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=list(ARGS))
        try:
            yield browser
        finally:
            await browser.close()


async def axe_violations(page: Any) -> list[str]:
    """The page's serious and critical accessibility violations, as `id: help (n nodes)`."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text())
    result = await page.evaluate(
        "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.help + ' (' + v.nodes.length + ' nodes: '"
        " + v.nodes.slice(0, 2).map(n => n.target.join(' ')).join(', ') + ')'))"
    )
    return list(result)


async def shoot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
