"""Logins: hashing, the auth file, --auth pairs, the Gradio callable and the adduser CLI."""

import io
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hitl import auth, throttle
from hitl.auth import (
    Authenticator,
    add_user,
    adduser_main,
    hash_password,
    parse_auth_pair,
    read_auth_file,
    verify_password,
)

REPO = Path(__file__).resolve().parent.parent


def test_hash_verifies_right_password_only():
    stored = hash_password("s3cret:with colon")
    assert stored.startswith("scrypt$n=16384,r=8,p=1$")
    assert verify_password("s3cret:with colon", stored)
    assert not verify_password("s3cret:with colo", stored)
    assert not verify_password("", stored)


def test_same_password_gets_different_salts():
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b
    assert a.split("$")[2] != b.split("$")[2]
    assert verify_password("pw", a) and verify_password("pw", b)


def test_given_salt_is_deterministic():
    assert hash_password("pw", salt=b"x" * 16) == hash_password("pw", salt=b"x" * 16)


@pytest.mark.parametrize(
    "stored",
    [
        "plain",
        "md5$n=2,r=1,p=1$AA==$AA==",
        "scrypt$n=3,r=8,p=1$AA==$AA==",
        "scrypt$n=16384,r=8,p=1$!!$AA==",
        "scrypt$x$AA==$AA==",
    ],
)
def test_malformed_stored_hash_raises(stored):
    with pytest.raises(ValueError):
        verify_password("pw", stored)


def test_add_user_creates_file_with_mode_600(tmp_path):
    path = tmp_path / "sub" / "users.txt"
    add_user(path, "alice", "pw1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = read_auth_file(path)
    assert list(users) == ["alice"]
    assert verify_password("pw1", users["alice"])
    assert "pw1" not in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["users.txt"]  # no temp file left behind


def test_add_user_updates_existing_user_and_keeps_other_lines(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text(f"# team\n\nbob:{hash_password('bobpw')}\nalice:{hash_password('old')}\n")
    path.chmod(0o644)
    add_user(path, "alice", "new")
    add_user(path, "carol", "cpw")
    lines = path.read_text().splitlines()
    assert lines[:3] == ["# team", "", lines[2]] and lines[2].startswith("bob:")
    assert [line.split(":")[0] for line in lines[3:]] == ["alice", "carol"]
    users = read_auth_file(path)
    assert verify_password("new", users["alice"]) and not verify_password("old", users["alice"])
    assert verify_password("bobpw", users["bob"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_malformed_line_names_line_number(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text(f"# c\nalice:{hash_password('a')}\nbob-without-hash\n")
    with pytest.raises(ValueError, match=r"line 3"):
        read_auth_file(path)
    with pytest.raises(ValueError, match=r"line 3"):
        add_user(path, "carol", "pw")  # refuses to rewrite a broken file


def test_duplicate_user_in_file_is_an_error(tmp_path):
    h = hash_password("a")
    path = tmp_path / "users.txt"
    path.write_text(f"alice:{h}\nalice:{h}\n")
    with pytest.raises(ValueError, match=r"line 2.*twice"):
        read_auth_file(path)


@pytest.mark.parametrize(
    "username, reason",
    [
        ("", "empty"),
        ("a:b", "':'"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("x" * 65, "64"),
    ],
)
def test_bad_usernames(tmp_path, username, reason):
    with pytest.raises(ValueError, match=reason):
        add_user(tmp_path / "users.txt", username, "pw")
    assert not (tmp_path / "users.txt").exists()


def test_longest_username_and_empty_password(tmp_path):
    add_user(tmp_path / "users.txt", "x" * 64, "pw")
    with pytest.raises(ValueError, match="password"):
        add_user(tmp_path / "users.txt", "bob", "")


def test_parse_auth_pair():
    assert parse_auth_pair("alice:pw") == ("alice", "pw")
    assert parse_auth_pair("alice:p:w:") == ("alice", "p:w:")
    for bad in ["alice", ":pw", "alice:", "a b:pw"]:
        with pytest.raises(ValueError):
            parse_auth_pair(bad)
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        parse_auth_pair("alice")


def test_authenticator_with_plain_and_hashed_users():
    check = Authenticator([("alice", "apw")], hashed={"bob": hash_password("bpw")})
    assert check
    assert check("alice", "apw") and check("bob", "bpw")
    assert not check("alice", "bpw") and not check("bob", "apw")
    assert not check("carol", "apw") and not check("alice", "")


def test_empty_authenticator_is_false():
    assert not Authenticator()
    assert not Authenticator([], hashed={})
    assert Authenticator(hashed={"bob": hash_password("b")})


def test_authenticator_rejects_ambiguous_or_broken_users():
    with pytest.raises(ValueError, match="alice"):
        Authenticator([("alice", "a")], hashed={"alice": hash_password("b")})
    with pytest.raises(ValueError, match="bob"):
        Authenticator(hashed={"bob": "not-a-hash"})


def test_adduser_main_with_monkeypatched_stdin(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.txt"
    monkeypatch.setattr(sys, "stdin", io.StringIO("pa ss:word\n"))
    assert adduser_main(["--auth-file", str(path), "--password-stdin", "alice"]) == 0
    assert capsys.readouterr().out.strip() == f"added alice (admin) to {path}"
    assert verify_password("pa ss:word", read_auth_file(path)["alice"])


def test_adduser_main_errors_return_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.txt"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert adduser_main(["--auth-file", str(path), "--password-stdin", "alice"]) == 2
    assert "no password" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    assert adduser_main(["--auth-file", str(path), "--password-stdin", "a:b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert adduser_main(["alice"]) == 2  # --auth-file missing
    assert not path.exists()


def test_adduser_main_getpass_confirms(tmp_path, monkeypatch):
    path = tmp_path / "users.txt"
    answers = iter(["one", "two"])
    monkeypatch.setattr(auth.getpass, "getpass", lambda prompt="": next(answers))
    assert adduser_main(["--auth-file", str(path), "bob"]) == 2
    answers = iter(["same", "same"])
    assert adduser_main(["--auth-file", str(path), "bob"]) == 0
    assert verify_password("same", read_auth_file(path)["bob"])


def test_adduser_cli_in_subprocess(tmp_path):
    path = tmp_path / "users.txt"
    code = "from hitl.auth import adduser_main; raise SystemExit(adduser_main())"
    cmd = [sys.executable, "-c", code, "--auth-file", str(path), "--password-stdin", "dana"]
    done = subprocess.run(
        cmd, input="hunter2\n", capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"added dana (admin) to {path}"
    assert Authenticator(hashed=read_auth_file(path))("dana", "hunter2")


def test_first_user_is_admin_and_roles_are_kept(tmp_path):
    path = tmp_path / "users.txt"
    assert add_user(path, "ann", "a") == "admin"  # the first user of a fresh file
    assert add_user(path, "bob", "b") == "labeler"
    assert add_user(path, "cid", "c", admin=True) == "admin"
    assert add_user(path, "ann", "new") == "admin"  # a new password keeps the role
    assert auth.read_auth_roles(path) == {"ann": "admin", "bob": None, "cid": "admin"}
    assert verify_password("b", read_auth_file(path)["bob"])


def test_roles_from_pairs_and_file():
    assert auth.users_and_roles([("a", "1"), ("b", "2")]) == {"a": "admin", "b": "labeler"}
    assert auth.users_and_roles([("a", "1"), ("b", "2", "admin")]) == {
        "a": "labeler", "b": "admin"}
    assert parse_auth_pair("b:pw:admin") == ("b", "pw", "admin")
    legacy = [("x", "h", None), ("y", "h", None)]  # a file written before roles existed
    assert auth.users_and_roles([("z", "1")], legacy) == {
        "x": "admin", "y": "labeler", "z": "labeler"}


def test_failures_block_a_name_from_that_address_only():
    checker = Authenticator([("ann", "right"), ("bob", "pw")])
    assert checker("ann", "right", "203.0.113.9")
    for _ in range(throttle.LOGIN_FAILURES_PER_PAIR):
        assert not checker("ann", "wrong", "203.0.113.9")
    assert not checker("ann", "right", "203.0.113.9")  # throttled from the guessing address
    assert checker("ann", "right", "198.51.100.7")  # the owner elsewhere is not locked out
    assert checker("bob", "pw", "203.0.113.9")  # others are not
    assert not checker("nobody", "x")  # an unknown user is checked like a known one


def test_failed_logins_from_one_address_are_throttled(app_factory):
    import httpx
    app = app_factory(auth=[("ann", "pw1")], train=False, demo_count=6)
    with httpx.Client(base_url=app.url, timeout=60) as http:
        codes = [http.post("login", data={"username": f"guess{i}", "password": "x"}).status_code
                 for i in range(throttle.LOGIN_FAILURES_PER_ADDRESS)]
        assert set(codes) == {400}
        refused = http.post("login", data={"username": "ann", "password": "pw1"})
        assert refused.status_code == 429 and "Too many failed logins" in refused.text


def test_adduser_takes_the_auth_file_from_the_environment(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.txt"
    monkeypatch.setenv("HITL_AUTH_FILE", str(path))
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    assert adduser_main(["--password-stdin", "ann"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    assert adduser_main(["--password-stdin", "bob", "--admin"]) == 0
    assert auth.read_auth_roles(path) == {"ann": "admin", "bob": "admin"}
