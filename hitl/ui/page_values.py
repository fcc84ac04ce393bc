"""A page event with a value its component refuses (a dropdown choice that is not offered, a
slider past its maximum) answers the page with Gradio's error and logs one line.

Gradio's components refuse such values in their `preprocess` with `gradio.exceptions.Error`,
and the queue prints the full traceback of every one (gradio/queueing.py, `process_events`:
`if not isinstance(e, Error) or e.print_exception: traceback.print_exc()`), so anyone could fill
the server log with tracebacks. Gradio internal: `Blocks.preprocess_data` (gradio/blocks.py)
is the step that runs every input's `preprocess`; it is wrapped on the one Blocks instance.
"""
from __future__ import annotations

import logging

import gradio as gr
from gradio.exceptions import Error

log = logging.getLogger("hitl.page")


def quiet_refused_values(demo: gr.Blocks) -> None:
    """Refused input values of `demo`'s events: one log line each, no traceback."""
    original = demo.preprocess_data

    async def preprocess_data(block_fn, *args, **kwargs):
        try:
            return await original(block_fn, *args, **kwargs)
        except Error as exc:
            if exc.print_exception:
                exc.print_exception = False
                name = getattr(block_fn, "api_name", None) or getattr(block_fn, "name", "?")
                log.warning("refused a page value for %s: %s", name,
                            " ".join(str(exc.message)[:300].split()))
            raise
    demo.preprocess_data = preprocess_data
