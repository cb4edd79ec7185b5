"""The live status page in a real headless Chromium (Debian's, driven by Playwright)."""

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.live import EOG_BAN
from tests.helpers import wait_until
from tests.server import LiveServer

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
PLAYWRIGHT_TIMEOUT_MS = 30_000  # generous: Playwright's 5 s default flakes on a busy 2-core machine
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(
        tmp_path_factory.mktemp("status"), env={"DJANGO_SUPERUSER_PASSWORD": "pw", "STATUS_INTERVAL_SECONDS": "0.3",
                                          "LIGHT_PARALLEL": "1"},  # one slot, so a second request queues
    )
    server.start()
    server.manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    yield server
    server.stop()


@pytest.fixture
def page(server):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make install-test` installs Debian's chromium")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=PLAYWRIGHT_TIMEOUT_MS)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(PLAYWRIGHT_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def log_in(server, page) -> None:
    from playwright.sync_api import expect

    page.goto(server.base_url + "/admin/login/?next=/status/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url("**/status/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def test_a_tier_flips_to_loaded_after_a_request_without_reloading_the_page(server, page):
    from playwright.sync_api import expect

    server.internal("POST", "/unload", {"all": True})  # whatever another test of this module loaded
    wait_until(lambda: server.tier_status("light")["state"] == "unloaded", "light to unload")
    requests = server.tier_status("light")["requests"]  # 0: a tier that is not loaded shows none
    log_in(server, page)
    row = page.locator('tr[data-tier="light"]')
    expect(row).to_have_attribute("data-state", "unloaded")
    expect(row.locator('[data-field="requests"]')).to_have_text(str(requests))
    page.evaluate("window.__sameDocument = true")

    body = {"model": "light", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=120).raise_for_status()

    # Bounded waits for content pushed over the websocket, not timing assertions.
    expect(row).to_have_attribute("data-state", "ready", timeout=30_000)
    expect(row.locator('[data-field="state"]')).to_have_text("ready")
    expect(row.locator('[data-field="requests"]')).to_have_text("1", timeout=30_000)
    # The keep_alive countdown (KEEP_ALIVE's default, 5m): "4 min 59 s", counting down.
    expect(row.locator('[data-field="unload_in_seconds"]')).to_have_text(re.compile(r"^\d+ min \d+ s$"))
    assert page.evaluate("window.__sameDocument") is True  # the page was never reloaded


def test_the_admin_links_to_the_status_page_and_anonymous_users_are_sent_to_login(server, page):
    page.goto(server.base_url + "/status/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.goto(server.base_url + "/admin/")
    page.click("#status-link")
    page.wait_for_url("**/status/")
    expect_live = page.locator("#connection")
    from playwright.sync_api import expect

    expect(expect_live).to_have_attribute("data-state", "live")


def test_the_page_shows_queue_depth_tokens_per_second_and_the_hit_rate(server, page):
    from playwright.sync_api import expect

    log_in(server, page)
    row = page.locator('tr[data-tier="light"]')
    stop_long = threading.Event()

    def long_stream():  # runs until the test has seen the queue, then leaves (cancelling it)
        body = {"model": "light", "prompt": "Count: 1, 2,", "max_tokens": 1500, "logit_bias": EOG_BAN, "stream": True}
        with server.client() as http, http.stream("POST", "/v1/completions", json=body) as r:
            for _ in r.iter_lines():
                if stop_long.is_set():
                    return

    def short_request():
        body = {"model": "light", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
        with server.client() as http:
            return http.post("/v1/chat/completions", json=body).status_code

    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(long_stream)
        wait_until(lambda: server.tier_status("light")["in_flight"] == 1, "the long request to run")
        expect(row.locator('[data-field="in_flight"]')).to_have_text("1")
        expect(row.locator('[data-field="queued"]')).to_have_text("0")  # running, not queued
        expect(row.locator('[data-field="running"]')).to_have_text("1 of 1")  # the tier's one slot (parallel 1)
        expect(row.locator('[data-field="kv_cache_usage"]')).to_have_text(re.compile(r"^\d+%$"))  # the running request's cells
        queued = pool.submit(short_request)
        expect(row.locator('[data-field="in_flight"]')).to_have_text("2")
        expect(row.locator('[data-field="queued"]')).to_have_text("1")  # one waiting behind the running one
        stop_long.set()
        running.result(timeout=120)
        assert queued.result(timeout=120) == 200
    expect(row.locator('[data-field="queued"]')).to_have_text("0")
    expect(row.locator('[data-field="tokens_per_second"]')).to_have_text(re.compile(r"^\d+(\.\d)?$"))

    # The hit rate: a cacheable question asked twice is one miss and one hit.
    question = {"model": "light", "messages": [{"role": "user", "content": "Name a tree."}], "temperature": 0, "max_tokens": 3}
    with server.client() as http:
        assert [http.post("/v1/chat/completions", json=question).headers["x-cache"] for _ in range(2)] == ["MISS", "HIT"]
    rate = server.tier_status("light")["cache_hit_rate"]
    assert 0 < rate < 1
    expect(row.locator('[data-field="cache_hit_rate"]')).to_have_text(f"{100 * rate:.0f}%")
