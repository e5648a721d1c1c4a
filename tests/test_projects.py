"""Projects: where a trace's project comes from (key, resource attribute, AgentScope run,
default), the project-scoped overview, API, runs and live rows, the switcher, `/api/projects/`
and deleting a project (admins only)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from django.test import Client

from accounts.models import Role
from ingest import otlp, writer
from runs import writes
from runs.models import Message, Run, UserInputRequest
from studio.consumers import Subscription, build_update
from studio.filters import TraceFilter
from tests.test_accounts import login_mode, signed_in  # noqa: F401  (fixture)
from tests.test_live import commit, has, receive_until, row_ids, run, subscribe
from tracing import retention
from tracing.models import Span, Trace
from tracing.retention import Policy

MS = 1_000_000


def tid(n: int) -> str:
    return f"{n:032x}"


def body(
    trace: int,
    *,
    span: int = 1,
    resource: dict[str, str] | None = None,
    conversation: str = "",
    start_ms: float = 0,
) -> bytes:
    """An OTLP/JSON export of one span, with the resource attributes given."""
    start = time.time_ns() + int(start_ms * MS)
    attributes = [{"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}}]
    if conversation:
        attributes.append({"key": "gen_ai.conversation.id", "value": {"stringValue": conversation}})
    record = {
        "traceId": tid(trace),
        "spanId": f"{span:016x}",
        "name": f"invoke_agent T{trace}",
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 5 * MS),
        "attributes": attributes,
    }
    if span > 1:
        record["parentSpanId"] = f"{1:016x}"
    resource_attributes = [
        {"key": key, "value": {"stringValue": value}} for key, value in (resource or {}).items()
    ]
    document = {
        "resourceSpans": [
            {"resource": {"attributes": resource_attributes}, "scopeSpans": [{"spans": [record]}]}
        ]
    }
    return json.dumps(document).encode()


def store(data: bytes, key_project: str | None = None) -> None:
    """As a receiver does: decode, take the key's project, write."""
    batch = otlp.decode(data, otlp.JSON)
    batch.set_project(key_project)
    writer.write_batch(batch.records)


def project_of(trace: int) -> str:
    return Trace.objects.get(trace_id=tid(trace)).project


# Where a trace's project comes from


@pytest.mark.parametrize("attribute", ["studio.project", "openinference.project.name"])
def test_a_trace_takes_its_project_from_a_resource_attribute(db: None, attribute: str) -> None:
    store(body(1, resource={attribute: "shop", "service.name": "svc"}))
    assert project_of(1) == "shop"
    assert Span.objects.get(trace_id=tid(1)).project == "shop"


def test_studio_project_outranks_the_openinference_name(db: None) -> None:
    store(body(1, resource={"openinference.project.name": "phoenix", "studio.project": "ours"}))
    assert project_of(1) == "ours"


def test_without_key_attribute_or_run_a_trace_is_in_default(db: None) -> None:
    store(body(1, resource={"service.name": "svc"}))
    assert project_of(1) == "default"


def test_the_keys_project_outranks_the_resources(db: None) -> None:
    # Over HTTP (each form) and gRPC against a real server: tests/test_keys_e2e.py.
    store(body(1, resource={"studio.project": "resource"}), key_project="keyed")
    assert project_of(1) == "keyed"


def test_the_first_commit_of_a_trace_decides_its_project(db: None) -> None:
    store(body(1, span=1, resource={"studio.project": "first"}))
    store(body(1, span=2, resource={"studio.project": "second"}))
    # A span sent with another project's key is refused (tests/test_trace_ownership.py).
    store(body(1, span=3, resource={"studio.project": "second"}), key_project="keyed")
    trace = Trace.objects.get(trace_id=tid(1))
    assert (trace.project, trace.span_count) == ("first", 2)


def test_a_runs_traces_take_its_project_whether_it_registers_before_or_after(db: None) -> None:
    writes.register_run(run_id="run-before", project="agents", name="r")
    store(body(1, conversation="run-before"))
    assert project_of(1) == "agents"

    store(body(2, conversation="run-after"))
    assert project_of(2) == "default"
    writes.register_run(run_id="run-after", project="agents", name="r")
    assert project_of(2) == "agents"


def test_a_key_or_an_attribute_outranks_the_runs_project(db: None) -> None:
    writes.register_run(run_id="r1", project="agents", name="r")
    store(body(1, conversation="r1"), key_project="keyed")
    store(body(2, conversation="r1", resource={"studio.project": "tagged"}))
    assert (project_of(1), project_of(2)) == ("keyed", "tagged")


# Scoping


@pytest.fixture
def two_projects(db: None) -> None:
    store(body(1, resource={"studio.project": "alpha"}, start_ms=-3))
    store(body(2, resource={"studio.project": "alpha"}, start_ms=-2))
    store(body(3, resource={"studio.project": "beta"}, start_ms=-1))
    writes.register_run(run_id="ra", project="alpha", name="alpha run")
    writes.register_run(run_id="rb", project="beta", name="beta run")


def test_a_projects_home_is_its_overview(
    client: Client, two_projects: None, django_assert_num_queries: Any
) -> None:
    # Rows, cards (the project's totals, then its percentiles and newest trace: tracing.totals),
    # services: as the overview of every project; and the project's own retention.
    with django_assert_num_queries(5):
        response = client.get("/projects/alpha/")
    assert response.status_code == 200
    assert [t.trace_id for t in response.context["page"].rows] == [tid(2), tid(1)]
    assert response.context["stats"].traces == 2
    html = response.content.decode()
    assert 'href="/runs/?project=alpha"' in html
    # The filters stay in the project, and its links keep to its home.
    assert '<input type="hidden" name="project" value="alpha">' in html
    assert response.context["filter"].sort_url("duration") == "/projects/alpha/?sort=-duration"
    assert 'name="query" value="project=alpha"' in html  # the live subscription's filter


def test_a_projects_home_without_the_slash_redirects_to_it(client: Client, db: None) -> None:
    response = client.get("/projects/team/app")
    assert response.status_code == 302 and response["Location"] == "/projects/team%252Fapp/"
    assert client.get(response["Location"]).context["filter"].project == "team/app"


def test_the_overview_and_the_api_take_project_and_show_every_project_without(
    client: Client, two_projects: None
) -> None:
    page = client.get("/traces/?project=beta")
    assert [t.trace_id for t in page.context["page"].rows] == [tid(3)]
    assert len(client.get("/traces/").context["page"].rows) == 3

    api = client.get("/api/traces/?project=alpha").json()
    assert api["count"] == 2 and {t["project"] for t in api["results"]} == {"alpha"}
    assert client.get("/api/traces/").json()["count"] == 3
    # Its cursor links stay in the project.
    paged = client.get("/api/traces/?project=alpha&limit=1").json()
    assert "project=alpha" in paged["next"]
    # A pasted trace id is looked for in the project only.
    assert client.get(f"/api/traces/?project=beta&q={tid(1)}").json()["count"] == 0


def test_the_runs_page_is_scoped_to_the_project(client: Client, two_projects: None) -> None:
    html = client.get("/runs/?project=alpha").content.decode()
    assert "alpha run" in html and "beta run" not in html


def test_deleting_traces_from_a_projects_home_goes_back_to_it(
    client: Client, two_projects: None
) -> None:
    response = client.post(
        "/traces/delete/",
        {"trace_id": tid(1), "confirm": "1", "next": "/projects/alpha/"},
        headers={"HX-Request": "true", "HX-Target": "results"},
    )
    assert response.status_code == 200
    rows = re.findall(r'id="trace-([0-9a-f]{32})"', response.content.decode())
    assert rows == [tid(2)]  # alpha's remaining trace, not beta's


def test_live_rows_are_only_the_pages_projects(two_projects: None) -> None:
    alpha = Subscription(TraceFilter.from_query({"project": "alpha"}), top=True, newest_ns=None)
    update = build_update(alpha, {tid(1), tid(2), tid(3)})
    assert sorted(trace.trace_id for trace, _ in update.inserted) == [tid(1), tid(2)]


@pytest.mark.django_db(transaction=True)
def test_an_open_projects_page_gets_only_its_projects_traces_live() -> None:
    def batch(trace: int, project: str) -> list[otlp.SpanRecord]:
        records = otlp.decode(body(trace, resource={"studio.project": project}), otlp.JSON)
        return records.records

    async def scenario(socket: Any) -> None:
        await subscribe(socket, "project=alpha")
        await commit(batch(1, "beta"), batch(2, "alpha"))
        received = await receive_until(socket, has("trace-row"))
        assert row_ids(received) == [tid(2)]

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_a_trace_a_run_claims_leaves_the_default_projects_live_page() -> None:
    async def scenario(socket: Any) -> None:
        await subscribe(socket, "project=default")
        await commit(otlp.decode(body(1, conversation="late-run"), otlp.JSON).records)
        assert row_ids(await receive_until(socket, has("trace-row"))) == [tid(1)]
        from asgiref.sync import sync_to_async

        await sync_to_async(writes.register_run)(run_id="late-run", project="agents", name="r")
        received = await receive_until(socket, has(f"#trace-{tid(1)}"))
        assert "delete:" in received[-1]

    run(scenario)


# The switcher and the list of projects


def test_the_switcher_lists_every_project_when_opened(
    client: Client, two_projects: None, django_assert_num_queries: Any
) -> None:
    writes.register_run(run_id="rc", project="runs-only", name="r")
    # The page itself pays nothing for it: the menu loads when the switcher opens.
    html = client.get("/projects/alpha/").content.decode()
    assert '<strong id="current-project">alpha</strong>' in html
    assert 'hx-get="/projects/?nav=traces"' in html
    # One skip-scan of the traces' projects, one look at the runs'.
    with django_assert_num_queries(2):
        menu = client.get(
            "/projects/?nav=traces", headers={"HX-Request": "true", "HX-Target": "project-menu"}
        )
    links = re.findall(r'<a href="([^"]+)"', menu.content.decode())
    assert links == [
        "/traces/",
        "/projects/alpha/",
        "/projects/beta/",
        "/projects/runs-only/",
        "/projects/",
    ]
    assert 'aria-current="true">alpha<' in menu.content.decode()
    on_runs = client.get(
        "/projects/?nav=runs", headers={"HX-Request": "true", "HX-Target": "project-menu"}
    )
    assert 'href="/runs/?project=beta"' in on_runs.content.decode()


def test_the_switcher_remembers_the_last_project(client: Client, two_projects: None) -> None:
    assert client.get("/")["Location"] == "/traces/"
    client.get("/projects/beta/")
    # Home goes back to it, and the header's links stay in it on pages without a project.
    assert client.get("/")["Location"] == "/projects/beta/"
    html = client.get(f"/traces/{tid(3)}/").content.decode()
    assert '<dt>Project</dt><dd><a href="/projects/beta/">beta</a>' in html
    assert '<strong id="current-project">beta</strong>' in html
    assert 'href="/runs/?project=beta"' in html and 'href="/projects/beta/"' in html
    # Choosing "All projects" forgets it.
    client.get("/traces/")
    assert client.get("/")["Location"] == "/traces/"
    # Any name survives the cookie.
    client.get("/runs/", {"project": "Ünï code/项目"})
    assert client.get("/")["Location"] == "/projects/%C3%9Cn%C3%AF%20code%252F%E9%A1%B9%E7%9B%AE/"


def test_the_api_lists_projects_with_their_counts(
    client: Client, two_projects: None, django_assert_num_queries: Any
) -> None:
    writes.register_run(run_id="rc", project="runs-only", name="r")
    with django_assert_num_queries(2):
        body = client.get("/api/projects/").json()
    by_name = {project["name"]: project for project in body["results"]}
    assert set(by_name) == {"alpha", "beta", "runs-only"}
    assert {k: v for k, v in by_name["alpha"].items() if k != "last_activity"} == {
        "name": "alpha",
        "trace_count": 2,
        "run_count": 1,
        "cost_usd": 0,
        "unpriced_spans": 0,
    }
    assert by_name["runs-only"]["trace_count"] == 0 and by_name["runs-only"]["run_count"] == 1
    assert by_name["alpha"]["last_activity"].endswith("Z")
    # Most recently active first: the run registered last.
    assert body["results"][0]["name"] == "runs-only"


def test_the_projects_page_lists_them(client: Client, two_projects: None) -> None:
    html = client.get("/projects/").content.decode()
    assert 'href="/projects/alpha/"' in html and 'href="/projects/alpha/delete/"' in html


# Deleting a project


@pytest.fixture
def doomed(two_projects: None) -> None:
    writes.push_message(
        writes.PushedMessage(
            run_id="ra", msg_id="m1", name="a", role="user", content="hi", metadata={}
        )
    )
    writes.request_user_input(
        request_id="q1", run_id="ra", agent_id="a", agent_name="A", structured_schema=None
    )


def test_an_admin_deletes_a_project_after_confirming(client: Client, doomed: None) -> None:
    confirm = client.get("/projects/alpha/delete/")
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "2 traces" in html and "1 run" in html and 'action="/projects/alpha/delete/"' in html
    assert Trace.objects.filter(project="alpha").count() == 2  # nothing gone yet

    client.get("/projects/alpha/")  # remembered...
    response = client.post("/projects/alpha/delete/")
    assert response.status_code == 302 and response["Location"] == "/projects/"
    assert not Trace.objects.filter(project="alpha").exists()
    assert not Span.objects.filter(trace_id__in=[tid(1), tid(2)]).exists()
    assert not Run.objects.filter(project="alpha").exists()
    assert not Message.objects.exists() and not UserInputRequest.objects.exists()
    # The other project is whole.
    assert Trace.objects.filter(project="beta").count() == 1
    assert Run.objects.filter(project="beta").count() == 1
    assert client.get("/")["Location"] == "/traces/"  # ...and forgotten
    assert client.get("/projects/alpha/delete/").status_code == 404


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_only_an_admin_deletes_a_project(login_mode: None, doomed: None, role: str) -> None:  # noqa: F811
    client = signed_in(role)
    assert client.get("/projects/alpha/delete/").status_code == 403
    assert client.post("/projects/alpha/delete/").status_code == 403
    assert Trace.objects.filter(project="alpha").count() == 2
    assert Run.objects.filter(project="alpha").exists()


def test_an_outsider_is_sent_to_sign_in(login_mode: None, doomed: None) -> None:  # noqa: F811
    client = Client()
    page = client.get("/projects/alpha/delete/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    assert client.post("/projects/alpha/delete/").status_code == 302
    assert client.get("/api/projects/").status_code == 401
    assert Trace.objects.filter(project="alpha").count() == 2


def test_an_admin_in_login_mode_deletes(login_mode: None, doomed: None) -> None:  # noqa: F811
    client = signed_in(Role.ADMIN)
    assert client.get("/projects/alpha/delete/").status_code == 200
    assert client.post("/projects/alpha/delete/").status_code == 302
    assert not Trace.objects.filter(project="alpha").exists()


# A project's own retention


def test_an_admin_sets_a_projects_own_retention_on_its_page(
    client: Client, two_projects: None, settings: Any
) -> None:
    settings.STUDIO_RETENTION_DAYS = 30
    settings.STUDIO_RETENTION_MAX_SPANS = 1_000_000
    html = client.get("/projects/alpha/").content.decode()
    assert ">Keeping traces for 30 days, at most 1M spans.</p>" in html
    assert 'action="/projects/alpha/retention/"' in html
    assert 'name="days" min="0" value="" placeholder="30"' in html

    response = client.post("/projects/alpha/retention/", {"days": "7", "max_spans": ""})
    assert response.status_code == 302 and response["Location"] == "/projects/alpha/"
    assert retention.policy_for("alpha") == Policy(days=7, max_spans=1_000_000)
    html = client.get("/projects/alpha/").content.decode()
    assert ">Keeping traces for 7 days, at most 1M spans (this project's own).</p>" in html
    assert 'name="days" min="0" value="7"' in html
    # The other project and the overview of all keep the global policy.
    assert (
        ">Keeping traces for 30 days, at most 1M spans.</p>"
        in client.get("/projects/beta/").content.decode()
    )
    assert (
        ">Keeping traces for 30 days, at most 1M spans.</p>"
        in client.get("/traces/").content.decode()
    )

    bad = client.post("/projects/alpha/retention/", {"days": "-1", "max_spans": "x"})
    assert bad.status_code == 400
    assert b"days" in bad.content and b"max_spans" in bad.content
    assert retention.policy_for("alpha") == Policy(days=7, max_spans=1_000_000)

    # Both blank: back to the global default.
    client.post("/projects/alpha/retention/", {"days": "", "max_spans": ""})
    assert retention.policy_for("alpha") == Policy(days=30, max_spans=1_000_000)
    assert not retention.own_policies()


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_only_an_admin_changes_a_projects_retention(
    login_mode: None,  # noqa: F811
    two_projects: None,
    role: str,
) -> None:
    client = signed_in(role)
    html = client.get("/projects/alpha/").content.decode()
    assert "Keeping traces for" in html and "/projects/alpha/retention/" not in html
    assert client.post("/projects/alpha/retention/", {"days": "1"}).status_code == 403
    assert not retention.own_policies()


def test_an_outsider_cannot_change_a_projects_retention(
    login_mode: None,  # noqa: F811
    two_projects: None,
) -> None:
    response = Client().post("/projects/alpha/retention/", {"days": "1"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not retention.own_policies()


def test_an_admin_in_login_mode_changes_a_projects_retention(
    login_mode: None,  # noqa: F811
    two_projects: None,
) -> None:
    client = signed_in(Role.ADMIN)
    assert "/projects/alpha/retention/" in client.get("/projects/alpha/").content.decode()
    assert client.post("/projects/alpha/retention/", {"max_spans": "500"}).status_code == 302
    assert retention.policy_for("alpha").max_spans == 500


@pytest.mark.django_db(transaction=True)
def test_traces_stored_before_projects_take_their_runs_project_on_migrating() -> None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.utils import timezone

    before = [("tracing", "0007_span_search"), ("runs", "0001_initial")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    old.get_model("runs", "Run").objects.create(
        id="old-run", project="legacy", name="r", started_at=timezone.now()
    )
    for n, conversation in ((1, "old-run"), (2, "")):
        old.get_model("tracing", "Trace").objects.create(
            trace_id=tid(n), start_ns=1, end_ns=2, duration_ns=1, conversation_id=conversation
        )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert (project_of(1), project_of(2)) == ("legacy", "default")
