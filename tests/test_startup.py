"""Start-up: --images register in the background while the session already answers."""
from __future__ import annotations

from hitl import session as session_module
from hitl.tasks.classification.stats import classification_stats
from tests.conftest import TEST_DATA, wait_for


def test_images_register_in_the_background(session_factory, monkeypatch):
    monkeypatch.setattr(session_module, "CATALOG_CHUNK", 3)
    session = session_factory(images=[str(TEST_DATA / "hymenoptera")], train=False,
                              task="classification", classes=["ants", "bees"],
                              catalog_in_background=True)
    wait_for(lambda: session.catalog.state == "done", timeout=60)
    assert session.catalog.as_dict() == {"state": "done", "found": 10, "registered": 10,
                                         "error": None}
    assert session.report.added == 10 and session.store.image_count() == 10
    assert classification_stats(session)["catalog"]["state"] == "done"


def test_a_missing_folder_is_reported_by_the_background_registration(session_factory,
                                                                       tmp_path):
    session = session_factory(images=[str(tmp_path / "nowhere")], train=False,
                              catalog_in_background=True)
    wait_for(lambda: session.catalog.state == "done", timeout=60)
    assert "Nothing found at" in session.catalog.error
    assert session.store.image_count() == 0


def test_closing_stops_a_running_registration(session_factory, tmp_path):
    from PIL import Image
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        Image.new("RGB", (8, 8), (i % 255, 0, 0)).save(folder / f"{i:04d}.png")
    session = session_factory(images=[str(folder)], train=False, catalog_in_background=True)
    session.close()  # while registering: joins the thread, which stops between chunks
    assert session.catalog.state in ("done", "failed", "reading", "finding")
    assert not session._catalog_thread.is_alive()
