"""Headless Chromium (Debian's chromium and chromium-driver, scripts/setup.sh)
driven by selenium: open a report page as a reader would, find its parts,
take a screenshot of the whole page. Run as a script to screenshot pages:

    python tests/browser.py OUT_DIR page.html [page.html ...]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# no network here: Chromium's background connections would only fail (env/machines/python.md)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1280,1000")


def available() -> str:
    """'' when Chromium and its driver are installed, else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists() and not shutil.which(Path(p).name)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (the dev extra)")
    return ", ".join(missing)


@contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with tempfile.TemporaryDirectory(prefix="tinyhil-chromium-") as profile:
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER if Path(CHROMEDRIVER).exists()
                                                  else shutil.which("chromedriver")), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def open_page(driver, path: Path) -> None:
    driver.get(Path(path).resolve().as_uri())


def full_screenshot(driver, out: Path, width: int = 1280) -> Path:
    """The whole page (the window stretched to its height), as PNG."""
    height = driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)")
    driver.set_window_size(width, min(max(height, 600), 16000))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(out)):
        raise RuntimeError(f"chromium could not write {out}")
    return out


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    with chromium() as driver:
        for page in sys.argv[2:]:
            open_page(driver, Path(page))
            print(full_screenshot(driver, out_dir / (Path(page).stem + ".png")))
