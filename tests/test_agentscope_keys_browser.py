"""With STUDIO_AUTH=login: the real agentscope application, its key in its studio_url, asks for
input, and a member signed in through /accounts/login/ in Chromium answers it from the run page;
the agent continues. A viewer's run page shows the request without a form.

Its own module: Playwright's sync API keeps an event loop running in the main thread while its
session fixture lives (see tests/test_user_input_browser.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.agentscope_support import App, running_apps
from tests.test_agentscope_keys_e2e import PROJECT, keyed_url, read, secured_studio
from tests.test_keys_e2e import body, manage, new_trace_id

pytest.importorskip("agentscope", minversion="1.0.21")

pytestmark = [pytest.mark.server, pytest.mark.browser]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from secured_studio(tmp_path_factory.mktemp("login-browser"))


@pytest.fixture
def app(secured: dict[str, Any]) -> Iterator[Callable[..., App]]:
    yield from running_apps(secured["server"])


def sign_in(page: Any, base: str, next_path: str, username: str, password: str) -> None:
    page.goto(f"{base}{next_path}")
    # Anonymous: the run page sends the browser to sign in, and back after.
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}{next_path}")


def test_a_member_answers_the_keyed_apps_input_request_from_the_run_page(
    secured: dict[str, Any], app: Callable[..., App], page: Any
) -> None:
    from playwright.sync_api import expect

    server = secured["server"]
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Policy" in m.text else None)
    user = app("user", url=keyed_url(server, secured["ingest"]))
    run_id = user.json_line("run_id")["run_id"]
    sign_in(page, server.url, f"/runs/{run_id}/", *secured["member"])
    form = page.locator("form.input-request")
    expect(form).to_be_visible(timeout=20_000)
    expect(form.get_by_role("heading")).to_have_text("Alice is waiting for your input")
    expect(page.locator(".breadcrumbs")).to_contain_text(PROJECT)
    form.get_by_label("Your reply").fill("Kyoto, three nights")
    form.get_by_role("button", name="Send to Alice").click()

    assert user.json_line("answer")["answer"] == "Kyoto, three nights"
    assert user.wait() == 0, "".join(user.output)
    expect(page.locator(".run-status")).to_have_text("finished", timeout=20_000)
    run = read(secured, f"/api/runs/{run_id}/").json()
    assert run["project"] == PROJECT
    assert [r["answer"] for r in run["input_requests"]] == ["Kyoto, three nights"]
    assert violations == []


def test_a_viewer_sees_the_request_but_no_answer_form(
    secured: dict[str, Any], app: Callable[..., App], page: Any
) -> None:
    from playwright.sync_api import expect

    server = secured["server"]
    manage(server, "adduser", "vic", "--role", "viewer", "--password-stdin", stdin="pw-vic-9!\n")
    user = app("user", url=keyed_url(server, secured["ingest"]))
    run_id = user.json_line("run_id")["run_id"]
    sign_in(page, server.url, f"/runs/{run_id}/", "vic", "pw-vic-9!")
    waiting = page.locator(".input-request-readonly")
    expect(waiting).to_be_visible(timeout=20_000)
    expect(waiting).to_contain_text("Alice is waiting for input")
    expect(page.locator("form.input-request")).to_have_count(0)
    user.kill()
    sent = requests.post(
        f"{server.url}/v1/traces",
        data=body(new_trace_id()),
        headers={"Content-Type": "application/x-protobuf", "X-API-Key": secured["ingest"]},
        timeout=30,
    )
    assert sent.status_code == 200
    page.goto(f"{server.url}/traces/")
    expect(page.locator("#read-only-note")).to_be_visible()
    expect(page.locator("#delete-selected")).to_have_count(0)
    # A viewer ticks rows to compare them (issue 13), not to delete them.
    expect(page.locator("#trace-rows input[name=trace_id]").first).to_be_visible()
    expect(page.locator("#compare-selected")).to_be_disabled()
