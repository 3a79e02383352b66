"""The reports as a reader sees them: each page opened in headless Chromium,
its parts found and measured on the rendered page (the architecture drawing
with every op, the confusion matrix, the marked regression, a table that
fits), and a screenshot of each page written (TINYHIL_SCREENSHOTS=DIR keeps
them; else the test's temporary directory)."""
import os
from pathlib import Path

import pytest

from browser import available, chromium, full_screenshot, open_page
from report_pages import deployment_run, regress_history, validation_result

missing = available()
pytestmark = pytest.mark.skipif(bool(missing), reason=f"no headless browser: {missing} (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    from tinyhil.report.deployment import write_report
    from tinyhil.report.trend import write_trend

    run_dir = tmp_path_factory.mktemp("run")
    deployment = write_report([deployment_run(run_dir)], run_dir / "report.html", "tinyhil deploy: test")
    out = tmp_path_factory.mktemp("regress")
    trend = write_trend(regress_history(out).frame(), out / "trend.html", "nightly")
    from types import SimpleNamespace

    from tinyhil.lut.table import Lut
    from tinyhil.project import project_dir
    from tinyhil.report.validation import write_report as write_validation

    result = validation_result(tmp_path_factory.mktemp("validate"))
    lut = Lut.load(project_dir() / "luts" / "qemu-m4" / "micronas-100x6-c4.csv")
    write_validation(result, lut, SimpleNamespace(name="qemu-m4"))
    return {"deployment": deployment, "trend": trend, "validation": result.report_path}


@pytest.fixture(scope="module")
def driver():
    with chromium() as d:
        yield d


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return Path(os.environ.get("TINYHIL_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))


def _shown(element) -> bool:
    size = element.size
    return element.is_displayed() and size["width"] > 50 and size["height"] > 50


def _fits(driver, selector: str) -> None:
    """Tables scroll inside their box: the page itself never gets wider than the window."""
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), selector


def test_deployment_page_shows_the_architecture_and_the_confusion_matrix(driver, pages, shots):
    from selenium.webdriver.common.by import By

    open_page(driver, pages["deployment"])
    drawing = driver.find_element(By.CSS_SELECTOR, "svg.architecture")
    assert _shown(drawing)
    ops = drawing.find_elements(By.CSS_SELECTOR, "g.layer")
    assert len(ops) >= 10 and all(op.is_displayed() for op in ops)
    # branches side by side: some op boxes sit to the right of others
    lefts = {round(op.rect["x"] + op.rect["width"] / 2) for op in ops}
    assert len(lefts) >= 2
    confusion = driver.find_element(By.CSS_SELECTOR, "div.confusion svg")
    assert _shown(confusion)
    assert "device int8 vs labels" in confusion.text and "device vs host interpreter" in confusion.text
    curves = driver.find_element(By.ID, "curves-1")
    assert curves.is_displayed()
    assert "git commit" in driver.find_element(By.CSS_SELECTOR, "dl.provenance").text
    _fits(driver, "deployment")
    assert full_screenshot(driver, shots / "deployment.png").stat().st_size > 50_000


def test_trend_page_shows_the_marked_regression(driver, pages, shots):
    from selenium.webdriver.common.by import By

    open_page(driver, pages["trend"])
    (marked,) = driver.find_elements(By.CSS_SELECTOR, "div.trend.has-regression svg")
    assert _shown(marked) and "deploy/run-1: +3.09 %" in marked.text and "eeee3333ffff" in marked.text
    rows = driver.find_elements(By.CSS_SELECTOR, "table.failing tr.regression")
    assert [r.text.split()[0] for r in rows] == ["deploy/run-1"]
    panel = driver.find_element(By.CSS_SELECTOR, "div.panels svg")
    assert _shown(panel)
    # the legend is inside the drawing, not cut at its edge
    legend = marked.find_element(By.XPATH, ".//*[local-name()='g'][starts-with(@id, 'legend')]")
    assert legend.rect["x"] + legend.rect["width"] <= marked.rect["x"] + marked.rect["width"] + 1
    _fits(driver, "trend")
    assert full_screenshot(driver, shots / "trend.png").stat().st_size > 50_000


def test_validation_page_names_every_point_and_its_table_fits(driver, pages, shots):
    from selenium.webdriver.common.by import By

    open_page(driver, pages["validation"])
    figures = driver.find_elements(By.CSS_SELECTOR, "main svg.figure")
    assert len(figures) == 4 and all(_shown(f) for f in figures)
    titles = driver.find_elements(By.XPATH, "//*[local-name()='g'][starts-with(@id, 'lut-')]/*[local-name()='title']")
    assert len(titles) == 19  # the usable architectures, each named
    assert all(t.get_attribute("textContent").startswith("#") for t in titles)
    # log-log: both axes' ticks are powers of ten (10^0 and 10^1, drawn as "1 0 0" and "1 0 1")
    assert figures[0].text.count("1 0 0") >= 4 and figures[0].text.count("1 0 1") >= 4
    table = driver.find_element(By.CSS_SELECTOR, "table.validation")
    assert table.is_displayed() and len(table.find_elements(By.CSS_SELECTOR, "tr.error")) == 1
    _fits(driver, "validation")
    assert full_screenshot(driver, shots / "validation.png").stat().st_size > 50_000
