"""The project's classifier classes: the names an inspector labels with (hotkeys 1–9, filters).

Why a list of the project's own: a station that reviews a new kind of part must be able to
label it before any model knows its classes — tiles reviewed with the steel classifier
active still need "blowhole" and "fray", and an import of labelled tiles must find them.
Until a project saves its own list, its classes are the active classifier's (what the station
always showed). Saving a list replaces that order (hotkey 1 = first); labels are never touched:
a class taken off the list stays on every label that has it and is only no longer offered.

One home: the review window, the object menu, the import's class check and the ``classes``
command read the list here (``names``) and change it here (``save``); the classes offered on one image, which the
label panel's keys and the import's check both follow, are ``offered``; storage is
``database.classes`` under the classifier task. Qt-free.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.services.export_items import (
    HIDDEN_FOLDER_WHY,
    MAX_FOLDER_BYTES,
    disk_key,
    folder_key,
    hidden_folder,
    safe_name,
)
from app.services.wording import agree, plural
from database.classes import ClassListChanged as ClassListChanged  # noqa: I001 - the dialog catches it from here

if TYPE_CHECKING:
    from database import Database
    from database.dto import ModelVersionInfo

TASK = "classifier"       # the classes table's task for image classes
MAX_CLASSES = 200          # a list longer than this is not a list an inspector labels from


class ClassListError(ValueError):
    """A class list that cannot be saved, in one sentence for the user."""


@dataclass(frozen=True)
class ClassList:
    """What the project labels with, where the list comes from, and how many labels use each name."""

    names: tuple[str, ...]
    source: str                       # "project" (saved), "model" (the active classifier's), "none"
    model: str | None = None          # the active classifier version's name, if any
    in_use: dict[str, int] = field(default_factory=dict)  # current labels per class (every folder)
    # Other classifier versions the routing names that have classes of their own: their images offer those, then
    # what this list adds beyond the active model's (``names_for_version``).
    routed: tuple[str, ...] = ()
    # The classes of the active classifier and of those the routing names: an image they answer saves their spelling.
    model_classes: tuple[str, ...] = ()

    def dropped_in_use(self, names: Sequence[str]) -> dict[str, int]:
        """Classes on this list that labels use but ``names`` no longer offers (labels keep them). Not a class that was
        never on it (a session-44 probe: ``classes add`` said "note: 12 labels keep 'blowhole'; it is no longer
        offered" of a class no list had held)."""
        kept, offered = set(names), set(self.names)
        return {n: c for n, c in sorted(self.in_use.items()) if c and n in offered and n not in kept}

    def taken(self) -> dict[str, int]:
        """Every spelling of a class the project uses (a classifier model's, on labels) with how many labels use it:
        what ``validate`` refuses a new name in another spelling of. A name only this list holds is not taken: a new
        list keeping it beside another spelling is refused as the same name twice, and one that drops it renames a
        class nothing uses (refused as "would share a class folder", the review of a session-49 fix)."""
        return {**dict.fromkeys(self.model_classes, 0), **{n: c for n, c in self.in_use.items() if c}}


def validate(names: Iterable[str], kept: Collection[str] = (), taken: Mapping[str, int] | None = None
             ) -> tuple[str, ...]:
    """The names stripped and checked: none empty, no new one longer than a folder name may be (in UTF-8 bytes: 200
    "ä" passed the column's count of characters, then every class-folder export and retraining failed with "File name
    too long", a session-49 audit), no two in one class folder (``folder_key``: "Crack" and "crack" on two hotkeys is
    a mistake), at most ``MAX_CLASSES``; a new name one a folder
    can take (``kept``: names already on the list, or the model's, pass as they are: refusing them blocked every edit
    of such a list, the session-43 review), and not another spelling of a class the project has (``taken``,
    ``ClassList.taken``: a session-49 audit renamed "crazing", used by 5 labels, to "Crazing"; key 1 saved the new
    spelling, the old labels kept theirs, and every class-folder export and retraining was refused from then on)."""
    out: list[str] = []
    seen: dict[str, str] = {}
    uses: Mapping[str, int] = taken or {}
    spellings: dict[str, list[str]] = {}
    for other in uses:
        spellings.setdefault(folder_key(other), []).append(other)
    for raw in names:
        if not isinstance(raw, str):
            raise ClassListError(f"a class name must be text (got {raw!r})")
        # one spelling of each character (a session-46 probe: "Kratzer-ä" typed precomposed and decomposed made two
        # buttons that look the same, labels split between them) and no invisible ones ("ok" and "ok\u200b")
        name = " ".join(raw.split())
        name = name if name in kept or name in uses else unicodedata.normalize("NFC", name)
        if name not in kept and any(unicodedata.category(ch) in ("Cf", "Cc") for ch in name):
            raise ClassListError(f"{name!r} holds an invisible character: type the name again")
        if not name:
            raise ClassListError("a class name cannot be empty")
        size = len(name.encode("utf-8"))
        if size > MAX_FOLDER_BYTES and name not in kept:
            raise ClassListError(f"class name {name[:40]!r}… is {size} bytes long in UTF-8: a folder name, as exports "
                                 f"and retraining need, holds at most {MAX_FOLDER_BYTES} bytes (an accented letter "
                                 "takes 2, many other scripts' letters 3)")
        if hidden_folder(name) and name not in kept:  # a session-46 probe: ".hidden" was exported as a hidden
            # folder that the trainer and the import pass over: a retraining "of 2 classes" learnt one
            raise ClassListError(f"{name!r}: a class name cannot start with a dot ({HIDDEN_FOLDER_WHY})")
        if safe_name(name, "") != name and name not in kept:  # found by a session-43 probe: "crack>1mm" was exported and retrained as
            # "crack_1mm", a class the project does not have, and the comparison said the parent knew other classes
            raise ClassListError(f"{name!r} cannot name a folder, as exports and retraining need (no < > : \" / \\ | ? * "
                                 f"and no trailing dot): {safe_name(name)!r}, for instance")
        key = folder_key(name)  # a stored decomposed name meets the typed one
        if key in seen and not (name in kept and seen[key] in kept):  # a pair stored before stays editable
            # said of the one name it is: "'Crazing' is on the list twice (as 'crazing')" of a list holding it once
            # (a session-51 audit)
            same = unicodedata.normalize("NFC", seen[key]) == unicodedata.normalize("NFC", name)  # looks the same
            raise ClassListError(f"{name!r} is on the list twice" if same
                                 else f"{name!r} is already on the list as {seen[key]!r}")
        if key in spellings and name not in kept and name not in uses:
            twin = max(spellings[key], key=lambda t: (uses[t], t))
            raise ClassListError(twin_refusal(name, twin, uses[twin]))
        seen[key] = name
        out.append(name)
    if len(out) > MAX_CLASSES:
        raise ClassListError(f"{len(out)} classes: at most {MAX_CLASSES}")
    return tuple(out)


def twin_refusal(name: str, other: str, labels: int) -> str:
    """Why ``name`` is refused beside ``other``, a class of the project that ``labels`` labels use."""
    has = (f"{plural(labels, 'label')} {agree(labels, 'uses', 'use')} it" if labels
           else "the project has it (list or model)")
    why = ("names that differ only by case or accent spelling are one folder on Windows and macOS"
           if disk_key(name) == disk_key(other) else f"{other!r} is written to the folder {safe_name(other)!r}")
    return (f"{name!r} would share a class folder with {other!r} ({has}): {why}, and class-folder exports and "
            "retraining refuse two classes in one folder. "
            f"Keep {other!r}, or choose another name")


def model_classes(db: "Database") -> tuple[str | None, tuple[str, ...]]:
    """The name and card classes of the classifier pre-labelling runs (where no routing rule names another): the
    active version, else the bundled default that the first pre-label registers and activates (none: (None, ())).
    Why the default: a new project offered no class before its first pre-label ("There is no class 2: the project
    has 0"), and then those of the classifier that ran; only opening Project ▸ Models, which activates it, changed
    that, without the window knowing (a session-52 audit)."""
    mv = db.model_versions.active(TASK)
    if mv is not None:
        return mv.name, version_classes(mv)
    from app.services.prelabel import bundled_default
    default = bundled_default(db, TASK)
    return (None, ()) if default is None else (default[0], card_classes(default[1]))


def version_classes(version: "ModelVersionInfo | None") -> tuple[str, ...]:
    """A classifier version's card classes (none: ())."""
    return card_classes(version.card if version is not None else None)


def card_classes(card: object) -> tuple[str, ...]:
    """A classifier card's classes (none: ())."""
    classes = card.get("classes", []) if isinstance(card, dict) else []
    return tuple(str(c) for c in classes) if isinstance(classes, list) else ()


def names_for_version(db: "Database", version: "ModelVersionInfo | None",
                      own: Sequence[str] | None = None) -> list[str]:
    """The classes offered for an image whose classifier answer is ``version``'s (a routing rule may name
    another than the active one).

    For the active version (or none known): the project's own list, else the version's. For another version that
    has classes of its own (the tile classifier on ``tiles/*`` beside the steel one): its classes, then those the
    project's list adds beyond the active model's. Why: the project's list starts as a copy of the active model's
    (``add``), so offering it on the tiles put the steel classes on their hotkeys (1 = "crazing" on a tile, found
    in the code in session 35); a class the project added (a new defect) is still offered on every line. ``own``:
    the project's list where the caller has read it already."""
    own = list(db.classes.names(TASK) if own is None else own)
    theirs = list(version_classes(version))
    active = db.model_versions.active(TASK)
    if version is None or not theirs or (active is not None and version.id == active.id):
        return own if own else theirs
    keys = {folder_key(c) for c in theirs}  # not "blowhole" and the list's "Blowhole" on two keys (a session-49 audit)
    return theirs + [c for c in added(db, own) if folder_key(c) not in keys]


def offered(db: "Database", own: Sequence[str], runs: bool, answered: int | None, named: str | None,
            line_counts: Callable[[], Mapping[str, int]],
            version_of: Callable[[int], "ModelVersionInfo | None"] | None = None) -> tuple[str, ...]:
    """The classes the station offers on one image (its label panel's keys 1–9, its object menu): what an inspector
    labels it with, and so what an import may give it.

    The facts: ``own``, the project's saved list ([]: none); ``runs`` and ``named``, whether the image's routing rule
    runs a classifier and the version it names (``counting_versions.rule_version``); ``answered``, the id of the
    classifier version whose answer counts for the image (None: none yet); ``line_counts``, the classes the labels
    of its line (``line_of``) use, read only where needed; ``version_of``, a version by id (a caller's cache).
    Why one rule for the panel and the import: the import checked classes against the project's list alone, so the
    station's own export of tiles labelled on the tile classifier's keys was refused as "unknown classes crack,
    free" once the project kept a list, and its advice put tile classes on every steel image's keys (a session-50
    audit).

    Where the rule runs no classifier: the classes the list adds beyond the active model's, then those the line's
    labels use (most used first; none: no keys). Where one runs: the version whose answer counts, else the version
    the rule names (``names_for_version``: its classes and what the project added); else the project's list
    (empty: the active model's); without a list of the project's own, with the classes the line's labels use beyond
    those (``with_line_classes``)."""
    if not runs:
        extra = added(db, own)
        return tuple(extra + by_use(line_counts(), leave_out=extra))
    version = counting_version(db, answered, named, version_of)
    base = tuple(names_for_version(db, version, own)) if version is not None else tuple(own)
    return base if own else with_line_classes(db, base, line_counts())   # a project's own list is deliberate


def counting_version(db: "Database", answered: int | None, named: str | None,
                     version_of: Callable[[int], "ModelVersionInfo | None"] | None = None) -> "ModelVersionInfo | None":
    """The classifier version whose classes an image a classifier runs on offers (``offered``): the one whose answer
    counts for it (``answered``, an id), else the one its routing rule names (``named``); None: neither (the active
    one's, or the project's list). One rule for the label panel's keys and the Import dialog's class chooser
    (``importing.Planner.routed_offers``), so the chooser lists the classifier whose keys the images show."""
    if answered is not None:
        return (version_of or db.model_versions.get)(answered)
    return db.model_versions.by_name(TASK, named) if named else None


def with_line_classes(db: "Database", base: tuple[str, ...], counts: Mapping[str, int]) -> tuple[str, ...]:
    """``base`` with the classes its line's labels use (``counts``) that ``base`` lacks (most used first): before
    ``base`` where most of those labels are in such classes, else after it. Seen under Xvfb (session 38): 100
    imported tile labels (blowhole … uneven) on a folder the steel classifier answered offered only the steel
    classes, so key 1 would have called a tile "crazing" and no key gave "blowhole". Per subfolder, so the keys
    stay put from one image of a line to the next. An empty ``base`` (the window shows the folder's list) stays
    empty unless something is added, which then comes with that list. Only where the project keeps no list of
    its own: a class taken off that list stays on its labels and is no longer offered."""
    if not base and not counts:
        return base
    listed = base or tuple(names(db))
    ordered = tuple(by_use(counts, leave_out=listed))
    if not ordered:
        return base
    inside = sum(n for c, n in counts.items() if c in listed)
    return ordered + listed if sum(counts[c] for c in ordered) > inside else listed + ordered


def line_of(rel_path: str) -> str | None:
    """An image's line: its subfolder (``"tiles/"``; None at the folder's top), whose labels' classes it offers."""
    return rel_path.rsplit("/", 1)[0] + "/" if "/" in rel_path else None


def routed_classes(db: "Database", leave_out: str | None = None) -> dict[str, tuple[str, ...]]:
    """Version name -> classes, for each classifier version the model routing names (``leave_out``: the active
    one's name): the versions whose images offer their own classes first."""
    from app.services.project_settings import readable_routing
    return {name: version_classes(db.model_versions.by_name(family, name))
            for family, name in sorted(readable_routing(db).named_versions()) if family == TASK and name != leave_out}


def added(db: "Database", own: Sequence[str] | None = None) -> list[str]:
    """The classes the project's list (``own``, else read) adds beyond the active model's: what is offered on images
    another classifier, or none, answers (ADR 0068). The list begins as a copy of the active model's (``add``)."""
    own = db.classes.names(TASK) if own is None else own
    theirs = set(model_classes(db)[1])
    return [c for c in own if c not in theirs]


def names(db: "Database") -> list[str]:
    """The classes the window offers, in hotkey order: the project's, else the active model's."""
    own = db.classes.names(TASK)
    return own if own else list(model_classes(db)[1])


def by_use(counts: Mapping[str, int], leave_out: Collection[str] = ()) -> list[str]:
    """The classes ``counts`` says labels use (a count above 0), most used first, then by name; ``leave_out``
    not among them: how a line's own classes are offered beside a list."""
    return sorted((c for c, n in counts.items() if n and c not in leave_out), key=lambda c: (-counts[c], c))


def filter_names(db: "Database") -> list[str]:
    """The classes the queue's class filter offers: ``names``, then the classes of the classifier versions the
    model routing names, whose images are predicted and labelled in them (ADR 0068: their buttons offer them even
    where the project has its own list), then any other class labels use (most used first). Seen under Xvfb
    (session 38): after an import of 100 labelled tiles the filter offered the steel classes alone, so no
    "blowhole" could be picked although 12 labels said it."""
    out = dict.fromkeys(names(db))
    from app.services.project_settings import readable_routing
    for family, name in sorted(readable_routing(db).named_versions()):
        if family == TASK:
            out.update(dict.fromkeys(version_classes(db.model_versions.by_name(family, name))))
    used = db.images.label_class_counts()
    out.update(dict.fromkeys(by_use(used)))
    return list(out)


def read(db: "Database") -> ClassList:
    """The list with its source and label counts (the Classes dialog, ``main.py classes``)."""
    own = db.classes.names(TASK)
    model, theirs = model_classes(db)
    in_use = db.images.label_class_counts()
    routed_versions = routed_classes(db, leave_out=model)
    routed = tuple(name for name, classes in routed_versions.items() if classes)
    models = tuple(dict.fromkeys(c for classes in (theirs, *routed_versions.values()) for c in classes))
    if own:
        return ClassList(tuple(own), "project", model, in_use, routed, models)
    return ClassList(theirs, "model" if theirs else "none", model, in_use, routed, models)


def save(db: "Database", new_names: Iterable[str], read_from: ClassList | None = None) -> ClassList:
    """Make ``new_names`` the project's list (validated; labels untouched). An empty list goes
    back to the active classifier's classes. ``read_from``: the listing the caller made ``new_names`` from (the
    Classes dialog's); a list saved elsewhere since raises ``ClassListChanged`` and nothing is written (a
    session-44 probe: a class another station added while the dialog was open was dropped by its save)."""
    current = read(db)
    checked = validate(new_names, kept=current.names, taken=current.taken())
    db.classes.set(TASK, checked, expected=None if read_from is None else own_names(read_from))
    return read(db)


def own_names(listing: ClassList) -> tuple[str, ...]:
    """The project's own list as ``listing`` read it (none where it showed the model's classes)."""
    return listing.names if listing.source == "project" else ()


def _changed(db: "Database", change: Callable[[ClassList], list[str]]) -> ClassList:
    """The list after ``change`` of the list as stored, read and written as one: another station's addition made
    between the read and the write is read again, not replaced unseen (two stations adding at once lost one
    class in 3 of 5 rounds on one SQLite file, a session-44 probe)."""
    tries = CHANGE_TRIES
    while True:
        current = read(db)
        try:
            return save(db, change(current), read_from=current)
        except ClassListChanged:
            tries -= 1
            if not tries:
                raise


CHANGE_TRIES = 5  # reads of a list that keeps changing under a change before it is refused


def add(db: "Database", new_names: Iterable[str]) -> ClassList:
    """Append names the list does not have yet (the first save copies the model's list first,
    so adding "blowhole" keeps "crazing" on hotkey 1). A name on it already is left as it is; another spelling of one
    is refused as the Classes dialog refuses it (a session-49 audit: ``classes add Blowhole`` beside "blowhole" added
    nothing and said nothing, exit 0)."""
    wanted = validate(new_names)

    def change(current: ClassList) -> list[str]:
        return [*current.names, *(n for n in wanted if n not in current.names)]
    return _changed(db, change)


def remove(db: "Database", old_names: Iterable[str]) -> ClassList:
    """Take names off the list (labels keep them); a name the list lacks is an error."""
    drop = {" ".join(str(n).split()).lower() for n in old_names}

    def change(current: ClassList) -> list[str]:
        missing = drop - {n.lower() for n in current.names}
        if missing:
            raise ClassListError(f"not on the list: {', '.join(sorted(missing))}")
        return [n for n in current.names if n.lower() not in drop]
    return _changed(db, change)
