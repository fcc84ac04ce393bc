"""The REST API: JSON routes under /api/v1, on the same server and port as the page.

Gradio's own API (`/gradio_api/call/<name>`) runs every call through its queue and an event
stream: two HTTP requests and a queued job per call. These are plain FastAPI routes, one request
each, with OpenAPI docs at /api/v1/docs. Every route asks the service layer as the caller the
request names (Gradio's login cookie or `Authorization: Bearer <token>`), so roles apply as on
the page. Refusals come back as 4xx with `{"error": "one line"}`; an unknown image id is a 404.

Adding a route: write a function on `router` that takes `ctx: Ctx = Depends(context)` and
returns `ctx.service.something(ctx.caller, ...)`.
"""
from __future__ import annotations

import io
import ipaddress
import json
import os
import time
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hitl.adapters import for_rest
from hitl.bounded import BodyLimit
from hitl.errors import HitlError, NotFound
from hitl.rest_service import Caller, RestView
from hitl.session import Session
from hitl.tokens import TokenChecker

PREFIX = "/api/v1"
# Ids are DuckDB BIGINTs: one past int64 is refused as bad input (422), not a 500.
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
Id = Annotated[int, Path(ge=INT64_MIN, le=INT64_MAX)]
BodyId = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
IMAGE_CACHE = "private, max-age=86400"  # an id always names the same file


class ApiError(Exception):
    """A refusal with its HTTP status; the body is {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Gate:
    """Who may call: logins (cookie or token), or local clients only when there are none."""

    logins: bool = False
    tokens: TokenChecker | None = None
    allow_anonymous: bool = False
    cookie_user: object = None  # request -> username from Gradio's login cookie, or None

    def caller(self, request: Request, service: RestView) -> Caller:
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "Authorization must be 'Bearer <token>'.")
            name = self.tokens(token.strip()) if self.tokens else None
            if name is None:
                raise ApiError(401, "Unknown API token.")
            return service.caller(name)
        if self.logins:
            name = self.cookie_user(request) if self.cookie_user else None
            if name is None:
                raise ApiError(401, "Log in first: send the page's login cookie or "
                                    "'Authorization: Bearer <token>' (python -m hitl adduser "
                                    "--token).")
            return service.caller(name)
        if not self.allow_anonymous and not _is_local(request):
            raise ApiError(403, "This app has no logins, so its REST API answers local "
                                "clients only.")
        return service.caller(None)


def _is_local(request: Request) -> bool:
    """A client on this machine: a loopback peer that no proxy forwarded for."""
    if "x-forwarded-for" in request.headers or "forwarded" in request.headers:
        return False
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")


@dataclass
class Ctx:
    service: RestView
    caller: Caller
    session: Session


def context(request: Request) -> Ctx:
    state = request.app.state
    return Ctx(state.service, state.gate.caller(request, state.service), state.service.session)


def _image_row(ctx: Ctx, image_id: int) -> dict:
    """The image's file, once the caller may see it (the role is checked first, then the
    id: a caller who may not label learns nothing, not even which ids exist)."""
    return ctx.service.image_file(ctx.caller, image_id)


def _png(positions: np.ndarray) -> Response:
    buf = io.BytesIO()
    Image.fromarray(positions.astype(np.uint8), mode="L").save(buf, format="PNG")
    return Response(buf.getvalue(), media_type="image/png",
                    headers={"Cache-Control": "no-store"})


# ---- request bodies ------------------------------------------------------------------------
class LabelBody(BaseModel):
    label: str
    next_strategy: str | None = None  # also return the next image (save + next in one call)
    class_name: str | None = None


# ---- routes --------------------------------------------------------------------------------
router = APIRouter()


@router.get("/next", summary="The next image to label (leased to the caller)")
def next_image(strategy: str = "uncertain", class_name: str | None = None,
               ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.next_image(ctx.caller, strategy, class_name)


@router.get("/images/{image_id}", summary="One image: metadata, label and prediction")
def image(image_id: Id, ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.image(ctx.caller, image_id)


@router.get("/images/{image_id}/file", summary="The image file itself",
            response_class=FileResponse)
def image_file(image_id: Id, request: Request, ctx: Ctx = Depends(context)):
    path = _image_row(ctx, image_id)["path"]
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise NotFound(f"The file of image {image_id} cannot be read "
                       f"({type(exc).__name__}).") from exc
    response = FileResponse(path, stat_result=stat, headers={"Cache-Control": IMAGE_CACHE})
    if request.headers.get("if-none-match") == response.headers["etag"]:
        return Response(status_code=304, headers={"ETag": response.headers["etag"],
                                                  "Cache-Control": IMAGE_CACHE})
    return response


@router.get("/images/{image_id}/mask", summary="The stored mask as an index PNG "
            "(0 = unlabeled, k = k-th class)", response_class=Response)
def mask(image_id: Id, ctx: Ctx = Depends(context)):
    _image_row(ctx, image_id)  # an unknown id is a 404, not "no mask yet"
    positions = ctx.service.mask_positions(ctx.caller, image_id)["positions"]
    if positions is None:
        raise NotFound(f"Image {image_id} has no mask yet.")
    return _png(positions)


@router.get("/images/{image_id}/predicted_mask", summary="The model's mask as an index PNG "
            "(every pixel 1..K)", response_class=Response)
def predicted_mask(image_id: Id, ctx: Ctx = Depends(context)):
    return _png(ctx.service.predicted_mask(ctx.caller, image_id)["mask"])


@router.put("/images/{image_id}/label", summary="Label an image with a class name; with "
            "next_strategy, also return the next image")
def put_label(image_id: Id, body: LabelBody, ctx: Ctx = Depends(context)) -> dict:
    if body.next_strategy:  # save + next: one request, one transaction where possible
        return ctx.service.annotate_next(ctx.caller, image_id, body.label, body.next_strategy,
                                         body.class_name)
    return ctx.service.annotate(ctx.caller, image_id, body.label)


@router.put("/images/{image_id}/mask", summary="Save a mask: an 8-bit PNG of the image's "
            "size as the body (0 = unlabeled, k = k-th class)")
async def put_mask(image_id: Id, request: Request, ctx: Ctx = Depends(context)) -> dict:
    _image_row(ctx, image_id)
    body = await request.body()
    from starlette.concurrency import run_in_threadpool
    return await run_in_threadpool(ctx.service.annotate_mask_png, ctx.caller, image_id, body)


@router.post("/images/{image_id}/skip", summary="Skip an image (strategies pass over it)")
def skip(image_id: Id, ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.skip(ctx.caller, image_id)


@router.post("/undo", summary="Undo the caller's last label, mask or skip")
def undo(ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.undo(ctx.caller)


@router.post("/leave", summary="Give back images reserved for the caller (a closing page's "
             "beacon: body {\"ids\": [...]}, any content type)")
async def leave(request: Request, ctx: Ctx = Depends(context)) -> dict:
    try:
        ids = [int(i) for i in json.loads(await request.body() or b"{}").get("ids", [])][:64]
    except (ValueError, TypeError, AttributeError) as exc:
        raise ApiError(422, 'The body must be {"ids": [image ids]}.') from exc
    caller = ctx.caller
    if caller.name == "local":  # a page without logins is named by its browser cookie
        caller = ctx.service.caller(ctx.service.service.access.anonymous_name(request))
    ctx.service.service.leave(caller, ids)
    return {"ok": True}


@router.get("/stats", summary="Counts, model version, training state, validation numbers")
def stats(live_window: int = Query(50, ge=1, le=100_000), ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.stats(ctx.caller, live_window)


@router.get("/predictions", summary="Current class predictions, by image id")
def predictions(limit: int = Query(100, ge=0, le=1_000_000),
                ctx: Ctx = Depends(context)) -> list[dict]:
    return ctx.service.predictions(ctx.caller, limit)


@router.get("/classes", summary="Class names in order (mask value k is the k-th name)")
def classes(ctx: Ctx = Depends(context)) -> list[str]:
    return ctx.service.classes(ctx.caller)


class ClassBody(BaseModel):
    name: str


@router.post("/classes", summary="Add a class (admin)")
def add_class(body: ClassBody, ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.add_class(ctx.caller, body.name)


@router.delete("/classes/{name}", summary="Remove a class with its labels and mask pixels "
               "(admin; the model restarts)")
def remove_class(name: str, ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.remove_class(ctx.caller, name)


# ---- review in bulk (issue 13) ---------------------------------------------------------------
class AcceptBody(BaseModel):
    image_ids: list[BodyId]         # every image of the page, as shown
    class_name: str                 # what the unmarked ones become
    rejected_ids: list[BodyId] = []  # marked wrong: stay unlabeled (unless relabeled)
    relabels: dict[str, str] = {}   # image id -> another class name


@router.get("/review", summary="A page of unlabeled images predicted as a class, most confident "
            "first (or within low..high), leased to the caller")
def review_batch(class_name: str, n: int = Query(24, ge=1, le=96),
                 low: float = Query(0.0, ge=0, le=1), high: float = Query(1.0, ge=0, le=1),
                 ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.review_batch(ctx.caller, class_name, n, [low, high])


@router.post("/review/accept", summary="Label a page: unmarked images as class_name, relabels "
             "as given; one /undo reverts the whole page")
def accept_batch(body: AcceptBody, ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.accept_batch(ctx.caller, body.image_ids, body.class_name,
                                    body.rejected_ids, body.relabels)


@router.get("/suspects", summary="Labels the out-of-sample model disagrees with most")
def suspects(n: int = Query(24, ge=1, le=500), ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.suspects(ctx.caller, n)


@router.post("/suspects/{image_id}/{verdict}", summary="keep: leave a suspect's label as it "
             "is; remove: take its label or mask away (undoable; relabel with PUT "
             "/images/{id}/label)")
def judge_suspect(image_id: Id, verdict: Literal["keep", "remove"],
                  seen_label: str | None = None, ctx: Ctx = Depends(context)) -> dict:
    _image_row(ctx, image_id)
    judge = {"keep": ctx.service.keep_suspect, "remove": ctx.service.remove_suspect}[verdict]
    return judge(ctx.caller, image_id, seen_label)


@router.get("/images/{image_id}/similar", summary="The n unlabeled images nearest to this one "
            "by cached features, leased as a page")
def similar(image_id: Id, n: int = Query(24, ge=1, le=96), ctx: Ctx = Depends(context)) -> dict:
    return ctx.service.similar(ctx.caller, image_id, n)


# ---- the app -------------------------------------------------------------------------------
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class ServerTiming:
    """`Server-Timing: app;dur=<ms>` on every answer: what the server spent, apart from the
    network and the client (bench/bench_rest.py reads it)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()

        async def timed_send(message):
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - start) * 1000
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"server-timing", f"app;dur={took:.2f}".encode())]
            await send(message)
        await self.app(scope, receive, timed_send)


def build_api(session: Session, gate: Gate, service) -> FastAPI:
    """The /api/v1 app: mounted into Gradio's server by hitl.ui.app.launch; `service` is the
    page's hitl.service.Service, so page and REST share one."""
    api = FastAPI(title="hitl REST API", version="1", docs_url="/docs",
                  openapi_url="/openapi.json", redoc_url=None,
                  description="Label images while a model learns. Same server, port and "
                              "logins as the page; see the README's API section.")
    api.state.service = RestView(session, service)
    api.state.gate = gate
    api.include_router(router)
    api.add_middleware(ServerTiming)
    api.add_middleware(BodyLimit)  # also while Gradio loads (hitl/starting.py)

    @api.exception_handler(OverflowError)
    def out_of_range(request: Request, exc: OverflowError):  # an id past int64 in a body
        return JSONResponse({"error": "A number in the request is out of range."},
                            status_code=422)

    @api.exception_handler(HitlError)
    def refused(request: Request, exc: HitlError):
        status, body = for_rest(exc)
        return JSONResponse(body, status_code=status)

    @api.exception_handler(ApiError)
    def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": _one_line(exc.message)}, status_code=exc.status)

    @api.exception_handler(RequestValidationError)
    def bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": _one_line(f"{where}: {first.get('msg', 'invalid')}")},
                            status_code=422)

    @api.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": _one_line(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
    return api
