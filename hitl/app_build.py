"""The one way the app is put together, for app.py, the Space and the tests alike.

`build(settings)` makes each part once, in this order:
1. the Session (database, images; its threads wait),
2. the Service every entry point goes through,
3. the server: the port opens with the REST API and a "starting…" page (hitl/starting.py),
4. Gradio is imported, on this thread, while the only other threads are the server's: importing
   it beside threads that parse Python (the trainer's torch and timm ask inspect.signature, which
   calls ast.parse) crashed a launch with "SystemError: AST constructor recursion depth mismatch",
   as Python 3.11 keeps one AST recursion counter per interpreter,
5. the session's threads start (background registration, the trainer),
6. the page (Blocks).
`App.launch()` plugs the page into the open server; `App.close()` stops all of it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from hitl.access import Access
from hitl.auth import Authenticator
from hitl.server import Server
from hitl.service import Service
from hitl.session import Session
from hitl.settings import Settings
from hitl.starting import open_port
from hitl.store.faults import open_error
from hitl.tokens import TokenChecker, tokens_path

log = logging.getLogger(__name__)


class CannotStart(Exception):
    """The session or the port cannot be opened; the message is one line saying what to do."""


@dataclass
class App:
    """Everything one running hitl is made of, each part made once by build()."""

    settings: Settings
    session: Session
    service: Service
    server: Server
    blocks: object  # gradio.Blocks (this module imports no Gradio at import time)
    auth: Authenticator | None  # the logins (None: no login), followed as their file changes
    url: str | None = None  # set by launch

    def launch(self, **kwargs) -> str:
        """Plug the page into the server (the REST API answers already); returns its URL.
        Never blocks: app.py waits for a stop signal itself."""
        from hitl.ui.app import launch
        self.url = launch(self.blocks, self.server, self.service, self.auth, **kwargs)
        return self.url

    def close(self) -> None:
        """Stop taking requests (in-flight ones finish), then stop the session's threads (the
        trainer saves its model) and close the database once its last write is done."""
        try:
            if self.url is not None:
                self.blocks.close(verbose=False)  # Gradio's queue, then this server
            self.server.close()
        finally:
            self.session.close()


def api_tokens(settings: Settings, auth: Authenticator | None) -> TokenChecker | None:
    """The REST API tokens of the auth file's users (python -m hitl adduser NAME --token),
    followed as the files change; a token works while its user is a login (`auth`)."""
    if settings.auth_file is None:
        return None
    try:
        return TokenChecker.from_file(tokens_path(settings.auth_file),
                                      users=auth.users if auth else None)
    except (OSError, ValueError) as exc:
        raise CannotStart(str(exc)) from None


def open_session(settings: Settings) -> Session:
    """The session with its threads not started yet; a session another app holds, a damaged
    database or a read-only folder is CannotStart with one line (hitl/store/faults.py)."""
    try:
        return Session(settings, start=False)
    except Exception as exc:
        message = open_error(settings.session_dir, settings.db_path, exc)
        if message is None:
            raise
        raise CannotStart(message) from exc


def build(settings: Settings, tokens: TokenChecker | None = None,
          say: Callable[[str], None] | None = None) -> App:
    """Session, Service, server and page, once each (see the module's docstring for the
    order). `tokens`: REST API tokens (default: the auth file's); `say`: where the start-up
    lines go (app.py prints them). A failure or a stop signal on the way closes what was
    made."""
    say = say or (lambda line: None)
    authenticator = Authenticator.from_settings(settings) or None
    tokens = tokens if tokens is not None else api_tokens(settings, authenticator)
    session = open_session(settings)
    server = None
    try:
        summary = (session.report.summary() if session.catalog.state == "done" else
                   "registering the images in the background (the page shows how far)")
        say(f"session {settings.session_dir.resolve()} — {summary}")
        for warning in session.warnings:
            say(warning)
        service = Service(session, Access.from_settings(settings))
        try:
            server = open_port(session, service, logins=authenticator is not None,
                               tokens=tokens)
        except OSError as exc:  # the port is in use, or the address is not this machine's
            raise CannotStart(str(exc)) from None
        import gradio  # noqa: F401  (step 4: before any thread but the server's)

        from hitl.gradio_compat import version_note
        from hitl.ui.app import build_blocks
        if version_note():
            log.warning(version_note())
        session.start()
        blocks = build_blocks(service)
        return App(settings, session, service, server, blocks, authenticator)
    except BaseException:
        if server is not None:
            server.close()
        session.close()
        raise
