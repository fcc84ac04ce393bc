"""The four hostile callers of tests/test_hostile.py, and the calls generated for them from the
Service's declared actions (hitl/service/guard.py `declared_actions`).

Each kind is a real app with the settings that make it: a labeler with logins, a guest of
Sign in with Hugging Face (signed in, not listed), an anonymous visitor of a Space without
logins, an anonymous visitor of `--share --allow-anonymous`. A share link cannot be opened in
a test (no tunnel), so that app is launched locally and then given the share settings its
roles come from — what `Access.from_settings` reads, nothing else.
"""
from __future__ import annotations

import inspect
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from starlette.requests import Request

from hitl.access import Access
from hitl.service import Service, declared_actions

KINDS = ("labeler", "guest", "space visitor", "share visitor")
USERS = [("ann", "pw-ann"), ("bob", "pw-bob")]  # the first user is the admin
BROWSER = "c0ffee" * 6  # the per-browser cookie an anonymous page sets (hitl/access.py)


@dataclass
class Hostile:
    kind: str
    app: object        # tests.conftest.RunningApp
    page: object       # tests.page_protocol.PageSession as this caller
    labeled: list      # the admin's labeled images
    leased: int        # an image leased to the admin
    request: object    # a gr.Request as the server gets it from this caller (caller_of)

    @property
    def service(self) -> Service:
        return self.app.service

    @property
    def refuses_everything(self) -> bool:
        return self.kind == "guest"


def launch(kind: str, app_factory, sign_in) -> tuple[object, object, object]:
    """(app, page session, request) for one kind of hostile caller."""
    import gradio as gr

    from tests.page_protocol import PageSession
    common = dict(task="classification", demo_count=24, train=False)
    if kind == "labeler":
        app = app_factory(auth=USERS, **common)
        return app, PageSession(app.url, auth=USERS[1]), gr.Request(username="bob")
    if kind == "guest":
        app = app_factory(hf_users=["hf-bob"], hf_admins=["hf-ann"], **common)
        page = sign_in(app, "hf-eve")
        return app, page, _request(session={"oauth_info": {"userinfo": {
            "preferred_username": "hf-eve", "orgs": []}}})
    if kind == "space visitor":
        app = app_factory(space_id="someone/hitl", space_owner="someone", **common)
    else:
        app = app_factory(allow_anonymous=True, **common)
        app.session.settings.share = True  # what --share sets; the roles follow from it
        app.service.access = Access.from_settings(app.session.settings)
    page = PageSession(app.url)
    page.http.cookies.set("hitl_browser", BROWSER)
    return app, page, _request(cookie=f"hitl_browser={BROWSER}")


def _request(session: dict | None = None, cookie: str | None = None):
    """A request as Gradio hands it to an event: a cookie header, a signed-in session."""
    import gradio as gr
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"cookie", cookie.encode())] if cookie else [],
             "client": ("127.0.0.1", 50000)}
    if session is not None:
        scope["session"] = session
    return gr.Request(request=Request(scope))


def admin_work(app) -> tuple[list[int], int]:
    """The admin labels three images and holds a fourth: work no hostile caller may touch."""
    from hitl.service import Caller
    admin, ann = app.service, Caller("ann", "admin")
    labeled = []
    for _ in range(3):
        view = admin.next_image(ann, "classification", "sequential")
        admin.annotate(ann, view["image_id"], "circle")
        labeled.append(view["image_id"])
    return labeled, admin.next_image(ann, "classification", "sequential")["image_id"]


def everything(app) -> dict:
    """Every table of the session, every lease, the settings, the trainer, the folders."""
    session, store = app.session, app.session.store
    from hitl.store.common import SESSION_TABLES
    s = session.settings
    ids = store.readable_image_ids().tolist()
    return {**{name: store.table_rows(name)[1] for name in SESSION_TABLES},
            "leases": [store.lease_holder(i) for i in ids],
            "settings": (s.backbone, s.mode, s.finetune_model, s.seg_long_side),
            "trainer running": session.trainer.running,
            "session folders": sorted(p.name for p in s.session_dir.parent.iterdir())}


def protected(app, who: str) -> dict:
    """What a labeler must never change: admin-owned state and other people's work."""
    state = everything(app)
    store = app.session.store
    cols, labels = store.table_rows("labels")
    mcols, masks = store.table_rows("masks")
    return {"classes": state["classes"], "settings": state["settings"],
            "trainer running": state["trainer running"],
            "session folders": state["session folders"],
            "others' labels": sorted(r for r in labels if r[cols.index("user")] != who),
            "others' masks": sorted(r for r in masks if r[mcols.index("user")] != who)}


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ones((height, width), np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def values(hostile: Hostile) -> dict:
    """A value for every parameter name an action takes: meaningful in the session (the
    admin's images, real class names, formats), so a refusal is the role's, not the input's."""
    mine = hostile.labeled[0]
    row = hostile.app.session.store.image(mine)
    return {"image_id": mine, "image_ids": [*hostile.labeled, hostile.leased],
            "label": "square", "class_name": "square", "name": "circle", "new_name": "disc",
            "delta": 1, "task": "classification", "strategy": "sequential", "fmt": "csv",
            "confirm": True, "positions": np.ones((row.height, row.width), np.uint8),
            "data": png(row.width, row.height), "n": 4, "step": 1, "live_window": 50,
            "limit": 10, "relabels": {str(mine): "square"}, "rejected_ids": [mine],
            "backbone": "test_resnet", "mode": "finetune", "finetune_model": "test_resnet",
            "seg_long_side": 128, "colour": "#123456"}


def generated_calls(hostile: Hostile) -> list[tuple[str, str, tuple]]:
    """(action, declared role, arguments) for every declared action of the Service."""
    known = values(hostile)
    calls = []
    for name, role in sorted(declared_actions(Service).items()):
        params = list(inspect.signature(getattr(Service, name)).parameters.values())[2:]
        args = []
        for p in params:
            if p.name in known:
                args.append(known[p.name])
            elif p.default is inspect.Parameter.empty:
                raise AssertionError(f"no hostile value for {name}({p.name}): add one to "
                                     "tests/hostile_callers.py values()")
            else:
                args.append(p.default)
        calls.append((name, role, tuple(args)))
    return calls


def rest_calls(hostile: Hostile) -> list[tuple[str, str, dict | None]]:
    """(method, url path, JSON body) for every route of the REST router."""
    from fastapi.routing import APIRoute

    from hitl.rest import PREFIX, router
    body = {"label": "square", "class_name": "square", "name": "zebra",
            "image_ids": [*hostile.labeled, hostile.leased],
            "relabels": {str(hostile.labeled[0]): "square"}}
    calls = []
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        for method in sorted(route.methods):
            for image_id in (hostile.labeled[0], hostile.leased):
                path = route.path.format(image_id=image_id, name="circle", verdict="remove")
                calls.append((method, PREFIX + path,
                              body if method in ("POST", "PUT") else None))
    return calls
