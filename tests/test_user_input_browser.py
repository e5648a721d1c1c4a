"""Answering a `UserAgent`'s structured input from the run page in a real browser.

Its own module: Playwright's sync API keeps an event loop running in the main thread while its
session fixture lives, which later `asyncio.run` or async-view tests in the same module trip on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.agentscope_support import App, running_apps
from tests.conftest import StudioServer

pytest.importorskip("agentscope", minversion="1.0")

pytestmark = [pytest.mark.server, pytest.mark.browser]


@pytest.fixture
def app(studio_server: StudioServer) -> Iterator[Callable[[str], App]]:
    yield from running_apps(studio_server)


def test_structured_input_is_answered_with_the_schema_form(
    studio_server: StudioServer, app: Callable[[str], App], page: Any
) -> None:
    from playwright.sync_api import expect

    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Policy" in m.text else None)
    user = app("structured")
    run_id = user.json_line("run_id")["run_id"]
    # Opened before the agent asks: the request appears by itself (the input region polls).
    page.goto(f"{studio_server.url}/runs/{run_id}/")
    form = page.locator("form.input-request")
    expect(form).to_be_visible(timeout=20_000)
    expect(form.get_by_role("heading")).to_have_text("Alice is waiting for your input")
    form.get_by_label("City").fill("Kyoto")
    form.get_by_label("Nights").fill("3")
    form.get_by_label("Breakfast").check()
    form.get_by_role("button", name="Send to Alice").click()

    assert user.json_line("booking")["booking"] == {
        "city": "Kyoto",
        "nights": 3,
        "breakfast": True,
    }
    assert user.wait() == 0
    expect(page.locator("form.input-request")).to_have_count(0)
    expect(page.locator(".run-status")).to_have_text("finished", timeout=20_000)
    assert violations == []
