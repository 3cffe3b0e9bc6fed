"""The web view in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against uvicorn, PostgreSQL, Redis and a worker: sign in -> list -> run page -> live
states -> cancel -> sign out, with the token only ever in a form and an HttpOnly cookie. Installs chromium with apt-get when it is missing and this is root; skips only when it
cannot be installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

import httpx
import pytest

from .conftest import TOKEN

pytestmark = [pytest.mark.runtime, pytest.mark.timeout(900)]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is missing: pip install -e '.[test]'")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1280,1000"]

SLEEPER = textwrap.dedent("""
    version: "1.0"
    name: sleeper
    tasks:
      - {name: nap, action: tests.sleep_then, input: {seconds: 60, value: late}}
""")


def _installed() -> bool:
    return all(os.access(path, os.X_OK) for path in (CHROMIUM, CHROMEDRIVER))


def _install() -> str | None:
    """apt-get install chromium chromium-driver; None on success, else why not."""
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return "chromium is not installed and apt-get cannot be used here (not root or no apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
    try:
        if subprocess.run(command, env=env, capture_output=True, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300)
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                return f"apt-get install chromium chromium-driver failed: {result.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        return "apt-get install chromium chromium-driver timed out"
    return None if _installed() else "apt-get ran but /usr/bin/chromium or chromedriver is still missing"


@pytest.fixture(scope="session")
def chromium_paths():
    if not _installed():
        problem = _install()
        if problem:
            pytest.skip(f"browser test skipped: chromium cannot be installed: {problem}")
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture
def browser(chromium_paths, tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium_paths[0]
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromium_paths[1]))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def api(base: str):
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def text_of(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def wait_for(driver, condition, timeout: float = 30, message: str = ""):
    # An element found just before the page replaced it is stale: look again at the next poll.
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
                         ).until(lambda d: condition(d), message)


def sign_in(driver, base: str, path: str) -> None:
    """Open `path`: the page finds the API wants a token and sends the browser to the login form;
    the token typed there comes back as an HttpOnly cookie, and the browser returns to `path`."""
    driver.get(base + path)
    wait_for(driver, lambda d: d.current_url.startswith(f"{base}/login?next="), message="not sent to the login form")
    driver.find_element(By.ID, "login-token").send_keys("wrong")
    driver.find_element(By.ID, "login-button").click()
    wait_for(driver, lambda d: "wrong=1" in d.current_url and d.find_element(By.ID, "login-error").is_displayed(),
             message="a wrong token not told")
    driver.find_element(By.ID, "login-token").send_keys(TOKEN)
    driver.find_element(By.ID, "login-button").click()
    wait_for(driver, lambda d: d.current_url == base + path, message="not back on the page after signing in")
    cookies = {c["name"]: c for c in driver.get_cookies()}
    assert cookies["orchestrator_session"]["httpOnly"] and cookies["orchestrator_session"]["sameSite"] == "Strict"
    assert driver.execute_script("return document.cookie") == ""  # no script can read it


def requests_made(driver) -> list[tuple[str, str]]:
    """(method, url) of every request the browser sent since the last call."""
    import json

    sent = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            request = message["params"]["request"]
            sent.append((request["method"], request["url"]))
    return sent


def test_runs_list_to_run_page_with_live_graph_and_escaped_results(worker, live_server, browser, tmp_path):
    with api(live_server) as client:
        run_id = client.post("/api/runs", json={"workflow": "hello",
                                                "params": {"name": "<b>Ada</b><img src=x>"}}).json()["id"]
    sign_in(browser, live_server, "/")
    link = wait_for(browser, lambda d: d.find_elements(By.LINK_TEXT, run_id), message="run not listed")[0]
    link.click()
    wait_for(browser, lambda d: text_of(d, "#run-status") == "succeeded", message="final status not shown")
    assert browser.current_url.startswith(f"{live_server}/runs/{run_id}")
    rows = wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")) == 4
                    and d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr"), message="task rows missing")
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in rows] == ["greet", "shout", "whisper", "summarise"]
    assert all("succeeded" in r.text for r in rows)
    nodes = browser.find_elements(By.CSS_SELECTOR, "#graph svg g.node")
    assert sorted(n.get_attribute("data-task") for n in nodes) == ["greet", "shout", "summarise", "whisper"]
    wait_for(browser, lambda d: all("st-succeeded" in n.get_attribute("class") for n in nodes), 10,
             "graph nodes not coloured as succeeded")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#graph svg path.edge")) == 4
    # User data is text: the markup in the parameter shows literally and creates no elements.
    assert "Hello, <b>Ada</b><img src=x>!" in text_of(browser, "#tasks")
    assert "HELLO, <B>ADA</B><IMG SRC=X>!" in text_of(browser, "#run-output")
    assert not browser.find_elements(By.CSS_SELECTOR, "main b, main img")
    log = wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log tbody tr")) == 10
                   and d.find_elements(By.CSS_SELECTOR, "#log tbody tr"), 10, "the log is not complete")
    assert log[0].get_attribute("data-kind") == "workflow.started"
    assert log[-1].get_attribute("data-kind") == "workflow.succeeded"
    browser.save_screenshot(str(tmp_path / "run.png"))
    sent = requests_made(browser)
    assert any(url.startswith(f"{live_server}/api/runs/{run_id}") for _, url in sent)
    assert not [url for _, url in sent if TOKEN in url], "the token went into a URL"


def test_cancel_a_long_run_from_its_page(worker, live_server, browser):
    with api(live_server) as client:
        run_id = client.post("/api/runs", json={"workflow": SLEEPER}).json()["id"]
    sign_in(browser, live_server, f"/runs/{run_id}")
    wait_for(browser, lambda d: text_of(d, "#run-status") == "running", message="run not shown running")
    wait_for(browser, lambda d: text_of(d, "#feed-state") == "live", message="the live feed is not followed")
    wait_for(browser, lambda d: "nap" in text_of(d, "#tasks"), message="running task not listed")
    browser.find_element(By.ID, "op-cancel").click()
    wait_for(browser, lambda d: text_of(d, "#op-response").startswith("cancel → 200"), 15,
             "the cancel response is not shown")
    assert f'"id": "{run_id}"' in text_of(browser, "#op-response")
    wait_for(browser, lambda d: text_of(d, "#run-status") == "canceled", 30, "the run did not end canceled")
    wait_for(browser, lambda d: "canceled" in text_of(d, "#tasks"), 10, "the task row is not canceled")
    kinds = wait_for(browser, lambda d: [r.get_attribute("data-kind") for r in d.find_elements(
        By.CSS_SELECTOR, "#log tbody tr")][-1:] == ["workflow.canceled"] and [
        r.get_attribute("data-kind") for r in d.find_elements(By.CSS_SELECTOR, "#log tbody tr")],
        10, "the log does not end with the cancel")
    assert kinds == ["workflow.started", "task.started", "workflow.canceling", "task.canceled", "workflow.canceled"]
    sent = requests_made(browser)
    assert ("GET", f"{live_server}/api/runs/{run_id}/events") in sent  # the SSE feed, with the cookie
    assert ("POST", f"{live_server}/api/runs/{run_id}/cancel") in sent
    assert not [url for _, url in sent if TOKEN in url], "the token went into a URL"
    browser.find_element(By.ID, "sign-out").click()
    wait_for(browser, lambda d: d.current_url.startswith(f"{live_server}/login"), message="sign out did not")
    browser.get(f"{live_server}/runs/{run_id}")
    wait_for(browser, lambda d: d.current_url.startswith(f"{live_server}/login?next="), message="still signed in")
