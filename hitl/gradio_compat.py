"""Every use of Gradio's internals, in one place.

Each function below leans on something Gradio does not document as public; each names what
it uses and the Gradio version it was checked on (requirements.txt pins that version), and
tests/test_gradio_compat.py has a test per use, so a Gradio upgrade fails there first.
This module imports Gradio only inside the functions that need it: the early server
(hitl/server.py, hitl/starting.py) uses it before Gradio is loaded.
"""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator

CHECKED_ON = "6.31.0"  # the Gradio version every use below was checked on


# ---- 1. serving on hitl's own server ---------------------------------------------------------
# Blocks.launch starts its server through gradio.http_server.start_server(app, server_name,
# server_port, ssl_keyfile, ...) -> (host, port, url, server with .close()). Checked on 6.31.0.
@contextlib.contextmanager
def launch_on(server) -> Iterator[None]:
    """While Blocks.launch runs, its server start plugs Gradio's app into `server`
    (hitl/server.py) instead of opening a port. Where launch wants another port or https
    (SSR puts Python behind Node on an internal port), `server` steps aside and Gradio starts
    its own, as without it."""
    from gradio import http_server
    original = http_server.start_server

    def start_server(app, server_name=None, server_port=None, ssl_keyfile=None, **kwargs):
        if server_port != server.port or ssl_keyfile is not None:
            server.close()
            return original(app, server_name, server_port, ssl_keyfile=ssl_keyfile, **kwargs)
        server.switch.plug(app)
        return server_name or server.host, server.port, server.url, server

    http_server.start_server = start_server
    try:
        yield
    finally:
        http_server.start_server = original


# ---- 2. forgetting the session of a raw call ---------------------------------------------------
# Blocks._queue: pending_event_ids_session, event_ids_to_events, pending_messages_per_session
# (dicts keyed by session hash / event id); Blocks.state_holder: lock, session_data,
# time_last_used. A raw call's session hash is its event id. Checked on 6.31.0.
def forget_call_session(blocks, event_id: str, unread: bool = False) -> bool:
    """Drop what Gradio keeps of the one-call session `event_id`, once its event is done
    (`unread`: and its result, which nobody has streamed, is given up); hitl/raw_calls.py
    says why."""
    queue = getattr(blocks, "_queue", None)
    holder = getattr(blocks, "state_holder", None)
    if queue is None or holder is None:
        return False
    pending = None if unread else queue.pending_event_ids_session.get(event_id)
    if pending or event_id in queue.event_ids_to_events:
        return False  # still running: its result has not been delivered
    queue.pending_event_ids_session.pop(event_id, None)
    queue.pending_messages_per_session.pop(event_id, None)
    with holder.lock:
        holder.session_data.pop(event_id, None)
        holder.time_last_used.pop(event_id, None)
    return True


# ---- 3. Gradio's login cookies -----------------------------------------------------------------
# Gradio's server app (gradio.routes.App) keeps tokens: {token: username} and cookie_id; the
# login sets the cookie access-token-<cookie_id> (access-token-unsecure-<cookie_id> over plain
# http). Checked on 6.31.0.
def login_cookie_user(app, cookies) -> str | None:
    """The user Gradio's login cookie names, read as Gradio's own check reads it (`app` is
    Gradio's server app; anything else names nobody): for routes where Gradio checks the
    login but does not name it, and for the REST API on the same server."""
    if app is None or not hasattr(app, "tokens") or not hasattr(app, "cookie_id"):
        return None
    token = (cookies.get(f"access-token-{app.cookie_id}")
             or cookies.get(f"access-token-unsecure-{app.cookie_id}"))
    return app.tokens.get(token) if token else None


def forget_logins(app, keep) -> None:
    """Gradio never asks about a login cookie again: drop those of names not in `keep` (a
    user removed from the auth file, hitl/logins.py). `app`: Gradio's server app."""
    cookies = getattr(app, "tokens", None)
    if isinstance(cookies, dict):
        for cookie, name in list(cookies.items()):
            if name not in keep:
                cookies.pop(cookie, None)


# ---- 4. naming the caller of a gr.HTML server function -----------------------------------------
# A server function gets the plain Starlette request; request.app is Gradio's App, whose
# auth_dependency (when given) names the user; gr.Request(request=..., username=...) wraps it
# as events get it. Checked on 6.31.0.
def page_request(request):
    """A gr.HTML server function gets the plain HTTP request: Gradio's route checks the login
    but does not name the user. Name them as that check does, for Service.caller_of."""
    import gradio as gr
    if getattr(request, "username", None):
        return request
    name = None
    app = getattr(request, "app", None)
    dependency = getattr(app, "auth_dependency", None)
    if dependency is not None:
        name = dependency(request)
        if inspect.isawaitable(name):  # an async dependency cannot be awaited on this thread
            name.close()
            name = None
    else:
        name = login_cookie_user(app, request.cookies)
    # a Hugging Face sign-in is read from the wrapped request by Service.caller_of
    return gr.Request(request=request, username=name)


# ---- 5. handing an event handler its request ---------------------------------------------------
# Gradio passes the gr.Request only to a positional parameter annotated gr.Request, found by
# inspecting the handler's signature; a keyword-only one after *args silently gets None.
# Checked on 6.31.0.
def with_request(fn: Callable, n_inputs: int) -> Callable:
    """`fn(*inputs, request=...)` as an event handler that really gets the gr.Request: an
    explicit signature of `n_inputs` values and the request."""
    import gradio as gr

    def run(*args, **kwargs):
        request = kwargs.pop("request", None)
        if request is None and len(args) == n_inputs + 1:
            *args, request = args
        return fn(*args, request=request, **kwargs)
    params = [inspect.Parameter(f"value_{i}", inspect.Parameter.POSITIONAL_OR_KEYWORD)
              for i in range(n_inputs)]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=None, annotation=gr.Request))
    run.__signature__ = inspect.Signature(params)
    run.__annotations__ = {"request": gr.Request}
    run.__name__ = getattr(fn, "__name__", "run")
    return run


def version_note() -> str | None:
    """A line to log when the installed Gradio is not the one these uses were checked on."""
    from importlib.metadata import version
    installed = version("gradio")
    if installed == CHECKED_ON:
        return None
    return (f"Gradio {installed} is installed; hitl's uses of its internals were checked on "
            f"{CHECKED_ON} (hitl/gradio_compat.py): pin gradio=={CHECKED_ON} if the page fails")
