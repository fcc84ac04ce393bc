"""Bounded work per request: wrong types answer {ok: false} in one line with no traceback in
the server log, masks are PNG only and their size is read before decoding."""
from __future__ import annotations

import base64
import io
import zlib

import numpy as np
import pytest
from PIL import Image

WRONG_CALLS = [
    ("/annotate", ("abc", "circle")),
    ("/annotate", (1.5, "circle")),
    ("/annotate", (1, "x" * 1_000_000)),
    ("/annotate", (True, "circle")),
    ("/stats", ("abc",)),
    ("/predictions", (2.5,)),
    ("/skip", ("1",)),
    ("/next_image", (["uncertain"], None)),
    ("/reset_session", ("no",)),
    ("/annotate_mask", (1, "not base64 !")),
    ("/predicted_mask", ({"id": 1},)),
    ("/accept_batch", ("1,2", "circle", None, None)),
    ("/accept_batch", ([1, "two"], "circle", None, None)),
    ("/similar", (1, "many")),
]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (as a bomb would), with one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def app(app_factory):
    return app_factory(task="classification", train=False, demo_count=6)


def test_wrong_types_answer_one_line_without_a_traceback(app, capfd):
    client = app.client()
    capfd.readouterr()
    for api_name, args in WRONG_CALLS:
        answer = client.predict(*args, api_name=api_name)
        assert isinstance(answer, dict) and answer["ok"] is False, (api_name, args, answer)
        assert "\n" not in answer["error"] and len(answer["error"]) < 400, answer
    assert app.session.store.counts()["labels"] == 0
    log = capfd.readouterr()
    assert "Traceback" not in log.out + log.err


def test_masks_are_png_only_and_checked_from_the_header(app_factory):
    app = app_factory(task="segmentation", train=False, demo_count=6)
    client = app.client()
    view = client.predict("sequential", None, api_name="/next_image")
    row = app.session.store.image(view["image_id"])
    bomb = client.predict(view["image_id"], b64(png_header_only(14000, 14000)),
                          api_name="/annotate_mask")
    assert bomb == {"ok": False, "error": f"The mask is 14000x14000 but the image is "
                                          f"{row.width}x{row.height}."}
    buf = io.BytesIO()
    Image.fromarray(np.zeros((row.height, row.width), np.uint8)).save(buf, format="JPEG")
    jpeg = client.predict(view["image_id"], b64(buf.getvalue()), api_name="/annotate_mask")
    assert not jpeg["ok"] and "must be a PNG" in jpeg["error"]
    buf = io.BytesIO()
    Image.new("RGB", (row.width, row.height)).save(buf, format="PNG")
    rgb = client.predict(view["image_id"], b64(buf.getvalue()), api_name="/annotate_mask")
    assert not rgb["ok"] and "8-bit single-channel" in rgb["error"]
    assert app.session.store.counts()["masks"] == 0


def test_uploads_are_refused_above_a_small_limit(app):
    import httpx
    big = httpx.post(app.url + "gradio_api/upload",
                     files={"files": ("x.png", b"\0" * 2_000_000, "image/png")}, timeout=60)
    assert big.status_code == 413
