"""The dashboard in a real browser: headless Chromium driven by Playwright, against a real cluster.

What a person sees is checked: the job appears, its progress moves, it ends succeeded, the lease graph
ends at zero, a failed job shows its traceback (escaped), a cancel from the page cancels, and the page
fits a phone's screen. A screenshot of each page is saved in test-output/dashboard/ (ZMR_TEST_OUTPUT).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zmr.client import JobFailed

from .conftest import APPS, REPO, TEST_APPS, Cluster, wait_until

pytestmark = pytest.mark.e2e

GATED_APP = TEST_APPS / "gated.py"
FAIL_REDUCE_APP = TEST_APPS / "fail_reduce.py"
EVIL_APP = TEST_APPS / "evil_error.py"
SCREENSHOTS = Path(os.environ.get("ZMR_TEST_OUTPUT", REPO / "test-output")) / "dashboard"
# without the networking flags, a headless Chromium reaches out to Google's hosts at start
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 30_000


def chromium_path() -> str | None:
    for candidate in (os.environ.get("ZMR_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium browser on this machine (scripts/test installs Debian's chromium as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield p
        assert not errors, f"the page's script failed: {errors}"
    finally:
        context.close()


def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def gated_job(c: Cluster, library: Path, tmp_path: Path, free: int = 0) -> tuple[str, Path]:
    """A job whose maps wait for `gate`, all but the first `free` of them."""
    assert c.client is not None
    gate = tmp_path / "gate"
    job = c.client.submit(str(GATED_APP), [str(library)], str(tmp_path / "out"), n_reduce=3,
                          args=[f"gate={gate}", "gate_timeout=60", f"free={free}"])
    return job, gate


def test_a_job_appears_its_progress_moves_and_it_ends_succeeded_with_no_leases(
        cluster: Callable[..., Cluster], page: Any, library: Path, tmp_path: Path) -> None:
    c = cluster(2)
    job, gate = gated_job(c, library, tmp_path, free=4)   # 4 maps pass, the other 4 wait at the gate
    page.goto(c.local.dashboard_url)
    row = page.locator(f'tr.job-row[data-job="{job}"]')
    row.and_(page.locator('[data-state="running"]')).wait_for()
    row.locator(".progress-maps").filter(has_text="4/8").wait_for()
    assert "token=" not in page.url   # the token left the address bar
    assert page.locator("tr.worker-row").count() == 2
    shot(page, "overview-running")

    row.locator("a").first.click()   # the job's own page, part way through its maps
    page.locator(f'#job[data-job="{job}"][data-state="running"]').wait_for()
    page.locator("#timeline rect.attempt-map.outcome-ok").nth(3).wait_for()
    page.locator("#timeline rect.attempt-map.outcome-running").nth(1).wait_for()   # both workers wait
    wait_until(lambda: int(page.locator("#lease-graph").get_attribute("data-last-leases") or 0) > 0, 10,
               what="leases of the committed maps")
    assert page.locator("#cancel-job").count() == 1
    shot(page, "job-running")

    gate.touch()
    page.locator(f'#job[data-job="{job}"][data-state="succeeded"]').wait_for()
    page.locator("a.back").first.click()
    page.locator(f'tr.job-row[data-job="{job}"][data-state="succeeded"]').wait_for()
    assert row.locator(".progress-maps").inner_text().strip() == "8/8"
    assert row.locator(".progress-reduces").inner_text().strip() == "3/3"
    shot(page, "overview")

    row.locator("a").first.click()
    page.locator(f'#job[data-job="{job}"][data-state="succeeded"]').wait_for()
    page.locator('#lease-graph[data-last-leases="0"]').wait_for()   # intermediate data all gone
    assert int(page.locator("#lease-graph").get_attribute("data-peak-leases") or 0) > 0
    bars = page.locator("#timeline rect.attempt")
    assert bars.count() >= 11   # 8 maps and 3 reduces, each at least once
    assert page.locator("#timeline rect.attempt-map.outcome-ok").count() == 8
    assert page.locator("#timeline rect.attempt-reduce.outcome-ok").count() == 3
    assert page.locator("#cancel-job").count() == 0   # nothing to cancel once it ended
    shot(page, "job")


def test_a_failed_job_shows_its_traceback(cluster: Callable[..., Cluster], page: Any, library: Path,
                                          tmp_path: Path) -> None:
    c = cluster(1, retry__max_attempts="2", retry__base="0.05")
    assert c.client is not None
    job = c.client.submit(str(FAIL_REDUCE_APP), [str(library)], str(tmp_path / "out"), n_reduce=1)
    with pytest.raises(JobFailed):
        c.client.wait(job, timeout=60)
    page.goto(f"{c.local.dashboard_url}#/jobs/{job}")
    page.locator(f'#job[data-job="{job}"][data-state="failed"]').wait_for()
    error = page.locator("#job-error").inner_text()
    assert "Traceback (most recent call last)" in error and "zmr-e2e-reduce-boom" in error
    assert page.locator("#timeline rect.attempt-reduce.outcome-failed").count() == 2
    shot(page, "job-failed")
    page.goto(c.local.dashboard_url.split("?")[0] + "#/")
    page.locator(f'tr.job-row[data-job="{job}"][data-state="failed"]').wait_for()
    assert "task_failed" in page.locator("#warnings").inner_text()


def test_what_jobs_say_is_shown_as_text_never_run_as_markup(cluster: Callable[..., Cluster], page: Any,
                                                          library: Path, tmp_path: Path) -> None:
    c = cluster(1, retry__max_attempts="1")
    assert c.client is not None
    job = c.client.submit(str(EVIL_APP), [str(library)], str(tmp_path / "out"), n_reduce=1)
    with pytest.raises(JobFailed):
        c.client.wait(job, timeout=60)
    page.goto(f"{c.local.dashboard_url}#/jobs/{job}")
    page.locator(f'#job[data-job="{job}"][data-state="failed"]').wait_for()
    assert '<img src=x onerror="window.__pwned=1">' in page.locator("#job-error").inner_text()
    page.goto(c.local.dashboard_url.split("?")[0] + "#/")
    page.locator(f'tr.job-row[data-job="{job}"]').wait_for()
    page.locator("#warnings li").first.wait_for()
    assert "<script>window.__pwned=2</script>" in page.locator("#warnings").inner_text()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#warnings img, #job-error img, #warnings script").count() == 0


def test_cancel_from_the_page_cancels_the_job(cluster: Callable[..., Cluster], page: Any, library: Path,
                                              tmp_path: Path) -> None:
    c = cluster(2)
    job, _ = gated_job(c, library, tmp_path)
    page.goto(f"{c.local.dashboard_url}#/jobs/{job}")
    page.locator(f'#job[data-job="{job}"][data-state="running"]').wait_for()
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel-job").click()
    page.locator(f'#job[data-job="{job}"][data-state="cancelled"]').wait_for()
    assert "cancelled" in page.locator("#cancel-result").inner_text()
    assert c.client is not None
    wait_until(lambda: c.client and c.client.status(job).jobs[0].state == "cancelled", 10, what="the cancel")
    shot(page, "job-cancelled")


def test_without_its_token_the_page_reads_but_cannot_cancel(cluster: Callable[..., Cluster], page: Any,
                                                           library: Path, tmp_path: Path) -> None:
    c = cluster(1)
    job, gate = gated_job(c, library, tmp_path)
    page.goto(c.local.dashboard_url.split("?")[0] + f"#/jobs/{job}")
    page.locator(f'#job[data-job="{job}"][data-state="running"]').wait_for()
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel-job").click()
    page.locator("#cancel-result").filter(has_text="token").wait_for()
    assert c.client is not None and c.client.status(job).jobs[0].state == "running"
    gate.touch()
    assert c.client.wait(job, timeout=60).state == "succeeded"


def test_a_multi_step_job_lists_its_steps_and_each_step_names_its_job(cluster: Callable[..., Cluster], page: Any,
                                                                       library: Path, tmp_path: Path) -> None:
    c = cluster(2)
    assert c.client is not None
    job = c.client.submit(str(APPS / "topwords.py"), [str(library)], str(tmp_path / "out"), n_reduce=2, args=["5"])
    assert c.client.wait(job, timeout=60).state == "succeeded"
    page.goto(c.local.dashboard_url)
    row = page.locator(f'tr.job-row[data-job="{job}"][data-state="succeeded"]')
    row.wait_for()
    assert row.locator(".steps-note").inner_text().strip() == "· 2 steps"
    info = c.client.job(job, tasks=False)   # the row counts both steps: count's maps and reduces, then top's
    maps, reduces = sum(s.maps_total for s in info.steps), sum(s.reduces_total for s in info.steps)
    assert maps > info.maps_total and reduces == 2 + 1
    assert row.locator(".progress-reduces").inner_text().strip() == f"{reduces}/{reduces}"
    assert row.locator(".progress-maps").inner_text().strip() == f"{maps}/{maps}"
    assert page.locator("tr.job-row").count() == 1   # the count step's job is not listed on its own

    row.locator("a").first.click()
    page.locator(f'#job[data-job="{job}"]').wait_for()
    whole = page.locator(".job-progress")   # the job's page counts both steps too
    assert whole.locator(".progress-reduces").inner_text().strip() == f"{reduces}/{reduces}"
    assert whole.locator(".progress-maps").inner_text().strip() == f"{maps}/{maps}"
    steps = page.locator("tr.step-row")
    steps.nth(1).wait_for()
    assert [steps.nth(k).get_attribute("data-step") for k in range(steps.count())] == ["count", "top"]
    assert [steps.nth(k).get_attribute("data-state") for k in range(2)] == ["succeeded", "succeeded"]
    assert steps.nth(1).get_attribute("data-job") == job   # the last step is the job the client knows
    assert [steps.nth(k).locator("td").nth(1).inner_text().strip() for k in range(2)] == ["0", "1"]   # waves
    assert steps.nth(0).locator(".progress-reduces").inner_text().strip() == "2/2"
    assert steps.nth(1).locator(".progress-reduces").inner_text().strip() == "1/1"
    shot(page, "job-steps")

    first = steps.nth(0).get_attribute("data-job")
    assert first and first != job
    steps.nth(0).locator("a").click()
    page.locator(f'#job[data-job="{first}"]').wait_for()
    assert page.locator("#step-of a").inner_text() == job
    assert page.locator("tr.step-row").count() == 0


def test_the_overview_fits_a_phone_screen(cluster: Callable[..., Cluster], browser: Any, library: Path,
                                          tmp_path: Path) -> None:
    c = cluster(1)
    assert c.client is not None
    job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), n_reduce=2)
    c.client.wait(job, timeout=60)
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    try:
        p = context.new_page()
        p.set_default_timeout(WAIT_MS)
        p.goto(c.local.dashboard_url)
        p.locator(f'tr.job-row[data-job="{job}"][data-state="succeeded"]').wait_for()
        # the page itself never scrolls sideways: wide tables scroll inside their own box
        assert p.evaluate("document.documentElement.scrollWidth") <= 390 + 1
        shot(p, "overview-phone")
    finally:
        context.close()
