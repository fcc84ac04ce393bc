"""Logins change while the app runs: re-issued, revoked and new API tokens, removed and added
users (their cookies too), as the real server sees them; `deluser` and `revoke`."""
from __future__ import annotations

import httpx
import pytest

from hitl.__main__ import main as hitl_main
from hitl.auth import Authenticator, add_user, read_auth_roles
from hitl.logins import remove_user
from hitl.tokens import TokenChecker, add_token, read_tokens, tokens_path
from tests.conftest import wait_for


@pytest.fixture
def users(tmp_path):
    path = tmp_path / "users.txt"
    add_user(path, "ann", "pw-ann", admin=True)
    add_user(path, "bob", "pw-bob")
    return path


def launch(app_factory, users):
    """The app as app.py starts it with --auth-file: tokens of its current users only."""
    users_now = Authenticator(auth_file=users).users
    tokens = TokenChecker.from_file(tokens_path(users), users=users_now)
    return app_factory(auth_file=users, tokens=tokens, task="classification", train=False,
                       demo_count=4)


def status(app, token: str) -> int:
    return httpx.get(app.url + "api/v1/classes", headers={"Authorization": f"Bearer {token}"},
                     timeout=30).status_code


def test_tokens_are_followed_without_a_restart(app_factory, users):
    first = add_token(tokens_path(users), "bob")
    app = launch(app_factory, users)
    assert status(app, first) == 200
    second = add_token(tokens_path(users), "bob")  # re-issued: the old one stops working
    wait_for(lambda: status(app, first) == 401, timeout=10)
    assert status(app, second) == 200
    assert hitl_main(["revoke", "--auth-file", str(users), "bob"]) == 0
    wait_for(lambda: status(app, second) == 401, timeout=10)
    fresh = add_token(tokens_path(users), "ann")  # a new token works at once
    wait_for(lambda: status(app, fresh) == 200, timeout=10)


def test_a_removed_user_loses_cookie_token_and_login(app_factory, users):
    token = add_token(tokens_path(users), "bob")
    app = launch(app_factory, users)
    bob = httpx.Client(base_url=app.url, timeout=30)
    assert bob.post("login", data={"username": "bob", "password": "pw-bob"}).status_code == 200
    assert bob.get("api/v1/classes").status_code == 200
    assert bob.get("config").status_code == 200
    assert hitl_main(["deluser", "--auth-file", str(users), "bob"]) == 0
    assert "bob" not in read_tokens(tokens_path(users))
    wait_for(lambda: bob.get("api/v1/classes").status_code == 401, timeout=10)
    assert bob.get("config").status_code == 401  # the page too: the cookie is forgotten
    assert status(app, token) == 401
    again = httpx.post(app.url + "login", data={"username": "bob", "password": "pw-bob"})
    assert again.status_code == 400
    add_user(users, "cem", "pw-cem")  # a user added while the app runs can log in
    wait_for(lambda: httpx.post(app.url + "login", data={"username": "cem",
                                                         "password": "pw-cem"}).status_code
             == 200, timeout=10)
    ann = httpx.Client(base_url=app.url, timeout=30)
    assert ann.post("login", data={"username": "ann", "password": "pw-ann"}).status_code == 200
    assert ann.get("api/v1/classes").status_code == 200  # the others keep their logins


def test_a_role_written_in_the_file_applies_while_running(app_factory, users):
    app = launch(app_factory, users)
    bob = httpx.Client(base_url=app.url, timeout=30)
    assert bob.post("login", data={"username": "bob", "password": "pw-bob"}).status_code == 200
    assert bob.post("api/v1/classes", json={"name": "hexagon"}).status_code == 403
    add_user(users, "bob", "pw-bob", admin=True)
    wait_for(lambda: bob.post("api/v1/classes", json={"name": "hexagon"}).status_code == 200,
             timeout=10)


def test_deluser_and_revoke_refuse_in_one_line(users, capsys):
    assert hitl_main(["deluser", "--auth-file", str(users), "nobody"]) == 2
    assert hitl_main(["revoke", "--auth-file", str(users), "ann"]) == 2  # has no token
    err = capsys.readouterr().err
    assert "'nobody' is not a user" in err and "ann has no API token" in err
    remove_user(users, "bob")
    assert read_auth_roles(users) == {"ann": "admin"}
    assert hitl_main(["deluser", "--auth-file", str(users), "ann"]) == 2
    assert "only user" in capsys.readouterr().err
    assert read_auth_roles(users) == {"ann": "admin"}


def test_a_broken_auth_file_keeps_the_logins_it_had(users, monkeypatch, caplog):
    from hitl import file_watch
    monkeypatch.setattr(file_watch, "CHECK_EVERY_S", 0.0)
    auth = Authenticator(auth_file=users)
    assert auth.users() == {"ann", "bob"} and auth("bob", "pw-bob", "203.0.113.1")
    users.write_text("this is not a user line\n")  # an editor saving half a file
    assert auth.users() == {"ann", "bob"} and auth("bob", "pw-bob", "203.0.113.1")
    assert "cannot be read" in caplog.text
    users.unlink()
    add_user(users, "cem", "pw-cem")
    assert auth.users() == {"cem"} and not auth("bob", "pw-bob", "203.0.113.1")
