"""What the port answers while Gradio loads: the REST API in full, and at / a page that turns
into the app by itself. Gradio's own routes (/config, /gradio_api/…) answer 503 with
Retry-After until the app takes over (hitl/server.py). No Gradio import here."""
from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from hitl.rest import PREFIX as REST_PREFIX
from hitl.rest import Gate, build_api
from hitl.server import Server
from hitl.session import Session
from hitl.tokens import TokenChecker

TITLE = "hitl — starting…"
# Reloads once Gradio's /config answers anything but 503 (a 401 means its login page is up).
PAGE = f"""<!doctype html><html><head><meta charset="utf-8"><title>{TITLE}</title>
<noscript><meta http-equiv="refresh" content="1"></noscript></head>
<body style="font-family: sans-serif; margin: 2em"><p>hitl is starting… this page becomes
the app in a moment.</p><script>
(function poll() {{
  fetch("config", {{cache: "no-store"}}).then(function (r) {{
    if (r.status !== 503) {{ location.reload(); }} else {{ setTimeout(poll, 200); }}
  }}, function () {{ setTimeout(poll, 500); }});
}})();
</script></body></html>"""
RETRY = {"Retry-After": "1", "Cache-Control": "no-store"}


def _page(request: Request) -> Response:
    return HTMLResponse(PAGE, headers=RETRY)


def _not_yet(request: Request) -> Response:
    return PlainTextResponse("hitl is starting; retry in a moment", 503, headers=RETRY)


def starting_app(rest_api=None) -> Starlette:
    """The REST API (if any) under its prefix, the starting page at /, 503 elsewhere."""
    routes = [Mount(REST_PREFIX, app=rest_api)] if rest_api is not None else []
    routes += [Route("/", _page, methods=["GET", "HEAD"]),
               Route("/{path:path}", _not_yet,
                     methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])]
    return Starlette(routes=routes)


def open_port(session: Session, service, logins: bool, tokens: TokenChecker | None) -> Server:
    """Start serving on the session's host and port: the REST API over `service` (the page's,
    so page and REST share one) unless --no-rest, behind the same logins as the page (the
    cookie is read once Gradio's app is plugged in, hitl/server.py); the page comes later."""
    settings = session.settings
    server = Server(settings.host, settings.port)
    rest_api = None
    if settings.rest:
        gate = Gate(logins=logins, tokens=tokens, allow_anonymous=settings.allow_anonymous,
                    cookie_user=server.login_user)
        rest_api = build_api(session, gate, service)
    return server.start(starting_app(rest_api), rest_api)
