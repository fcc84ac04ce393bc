"""hitl: label images while a model learns from every label.

    python app.py                          # the built-in demo set
    python app.py --images ~/photos        # your own folder (recursive), files or globs

Every flag can also be set with an environment variable HITL_<FLAG> (e.g. HITL_IMAGES,
HITL_SESSION), so a Hugging Face Space is configured without editing code.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from hitl.access import hf_sign_in_problem
from hitl.auth import parse_auth_pair, read_auth_file
from hitl.settings import DEVICES, MODES, Settings, default_session_dir
from hitl.tasks import TASKS

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class OneLineParser(argparse.ArgumentParser):
    """A bad value gets one line naming the flag, and exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError
    return value


_positive_int.__name__ = "positive integer"


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="app.py", description="hitl: human-in-the-loop image labeling with "
                      "continuous training. Every flag can also come from the environment "
                      "variable shown in brackets.")
    add = p.add_argument
    add("--images", nargs="+", action="extend", metavar="PATH",
        help="folders (recursive), files or globs to label; hf://datasets/OWNER/NAME[/SUBDIR] "
             "downloads a Hub dataset. Added to the session, never duplicated. Default: a "
             "generated demo set [HITL_IMAGES, comma-separated]")
    add("--session", type=Path, metavar="DIR",
        help="session folder (database, features, checkpoints); default ./session, or "
             "/data/session when /data exists [HITL_SESSION]")
    add("--task", choices=list(TASKS), help="lock the task now instead of in the UI [HITL_TASK]")
    add("--classes", metavar="A,B,C", help="class names, comma-separated [HITL_CLASSES]")
    add("--import", dest="imports", nargs="+", action="extend", metavar="SOURCE",
        help="existing labels: an ImageFolder tree, a CSV (path,label) or a folder with "
             "masks/ and images/; attributed to user 'import' [HITL_IMPORT]")
    add("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every "
                       "interface) [HITL_HOST]")
    add("--port", type=_positive_int, help="port (default 7860) [HITL_PORT]")
    add("--share", action="store_true", default=None,
        help="create a public share link; requires --auth or --auth-file [HITL_SHARE]")
    add("--auth", action="append", metavar="USER:PASS[:admin]",
        help="a login; repeatable. ':admin' makes an admin; without any, the first user is "
             "the admin [HITL_AUTH, comma-separated]")
    add("--auth-file", type=Path, metavar="FILE",
        help="logins with salted password hashes, written by 'python -m hitl adduser' "
             "[HITL_AUTH_FILE]")
    add("--allow-anonymous", action="store_true", default=None,
        help="allow --share without a login (anyone with the link can label) "
             "[HITL_ALLOW_ANONYMOUS]")
    add("--hf-users", nargs="+", action="extend", metavar="NAME",
        help="sign in with Hugging Face (a Space with hf_oauth: true): these accounts label "
             "[HITL_HF_USERS, comma-separated]")
    add("--hf-orgs", nargs="+", action="extend", metavar="ORG",
        help="... and the members of these organisations [HITL_HF_ORGS, comma-separated]")
    add("--hf-admins", nargs="+", action="extend", metavar="NAME",
        help="... and these accounts administer [HITL_HF_ADMINS, comma-separated]")
    add("--forwarded-allow-ips", metavar="IPS",
        help="proxies (addresses or networks, comma-separated; '*' for any) whose "
             "X-Forwarded-For names the client, for the login limits; on a Space, Spaces' "
             "proxy is trusted instead [HITL_FORWARDED_ALLOW_IPS]")
    add("--no-rest", dest="rest", action="store_false", default=None,
        help="no REST API under /api/v1 (the page and Gradio's API stay) [HITL_REST=0]")
    add("--device", choices=DEVICES, help="where to train: auto picks cuda, then mps, then "
                                          "cpu [HITL_DEVICE]")
    add("--backbone", metavar="NAME", help="timm model for frozen features (default "
        "vit_small_patch16_dinov3.lvd1689m) [HITL_BACKBONE]")
    add("--mode", choices=MODES, help="frozen (features cached, linear head; default) or "
                                      "finetune (end to end) [HITL_MODE]")
    add("--finetune-model", metavar="NAME", help="timm model for fine-tune mode (default "
                                                 "resnet18) [HITL_FINETUNE_MODEL]")
    add("--seg-long-side", type=_positive_int, metavar="PX",
        help="segmentation working resolution, long side in pixels (default 512) "
             "[HITL_SEG_LONG_SIDE]")
    add("--weights-dir", type=Path, metavar="DIR", help="local model weights (default "
                                                        "weights/) [HITL_WEIGHTS_DIR]")
    add("--no-train", dest="train", action="store_false", default=None,
        help="start with the trainer stopped [HITL_TRAIN=0]")
    add("--no-pretrained", dest="pretrained", action="store_false", default=None,
        help="random-init backbone, no weight lookup (tests, quick tries) [HITL_PRETRAINED=0]")
    add("--demo-count", type=_positive_int, metavar="N",
        help="images in the generated demo set (default 240) [HITL_DEMO_COUNT]")
    add("--lease-seconds", type=float, metavar="S",
        help="how long an image stays reserved for the labeler it was shown to (default 600) "
             "[HITL_LEASE_SECONDS]")
    add("--verbose", action="store_true", default=None, help="debug logging [HITL_VERBOSE]")
    return p


ENV_LISTS = {"images", "imports", "auth", "hf_users", "hf_orgs", "hf_admins"}
ENV_NAMES = {"train": "HITL_TRAIN", "pretrained": "HITL_PRETRAINED", "imports": "HITL_IMPORT",
             "rest": "HITL_REST"}


def _from_env(parser: OneLineParser, args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Fill every flag left unset from HITL_<FLAG>, with the same checks as the flag."""
    for action in parser._actions:
        dest = action.dest
        if dest == "help" or getattr(args, dest, None) is not None:
            continue
        name = ENV_NAMES.get(dest, "HITL_" + dest.upper())
        raw = env.get(name)
        if raw is None:
            continue
        flag = action.option_strings[0]
        try:
            if action.nargs == 0:  # switches
                low = raw.strip().lower()
                if low not in TRUE | FALSE:
                    raise ValueError
                value = low in TRUE
            elif dest in ENV_LISTS:
                value = [part.strip() for part in raw.split(",") if part.strip()]
            else:
                value = action.type(raw) if action.type else raw
                if action.choices and value not in action.choices:
                    raise ValueError
        except (ValueError, TypeError):
            parser.error(f"argument {flag} (from {name}): invalid value {raw!r}")
        setattr(args, dest, value)


def parse_settings(argv: Sequence[str] | None = None,
                   env: Mapping[str, str] | None = None) -> tuple[Settings, OneLineParser]:
    """Flags first, then HITL_* variables, then defaults."""
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    _from_env(parser, args, env)
    s = Settings()
    s.session_dir = args.session or default_session_dir()
    s.images = list(args.images or [])
    s.task = args.task
    s.classes = [c.strip() for c in (args.classes or "").split(",") if c.strip()]
    s.imports = list(args.imports or [])
    s.host = args.host or env.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    s.port = args.port or int(env.get("GRADIO_SERVER_PORT", 0) or 0) or 7860
    s.share = bool(args.share)
    try:
        s.auth = [parse_auth_pair(a) for a in (args.auth or [])]
    except ValueError as exc:
        parser.error(f"argument --auth: {exc}")
    s.auth_file = args.auth_file
    s.allow_anonymous = bool(args.allow_anonymous)
    s.forwarded_allow_ips = _forwarded_allow_ips(parser, args.forwarded_allow_ips)
    for key in ("device", "backbone", "mode", "finetune_model", "seg_long_side", "weights_dir",
                "train", "pretrained", "demo_count", "lease_seconds", "rest"):
        value = getattr(args, key)
        if value is not None:
            setattr(s, key, value)
    for key in ("hf_users", "hf_orgs", "hf_admins"):
        setattr(s, key, [n.strip() for v in getattr(args, key) or [] for n in v.split(",")
                         if n.strip()])
    if s.auth_file is not None:
        try:
            users = read_auth_file(s.auth_file)
        except (OSError, ValueError) as exc:
            parser.error(f"argument --auth-file: {exc}")
        if not users:  # an auth file without users must never mean "no login"
            parser.error(f"argument --auth-file: {s.auth_file} has no users; add one with "
                         f"'python -m hitl adduser --auth-file {s.auth_file} NAME'")
    s.space_id = env.get("SPACE_ID") or None
    s.space_owner = env.get("SPACE_AUTHOR_NAME") or None
    s.hf_oauth = bool(env.get("OAUTH_CLIENT_ID"))
    if (problem := hf_sign_in_problem(s)) is not None:
        parser.error(problem)
    hf = s.hf_users or s.hf_orgs or s.hf_admins
    if hf and (s.auth or s.auth_file):
        parser.error("argument --hf-users/--hf-orgs/--hf-admins: choose either Hugging Face "
                     "sign-in or --auth/--auth-file, not both")
    if s.share and not (s.auth or s.auth_file or hf) and not s.allow_anonymous:
        parser.error("argument --share: a share link is public, so it needs --auth USER:PASS "
                     "or --auth-file FILE (or --allow-anonymous to allow anyone)")
    _check_rest_exposure(s, parser, env)
    if s.imports:
        from hitl.importer import ImportSourceError, check_source
        for source in s.imports:
            try:
                check_source(source)
            except ImportSourceError as exc:
                parser.error(f"argument --import: {exc}")
    s.verbose = bool(args.verbose)
    return s, parser


def _forwarded_allow_ips(parser: OneLineParser, text: str | None) -> list[str]:
    """--forwarded-allow-ips: '*' or addresses/networks, each checked now."""
    import ipaddress
    ips = [part.strip() for part in (text or "").split(",") if part.strip()]
    for ip in ips:
        try:
            if ip != "*":
                ipaddress.ip_network(ip, strict=False)
        except ValueError:
            parser.error(f"argument --forwarded-allow-ips: {ip!r} is not an address or network")
    return ips


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _check_rest_exposure(s: Settings, parser: OneLineParser, env: Mapping[str, str]) -> None:
    """Without logins the REST API answers local clients only: listening on every interface
    with it is refused unless --allow-anonymous (on a Space, where nobody can pass a flag,
    the REST API is turned off with a warning instead)."""
    if not s.rest or s.auth or s.auth_file or s.allow_anonymous or s.host in LOCAL_HOSTS \
            or s.hf_users or s.hf_orgs or s.hf_admins:
        return
    if env.get("SPACE_ID"):
        s.rest = False
        print("hitl: REST API off: this Space has no logins (set HITL_AUTH, or "
              "HITL_ALLOW_ANONYMOUS=1 to open it to anyone)", file=sys.stderr)
        return
    parser.error(f"argument --host: {s.host} is reachable by others and this app has no "
                 "logins, so its REST API would be open to anyone: add --auth/--auth-file, "
                 "--no-rest, or --allow-anonymous")


def say(line: str) -> None:
    print(f"hitl: {line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Start, serve until SIGTERM or Ctrl-C, stop gracefully: exit 0 with "hitl: stopped".
    A session or port that cannot be opened is one line and exit 2."""
    settings, _ = parse_settings(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(settings, "verbose", False)
                        else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Gradio's queue keeps a record of each of the last N events for its monitoring view
    # (gradio/queueing.py); at its default 10,000 that is megabytes that only ever fill
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
    from hitl.app_build import CannotStart, build
    from hitl.stopping import Stop, Stopper

    stopper = Stopper().install()
    settings.catalog_in_background = True  # serve at once; --images register meanwhile
    app = None
    try:
        # The port opens before Gradio is imported (~2 s): the REST API answers at once and
        # the page says "starting…" until the app takes the same server over (hitl/server.py).
        app = build(settings, say=say)
        app.launch()
        say(f"serving on {app.url} (Ctrl-C or SIGTERM stops)")
        stopper.wait()
    except Stop:  # while starting: build and launch closed what they had opened
        pass
    except CannotStart as exc:
        print(f"hitl: error: {exc}", file=sys.stderr)
        return 2
    finally:
        stopper.stopping = True
        if app is not None:
            app.close()  # in-flight requests finish, the trainer saves, the database closes
    say("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
