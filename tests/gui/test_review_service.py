"""ReviewService without Qt: queue filters and orders, revisions, accept, flags, recovery."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

from app.services.review import ReviewError
from app.services.review_types import LabelState, QueueFilter
from database.dto import PredictionIn
from tests.gui.fixtures import CLASSES, seed_predictions


@pytest.fixture
def seeded(service, db, folder, artifacts):
    info = service.open_folder(folder)
    seed_predictions(db, info.id, artifacts)
    service.refresh_models()
    return info


def test_open_folder_indexes_images(service, folder):
    info = service.open_folder(folder)
    assert info.image_count == 6
    items = service.queue(QueueFilter(folder_id=info.id))
    assert [it.name for it in items] == [f"part_{i:02d}.png" for i in range(6)]
    assert all(it.review_state == "unreviewed" and not it.has_prediction for it in items)
    assert service.folders()[0].image_count == 6


def test_open_missing_folder_is_a_clear_error(service, tmp_path):
    with pytest.raises(ReviewError, match="not found"):
        service.open_folder(tmp_path / "nope")


def test_queue_merges_predictions_and_sorts(service, seeded):
    items = service.queue(QueueFilter(folder_id=seeded.id))
    assert all(it.has_prediction and it.anomaly_score is not None for it in items)
    by_anomaly = service.queue(QueueFilter(folder_id=seeded.id, sort="anomaly"))
    scores = [it.anomaly_score for it in by_anomaly]
    assert scores == sorted(scores, reverse=True)
    by_unc = service.queue(QueueFilter(folder_id=seeded.id, sort="uncertainty"))
    confs = [it.confidence for it in by_unc]
    assert confs == sorted(confs)
    rev = service.queue(QueueFilter(folder_id=seeded.id, sort="uncertainty", descending=True))
    assert [it.confidence for it in rev] == sorted(confs, reverse=True)
    assert service.classes() == list(CLASSES)


def test_queue_filters(service, seeded):
    f = QueueFilter(folder_id=seeded.id)
    cls = service.queue(f.with_(class_name="inclusion"))
    assert cls and all(it.predicted_class == "inclusion" for it in cls)
    rng = service.queue(f.with_(score_min=0.5, score_max=0.9))
    assert rng and all(0.5 <= it.anomaly_score <= 0.9 for it in rng)
    assert [it.name for it in service.queue(f.with_(text="part_03"))] == ["part_03.png"]
    first = service.queue(f)[0]
    service.set_flag(first.image_id, True)
    assert [it.image_id for it in service.queue(f.with_(flagged_only=True))] == [first.image_id]
    service.save_label(first.image_id, LabelState(review_state="rejected"))
    assert [it.image_id for it in service.queue(f.with_(states=frozenset({"rejected"})))] == [first.image_id]
    assert service.counts(seeded.id) == {"unreviewed": 5, "accepted": 0, "corrected": 0, "rejected": 1}


def test_labels_are_revisions_with_history(service, seeded):
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[0].image_id
    mask = np.zeros((64, 64), bool)
    mask[1:5, 2:9] = True
    s1 = service.save_label(image_id, LabelState(class_name="patches", mask=mask, review_state="corrected"), "paint")
    s2 = service.save_label(image_id, s1.with_(anomaly_verdict="anomalous", anomaly_region=mask), "region")
    assert (s1.revision, s2.revision) == (1, 2)
    label = service.detail(image_id).label
    assert label.class_name == "patches" and label.anomaly_verdict == "anomalous"
    assert np.array_equal(label.mask, mask) and np.array_equal(label.anomaly_region, mask)
    assert label.author == "tester"
    hist = service.history(image_id)
    assert [h.revision for h in hist] == [1, 2] and hist[0].has_mask and not hist[0].has_region


def test_accepted_label_copies_the_prediction(service, seeded):
    items = service.queue(QueueFilter(folder_id=seeded.id, sort="anomaly"))
    hot = service.detail(items[0].image_id)
    assert hot.prediction.anomalous and hot.prediction.heatmap.shape == (64, 64)
    acc = service.accepted_label(hot, hot.label)
    assert acc.review_state == "accepted" and acc.class_name == hot.prediction.predicted_class
    assert acc.anomaly_verdict == "anomalous" and acc.anomaly_region.sum() == 100
    assert np.array_equal(acc.mask, hot.prediction.mask)
    cold = service.detail(items[-1].image_id)
    assert service.accepted_label(cold, cold.label).anomaly_verdict == "normal"
    saved = service.save_label(hot.item.image_id, acc, "accept")
    assert service.item(hot.item.image_id).review_state == "accepted" and saved.revision == 1


def test_without_prediction_accept_confirms_the_label(service, folder):
    info = service.open_folder(folder)
    d = service.detail(service.queue(QueueFilter(folder_id=info.id))[0].image_id)
    assert d.prediction is None
    assert service.accepted_label(d, d.label.with_(class_name="x")).class_name == "x"


@pytest.mark.parametrize("damage", ["truncated", "crc"])
def test_a_label_that_keeps_a_png_whose_chunks_are_broken_is_refused(service, db, folder, damage):
    """A session-52 audit: a truncated PNG whose header was sound passed the save's check (size and header only), so
    an A or a class key pressed before the viewer's read failed saved "accepted" or "corrected" on a file no export or
    retraining can read. The save now reads the chunks too: refused with ``UnreadableImage`` as an empty file is, and
    nothing stored; X still rejects it, and an undamaged file saves as before."""
    from app.services.review import UnreadableImage

    info = service.open_folder(folder)
    ids = {it.rel_path: it.image_id for it in service.queue(QueueFilter(folder_id=info.id))}
    broken, good = ids["part_00.png"], ids["part_01.png"]
    path = folder / "part_00.png"
    data = path.read_bytes()   # written by cv2 (tests.gui.fixtures.make_folder)
    idat = data.index(b"IDAT")
    path.write_bytes(data[:idat + 12] if damage == "truncated"
                     else data[:idat + 6] + bytes([data[idat + 6] ^ 0xFF]) + data[idat + 7:])   # a byte of its IDAT
    for state in (LabelState(review_state="accepted"), LabelState(class_name=CLASSES[0], review_state="corrected")):
        with pytest.raises(UnreadableImage, match="part_00.png cannot be read .not a decodable image .damaged PNG"):
            service.save(broken, state)
    assert db.labels.current(broken) is None
    assert service.save(broken, LabelState(review_state="rejected")).label.review_state == "rejected"
    assert service.save(good, LabelState(review_state="accepted")).label.review_state == "accepted"


def test_a_save_of_an_image_deleted_meanwhile_never_names_its_database_id(service, db, folder):
    """A session-52 audit: the refusal said "image 1 is no longer in the database", a database id no screen shows.
    The service, the row gone, cannot read the file: "this image" unless the caller names it (``LabelGone.naming``),
    the attributes callers read kept."""
    from sqlalchemy import text

    from app.services.review import LabelGone
    info = service.open_folder(folder)
    image_id = service.queue(QueueFilter(folder_id=info.id))[0].image_id
    with db.session(write=True) as s:
        s.execute(text("DELETE FROM images WHERE id = :id"), {"id": image_id})
    with pytest.raises(LabelGone) as exc:
        service.save(image_id, LabelState(review_state="rejected"))
    assert str(exc.value) == "this image is no longer in the database"
    assert (exc.value.image_id, exc.value.image_gone, exc.value.revision) == (image_id, True, 0)
    assert str(exc.value.naming("line1/part_00.png")) == "line1/part_00.png is no longer in the database"
    with pytest.raises(ReviewError, match="^this image is no longer in the database$"):
        service.item(image_id)


def test_recovery_round_trip(service, seeded, tmp_path):
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[1].image_id
    mask = np.eye(64, dtype=bool)
    where = service.write_recovery({image_id: LabelState(class_name="scratches", mask=mask,
                                                         review_state="corrected")}, tmp_path / "rec")
    assert list((tmp_path / "rec").glob("*.json"))
    assert service.recover(tmp_path / "rec").saved == 1
    label = service.detail(image_id).label
    assert label.class_name == "scratches" and np.array_equal(label.mask, mask)
    assert not list((tmp_path / "rec").glob("*")), where


def test_a_recovered_label_says_when_it_was_decided_and_keeps_its_model(service, seeded, tmp_path):
    """A session-47 audit: a label replayed at the next start (maybe days later) was dated then, its decision time lost,
    and the model a restored revision came from was left out of the file."""
    from datetime import datetime, timezone
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[1].image_id
    version = service.db.model_versions.list()[0].id
    before = datetime.now(timezone.utc).replace(microsecond=0)
    service.write_recovery({image_id: LabelState(class_name="scratches", review_state="corrected",
                                                 from_model_version_id=version)}, tmp_path / "rec")
    assert service.recover(tmp_path / "rec").saved == 1
    rev = service.db.labels.current(image_id)
    decided = datetime.fromisoformat(rev.note.split("(decided ")[1].rstrip(")"))
    assert rev.note.startswith("recovered after a failed save (decided ") and decided >= before
    assert rev.from_model_version_id == version
    # a file is user data: an id past the column's range (or naming no version) is dropped, the label replayed (the
    # review of session 47: the save raised, the label was never replayed nor set aside)
    import json
    for hostile in (2 ** 63, 10 ** 6, "7", True):
        service.write_recovery({image_id: LabelState(class_name="inclusion", review_state="corrected")},
                               tmp_path / "rec2")
        (meta,) = (tmp_path / "rec2").glob("*.json")
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "from_model_version_id": hostile}))
        assert service.recover(tmp_path / "rec2").saved == 1
        assert service.db.labels.current(image_id).from_model_version_id is None


def test_a_recovered_label_keeps_how_the_image_came_to_be_labelled(service, seeded, tmp_path):
    """A session-51 audit: a label made on a "label next" proposal that could not be saved was replayed from its
    recovery file at the next start without its source, so "label next" and the retrain's class-mix estimate no
    longer counted it as chosen. The file keeps the source; an older file without one, or one whose source this
    station does not know, is saved with none (never trusted)."""
    import json
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[1].image_id
    for written, stored in (("label_next", "label_next"), (None, None), ("drawn_at_random", None), (["x"], None)):
        service.write_recovery({image_id: LabelState(class_name="scratches", review_state="corrected")},
                               tmp_path / "rec", sources={image_id: "label_next"})
        (meta,) = (tmp_path / "rec").glob("*.json")
        data = json.loads(meta.read_text())
        assert data["source"] == "label_next"
        if written != "label_next":
            if written is None:
                del data["source"]        # a file written before the source was kept
            else:
                data["source"] = written  # a hand-edited file, or a newer station's
            meta.write_text(json.dumps(data))
        assert service.recover(tmp_path / "rec").saved == 1
        assert service.db.labels.current(image_id).source == stored


def test_recovery_checks_a_mask_before_reading_it_and_against_the_picture_now(service, seeded, tmp_path):
    """Session-46 probes: a 299 KB recovery file holding a 16000 x 16000 mask took 2.3 GB at start-up and was saved on
    a 64 x 64 image; a mask drawn before the file was replaced by a picture of another size was saved on it."""
    import cv2

    from app.services.review import CONFLICTS
    items = service.queue(QueueFilter(folder_id=seeded.id))
    first, second = items[1].image_id, items[2].image_id
    rec = tmp_path / "rec"
    service.write_recovery({first: LabelState(class_name="scratches", mask=np.eye(64, dtype=bool),
                                              review_state="corrected")}, rec)
    (npz,) = rec.glob("*.npz")
    np.savez_compressed(npz, mask=np.zeros((16000, 16000), bool))  # 256 MB as it would be read
    out = service.recover(rec)   # refused from its header, set aside for a person
    assert (out.saved, out.unreadable) == (0, 1) and service.detail(first).label.revision == 0
    import shutil
    shutil.rmtree(rec / CONFLICTS)
    service.write_recovery({second: LabelState(class_name="scratches", mask=np.eye(64, dtype=bool),
                                               review_state="corrected")}, rec)
    cv2.imwrite(items[2].path, np.zeros((96, 128), np.uint8))  # replaced by a picture of another size
    out = service.recover(rec)
    assert (out.saved, out.kept_aside) == (0, 1) and service.detail(second).label.revision == 0
    assert len(list((rec / CONFLICTS).glob("*.json"))) == 1


def test_recovery_replays_only_on_the_picture_it_was_made_on_under_its_author(service, seeded, tmp_path):
    """Session-46 probes: a recovery file named only an image id, so its label was saved on whatever image had that id
    (a database replaced at the same path) or on new bytes, credited to whoever started the station next; two
    stations sharing a home wrote one file name in the same second, the second replacing the first."""
    from app.services.review import CONFLICTS
    items = service.queue(QueueFilter(folder_id=seeded.id))
    a, b, c = items[1], items[2], items[3]
    rec = tmp_path / "rec"
    label = LabelState(class_name="scratches", review_state="corrected")
    service.write_recovery({a.image_id: label}, rec, images={a.image_id: (items[4].path, a.content_hash)})
    service.write_recovery({b.image_id: label}, rec, images={b.image_id: (b.path, "0" * 64)})
    service.write_recovery({c.image_id: label}, rec, images={c.image_id: (c.path, c.content_hash)})
    service.write_recovery({c.image_id: label.with_(class_name="inclusion")}, rec,
                           images={c.image_id: (c.path, c.content_hash)})  # the same second, the same image
    assert len(list(rec.glob("*.json"))) == 4
    from app.services.review import ReviewService, ReviewSettings
    other = ReviewService(service.db, ReviewSettings(reviewer="ann"))   # the next start, another inspector's
    out = other.recover(rec)
    assert (out.saved, out.kept_aside) == (2, 2)
    assert service.detail(a.image_id).label.revision == 0 and service.detail(b.image_id).label.revision == 0
    assert len(list((rec / CONFLICTS).glob("*.json"))) == 2
    history = service.db.labels.history(c.image_id)
    assert len(history) == 2 and {r.author for r in history} == {service.settings.author} != {"ann"}


def test_recovery_takes_a_mask_on_an_exif_turned_jpeg_at_the_size_the_station_reads(service, tmp_path):
    """The session-46 review: the header reader turned an EXIF orientation 6 JPEG, so a mask at its stored size was
    set aside as "not the size of the image now"."""
    import struct

    import cv2

    from inference.imageio import read_raw
    folder = tmp_path / "turned"
    folder.mkdir()
    jpg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (20, 40, 3), np.uint8))[1].tobytes()
    tiff = (b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHI", 0x0112, 3, 1)
            + struct.pack(">HH", 6, 0) + struct.pack(">I", 0))
    app1 = b"Exif\x00\x00" + tiff
    (folder / "cam.jpg").write_bytes(jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpg[2:])
    info = service.open_folder(folder)
    (item,) = service.queue(QueueFilter(folder_id=info.id))
    mask = np.zeros(read_raw(item.path).shape[:2], bool)
    mask[2:8, 5:30] = True
    service.write_recovery({item.image_id: LabelState(mask=mask, review_state="corrected")}, tmp_path / "rec")
    assert service.recover(tmp_path / "rec").saved == 1


def test_a_recovery_file_no_start_can_read_is_set_aside_and_counted(service, seeded, tmp_path):
    """A session-46 probe: a damaged recovery file was only logged, tried again at every start, and nobody told."""
    from app.services.review import CONFLICTS
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[1].image_id
    rec = tmp_path / "rec"
    service.write_recovery({image_id: LabelState(class_name="scratches", review_state="corrected")}, rec)
    (good,) = rec.glob("*.json")
    (rec / "garbage.json").write_text("{not json")
    good.with_suffix(".npz").write_bytes(b"not a zip")   # its arrays damaged
    out = service.recover(rec)
    assert (out.saved, out.unreadable) == (0, 2) and out.aside == str(rec / CONFLICTS)
    assert not list(rec.glob("*.json")) and len(list((rec / CONFLICTS).glob("*.json"))) == 2
    assert service.recover(rec).unreadable == 0   # not tried again
    # a file another start took meanwhile (two stations sharing a home) is not called damaged (the session-46 review)
    service.write_recovery({image_id: LabelState(class_name="scratches", review_state="corrected")}, rec)
    (taken,) = rec.glob("*.json")
    taken.with_suffix(".npz").unlink()
    real_stat = type(taken).stat

    def gone(self, *a, **k):
        if self == taken:
            raise FileNotFoundError(2, "No such file", str(self))
        return real_stat(self, *a, **k)
    import pytest
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(taken), "stat", gone)
        assert service.recover(rec).unreadable == 0
    # a file whose masks were lost (its JSON still there) is set aside and counted, not skipped at every start
    assert service.recover(rec).unreadable == 1 and not list(rec.glob("*.json"))


def test_recovery_never_replaces_a_label_saved_after_it(service, seeded, tmp_path):
    """A label kept on closing (the database refused it) was made on a revision; when another station
    labelled the image since, the next start keeps their label and sets ours aside (it was replayed over
    theirs unseen)."""
    from app.services.review import CONFLICTS
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[1].image_id
    ours = LabelState(class_name="scratches", review_state="corrected")
    service.write_recovery({image_id: ours}, tmp_path / "rec", bases={image_id: 0})
    service.save(image_id, LabelState(class_name="inclusion", review_state="corrected"), "another station")
    out = service.recover(tmp_path / "rec")
    assert (out.saved, out.kept_aside) == (0, 1)
    assert service.detail(image_id).label.class_name == "inclusion"
    assert service.detail(image_id).label.revision == 1
    assert not list((tmp_path / "rec").glob("*.json"))
    assert len(list((tmp_path / "rec" / CONFLICTS).glob("*.json"))) == 1 and out.aside == str(tmp_path / "rec" / CONFLICTS)


def test_recovery_of_a_label_that_landed_after_all_is_done_without_a_second_revision(service, seeded, tmp_path):
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[1].image_id
    ours = LabelState(class_name="scratches", review_state="corrected")
    service.write_recovery({image_id: ours}, tmp_path / "rec", bases={image_id: 0})
    service.save(image_id, ours, "the write on its way when the window closed")
    out = service.recover(tmp_path / "rec")
    assert (out.saved, out.kept_aside) == (1, 0)
    assert [r.revision for r in service.history(image_id)] == [1]
    assert not list((tmp_path / "rec").rglob("*.json"))


def test_recovery_on_the_revision_it_was_made_on_is_saved(service, seeded, tmp_path):
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[1].image_id
    service.save(image_id, LabelState(class_name="inclusion", review_state="corrected"), "first")
    service.write_recovery({image_id: LabelState(class_name="scratches", review_state="accepted")},
                           tmp_path / "rec", bases={image_id: 1})
    assert service.recover(tmp_path / "rec").saved == 1
    label = service.detail(image_id).label
    assert (label.class_name, label.review_state, label.revision) == ("scratches", "accepted", 2)


def test_images_without_the_sort_value_go_last_by_name(service, seeded):
    f = QueueFilter(folder_id=seeded.id, sort="anomaly")
    first = service.queue(f)[0]
    service.db.predictions.delete_for_model_version(service.db.model_versions.active("anomaly").id)
    service.db.predictions.upsert_many([PredictionIn(first.image_id, service.db.model_versions.active("anomaly").id,
                                                     anomaly_score=0.3)])
    for descending in (False, True):
        items = service.queue(f.with_(descending=descending))
        assert items[0].image_id == first.image_id
        assert [it.name for it in items[1:]] == sorted(it.name for it in items[1:])
    with pytest.raises(ReviewError, match="sort key"):
        service.queue(f.with_(sort="bogus"))


def test_the_class_filter_and_the_confidence_sorts_do_not_read_an_answer_out_of_domain(service, seeded):
    """A session-50 audit: the class filter "crazing" listed infrared frames and bottles whose chip said "out of
    domain", "confidence (most confident first)" put an out-of-domain sky frame at the top and "uncertainty (least
    confident first)" put out-of-domain images last: the queue read the answer the window hides."""
    db = service.db
    clf = db.model_versions.active("classifier").id
    f = QueueFilter(folder_id=seeded.id)
    names = {it.image_id: it.name for it in service.queue(f)}
    foreign = {"part_04.png", "part_05.png"}   # crazing at 0.8, inclusion at 0.9: the most confident answers
    db.predictions.upsert_many([PredictionIn(i, clf, predicted_class=p.predicted_class, confidence=p.confidence,
                                             class_scores=p.class_scores, in_domain=0.1 if n in foreign else 0.9)
                                for i, n in names.items() for p in [db.predictions.get(i, clf)]])
    assert {it.name for it in service.queue(f) if it.out_of_domain} == foreign   # the chips
    crazing = f.with_(class_name="crazing")
    assert [it.name for it in service.queue(crazing)] == ["part_00.png"] and service.queue_count(crazing) == 1
    by_confidence = [it.name for it in service.queue(f.with_(sort="confidence"))]
    assert by_confidence == ["part_03.png", "part_02.png", "part_01.png", "part_00.png", "part_04.png", "part_05.png"]
    by_uncertainty = [it.name for it in service.queue(f.with_(sort="uncertainty"))]
    assert by_uncertainty == ["part_04.png", "part_05.png", "part_00.png", "part_01.png", "part_02.png", "part_03.png"]


def test_the_target_and_anomaly_sorts_and_the_score_range_do_not_read_an_answer_out_of_domain(service, seeded):
    """A session-50 audit: "target count" put Misc_145.png and Misc_15_rot.jpg, whose segmenter answer is out of
    domain (no ◎ chip, no "targets:" line), among the 2-target frames; "anomaly score" and the score range read an
    anomaly score the window withholds the same way. Withheld answers come after the values shown, by name, in either
    direction; the range does not match them, and its count agrees."""
    db = service.db
    f = QueueFilter(folder_id=seeded.id)
    names = {it.image_id: it.name for it in service.queue(f)}
    foreign = {"part_02.png", "part_04.png"}   # 3 and 2 targets, scores 0.5 and 0.8
    for family in ("segmenter", "anomaly"):
        mv = db.model_versions.active(family).id
        db.predictions.upsert_many([PredictionIn(i, mv, mask_png=p.mask_png, target_count=p.target_count,
                                                 anomaly_score=p.anomaly_score, anomaly_map_ref=p.anomaly_map_ref,
                                                 in_domain=0.1 if n in foreign else 0.9)
                                    for i, n in names.items() for p in [db.predictions.get(i, mv)]])
    items = service.queue(f)
    assert {it.name for it in items if it.out_of_domain} == foreign                # the chips
    shown = {"targets": ["part_05.png", "part_01.png", "part_00.png", "part_03.png"],   # 3, 2, 1, 1
             "anomaly": ["part_05.png", "part_03.png", "part_01.png", "part_00.png"]}   # 0.95, 0.65, 0.35, 0.2
    for sort, values in shown.items():
        assert [it.name for it in service.queue(f.with_(sort=sort))] == [*values, "part_02.png", "part_04.png"]
        assert [it.name for it in service.queue(f.with_(sort=sort, descending=True))] == \
            [*values[::-1], "part_02.png", "part_04.png"]
    in_range = f.with_(score_min=0.3, score_max=0.9)
    assert [it.name for it in service.queue(in_range)] == ["part_01.png", "part_03.png"]
    assert service.queue_count(in_range) == 2


def test_the_row_after_a_save_is_fetched_by_id_not_by_reading_the_queue(service, seeded):
    """Issue 16 item 8: refreshing the saved image's cell must not cost the folder's size."""
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[2].image_id
    service.save_label(image_id, LabelState(class_name="scratches", review_state="corrected"))
    seen: list[str] = []
    begun: list[object] = []
    listen = lambda conn, cursor, statement, *rest: seen.append(statement)  # noqa: E731
    begin = lambda conn: begun.append(conn)  # noqa: E731
    event.listen(service.db.engine, "before_cursor_execute", listen)
    event.listen(service.db.engine, "begin", begin)
    try:
        item = service.item(image_id)
    finally:
        event.remove(service.db.engine, "before_cursor_execute", listen)
        event.remove(service.db.engine, "begin", begin)
    assert len(begun) == 1  # the active models and the row: one transaction (ADR 0034)
    assert item.review_state == "corrected" and item.label_class == "scratches" and item.has_prediction
    reads_images = [s for s in seen if s.lstrip().upper().startswith("SELECT") and "FROM images" in s]
    assert len(reads_images) == 1 and reads_images[0].rstrip().endswith("WHERE images.id = ?"), reads_images
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) <= 2  # + the active models


def test_the_history_list_reads_no_mask_bytes(service, seeded):
    """A session-51 audit: the history dock, read again at each label change, loaded every revision's mask and region
    PNGs to say "mask yes/no". It reads whether each has one; the whole revisions stay for those that need them."""
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[0].image_id
    mask = np.zeros((64, 64), bool)
    mask[3:9, 3:9] = True
    service.save(image_id, LabelState(class_name="scratches", review_state="corrected"))
    service.save(image_id, LabelState(class_name="scratches", mask=mask, anomaly_verdict="anomalous",
                                      anomaly_region=mask, review_state="corrected"))
    seen: list[str] = []
    listen = lambda conn, cursor, statement, *rest: seen.append(statement)  # noqa: E731
    event.listen(service.db.engine, "before_cursor_execute", listen)
    try:
        history = service.history(image_id)
    finally:
        event.remove(service.db.engine, "before_cursor_execute", listen)
    assert [(h.has_mask, h.has_region) for h in history] == [(False, False), (True, True)]
    assert [h.class_name for h in history] == ["scratches", "scratches"]
    read = [s for s in seen if "label_revisions" in s]
    assert read and not any("label_revisions.mask_png," in s.replace(" ", "").replace("\n", "")
                            or "label_revisions.anomaly_mask_png," in s.replace(" ", "").replace("\n", "")
                            for s in read), read
    assert np.array_equal(service.revision_label(image_id, 2).mask, mask)   # the whole revision, where needed


def test_docs_shortcuts_match_the_application():
    from pathlib import Path

    from app.gui.shortcuts import SHORTCUTS, as_markdown
    doc = Path(__file__).resolve().parents[2] / "docs" / "shortcuts.md"
    assert doc.read_text(encoding="utf-8") == as_markdown(), "regenerate docs/shortcuts.md from app/gui/shortcuts.py"
    keys = [k for s in SHORTCUTS for k in s.keys]
    assert len(keys) == len(set(keys)), "a key is bound twice"


def test_accepted_region_is_at_image_resolution(service, seeded):
    hot = service.detail(service.queue(QueueFilter(folder_id=seeded.id, sort="anomaly"))[0].image_id)
    acc = service.accepted_label(hot, hot.label, size=(128, 96))
    assert acc.anomaly_region.shape == (96, 128)


def test_accept_keeps_the_inspectors_corrections_and_fills_only_what_is_missing(service, seeded):
    """Issue 16 item 2: Accept accepts what is on screen, never the model's answer over a human edit."""
    cold = service.detail(service.queue(QueueFilter(folder_id=seeded.id, sort="anomaly"))[-1].image_id)
    assert cold.prediction.anomalous is False
    region = np.zeros((64, 64), bool)
    region[40:50, 2:12] = True
    corrected = LabelState(anomaly_verdict="anomalous", anomaly_region=region, review_state="corrected")
    acc = service.accepted_label(cold, corrected)
    assert acc.review_state == "accepted"
    assert acc.anomaly_verdict == "anomalous" and np.array_equal(acc.anomaly_region, region)
    # parts the inspector did not touch come from the prediction
    assert acc.class_name == cold.prediction.predicted_class
    assert np.array_equal(acc.mask, cold.prediction.mask)
    assert acc.from_prediction_id is not None
    # a class chosen by hand stays, a verdict of "normal" stays normal without a model region
    hot = service.detail(service.queue(QueueFilter(folder_id=seeded.id, sort="anomaly"))[0].image_id)
    other = next(c for c in CLASSES if c != hot.prediction.predicted_class)
    mine = service.accepted_label(hot, LabelState(class_name=other, anomaly_verdict="normal", review_state="corrected"))
    assert mine.class_name == other and mine.anomaly_verdict == "normal" and mine.anomaly_region is None


def test_accept_after_erasing_an_accepted_mask_keeps_it_erased(service, seeded):
    d = service.detail(service.queue(QueueFilter(folder_id=seeded.id))[0].image_id)
    accepted = service.accepted_label(d, d.label)
    assert accepted.mask is not None
    erased = accepted.with_(mask=None, review_state="corrected")
    again = service.accepted_label(d, erased)
    assert again.mask is None and again.review_state == "accepted" and again.class_name == accepted.class_name


def test_accept_names_the_model_whose_answer_it_took(service, seeded):
    """A session-50 audit: `main.py audit` credited the classifier (version, threshold) for an accepted infrared frame
    whose classifier answer was out of domain, hidden and not taken: the label's mask came from the segmenter. The
    revision names the first family whose answer Accept took; none taken (every answer out of domain, or every part
    the inspector's own), none."""
    from database.audit import audit_records
    db = service.db
    f = QueueFilter(folder_id=seeded.id)
    items = service.queue(f)
    versions = {fam: db.model_versions.active(fam).id for fam in ("classifier", "segmenter", "anomaly")}

    def out_of_domain(image_id: int, families: tuple[str, ...]) -> None:
        db.predictions.upsert_many([
            PredictionIn(image_id, v, class_scores=p.class_scores, predicted_class=p.predicted_class,
                         confidence=p.confidence, mask_png=p.mask_png, target_count=p.target_count,
                         anomaly_score=p.anomaly_score, anomaly_map_ref=p.anomaly_map_ref, in_domain=0.1)
            for fam, v in versions.items() if fam in families for p in [db.predictions.get(image_id, v)]])

    sky, bottle, mine = items[1].image_id, items[2].image_id, items[3].image_id
    out_of_domain(sky, ("classifier",))
    out_of_domain(bottle, tuple(versions))
    d = service.detail(sky)
    acc = service.accepted_label(d, d.label)
    assert acc.class_name is None and acc.mask is not None   # the class hidden, the segmenter's mask taken
    assert acc.from_prediction_id == d.prediction.prediction_ids["segmenter"]
    service.save_label(sky, acc, "accept")
    [record] = [r for r in audit_records(db) if r.image_id == sky]
    assert (record.model_family, record.model_version) == ("segmenter", "test-seg")
    d = service.detail(bottle)
    assert service.accepted_label(d, d.label).from_prediction_id is None
    d = service.detail(mine)
    own = LabelState(class_name="patches", mask=np.zeros((64, 64), bool), anomaly_verdict="normal")
    assert service.accepted_label(d, own).from_prediction_id is None
    d = service.detail(items[0].image_id)   # every answer in domain and taken: the classifier's, first
    assert service.accepted_label(d, d.label).from_prediction_id == d.prediction.prediction_ids["classifier"]


def test_a_class_list_read_while_the_models_are_refreshed_is_not_kept(service, seeded, monkeypatch):
    """Seen under Xvfb (session 46): another station's new class list arrived while a detail was read on the reader
    thread; the list read before the refresh was cached after it, so the old class name stayed on key 1 for good and
    Accept took it. A read that a refresh overtook answers once and is not kept."""
    from app.services import project_classes
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[0].image_id
    service.refresh_models()
    real = service.db.classes.names
    stale = list(real(project_classes.TASK))

    def overtaken(task, s=None):
        service.refresh_models()        # the GUI thread, meanwhile: the new list is in
        service.db.classes.set(project_classes.TASK, ("crack", "ok"))
        return stale
    monkeypatch.setattr(service.db.classes, "names", overtaken)
    service.detail(image_id)
    service.classes()
    monkeypatch.setattr(service.db.classes, "names", real)
    assert service.detail(image_id).classes[:2] == ("crack", "ok") and service.classes() == ["crack", "ok"]


@pytest.mark.parametrize("when", ["before the clear", "after the clear"])
def test_undoing_f_meanwhile_a_threshold_change_leaves_the_models_flag_of_now(service, db, folder, artifacts, when):
    """A session-51 review: F undone worked out the models' flag, then cleared the override and wrote that flag in a
    second transaction; another station's threshold change in between re-flagged the project but skipped the image
    (its override still stood), and the undo wrote the earlier answer: unflagged against thresholds that flag it,
    which nothing corrected. The change is made here as the undo's write begins (the defect), or right after it (a
    re-flag after the clear must land too)."""
    from app.services.flags import FlagSettings
    from app.services.project_settings import change_flag_settings
    from app.services.review_types import FlagDecision
    flags_all = FlagSettings(min_targets=1)   # every seeded image has a target
    flags_none = FlagSettings(min_targets=100, min_confidence=0.0, good_classes=tuple(CLASSES), anomaly_threshold=10.0)
    folder_id = service.open_folder(folder).id
    seed_predictions(db, folder_id, artifacts)
    change_flag_settings(db, flags_none)
    image = service.queue(QueueFilter(folder_id=folder_id))[0].image_id
    before = FlagDecision.of(service.item(image))
    assert before.override is None and not before.flagged
    service.put_flag(image, FlagDecision.inspector(True, "root"))   # F
    clear = db.images.clear_inspector_flag

    def another_station_meanwhile(*args, **kwargs):
        if when == "before the clear":
            change_flag_settings(db, flags_all)
        clear(*args, **kwargs)
        if when == "after the clear":
            change_flag_settings(db, flags_all)

    db.images.clear_inspector_flag = another_station_meanwhile
    try:
        service.put_flag(image, before)   # Ctrl+Z
    finally:
        del db.images.clear_inspector_flag
    item = service.item(image)
    assert item.flag_override is None and item.flag_by is None
    assert item.flagged, f"{when}: the models flag it with the thresholds of now"


def test_a_recovery_file_is_replayed_on_its_sqlite_file_however_the_url_is_spelled(folder, artifacts, tmp_path,
                                                                                    monkeypatch):
    """A session-52 audit: a label kept in a recovery file by a station started with ``sqlite:///line3.sqlite`` was
    never replayed when the same file was opened as ``sqlite:////abs/line3.sqlite`` (the URLs' texts were compared),
    while docs/database.md promises the replay on the file at that path; and another folder's file opened by the
    same relative text would have taken it. Now the file is compared, and older files (the URL text alone) still
    replay."""
    import json

    from app.services.review import ReviewService, ReviewSettings
    from database.engine import open_database

    def kept_in(where: str, url: str, rec: Path, old_file: bool = False) -> int:
        (tmp_path / where).mkdir(exist_ok=True)
        monkeypatch.chdir(tmp_path / where)
        db = open_database(url)
        service = ReviewService(db, ReviewSettings(reviewer="alice"), artifacts=artifacts)
        image_id = service.queue(QueueFilter(folder_id=service.open_folder(folder).id))[0].image_id
        service.write_recovery({image_id: LabelState(class_name="scratches", review_state="corrected")}, rec,
                               bases={image_id: 0})
        if old_file:   # written before the file was recorded
            for path in rec.glob("*.json"):
                meta = json.loads(path.read_text())
                del meta["db_file"]
                path.write_text(json.dumps(meta))
        db.close()
        return image_id

    def replayed(where: str, url: str, rec: Path) -> int:
        (tmp_path / where).mkdir(exist_ok=True)
        monkeypatch.chdir(tmp_path / where)
        db = open_database(url)
        try:
            service = ReviewService(db, ReviewSettings(reviewer="bob"), artifacts=artifacts)
            service.open_folder(folder)   # the same pictures (b's database indexes them too)
            return service.recover(rec).saved
        finally:
            db.close()

    line3 = (tmp_path / "a" / "line3.sqlite").as_posix()
    kept_in("a", "sqlite:///line3.sqlite", tmp_path / "r1")
    assert replayed("b", "sqlite:///line3.sqlite", tmp_path / "r1") == 0   # another folder's line3: not its label
    assert replayed("b", f"sqlite:///{line3}", tmp_path / "r1") == 1       # the same file by its absolute URL
    kept_in("a", f"sqlite:///{line3}", tmp_path / "r2")
    assert replayed("a", "sqlite:///line3.sqlite", tmp_path / "r2") == 1   # and the other way round
    kept_in("a", "sqlite:///line3.sqlite", tmp_path / "r3", old_file=True)
    assert replayed("a", f"sqlite:///{line3}", tmp_path / "r3") == 1       # an older file: its URL read from here


def test_a_recovery_file_made_through_a_link_is_replayed_on_the_file_the_link_named_then(folder, artifacts, tmp_path):
    """A session-52 audit: a recovery file recorded the database's path as opened (``current.sqlite``, a link to
    line3.sqlite) and followed the link only when read, so once the link named next week's file (line4.sqlite) line4
    took line3's label and line3, the file it was made on, refused it. Now the file the link named when the label was
    kept is recorded; and a file of another database is counted (said at start), not passed over without a word."""
    import json

    from app.services.review import ReviewService, ReviewSettings
    from database.engine import open_database
    line3, line4, link, rec = (tmp_path / "line3.sqlite", tmp_path / "line4.sqlite", tmp_path / "current.sqlite",
                               tmp_path / "rec")

    def service_on(path: Path) -> tuple:
        db = open_database(f"sqlite:///{path}")
        service = ReviewService(db, ReviewSettings(reviewer="alice"), artifacts=artifacts)
        return db, service, service.queue(QueueFilter(folder_id=service.open_folder(folder).id))[0].image_id

    for path in (line3, line4):
        service_on(path)[0].close()   # both index the same pictures
    link.symlink_to(line3)
    db, service, image_id = service_on(link)
    service.write_recovery({image_id: LabelState(class_name="scratches", review_state="corrected")}, rec,
                           bases={image_id: 0})
    db.close()
    assert json.loads(next(rec.glob("*.json")).read_text())["db_file"] == str(line3.resolve())
    link.unlink()
    link.symlink_to(line4)   # the link names next week's file now
    db, service, _ = service_on(line4)
    out = service.recover(rec)
    assert (out.saved, out.elsewhere) == (0, 1) and service.history(image_id) == []
    db.close()
    db, service, _ = service_on(line3)
    out = service.recover(rec)
    assert (out.saved, out.elsewhere) == (1, 0)
    assert [(r.class_name, r.author) for r in service.history(image_id)] == [("scratches", "alice")]
    db.close()


def _service_on(path: Path, artifacts) -> tuple:
    """The SQLite database at ``path`` opened, and alice's review service on it."""
    from app.services.review import ReviewService, ReviewSettings
    from database.engine import open_database
    db = open_database(f"sqlite:///{path}")
    return db, ReviewService(db, ReviewSettings(reviewer="alice"), artifacts=artifacts)


def _label_kept_for(path: Path, folder, artifacts, rec: Path) -> int:
    """The id of ``folder``'s first image, whose corrected label alice made on the database at ``path`` is kept in a
    recovery file under ``rec`` (its base revision 0), the database closed."""
    db, service = _service_on(path, artifacts)
    image_id = service.queue(QueueFilter(folder_id=service.open_folder(folder).id))[0].image_id
    service.write_recovery({image_id: LabelState(class_name="scratches", review_state="corrected")}, rec,
                           bases={image_id: 0})
    db.close()
    return image_id


def _replayed_on(path: Path, artifacts, rec: Path, image_id: int) -> None:
    """The database at ``path`` takes the label kept under ``rec``: one saved, none said as another's, alice's."""
    db, service = _service_on(path, artifacts)
    out = service.recover(rec)
    assert (out.saved, out.elsewhere) == (1, 0)
    assert [(r.class_name, r.author) for r in service.history(image_id)] == [("scratches", "alice")]
    db.close()


def test_a_recovery_file_is_replayed_on_its_database_moved_to_another_folder(folder, artifacts, tmp_path):
    """A session-52 audit: a recovery file named its database by the SQLite file's path alone, so once the file was
    moved to another folder the start counted its labels as "another database's" and never replayed them. Now the file
    also records the database's own id (migration 0023), and the moved database takes its labels; a copy opened while
    the file it was copied from is still in place (a backup looked at) does not."""
    import shutil

    (tmp_path / "line3").mkdir()
    (tmp_path / "moved").mkdir()
    line3, copy, moved, rec = (tmp_path / "line3" / "station.sqlite", tmp_path / "copy.sqlite",
                               tmp_path / "moved" / "station.sqlite", tmp_path / "rec")

    image_id = _label_kept_for(line3, folder, artifacts, rec)
    shutil.copy(line3, copy)
    db, service = _service_on(copy, artifacts)
    out = service.recover(rec)
    assert (out.saved, out.elsewhere) == (0, 1) and service.history(image_id) == []
    db.close()
    shutil.move(line3, moved)   # the folder's database moved; the station's recovery files stay where they are
    _replayed_on(moved, artifacts, rec, image_id)


def test_a_backup_opened_after_its_database_moved_leaves_the_labels_kept_for_the_database(folder, artifacts,
                                                                                         tmp_path):
    """A session-52 audit (and its session-53 review): once a SQLite database had moved to another folder, any copy of
    it (last night's backup opened to look at it) matched its recovery files by the database's id alone, and took
    (and removed) the labels kept for the moved database. A file is matched by the id only where it is the file the
    labels were made on (the same (st_dev, st_ino), which a move within a filesystem keeps and a copy does not): the
    backup leaves them, and the moved database replays them."""
    import shutil

    for name in ("line3", "moved", "backup"):
        (tmp_path / name).mkdir()
    line3, moved, backup, rec = (tmp_path / "line3" / "station.sqlite", tmp_path / "moved" / "station.sqlite",
                                 tmp_path / "backup" / "monday.sqlite", tmp_path / "rec")

    image_id = _label_kept_for(line3, folder, artifacts, rec)
    shutil.copy(line3, backup)   # last night's backup
    shutil.move(line3, moved)    # the database moved to another folder
    db, service = _service_on(backup, artifacts)
    out = service.recover(rec)
    assert (out.saved, out.elsewhere) == (0, 1) and service.history(image_id) == []
    assert len(list(rec.glob("*.json"))) == 1
    db.close()
    _replayed_on(moved, artifacts, rec, image_id)


def test_a_recovery_file_replayed_on_the_database_at_its_path_leaves_no_copy(folder, artifacts, tmp_path):
    """A session-52 audit (the session-53 review of c37eea3b): a recovery file replayed on a database taken to be its
    own moved keeps a copy in recovery/replayed, as that may be a backup given the moved file's inode. One replayed
    on the database at the path it records is consumed, as always: no copy, nothing said of a move."""
    line3, rec = tmp_path / "station.sqlite", tmp_path / "rec"
    image_id = _label_kept_for(line3, folder, artifacts, rec)
    db, service = _service_on(line3, artifacts)
    out = service.recover(rec)
    assert (out.saved, out.moved, out.moved_from, out.replayed) == (1, 0, (), None)
    assert [(r.class_name, r.author) for r in service.history(image_id)] == [("scratches", "alice")]
    assert list(rec.glob("*.json")) == [] and not (rec / "replayed").exists()
    db.close()


def test_writing_a_recovery_file_reads_nothing_from_the_database(service, db, seeded, tmp_path):
    """A session-52 audit: each recovery file written read the database's id from the database, on the GUI thread as
    the window closed, just when the database may be failing: on a PostgreSQL server whose traffic was cut, writing
    one stood the window still 25 s and more. The id is read once, when the database is opened, and kept."""
    import json
    import sqlite3

    image_id = service.queue(QueueFilter(folder_id=seeded.id))[0].image_id
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    service.write_recovery({image_id: LabelState(class_name="scratches", review_state="corrected")}, tmp_path / "rec",
                           bases={image_id: 0})
    assert statements == []
    with sqlite3.connect(db.file) as conn:
        (uid,), = conn.execute("SELECT uid FROM database_identity")
    assert [json.loads(p.read_text())["db_id"] for p in (tmp_path / "rec").glob("*.json")] == [uid]


def test_a_recovery_file_written_after_its_database_moved_under_the_station_is_replayed_there(folder, artifacts,
                                                                                            tmp_path):
    """A session-52 audit: the database's id was first read when a recovery file was written, and a SQLite file moved
    while the station ran refused that read (replaced at its path), so the file recorded no id and the start on the
    moved file counted its label as another database's. The id read at open is recorded, and the moved file replays
    it."""
    import json
    import shutil
    import sqlite3

    from app.services.review import ReviewService, ReviewSettings
    from database.engine import open_database
    (tmp_path / "line3").mkdir()
    (tmp_path / "moved").mkdir()
    line3, moved, rec = tmp_path / "line3" / "station.sqlite", tmp_path / "moved" / "station.sqlite", tmp_path / "rec"
    db = open_database(f"sqlite:///{line3}")
    service = ReviewService(db, ReviewSettings(reviewer="alice"), artifacts=artifacts)
    image_id = service.queue(QueueFilter(folder_id=service.open_folder(folder).id))[0].image_id
    with sqlite3.connect(line3) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")   # (the folder's rows in the file itself, which moves alone)
    shutil.move(line3, moved)   # moved under the running station: its saves are refused from now on
    service.write_recovery({image_id: LabelState(class_name="scratches", review_state="corrected")}, rec,
                           bases={image_id: 0})
    recorded = [json.loads(p.read_text())["db_id"] for p in rec.glob("*.json")]
    assert recorded != [None] and recorded == [db.identity]
    db.close()
    db = open_database(f"sqlite:///{moved}")
    service = ReviewService(db, ReviewSettings(reviewer="alice"), artifacts=artifacts)
    out = service.recover(rec)
    assert (out.saved, out.elsewhere) == (1, 0)
    assert [(r.class_name, r.author) for r in service.history(image_id)] == [("scratches", "alice")]
    db.close()


@pytest.mark.parametrize("fails", ["masks", "json"])
def test_a_recovery_file_whose_write_fails_leaves_nothing_and_leftovers_are_swept(service, seeded, tmp_path,
                                                                                  monkeypatch, fails):
    """A session-52 audit: on a full disk the failed recovery writes left masks (.npz) with no JSON beside them, and
    ``recover`` looks only for the JSON, so they stayed in recovery/ forever. Now a failed write removes its pair,
    and ``recover`` removes such leftovers once they are old enough not to be a pair being written right now."""
    import errno
    import os
    import time

    import app.services.review as review
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[0].image_id
    rec = tmp_path / "rec"
    full = OSError(errno.ENOSPC, "No space left on device")
    if fails == "masks":
        real = np.savez_compressed

        def half_written(file, **arrays):
            real(file, **arrays)
            raise full
        monkeypatch.setattr(np, "savez_compressed", half_written)
    else:
        def no_json(path, data):
            raise full
        monkeypatch.setattr(review, "write_json_atomic", no_json)
    with pytest.raises(OSError, match="No space"):
        service.write_recovery({image_id: LabelState(class_name="scratches", mask=np.eye(64, dtype=bool),
                                                     review_state="corrected")}, rec, bases={image_id: 0})
    assert not list(rec.iterdir())
    monkeypatch.undo()
    # what an earlier version left (or a station killed between the masks and the JSON): swept once old
    (rec / "conflicts").mkdir()
    np.savez_compressed(rec / "20260101-000000-image1-aaaa.npz", mask=np.eye(8, dtype=bool))
    np.savez_compressed(rec / "conflicts" / "20260101-000000-image2-bbbb.npz", mask=np.eye(8, dtype=bool))
    (rec / "20260101-000000-image3-cccc.json.tmp").write_text("{")
    np.savez_compressed(rec / "20260101-000000-image4-dddd.npz", mask=np.eye(8, dtype=bool))  # its JSON on its way
    service.write_recovery({image_id: LabelState(class_name="scratches", mask=np.eye(64, dtype=bool),
                                                 review_state="corrected")}, rec, bases={image_id: 0})
    hours_ago = time.time() - 2 * 3600
    for path in rec.rglob("*"):
        if path.is_file() and "image4" not in path.name:
            os.utime(path, (hours_ago, hours_ago))
    assert service.recover(rec).saved == 1   # a whole pair, however old, is replayed
    assert sorted(p.name for p in rec.rglob("*") if p.is_file()) == ["20260101-000000-image4-dddd.npz"]


def test_a_pair_being_set_aside_keeps_its_masks_through_a_sweep_and_a_killed_move(service, seeded, tmp_path,
                                                                                   monkeypatch):
    """A session-52 audit: a station setting a two-day-old recovery pair aside moved its JSON to conflicts/ and its
    masks after it; a station sharing the home that swept leftovers between the two moves took the masks for a failed
    write's (no JSON beside them) and deleted them, and one killed between the moves split the pair for good. Now the
    sweep keeps masks whose JSON is in either folder, and the masks move first, the JSON following at the next start
    if the move was cut short."""
    import os
    import time

    import app.services.review as review
    image_id = service.queue(QueueFilter(folder_id=seeded.id))[0].image_id
    rec = tmp_path / "rec"
    old = time.time() - 2 * 86400   # kept two days while the database was away

    def old_pair() -> Path:
        service.write_recovery({image_id: LabelState(class_name="scratches", mask=np.eye(64, dtype=bool),
                                                     review_state="corrected")}, rec, bases={image_id: 0})
        meta = next(rec.glob("*.json"))
        for path in (meta, meta.with_suffix(".npz")):
            os.utime(path, (old, old))
        return meta

    meta = old_pair()
    real_replace = Path.replace

    def the_other_station_sweeps_between(self, target):
        out = real_replace(self, target)
        review._sweep_leftovers(rec)   # a start of the station sharing this home
        return out
    monkeypatch.setattr(Path, "replace", the_other_station_sweeps_between)
    review._set_aside(rec, meta)
    monkeypatch.undo()
    assert sorted(p.name for p in (rec / "conflicts").iterdir()) == [meta.name, meta.with_suffix(".npz").name]

    meta = old_pair()   # a station killed after its first move
    nth = []

    def killed_after_one(self, target):
        nth.append(self)
        if len(nth) > 1:
            raise KeyboardInterrupt("killed")
        return real_replace(self, target)
    monkeypatch.setattr(Path, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        review._set_aside(rec, meta)
    monkeypatch.undo()
    out = service.recover(rec)
    assert (out.saved, out.kept_aside, out.unreadable) == (0, 0, 0)
    assert not list(rec.glob("*.*"))
    assert {meta.name, meta.with_suffix(".npz").name} <= {p.name for p in (rec / "conflicts").iterdir()}


def test_a_superseded_label_that_still_cannot_be_set_aside_is_never_saved_and_is_said(folder, artifacts, tmp_path,
                                                                                     qtbot):
    """A session-53 re-read: a label marked superseded (the window could not move it to recovery/conflicts) met the
    same unusable conflicts/ at the next start; the move's OSError was only logged, the file stayed in recovery/,
    nothing was counted or said, at every start, while the window had promised the next start would set it aside.
    Now it is counted (``superseded_stuck``), never saved, and the start says where it stays and why."""
    import json

    from app.commands import gui
    from app.gui.settings_store import StationSettings
    from app.services.review import CONFLICTS, recovery_dir
    station = tmp_path / "station.sqlite"
    rec = recovery_dir()
    image_id = _label_kept_for(station, folder, artifacts, rec)
    kept = next(rec.glob("*.json"))
    meta = json.loads(kept.read_text())
    meta["superseded"] = {"by": "tester", "at": "2026-12-07T20:00:00+00:00", "why": "labelled since"}
    kept.write_text(json.dumps(meta))
    (rec / CONFLICTS).write_text("")   # conflicts/ still unusable at this start
    db, service = _service_on(station, artifacts)
    win = gui.build_window(db, StationSettings(reviewer="bob"), f"sqlite:///{station}", interactive=False, jobs=False)
    qtbot.addWidget(win)
    assert service.history(image_id) == []
    assert [p.name for p in rec.glob("*.json")] == [kept.name]
    message = win.statusBar().currentMessage()
    assert (f"1 label kept from an earlier session was not saved (an inspector labelled that image after it) and "
            f"could not be moved to {rec / CONFLICTS} (") in message
    assert f"it stays in {rec}, never saved." in message
    win.close()
    out = service.recover(rec)   # and at every later start
    assert (out.saved, out.superseded, out.superseded_stuck) == (0, 0, 1)
    db.close()
