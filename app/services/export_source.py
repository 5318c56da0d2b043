"""Where an export's items come from: the current labels of reviewed images in the database.

The one place that knows how a current label is stored (the newest revision, its review state,
the prediction it confirmed); everything after this works on frozen ``ExportItem`` records and
only reads, so an export can never change a label.
"""
from __future__ import annotations

from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.services.export_items import ExportItem
from app.services.file_scan import shown
from app.services.flags import is_out_of_domain
from app.services.object_classes import ObjectClassError, parse
from app.services.project_classes import TASK as CLASSIFIER_TASK  # the classes table's task: one home

if TYPE_CHECKING:
    from database import Database, FolderInfo, LabelRevisionInfo, PredictionInfo


class FolderNotFound(LookupError):
    pass


def resolve_folder(db: Database, folder: str | int | None) -> FolderInfo | None:
    """A folder by id, absolute or relative path, or name (``--folder`` accepts any; ``id:N`` is an id only); None
    means every folder. An argument two folders answer to in different ways is refused: a session-44 probe's
    ``import lotds --folder 3``, run beside folders named 1, 2 and 3, took folder *id* 3 (the folder "2") and put lot
    3's labels on lot 2's images without a word."""
    if folder is None or folder == "":
        return None
    folders = db.folders.list()
    text = f"id:{folder}" if isinstance(folder, int) else str(folder)  # a caller's id (the window's) is an id only
    if text.startswith("id:") and text[3:].isdigit():
        by_id = [f for f in folders if f.id == int(text[3:])]
        if by_id:
            return by_id[0]
        raise FolderNotFound(f"no indexed folder with id {text[3:]} (known folders: {_known(folders)})")
    wanted = str(Path(text).expanduser().resolve())
    named = [f for f in folders if f.name == text]
    answers = {f.id: (f, how) for f, how in (
        *((f, "its id") for f in folders if text.isdigit() and f.id == int(text)),
        *((f, "its path") for f in folders if str(Path(f.root_path).resolve()) == wanted),
        *((f, "its name") for f in named if len(named) == 1))}
    if len(answers) == 1:
        return next(iter(answers.values()))[0]
    if answers:
        which = "; ".join(f"{f.id}: {f.name} ({f.root_path}) by {how}" for f, how in answers.values())
        raise FolderNotFound(f"--folder {text!r} names more than one indexed folder ({which}): give its full path, "
                             f"or id:N for an id")
    if len(named) > 1:  # "no indexed folder 'parts'" was said of a name two folders have (a session-46 probe)
        raise FolderNotFound(f"--folder {text!r} is the name of {len(named)} indexed folders ({_known(named)}): give "
                             "its full path, or id:N")
    raise FolderNotFound(f"no indexed folder {text!r} (known folders: {_known(folders)})")


def _known(folders: list[FolderInfo]) -> str:
    return ", ".join(f"{f.id}: {f.name} ({f.root_path})" for f in folders) or "none indexed yet"


def confirms_prediction_only(label: LabelRevisionInfo) -> bool:
    """An ``accepted`` revision saved without label fields stands for the prediction it confirmed."""
    return (label.review_state.value == "accepted" and label.from_prediction_id is not None
            and all(v is None for v in (label.class_name, label.mask_png, label.anomaly_verdict)))


def prediction_label(label: LabelRevisionInfo, predictions: list[PredictionInfo]) -> dict[str, object]:
    """The parts of the prediction an accepted revision confirmed. Not an answer its model called out of domain:
    the panel withheld it and Accept took nothing from it. Seen in an export (session 36): infrared frames accepted
    while the panel said "Class: out of domain" (every family withheld, so the revision held no field) were
    exported, and would have been retrained on, as the steel classifier's "crazing"."""
    pred = next((p for p in predictions if p.id == label.from_prediction_id), None)
    if pred is None or is_out_of_domain(pred.in_domain):
        return {}
    return {"class_name": pred.predicted_class, "mask_png": pred.mask_png}


def items_from_database(db: Database, folder_id: int | None = None,
                        within: AbstractSet[int] | None = None) -> tuple[list[ExportItem], list[str]]:
    """Exportable items (accepted or corrected, current revision) and why others were left out;
    ``within``: only these images (a retraining's: the ones its version serves)."""
    labels = db.labels.current_labels(folder_id)
    if within is not None:
        labels = [lab for lab in labels if lab.image_id in within]
    images = {i.id: i for i in db.images.get_many([lab.image_id for lab in labels])}
    folders = {f.id: f for f in db.folders.list()}
    items: list[ExportItem] = []
    skipped: list[str] = []
    for lab in labels:
        img = images.get(lab.image_id)
        if img is None:
            continue
        folder = folders.get(img.folder_id)
        if folder is None:  # a row pointing at a folder that is gone: only another program writes one
            skipped.append(f"image {img.id} ({shown(img.rel_path)}): refused, its folder {img.folder_id} is not in the database")
            continue
        if img.missing:
            skipped.append(f"{folder.name}/{shown(img.rel_path)}: image file missing since the last indexing")
            continue
        source = confined_source(folder.root_path, img.rel_path)
        if source is None:
            skipped.append(f"{folder.name}/{shown(img.rel_path)}: refused, the stored path leads outside the indexed "
                           f"folder {folder.root_path} (the database row was not written by indexing)")
            continue
        try:
            objects = parse(lab.object_classes)
        except ObjectClassError as exc:  # only another program writes such a row
            skipped.append(f"{folder.name}/{shown(img.rel_path)}: refused, its stored object classes are unusable ({exc})")
            continue
        fields: dict[str, Any] = {"class_name": lab.class_name, "mask_png": lab.mask_png, "objects": objects}
        if confirms_prediction_only(lab):
            fields.update(prediction_label(lab, db.predictions.for_image(img.id)))
        items.append(ExportItem(
            source=source,
            rel_path=img.rel_path,
            folder=folder.name,
            review_state=lab.review_state.value,
            anomaly_verdict=lab.anomaly_verdict.value if lab.anomaly_verdict else None,
            anomaly_mask_png=lab.anomaly_mask_png,
            reviewer=lab.author,
            reviewed_at=lab.created_at,
            width=img.width,
            height=img.height,
            size_bytes=img.size_bytes,
            mtime_ns=img.mtime_ns,
            content_hash=img.content_hash,
            read_error=img.error,
            image_id=img.id,
            serial=img.trace_serial,
            lot=img.trace_lot,
            station=img.trace_station,
            **fields,
        ))
    return items, skipped




def confined_source(root_path: str, rel_path: str) -> Path | None:
    """The image file of a stored row, or None where reading it would leave the indexed folder.

    Checked by name ('..', an absolute path) and on disk (a folder on the way that is a link out
    of the root: scanning never descends into linked folders, so only a tampered row names one).
    A linked *file* inside the folder is read, as indexing read it.
    """
    from database.images import is_confined, join_path

    if not is_confined(rel_path):
        return None
    source = Path(join_path(root_path, rel_path))
    try:
        inside = source.parent.resolve().is_relative_to(Path(root_path).resolve())
    except (OSError, RuntimeError, ValueError):
        return None
    return source if inside else None


def class_order(db: Database) -> tuple[str, ...]:
    return tuple(db.classes.names(CLASSIFIER_TASK))
