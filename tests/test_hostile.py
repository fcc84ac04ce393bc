"""A hostile labeler against the real server.

Logged in as a labeler, every event of the page — enumerated from the app's /config, so a
new event is covered without touching this file — is run through `/gradio_api/queue/join`
with values that mean something in the session (class names, another user's image ids), and
every admin action is tried through gr.api too. Nothing a labeler sends may change what only
an admin may change (classes, trainer, settings, the session folder), nor another user's
labels, nor hand out an export of the whole session.
"""
from __future__ import annotations

import inspect
import json

import pytest

from tests import hostile_callers
from tests.page_protocol import PageSession

ADMIN_BUTTONS = {"class-add", "class-new", "class-remove-confirm", "trainer-start",
                 "trainer-stop", "export-btn", "reset-confirm", "trainer-apply"}
USERS = [("ann", "pw-ann"), ("bob", "pw-bob")]  # the first user is the admin


def protected(app) -> dict:
    """What a labeler must never change: admin-owned state and other people's work."""
    session, store = app.session, app.session.store
    s = session.settings
    cols, labels = store.table_rows("labels")
    user = cols.index("user")
    mcols, masks = store.table_rows("masks")
    return {
        "classes": store.table_rows("classes")[1],
        "others' labels": sorted(r for r in labels if r[user] != "bob"),
        "others' masks": sorted(r for r in masks if r[mcols.index("user")] != "bob"),
        "settings": (s.backbone, s.mode, s.finetune_model, s.seg_long_side),
        "trainer running": session.trainer.running,
        "session folders": sorted(p.name for p in s.session_dir.parent.iterdir()),
    }


@pytest.fixture
def guarded_app(app_factory):
    app = app_factory(auth=USERS, task="classification", demo_count=24)
    ann = app.client(auth=USERS[0])
    labeled = []
    for _ in range(3):  # the admin's own work, which bob must not undo or overwrite
        view = ann.predict("sequential", None, api_name="/next_image")
        assert ann.predict(view["image_id"], "circle", api_name="/annotate")["ok"]
        labeled.append(view["image_id"])
    leased = ann.predict("sequential", None, api_name="/next_image")["image_id"]
    return app, labeled, leased


def test_admin_actions_through_gr_api_are_refused(guarded_app):
    app, labeled, _ = guarded_app
    bob = app.client(auth=USERS[1])
    before = protected(app)
    refused = bob.predict(True, api_name="/reset_session")
    assert refused["ok"] is False and "Only an admin" in refused["error"]
    assert protected(app) == before


def test_every_page_event_through_queue_join(guarded_app):
    app, labeled, leased = guarded_app
    page = PageSession(app.url, auth=USERS[1])
    words = ["circle", "hostile", str(labeled[0]), str(leased), labeled[0]]
    server_path = str(app.session.settings.session_dir.resolve())
    before = protected(app)
    seen_admin, refusals = set(), set()
    assert len(page.events) > 40
    for event in page.events:
        for args in page.argument_sets(event, words, limit=5):
            result = page.call(event["id"], args)
            text = json.dumps(result.get("output"))
            assert "hitl-export" not in text, f"event {event['id']} handed out an export"
            assert server_path not in text, f"event {event['id']} showed a server path"
            now = protected(app)
            changed = {k for k in before if before[k] != now[k]}
            assert not changed, f"event {event['id']} ({event.get('api_name')}) " \
                                f"with {args!r} changed {changed}"
            admin = page.elem_ids(event) & ADMIN_BUTTONS
            if admin:
                seen_admin |= admin
                if "Only an admin" in text and "bob is a labeler" in text:
                    refusals |= admin
    # every admin button of the page was found and answered with a refusal
    expected = ADMIN_BUTTONS
    assert seen_admin >= expected and refusals >= expected, (seen_admin, refusals)


def test_the_harness_sees_an_admin_change(guarded_app):
    """The same protocol, as the admin, does change what the labeler could not."""
    app, _, _ = guarded_app
    page = PageSession(app.url, auth=USERS[0])
    add = page.event_by_elem("class-add", "click")
    before = protected(app)
    result = page.call(add["id"], ["okapi"])
    assert result["success"], result
    assert protected(app)["classes"] != before["classes"], result["output"]["data"][2:]


def hostile_payloads(labeled: list[int], leased: int) -> list:
    """What a page script could send a board's server functions: another user's labeled and
    leased images, to label, skip, release, hold or open; and junk."""
    mine = labeled[0]
    return [
        {"image_id": mine, "class_name": "square", "op": "label", "rev": None},
        {"image_id": mine, "op": "skip"},
        {"image_id": leased, "class_name": "square", "op": "label"},
        {"image_id": leased, "op": "skip"},
        {"ids": [*labeled, leased], "held": [*labeled, leased], "strategy": "sequential"},
        {"image_id": str(mine)}, {"step": 1, "from": mine},
        {"image_id": "x" * 100_000}, "not a dict", None,
    ]


def test_every_server_function_of_the_page(guarded_app):
    """gr.HTML server functions are page events outside the queue: same rules."""
    app, labeled, leased = guarded_app
    page = PageSession(app.url, auth=USERS[1])
    assert page.server_functions, "the boards register server functions"
    before = protected(app)
    holder = app.session.store.lease_holder(leased)
    for component_id, name in page.server_functions:
        for data in hostile_payloads(labeled, leased):
            answer = page.call_server(component_id, name, data)
            assert "x" * 1000 not in json.dumps(answer), f"{name} echoed a huge input"
            assert str(app.session.settings.session_dir.resolve()) not in json.dumps(answer)
            now = protected(app)
            changed = {k for k in before if before[k] != now[k]}
            assert not changed, f"{name} with {data!r:.80} changed {changed}"
            assert app.session.store.lease_holder(leased) == holder, f"{name} took ann's lease"


def test_two_anonymous_browsers_are_two_people(app_factory):
    """Without logins each browser has its own id (a cookie the page sets): they get
    different images, and one's undo never takes back the other's label."""
    app = app_factory(task="classification", demo_count=12, train=False)
    a, b = PageSession(app.url), PageSession(app.url)
    a.http.cookies.set("hitl_browser", "a" * 32)
    b.http.cookies.set("hitl_browser", "b" * 32)
    assert "hitl_browser" in a.http.get("").text  # the page sets the cookie itself
    board = next(cid for cid, name in a.server_functions if name == "cls_take")
    first = a.call_server(board, "cls_take", {"strategy": "sequential"})["items"][0]
    second = b.call_server(board, "cls_take", {"strategy": "sequential"})["items"][0]
    assert first["image_id"] != second["image_id"]
    store = app.session.store
    assert store.lease_holder(first["image_id"]) == "browser-aaaaaaaaaa"
    assert store.lease_holder(second["image_id"]) == "browser-bbbbbbbbbb"
    assert a.call_server(board, "cls_act", {"image_id": first["image_id"],
                                            "class_name": "circle"})["ok"]
    assert not b.call_server(board, "cls_undo", {})["ok"]  # b has nothing to undo
    assert store.label_owner(first["image_id"]) == "browser-aaaaaaaaaa"


def test_every_rest_route_as_a_labeler(guarded_app):
    """The REST API (hitl/rest.py), every route of its OpenAPI schema, as the labeler with
    the page's login cookie: same rules as the page."""
    app, labeled, leased = guarded_app
    page = PageSession(app.url, auth=USERS[1])
    api = app.url + "api/v1"
    schema = page.http.get(api + "/openapi.json").json()
    bodies = [{"label": "square", "class_name": "square", "name": "zebra", "confirm": True,
               "image_ids": [*labeled, leased], "relabels": {str(labeled[0]): "square"}}, {}]
    before = protected(app)
    calls = 0
    for path, methods in schema["paths"].items():
        for method in methods:
            for image_id in (labeled[0], leased):
                url = api + path.format(image_id=image_id, name="circle", verdict="remove")
                for body in bodies if method in ("post", "put") else [None]:
                    answer = page.http.request(method.upper(), url, json=body)
                    calls += 1
                    assert answer.status_code < 500, (method, path, answer.text[:200])
                    now = protected(app)
                    changed = {k for k in before if before[k] != now[k]}
                    assert not changed, f"{method.upper()} {path} changed {changed}"
    assert calls > 30
    removed = page.http.delete(api + "/classes/circle")
    assert removed.status_code == 403 and "bob is a labeler" in removed.text


def test_the_labeler_page_hides_admin_controls(guarded_app):
    """What the page shows follows the role (the server refuses the actions anyway)."""
    app, _, _ = guarded_app
    for auth, admin in ((USERS[1], False), (USERS[0], True)):
        page = PageSession(app.url, auth=auth)
        note = next(c["id"] for c in page.config["components"]
                    if c.get("props", {}).get("elem_id") == "session-labeler")
        load = next(e for e in page.events if note in e["outputs"]
                    and any(kind == "load" for _, kind in e["targets"]))
        result = page.call(load["id"], [page.components[i]["props"].get("value")
                                        for i in load["inputs"]])
        assert result.get("success"), result
        shown = result["output"]["data"]
        controls, labeler_note = shown[load["outputs"].index(note) - 1], \
            shown[load["outputs"].index(note)]
        assert controls["visible"] is admin and labeler_note["visible"] is not admin


# ---- declared actions, and the four hostile callers generated from them ----------------------
def undeclared(cls) -> set[str]:
    """Public methods of a Service class that declare no role (and are not named as helpers
    that take no caller)."""
    from hitl.service import declared_actions
    public = {name for name, value in inspect.getmembers(cls)
              if not name.startswith("_") and callable(value)}
    return public - set(declared_actions(cls)) - set(cls.NOT_ACTIONS)


def test_every_public_service_method_declares_its_role():
    from hitl.service import Service, action, declared_actions
    assert undeclared(Service) == set()
    roles = declared_actions(Service)
    assert set(roles.values()) <= {"anyone", "labeler", "admin"}
    assert roles["reset"] == roles["add_class"] == "admin"
    assert roles["review_batch"] == roles["undo_page"] == roles["suspects"] == "labeler"

    class Sloppy(Service):  # the check sees a method that forgot its declaration
        def wipe(self, caller):
            return {}

        @action("admin")
        def wipe_properly(self, caller):
            return {}
    assert undeclared(Sloppy) == {"wipe"}


@pytest.fixture
def signed_in(app_factory, monkeypatch):
    """sign_in(app, name): a page session signed in with Hugging Face as `name` (Gradio's
    mocked OAuth routes stand in for hf.co, as in tests/test_hf_signin.py)."""
    import time

    import gradio.oauth
    info = {"access_token": "mock", "token_type": "bearer", "expires_in": 3600,
            "scope": "openid profile", "expires_at": int(time.time()) + 3600,
            "userinfo": {"preferred_username": "nobody", "orgs": []}}
    monkeypatch.setattr(gradio.oauth, "_get_mocked_oauth_info", lambda: info)

    def sign_in(app, name: str) -> PageSession:
        info["userinfo"] = {"preferred_username": name, "orgs": []}
        page = PageSession(app.url)
        assert page.http.get("login/huggingface", follow_redirects=True).status_code == 200
        session = next(c for c in page.http.cookies.jar if c.name == "session")
        page.http.cookies.set("session", session.value)  # Secure cookie over http
        return page
    return sign_in


@pytest.fixture(params=hostile_callers.KINDS)
def hostile(request, app_factory, signed_in):
    app, page, gr_request = hostile_callers.launch(request.param, app_factory, signed_in)
    labeled, leased = hostile_callers.admin_work(app)
    return hostile_callers.Hostile(request.param, app, page, labeled, leased, gr_request)


def test_every_declared_action_as_each_hostile_caller(hostile):
    """In-process, with the caller the server makes of this visitor's request: a guest is
    refused everything and changes nothing (not even a lease); the others are labelers at
    most — every admin action is refused, and nobody else's work changes."""
    from hitl.errors import HitlError, Refused
    service, app = hostile.service, hostile.app
    caller = service.caller_of(hostile.request)
    assert caller.role == ("guest" if hostile.refuses_everything else "labeler"), caller
    before, protected = hostile_callers.everything(app), \
        hostile_callers.protected(app, caller.name)
    calls = hostile_callers.generated_calls(hostile)
    assert len(calls) >= 35
    for name, role, args in calls:
        try:
            answer = getattr(service, name)(caller, *args)
        except Refused as exc:
            assert exc.status == 403 and "\n" not in str(exc)
            answer = None
        except HitlError as exc:  # bad input or a conflict: allowed only to labelers
            assert not hostile.refuses_everything and role != "admin", (name, exc)
            answer = None
        if hostile.refuses_everything or role == "admin":
            assert answer is None, f"{name} answered {hostile.kind}: {answer!r:.200}"
        if hostile.refuses_everything:
            assert hostile_callers.everything(app) == before, f"{name} changed the session"
        now = hostile_callers.protected(app, caller.name)
        changed = {k for k in protected if protected[k] != now[k]}
        assert not changed, f"{name} as {hostile.kind} changed {changed}"


def test_every_rest_route_as_each_hostile_caller(hostile):
    """Every route of the REST router, over HTTP as this visitor: a guest gets 403 for each;
    the others never an admin change, never another's work, never a server error."""
    app, http = hostile.app, hostile.page.http
    before = hostile_callers.everything(app)
    who = hostile.service.caller_of(hostile.request).name
    protected = hostile_callers.protected(app, who)
    calls = hostile_callers.rest_calls(hostile)
    assert len(calls) > 30
    for method, path, body in calls:
        answer = http.request(method, path.lstrip("/"), json=body,
                              params={"class_name": "circle"})  # /review needs one
        # never a server error; 503 is "not now" (no cached features yet for /similar)
        assert answer.status_code < 500 or answer.status_code == 503, \
            (method, path, answer.text[:200])
        if hostile.refuses_everything:
            assert answer.status_code == 403, (method, path, answer.text[:200])
            assert hostile_callers.everything(app) == before, f"{method} {path} changed it"
        now = hostile_callers.protected(app, who)
        changed = {k for k in protected if protected[k] != now[k]}
        assert not changed, f"{method} {path} as {hostile.kind} changed {changed}"
    for method, path in (("POST", "classes"), ("DELETE", "classes/circle")):
        refused = http.request(method, "api/v1/" + path, json={"name": "zebra"})
        assert refused.status_code == 403, refused.text


def test_every_api_endpoint_and_board_function_as_each_hostile_caller(hostile):
    """gr.api endpoints (through the queue, as gradio_client sends them) and the boards'
    server functions, as this visitor: the guest gets a refusal from each; nobody an admin
    change or another's work."""
    app, page = hostile.app, hostile.page
    who = hostile.service.caller_of(hostile.request).name
    before, protected = hostile_callers.everything(app), hostile_callers.protected(app, who)
    known = hostile_callers.values(hostile) | {"mask_png": "aGk=", "band": None}
    api = api_functions(app)
    endpoints = [e for e in page.events if e.get("api_name") in api]
    assert {e["api_name"] for e in endpoints} >= {"reset_session", "review_batch",
                                                   "undo", "annotate", "suspects"}
    for event in endpoints:
        params = [p for p in inspect.signature(api[event["api_name"]]).parameters.values()
                  if p.name != "request"]
        args = [known.get(p.name, None if p.default is p.empty else p.default) for p in params]
        result = page.call(event["id"], args)
        text = json.dumps(result.get("output"))
        if hostile.refuses_everything:
            assert "may not label here" in text, (event["api_name"], text[:200])
            assert hostile_callers.everything(app) == before, event["api_name"]
        if event["api_name"] == "reset_session":
            assert "Only an admin" in text or "may not label here" in text, text[:200]
        now = hostile_callers.protected(app, who)
        changed = {k for k in protected if protected[k] != now[k]}
        assert not changed, f"/{event['api_name']} as {hostile.kind} changed {changed}"
    for component_id, name in page.server_functions:
        for data in hostile_payloads(hostile.labeled, hostile.leased)[:6]:
            answer = page.call_server(component_id, name, data)
            if hostile.refuses_everything:
                assert answer.get("ok") is False and "may not label" in answer["error"], \
                    (name, answer)
                assert hostile_callers.everything(app) == before, name
            now = hostile_callers.protected(app, who)
            assert now == protected, f"{name} as {hostile.kind} changed the session"


def api_functions(app) -> dict:
    """api_name -> function of every gr.api endpoint (hitl/api.py) of the running app."""
    return {f.api_name: f.fn for f in app.demo.fns.values()
            if getattr(f.fn, "__module__", "") == "hitl.api" and f.api_name}


def test_every_page_event_as_a_guest(app_factory, signed_in):
    """A guest of Sign in with Hugging Face posting every event of the page: nothing of the
    session changes, and nothing of it is shown (not who labeled what, not the stats)."""
    app, page, _ = hostile_callers.launch("guest", app_factory, signed_in)
    labeled, leased = hostile_callers.admin_work(app)
    before = hostile_callers.everything(app)
    words = ["circle", str(labeled[0]), labeled[0]]
    for event in page.events:
        for args in page.argument_sets(event, words, limit=2):
            text = json.dumps(page.call(event["id"], args).get("output"))
            assert "ann: 3" not in text, f"event {event['id']} showed the stats"
            assert hostile_callers.everything(app) == before, f"event {event['id']} changed it"
