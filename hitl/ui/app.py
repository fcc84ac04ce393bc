"""The whole page: tabs, timers, the keyboard script, the API; and how it is launched."""
from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware
from starlette.routing import Mount

from hitl import api
from hitl.access import BROWSER_ID_JS
from hitl.adapters import for_page
from hitl.auth import Authenticator
from hitl.bounded import BodyLimit
from hitl.gradio_compat import launch_on
from hitl.logins import FollowLogins
from hitl.raw_calls import ForgetRawCalls
from hitl.rest import PREFIX as REST_PREFIX
from hitl.server import Server
from hitl.service import Service
from hitl.settings import Settings
from hitl.tasks import get_task
from hitl.throttle import ClientAddress, LoginThrottle
from hitl.ui import classes, review, session_tab
from hitl.ui.page_values import quiet_refused_values

KEYS_JS = (Path(__file__).with_name("keys.js")).read_text()
HEAD = f"<script>{BROWSER_ID_JS}</script><script>{KEYS_JS}</script>"
CSS = ".hitl-hidden { display: none !important; }"
REFRESH_SECONDS = 2.0
# No part of the page takes a file upload (masks come as PNG bytes through the Service), so
# Gradio's upload route only needs to refuse: a small limit keeps it from filling the disk.
MAX_UPLOAD = "1mb"


def space_warning(settings: Settings) -> str | None:
    """On a Space without persistent storage, labels vanish on restart: say so up front."""
    import os
    if os.environ.get("SPACE_ID") and not str(settings.session_dir).startswith("/data"):
        return ("⚠️ This Space has no persistent storage (/data): labels are lost when it "
                "restarts. Enable persistent storage in the Space settings, or export often.")
    return None


def build_blocks(service: Service) -> gr.Blocks:
    """The page and the Gradio API over one Service (hitl/app_build.py makes both once)."""
    session = service.session
    with gr.Blocks(title="hitl") as demo:
        gr.Markdown("## hitl — label while the model learns")
        if service.access.hf is not None:  # Sign in with Hugging Face (hitl/access.py)
            gr.LoginButton()
            sign_in_md = gr.Markdown("Sign in with Hugging Face to label: the owner of this "
                                     "Space decides who may.", elem_id="sign-in-note")
        warning = space_warning(session.settings)
        gr.Markdown("  \n".join(filter(None, [warning, *session.warnings])),
                             elem_id="banner")
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Classification", id="classification") as cls_tab:
                cls = get_task("classification").board(service)
            with gr.Tab("Segmentation", id="segmentation") as seg_tab:
                seg = get_task("segmentation").board(service)
            with gr.Tab("Classes", id="classes") as classes_tab:
                cm = classes.build(service)
            review.add_tab(service)
            with gr.Tab("Session", id="session") as sess_tab:
                st = session_tab.build(service)
        api.register(service)

        # The labeling boards keep their own classes, lock and leases (a tick of their own);
        # these timers refresh the statistics of the tab in view.
        timer = gr.Timer(REFRESH_SECONDS)
        seg_timer = gr.Timer(REFRESH_SECONDS, active=False)
        private = dict(api_visibility="private")
        timer.tick(*cls["refresh"], show_progress="hidden", **private)
        seg_timer.tick(*seg["refresh"], show_progress="hidden", **private)
        demo.load(*cls["refresh"], **private)
        demo.load(*cm["refresh"], **private)
        demo.load(*st["refresh"], **private)
        seg_tab.select(lambda: (gr.Timer(active=False), gr.Timer(active=True)), None,
                       [timer, seg_timer], **private) \
            .then(*seg["refresh"], **private)
        for tab in (cls_tab, classes_tab, sess_tab):
            tab.select(lambda: (gr.Timer(active=True), gr.Timer(active=False)), None,
                       [timer, seg_timer], **private)
        classes_tab.select(*cm["refresh"], **private)
        sess_tab.select(*st["refresh"], **private)
        cls_tab.select(*cls["refresh"], **private)

        if service.access.hf is not None:
            def who(request: gr.Request = None):
                """A guest (not signed in, or not listed) sees the sign-in note, not the
                tabs; the service refuses them anyway."""
                guest = service.caller_of(request).role not in ("admin", "labeler")
                return gr.Tabs(visible=not guest), gr.Markdown(visible=guest)
            demo.load(who, None, [tabs, sign_in_md], **private)

        def task_tabs():
            """The session's task tab opens first (a board hides the other once the task is
            locked: hitl/ui/board_feed.js)."""
            task = session.store.task()
            seg = task == "segmentation"
            return (gr.Tabs(selected=task or "classification"), gr.Timer(active=not seg),
                    gr.Timer(active=seg))
        demo.load(task_tabs, None, [tabs, timer, seg_timer], **private)

        def leave(request: gr.Request):
            """A labeler who closes the page frees the image they were shown."""
            for_page(service.leave, service.caller_of(request))
        demo.unload(leave)
    quiet_refused_values(demo)  # out-of-range page values: one log line, no traceback
    return demo


def launch(demo: gr.Blocks, server: Server, service: Service,
           auth: Authenticator | None = None, **kwargs) -> str:
    """Plug the page and Gradio's API into `server` (hitl/starting.py: the port is open and
    the REST API answers already); same options for the CLI, the Space and the tests.
    `auth`: the logins (followed as the auth file changes, hitl/logins.py). Returns the local
    URL."""
    settings = service.session.settings
    follow = [Middleware(FollowLogins, auth=auth, server=server, access=service.access)] \
        if auth is not None else []
    demo.queue(default_concurrency_limit=8)
    app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
    address = ClientAddress(settings.forwarded_allow_ips, on_space=bool(os.environ.get("SPACE_ID")))
    app_kwargs["middleware"] = [Middleware(BodyLimit), Middleware(ForgetRawCalls, blocks=demo),
                                Middleware(LoginThrottle, address=address), *follow,
                                *(app_kwargs.get("middleware") or [])]
    if server.rest_api is not None:
        routes = list(app_kwargs.get("routes") or [])
        app_kwargs["routes"] = [Mount(REST_PREFIX, app=server.rest_api), *routes]
    try:
        with launch_on(server):
            _, url, _ = demo.launch(server_name=settings.host, server_port=settings.port,
                                    share=settings.share, head=HEAD, css=CSS,
                                    auth=auth.check if auth is not None else None,
                                    max_file_size=MAX_UPLOAD, footer_links=["api"],
                                    app_kwargs=app_kwargs, prevent_thread_lock=True, **kwargs)
            return url
    except BaseException:  # a failed launch (or a stop in it) leaves no port open
        server.close()
        raise
