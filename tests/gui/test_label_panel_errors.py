"""What the label panel and the gallery's tooltip say of an error stored on an image: "Cannot load" only where the file
could not be read, "Pre-labelling failed" where the file was read and the pre-labelling failed on it."""
from __future__ import annotations

from html import escape

import pytest

from app.gui.gallery_model import _tooltip
from database.jobs import new_worker_id

READ_FAILURE = "not a decodable image (damaged PNG: truncated in chunk 'IDAT')"   # the reader's reason
MODEL_FAILURE = "anomaly model failed: CUDA out of memory"                        # the engine's
WORKER_FAILURE = "prediction failed: RuntimeError: shape mismatch"                 # the worker's, after its last attempt
SAID = {READ_FAILURE: "Cannot load", MODEL_FAILURE: "Pre-labelling failed", WORKER_FAILURE: "Pre-labelling failed"}


def _shown_with(win, qtbot, image_id: int, said: str) -> str:
    """The panel's title once the image's detail, read again, says ``said``."""
    win.review.reload(image_id)
    qtbot.waitUntil(lambda: said in win.label_panel.title.text() or said.lower() in win.label_panel.pred_class.text(),
                    timeout=5000)
    return win.label_panel.title.text()


@pytest.mark.parametrize("stored", [MODEL_FAILURE, WORKER_FAILURE, READ_FAILURE])
def test_a_failed_pre_labelling_is_not_said_as_a_file_that_cannot_load(window, db, qtbot, stored):
    """A session-52 audit: a model that failed on an image (the worker stores "anomaly model failed: …" on the image as
    it fails the job's item) was shown in the label panel as "Cannot load: anomaly model failed: …" and in the
    gallery's tooltip as "cannot load: …", although the file reads fine: the inspector took the image for broken. The
    panel's prediction line says the pre-labelling failed, and why, and the title no longer says "Cannot load" (nor
    the same failure twice); a reason the reader gave stays "Cannot load"."""
    win = window
    image_id = win.review.image_id
    job = db.jobs.create("prelabel", {}, [image_id])
    worker = new_worker_id()
    [item] = db.jobs.claim_items(worker, 1).items
    assert db.jobs.fail_items(worker, {item.id: stored}, image_error=True) == 1   # as the worker stores it
    title = _shown_with(win, qtbot, image_id, SAID[stored])
    assert f"pre-labelling failed: {escape(stored)}" in win.label_panel.pred_class.text()
    if SAID[stored] == "Cannot load":
        assert "Cannot load: not a decodable image" in title, title
    else:
        assert "Cannot load" not in title and "failed" not in title, title
    assert win.review.detail is not None and db.jobs.get(job.id).finished
    assert f"\n{SAID[stored].lower()}: {stored}" in _tooltip(win.review.detail.item)


def test_a_failed_pre_labelling_stored_on_an_image_with_no_failed_item_is_said_in_the_title(window, db, qtbot):
    """The same audit, where no failed job item says it on the prediction line (none is kept, or a later run is queued):
    the title says "Pre-labelling failed: anomaly model failed: …", not "Cannot load"."""
    win = window
    image_id = win.review.image_id
    db.images.set_error(image_id, MODEL_FAILURE)
    title = _shown_with(win, qtbot, image_id, "Pre-labelling failed")
    assert f"Pre-labelling failed: {MODEL_FAILURE}" in title and "Cannot load" not in title, title
