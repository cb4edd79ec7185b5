"""The live status page in a real headless Chromium (Debian's, driven by Playwright)."""

import os

import httpx
import pytest

from tests.server import LiveServer

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
PLAYWRIGHT_TIMEOUT_MS = 30_000  # generous: Playwright's 5 s default flakes on a busy 2-core machine
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("status"), env={"DJANGO_SUPERUSER_PASSWORD": "pw"})
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


def test_a_tier_flips_to_loaded_after_a_request_without_reloading_the_page(server, page):
    from playwright.sync_api import expect

    page.goto(server.base_url + "/admin/login/?next=/status/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url("**/status/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    row = page.locator('tr[data-tier="light"]')
    expect(row).to_have_attribute("data-state", "unloaded")
    expect(row.locator('[data-field="requests"]')).to_have_text("0")
    page.evaluate("window.__sameDocument = true")

    body = {"model": "light", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=120).raise_for_status()

    # Bounded waits for content pushed over the websocket, not timing assertions.
    expect(row).to_have_attribute("data-state", "ready", timeout=30_000)
    expect(row.locator('[data-field="state"]')).to_have_text("ready")
    expect(row.locator('[data-field="requests"]')).to_have_text("1", timeout=30_000)
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
