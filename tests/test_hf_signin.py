"""Sign in with Hugging Face, locally through Gradio's mocked OAuth routes: the profile that
hf.co's whoami would give is the one faked part (the outside world); roles come from
--hf-users / --hf-orgs / --hf-admins and the server checks them for every event."""
from __future__ import annotations

import time

import pytest

from tests.page_protocol import PageSession


@pytest.fixture
def profile(monkeypatch):
    """What hf.co says about the signed-in account (changed by the test between sign-ins)."""
    import gradio.oauth
    info = {"access_token": "mock", "token_type": "bearer", "expires_in": 3600,
            "scope": "openid profile", "expires_at": int(time.time()) + 3600,
            "userinfo": {"preferred_username": "nobody", "orgs": []}}
    monkeypatch.setattr(gradio.oauth, "_get_mocked_oauth_info", lambda: info)
    return info


def sign_in(app, profile: dict, name: str, orgs=()) -> PageSession:
    profile["userinfo"] = {"preferred_username": name,
                           "orgs": [{"preferred_username": o} for o in orgs]}
    page = PageSession(app.url)
    back = page.http.get("login/huggingface", follow_redirects=True)
    assert back.status_code == 200
    # the session cookie is marked Secure (https only); this test server speaks http
    session = next(c for c in page.http.cookies.jar if c.name == "session")
    page.http.cookies.set("session", session.value)
    return page


def add_class(page: PageSession, name: str) -> str:
    event = page.event_by_elem("class-add", "click")
    return page.call(event["id"], [name])["output"]["data"][2]


def test_roles_from_hugging_face_accounts(app_factory, profile):
    app = app_factory(hf_admins=["hf-ann"], hf_users=["hf-bob"], hf_orgs=["lab"],
                      train=False, demo_count=6, task="classification")
    assert "Added" in add_class(sign_in(app, profile, "hf-ann"), "okapi")
    assert "hf-bob is a labeler" in add_class(sign_in(app, profile, "hf-bob"), "zebra")
    member = sign_in(app, profile, "hf-cid", orgs=["lab"])
    assert "hf-cid is a labeler" in add_class(member, "zebra")
    stranger = sign_in(app, profile, "hf-eve", orgs=["elsewhere"])
    assert "may not label here" in add_class(stranger, "zebra")
    assert "may not label here" in add_class(PageSession(app.url), "zebra")  # not signed in
    names = [c.name for c in app.session.store.classes()]
    assert "okapi" in names and "zebra" not in names


def test_a_guest_sees_the_sign_in_note_not_the_tabs(app_factory, profile):
    app = app_factory(hf_users=["hf-bob"], train=False, demo_count=6)
    for page, member in ((PageSession(app.url), False),
                         (sign_in(app, profile, "hf-eve"), False),
                         (sign_in(app, profile, "hf-bob"), True)):
        note = next(c["id"] for c in page.config["components"]
                    if c.get("props", {}).get("elem_id") == "sign-in-note")
        load = next(e for e in page.events if note in e["outputs"])
        tabs, shown_note = page.call(load["id"], [])["output"]["data"]
        assert tabs["visible"] is member and shown_note["visible"] is not member


def test_a_space_without_logins_labels_openly_and_its_owner_administers(app_factory, profile):
    """A Space with `hf_oauth: true` and no logins nor lists: its owner, signed in, is admin;
    anyone else (signed in or not) labels and is refused admin actions; the page says how
    to become admin."""
    app = app_factory(space_id="someone/hitl", space_owner="someone", hf_oauth=True,
                      train=False, demo_count=6, task="classification")
    assert "Added" in add_class(sign_in(app, profile, "someone"), "okapi")
    assert "hf-eve is a labeler" in add_class(sign_in(app, profile, "hf-eve"), "zebra")
    visitor = PageSession(app.url)
    assert "is a labeler" in add_class(visitor, "zebra")
    names = [c.name for c in app.session.store.classes()]
    assert "okapi" in names and "zebra" not in names
    hint = next(c for c in visitor.config["components"]
                if c.get("props", {}).get("elem_id") == "session-labeler")
    assert "sign in with Hugging Face as its owner" in hint["props"]["value"]


def test_a_space_without_hf_oauth_has_no_owner_sign_in(app_factory):
    """Without `hf_oauth: true` nobody can sign in: visitors label, the page names the
    variables that make an admin, and admin actions are refused."""
    app = app_factory(space_id="someone/hitl", space_owner="someone", train=False,
                      demo_count=6, task="classification")
    assert app.service.access.hf is None
    visitor = PageSession(app.url)
    assert "is a labeler" in add_class(visitor, "zebra")
    hint = next(c for c in visitor.config["components"]
                if c.get("props", {}).get("elem_id") == "session-labeler")
    assert "HITL_AUTH" in hint["props"]["value"]
