"""One mask decoder (hitl/mask_png.py) for the painter, gr.api and REST: the header is read and
checked before anything is decoded, bytes are capped, few decodes run at once."""
from __future__ import annotations

import base64
import io
import threading
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from hitl import mask_png
from hitl.errors import BadInput, Unavailable
from tests.page_protocol import PageSession


def png_claiming(width: int, height: int, colour_type: int = 0) -> bytes:
    """A PNG whose header claims width x height (as a bomb does) with an IDAT that is not
    even valid zlib: any decoding at all would fail with another message."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, colour_type, 0, 0, 0])
    return (mask_png.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"not zlib")
            + chunk(b"IEND", b""))


def png(array: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes) -> str:
    return mask_png.DATA_URL + base64.b64encode(data).decode("ascii")


def test_a_bomb_is_refused_from_its_header_before_decoding():
    with pytest.raises(BadInput) as err:
        mask_png.decode(png_claiming(19000, 19000), (512, 512))
    assert str(err.value) == "The mask is 19000x19000 but the image is 512x512."
    # the same corrupt body with the expected size does reach Pillow, and fails there
    with pytest.raises(BadInput, match="cannot be read"):
        mask_png.decode(png_claiming(512, 512), (512, 512))


def test_wrong_kinds_and_sizes_are_refused_in_one_line():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    jpeg = io.BytesIO()
    Image.fromarray(grey).save(jpeg, format="JPEG")
    cases = [(jpeg.getvalue(), "must be a PNG"), (b"\x89PNG", "must be a PNG"),
             ("text", "PNG bytes"), (png(grey, "RGB"), "8-bit single-channel"),
             (png_claiming(4, 3, colour_type=6), "8-bit single-channel")]
    for data, message in cases:
        with pytest.raises(BadInput, match=message):
            mask_png.decode(data, (4, 3))
    with pytest.raises(BadInput, match="at most"):
        mask_png.decode(png(grey), (4, 3), max_bytes=10)
    assert (mask_png.decode(png(grey), (4, 3)) == grey).all()


def test_the_painters_colour_edit_gives_its_red_channel():
    edit = np.full((3, 4), 255, np.uint8)
    edit[1, 2] = 2
    for mode in ("RGBA", "RGB", "L", "LA"):
        out = mask_png.decode(png(edit, mode), (4, 3), mask_png.ANY_COLOUR)
        assert out.shape == (3, 4) and (out == edit).all(), mode
    with pytest.raises(BadInput):  # within a pixel of the display size, no more
        mask_png.decode(png(edit, "RGBA"), (6, 3), mask_png.ANY_COLOUR, slack=1)
    assert mask_png.display_size(300, 700, 1024) == (300, 700)
    assert mask_png.display_size(1500, 1000, 1024) == (1024, 683)
    assert mask_png.display_size(19000, 10, 1024) == (1024, 1)


def test_at_most_n_decodes_at_once(monkeypatch):
    monkeypatch.setattr(mask_png, "WAIT_S", 0.2)
    held = [mask_png._slots.acquire(timeout=5) for _ in range(mask_png.DECODES_AT_ONCE)]
    try:
        assert all(held)
        with pytest.raises(Unavailable, match="decoding other masks"):
            mask_png.decode(png(np.zeros((3, 4))), (4, 3))
    finally:
        for _ in held:
            mask_png._slots.release()
    assert mask_png.decode(png(np.zeros((3, 4))), (4, 3)).shape == (3, 4)
    threads = [threading.Thread(target=mask_png.decode, args=(png(np.zeros((3, 4))), (4, 3)))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


def test_the_painters_bomb_is_refused_through_the_board(app_factory):
    """seg_act, as the page posts it: the 19000x19000 edit is refused from its header."""
    app = app_factory(task="segmentation", train=False, demo_count=4)
    page = PageSession(app.url)
    act = next(c for c, name in page.server_functions if name == "seg_act")
    row = app.session.store.image(app.session.store.readable_image_ids()[0])
    shown = mask_png.display_size(row.width, row.height, 1024)
    bomb = page.call_server(act, "seg_act", {"image_id": row.id, "op": "save",
                                             "edit": data_url(png_claiming(19000, 19000))})
    assert bomb == {"ok": False, "error": f"The mask is 19000x19000 but the image is "
                                          f"{shown[0]}x{shown[1]}."}
    edit = np.full((shown[1], shown[0]), 255, np.uint8)
    edit[:5, :5] = 1
    saved = page.call_server(act, "seg_act", {"image_id": row.id, "op": "save",
                                              "edit": data_url(png(edit, "RGBA"))})
    assert saved["ok"] is True, saved
    assert app.session.store.counts()["masks"] == 1


def test_rest_and_gr_api_masks_use_the_same_decoder(app_factory):
    app = app_factory(task="segmentation", train=False, demo_count=4)
    row = app.session.store.image(app.session.store.readable_image_ids()[0])
    with httpx.Client(base_url=app.url + "api/v1", timeout=60) as api:
        bomb = api.put(f"/images/{row.id}/mask", content=png_claiming(19000, 19000))
        assert 400 <= bomb.status_code < 500, bomb.text  # 422 once rest.py maps typed errors
        assert bomb.json() == {"error": f"The mask is 19000x19000 but the image is "
                                        f"{row.width}x{row.height}."}
    answer = app.client().predict(row.id, base64.b64encode(png_claiming(19000, 19000)).decode(),
                                  api_name="/annotate_mask")
    assert answer["ok"] is False and "19000x19000" in answer["error"]
    assert app.session.store.counts()["masks"] == 0
