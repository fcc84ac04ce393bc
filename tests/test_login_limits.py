"""Login limits that slow guessing without locking the owner out, and whose address counts
(X-Forwarded-For only from the proxies --forwarded-allow-ips names, or Spaces' own)."""
from __future__ import annotations

import httpx
import pytest

from hitl import throttle
from hitl.throttle import ClientAddress, LoginLimits


def scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"type": "http", "client": (peer, 5000), "headers": headers}


def test_x_forwarded_for_counts_only_from_named_proxies():
    nobody = ClientAddress()
    assert nobody(scope("127.0.0.1", "203.0.113.9")) == "127.0.0.1"  # loopback is not a proxy
    assert nobody(scope("198.51.100.7", "203.0.113.9")) == "198.51.100.7"
    proxy = ClientAddress(["127.0.0.1", "10.0.0.0/8"])
    assert proxy(scope("127.0.0.1", "203.0.113.9")) == "203.0.113.9"
    # a client's own entries are left of what our proxies appended: they are not believed
    assert proxy(scope("127.0.0.1", "1.2.3.4, 203.0.113.9, 10.1.2.3")) == "203.0.113.9"
    assert proxy(scope("198.51.100.7", "203.0.113.9")) == "198.51.100.7"  # not a proxy of ours
    assert proxy(scope("127.0.0.1")) == "127.0.0.1"
    assert ClientAddress(["*"])(scope("198.51.100.7", "203.0.113.9, 10.0.0.1")) == "203.0.113.9"


def test_on_a_space_the_address_spaces_proxy_appended_counts():
    space = ClientAddress(["*"], on_space=True)
    assert space(scope("10.16.3.80", "203.0.113.9")) == "203.0.113.9"
    # rotating the client's own X-Forwarded-For changes nothing: the proxy's entry is last
    assert space(scope("10.16.3.80", "1.1.1.1, 203.0.113.9")) == "203.0.113.9"
    assert space(scope("10.16.3.80", "8.8.8.8, 203.0.113.9, 10.16.0.2")) == "203.0.113.9"
    assert space(scope("10.16.3.80")) == "10.16.3.80"


def test_a_name_guessed_at_waits_longer_but_is_never_locked():
    limits = LoginLimits()
    delays = []
    for i in range(12):
        delays.append(limits.delay("ann"))
        limits.failed("ann", f"203.0.113.{i}")  # a new address every time
    assert delays[:throttle.LOGIN_FAILURES_PER_USER] == [0.0] * throttle.LOGIN_FAILURES_PER_USER
    grown = delays[throttle.LOGIN_FAILURES_PER_USER:]
    assert grown == sorted(grown) and grown[0] > 0 and max(grown) == throttle.MAX_DELAY_S
    assert not any(limits.refused_from("ann", f"203.0.113.{i}") for i in range(12))
    assert not limits.refused_from("ann", "198.51.100.7")


def test_settings_flag_and_environment():
    from app import parse_settings
    s, _ = parse_settings(["--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8"], env={})
    assert s.forwarded_allow_ips == ["127.0.0.1", "10.0.0.0/8"]
    s, _ = parse_settings([], env={"HITL_FORWARDED_ALLOW_IPS": "*"})
    assert s.forwarded_allow_ips == ["*"]
    with pytest.raises(SystemExit) as exc:
        parse_settings(["--forwarded-allow-ips", "not-an-ip"], env={})
    assert exc.value.code == 2


def login(app, name: str, password: str, address: str) -> httpx.Response:
    return httpx.post(app.url + "login", data={"username": name, "password": password},
                      headers={"X-Forwarded-For": address}, timeout=60)


def test_a_guesser_cannot_keep_the_admin_out(app_factory):
    app = app_factory(auth=[("ann", "pw-ann", "admin"), ("bob", "pw-bob")], train=False,
                      demo_count=4, forwarded_allow_ips=["127.0.0.1"])
    for _ in range(throttle.LOGIN_FAILURES_PER_PAIR):
        assert login(app, "ann", "guess", "203.0.113.9").status_code == 400
    refused = login(app, "ann", "pw-ann", "203.0.113.9")  # from the guesser's address
    assert refused.status_code == 429 and "Too many failed logins" in refused.text
    assert login(app, "ann", "pw-ann", "198.51.100.7").status_code == 200  # ann herself
    assert login(app, "bob", "pw-bob", "203.0.113.9").status_code == 200


def test_rotating_x_forwarded_for_gains_nothing_without_a_named_proxy(app_factory):
    app = app_factory(auth=[("ann", "pw-ann")], train=False, demo_count=4)
    codes = [login(app, f"guess{i}", "x", f"203.0.113.{i}").status_code
             for i in range(throttle.LOGIN_FAILURES_PER_ADDRESS)]
    assert set(codes) == {400}
    assert login(app, "guess99", "x", "203.0.113.99").status_code == 429
