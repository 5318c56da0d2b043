"""A failed, cancelled or refused export leaves no half-written dataset and loses nothing."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.services import export as export_mod
from app.services import export_formats
from app.services.export import ExportCancelled, ExportError, ExportOptions, export_items
from app.services.export_split import SplitSpec
from tests.services.export_fixtures import make_items


@pytest.fixture
def items(tmp_path: Path):
    return make_items(tmp_path / "src")


def source_bytes(items) -> dict[str, bytes]:
    return {k: i.source.read_bytes() for k, i in items.items()}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_destination(tmp_path: Path, items) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(ExportError, match="read-only or not writable"):
            export_items(list(items.values()), parent / "out")
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o755)


def test_unwritable_destination_is_a_clear_error(tmp_path: Path, items, monkeypatch) -> None:
    before = source_bytes(items)

    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):  # the folder the export is written into first
        if self.name.endswith(".partial"):
            raise PermissionError(errno.EROFS, "Read-only file system")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(ExportError, match="read-only or not writable"):
        export_items(list(items.values()), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert source_bytes(items) == before


def test_destination_under_a_file(tmp_path: Path, items) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ExportError):
        export_items(list(items.values()), blocker / "out")
    with pytest.raises(ExportError, match="not a folder"):
        export_items(list(items.values()), blocker)
    assert blocker.read_text() == "x"


def test_disk_full_mid_export_removes_the_partial_folder(tmp_path: Path, items, monkeypatch) -> None:
    before = source_bytes(items)
    calls = []
    real_copy = shutil.copyfile

    def copy_then_fill(src, dst, *a, **k):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_copy(src, dst, *a, **k)

    monkeypatch.setattr(export_formats.shutil, "copyfile", copy_then_fill)
    with pytest.raises(ExportError, match="destination is full"):
        export_items(list(items.values()), tmp_path / "out", ExportOptions(split=SplitSpec(0.5, 0.5, 0.0)))
    assert len(calls) == 3
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    assert source_bytes(items) == before


def test_too_little_free_space_is_refused_before_writing(tmp_path: Path, items, monkeypatch) -> None:
    monkeypatch.setattr(export_mod.shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(ExportError, match=r"destination is full: the export needs about \d+ MiB"):
        export_items(list(items.values()), tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_cancel_leaves_nothing(tmp_path: Path, items) -> None:
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))

    with pytest.raises(ExportCancelled):
        export_items(list(items.values()), tmp_path / "out", progress=progress, cancel=lambda: len(seen) > 2)
    assert seen == [(0, 4), (1, 4), (2, 4)]
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_progress_reaches_total(tmp_path: Path, items) -> None:
    seen = []
    export_items(list(items.values()), tmp_path / "out", progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 4) for i in range(5)]


def test_existing_folder_rules(tmp_path: Path, items) -> None:
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is fine
    export_items(list(items.values()), out, ExportOptions(formats=("csv",)))
    first = (out / "summary.csv").read_bytes()
    with pytest.raises(ExportError, match="not empty"):
        export_items(list(items.values()), out, ExportOptions(formats=("imagefolder",)))
    assert (out / "summary.csv").read_bytes() == first and not (out / "imagefolder").exists()
    # Overwrite swaps a previous export for the new one...
    export_items(list(items.values()), out, ExportOptions(formats=("imagefolder",), overwrite=True))
    assert (out / "imagefolder").is_dir() and not (out / "summary.csv").exists()
    assert leftovers(tmp_path) == []
    # ...but never a folder that is not an export (someone's images).
    with pytest.raises(ExportError, match="only a previous export is overwritten"):
        export_items(list(items.values()), tmp_path / "src", ExportOptions(overwrite=True))
    assert items["a"].source.is_file()


def test_only_reviewed_images_and_clear_error_when_none(tmp_path: Path, items) -> None:
    with pytest.raises(ExportError, match="nothing to export"):
        export_items([items["rejected"], items["unreviewed"]], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_file_and_bad_mask_are_skipped_with_reasons(tmp_path: Path, items) -> None:
    from dataclasses import replace

    gone = replace(items["f"], source=tmp_path / "src/lot1/gone.png", rel_path="gone.png")
    broken = replace(items["b"], mask_png=b"not a png")
    wrong_size = replace(items["a"], width=99)
    result = export_items([gone, broken, wrong_size, items["c"]], tmp_path / "out")
    assert result.exported == 1
    reasons = "\n".join(result.skipped)
    assert "gone.png: image file missing" in reasons
    assert "b.png: stored mask is not a readable PNG" in reasons
    assert "a.png: mask is 32x24 but the image is 99x24" in reasons


def test_a_mask_of_another_size_is_skipped_where_no_model_read_the_image(tmp_path: Path, items) -> None:
    """Indexing leaves an image's size unknown until a model reads it: the check passed every mask there, and the
    station's own import then refused the whole export (a session-47 audit). The file's header says it."""
    from dataclasses import replace

    unread = replace(items["a"], width=None, height=None)
    cv2.imwrite(str(unread.source), np.zeros((24, 40), np.uint8))  # the file is 40 wide, the mask 32
    result = export_items([unread, items["c"]], tmp_path / "out")
    assert result.exported == 1
    assert "a.png: mask is 32x24 but the image is 40x24" in "\n".join(result.skipped)


def test_a_file_gone_mid_export_is_skipped_and_the_rest_exported(tmp_path: Path, items) -> None:
    """A session-48 probe deleted one labelled file after the first image was written: the whole export failed with
    "cannot write the export to <out>", blaming the destination. The image is skipped with its reason now, and no
    format holds it."""
    victim = items["c"].source

    def progress(done: int, total: int) -> None:
        if done == 1:
            victim.unlink()

    result = export_items(list(items.values()), tmp_path / "out",
                          ExportOptions(formats=("imagefolder", "csv", "coco")), progress=progress)
    assert result.exported == 3
    assert any("c.jpg: image file missing or unreadable" in r for r in result.skipped), result.skipped
    written = [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert "c.jpg" not in written and not any(n.startswith(".image") for n in written)
    assert "c.jpg" not in (tmp_path / "out" / "summary.csv").read_text()


def test_an_image_in_a_folder_that_cannot_be_entered_is_skipped(tmp_path: Path, items, monkeypatch) -> None:
    """A session-48 probe: ``Path.is_file`` raises PermissionError (it passes only on "not found") for a file in a
    sub-folder made unreadable (chmod 000), and ``main.py export`` ended in that traceback."""
    locked = items["c"].source
    real = Path.is_file

    def is_file(self: Path) -> bool:
        if self == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    result = export_items(list(items.values()), tmp_path / "out", ExportOptions(formats=("imagefolder",)))
    assert result.exported == 3 and any("c.jpg: image file missing or unreadable" in r for r in result.skipped)


def test_copies_of_one_image_go_to_one_part_of_a_split(tmp_path: Path) -> None:
    """A session-48 probe: 12 images each saved under a second name, exported by a person with ``--split``: cut
    image by image, 6 had one copy in training and the other held out. Copies (the same content hash) go together."""
    from dataclasses import replace

    from app.services.export import plan

    base = make_items(tmp_path / "src")["b"]
    items = []
    for i in range(12):
        one = replace(base, rel_path=f"x{i:02d}.png", content_hash=f"h{i}")
        items += [one, replace(one, rel_path=f"copy_of_x{i:02d}.png")]
    planned, _ = plan(items, ExportOptions(split=SplitSpec(0.6, 0.2, 0.2)))
    part = {p.item.rel_path: p.split for p in planned}
    assert all(part[f"x{i:02d}.png"] == part[f"copy_of_x{i:02d}.png"] for i in range(12)), part
    assert {"train", "val", "test"} <= set(part.values())
    # only copies, each class one pair: kept together nothing could be held out; the plain cut, said in those words
    # (the review of this fix: "whole capture groups (2 by the None rule)" and an empty test part)
    pairs = []
    for i, cls in enumerate(("ok", "bad")):
        one = replace(base, rel_path=f"{cls}.png", content_hash=f"p{i}", class_name=cls)
        pairs += [one, replace(one, rel_path=f"{cls}_copy.png")]
    for rule in (None, "none", "auto"):   # a retraining's rule finding no groups too (the review of this fix)
        notes: list[str] = []
        planned, _ = plan(pairs, ExportOptions(split=SplitSpec(0.5, 0.0, 0.5, group_rule=rule)), notes)
        assert sorted(p.split for p in planned) == ["test", "test", "train", "train"], rule
        assert notes == ["copies of one image (the same bytes under other names) are in the train and test parts: kept "
                         "together, none of the 4 images could be held out"], rule


def test_what_reaches_the_destination_during_the_export_is_never_deleted(tmp_path: Path, items) -> None:
    """``--out`` was looked at once, before the copies: a file a person saved there meanwhile, or another export's
    output, was moved aside and deleted at the end, also without ``overwrite`` (a session-49 audit)."""
    out = tmp_path / "out"

    def someone_writes(done: int, total: int) -> None:
        if done == 1 and not out.exists():
            out.mkdir()
            (out / "notes.txt").write_text("mine")

    with pytest.raises(ExportError, match="was written to during the export and is not empty now"):
        export_items(list(items.values()), out, progress=someone_writes)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert leftovers(tmp_path) == []


def test_a_previous_export_that_gains_a_file_during_an_overwrite_is_kept(tmp_path: Path, items) -> None:
    """``overwrite`` replaces only a previous export whose every file its manifest lists: one saved into it while the
    new export ran was deleted with it."""
    out = tmp_path / "out"
    export_items(list(items.values()), out)
    before = sorted(export_mod.files_under(out))

    def someone_writes(done: int, total: int) -> None:
        if done == 1:
            (out / "README-notes.txt").write_text("mine")

    with pytest.raises(ExportError, match="holds files the export did not write"):
        export_items(list(items.values()), out, ExportOptions(overwrite=True), progress=someone_writes)
    assert (out / "README-notes.txt").read_text() == "mine"
    assert sorted(export_mod.files_under(out)) == sorted([*before, "README-notes.txt"])
    assert leftovers(tmp_path) == []


def test_a_killed_exports_hidden_folder_is_removed_by_the_next_export(tmp_path: Path, items) -> None:
    """SIGKILL (or a power cut) left ``.out.<hex>.partial`` with its copies for good, and their space made the next
    export refuse as "the destination is full". A living export's folder, and an ownerless recent one, stay."""
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    from app.services.child_command import owner_tag
    host = owner_tag().split()[0]
    dead, living, ownerless = (tmp_path / f".out.{h}.partial" for h in ("dead0001", "live0001", "none0001"))
    for folder, tag in ((dead, f"{host} {ended.stdout.strip()}"), (living, owner_tag()), (ownerless, None)):
        folder.mkdir()
        (folder / "copy.png").write_bytes(b"x" * 10)
        if tag is not None:
            (folder / export_mod.PARTIAL_OWNER).write_text(tag)
    result = export_items(list(items.values()), tmp_path / "out")
    assert result.exported > 0
    assert leftovers(tmp_path) == [living.name, ownerless.name]
    assert export_mod.PARTIAL_OWNER not in export_mod.files_under(tmp_path / "out")
    old = 3 * 24 * 3600
    os.utime(ownerless, (ownerless.stat().st_atime - old, ownerless.stat().st_mtime - old))
    export_mod.sweep_dead_partials(tmp_path / "out")
    assert leftovers(tmp_path) == [living.name]


def test_no_process_is_signalled_where_its_life_cannot_be_told(monkeypatch) -> None:
    """The review of a session-49 fix: every export's sweep asks whether a partial folder's writer lives, and
    ``os.kill(pid, 0)`` sends CTRL_C_EVENT on Windows. There it is counted as running, and nothing is sent."""
    from database import processes
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(processes.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(processes.os, "name", "nt")
    assert processes.pid_alive(12345) and sent == []
