"""Headless Chromium for the page tests: Debian's chromium and chromedriver, if installed."""

from __future__ import annotations

import shutil
from pathlib import Path


def browser() -> tuple[str, str] | None:
    """Paths of chromium and chromedriver, or None when either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


NO_BROWSER = (
    "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
)


def chrome(profile: Path, size: str = "1200,1000"):
    """A headless Chrome driver with its own profile folder (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    chromium, chromedriver = browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={size}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=DriverService(chromedriver), options=options)


def waiter(driver, seconds: float = 60):
    """A WebDriverWait that retries when the page re-renders the element it was reading."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))


def data_ids(driver, selector: str) -> list[str]:
    """The data-id of every element matching `selector`, read in one script call, so a
    re-render between finding the elements and reading them cannot leave stale handles."""
    script = "return [...document.querySelectorAll(arguments[0])].map(e => e.dataset.id);"
    return driver.execute_script(script, selector)
