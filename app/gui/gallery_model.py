"""The gallery's model: one row per image of the review queue (plain ``QueueItem`` records).

A folder can hold a million images, so the model holds only pages of the queue: the row
count is exact (from the count query, so the scroll bar is right and any position can be
jumped to), and a row whose page is not loaded paints empty while the model asks for that
page (``page_wanted``: the queue controller reads it on a helper thread and hands it back
with ``put_page``). Loaded pages are kept in least-recently-used order, at most
``max_pages`` of them, so memory stays bounded however far the inspector scrolls.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Signal

from app.services.review_types import QueueItem, prelabel_failure

ITEM_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2
PAGE_SIZE = 256
MAX_PAGES = 64  # 16k rows held at most: a few screens around each place the inspector visited


class GalleryModel(QAbstractListModel):
    page_wanted = Signal(int)  # page number whose rows are on screen but not loaded
    rows_read = Signal(int, int)  # first and last row of a page stored outside a reset (its images may have moved)

    def __init__(self, parent=None, page_size: int = PAGE_SIZE, max_pages: int = MAX_PAGES) -> None:
        super().__init__(parent)
        self.page_size = page_size
        self.max_pages = max(2, max_pages)
        self._count = 0
        self._pages: OrderedDict[int, list[QueueItem]] = OrderedDict()
        self._cursors: dict[int, object] = {}  # page -> where it ended (reads the next one cheaply)
        self._rows: dict[int, int] = {}        # image id -> row, for loaded rows
        self._placed: dict[int, str] = {}      # image id -> review state when its page was read
        self._wanted: set[int] = set()

    # -- Qt interface -------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._count

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < self._count:
            return None
        item = self.item_at(index.row())
        if item is None:
            self._want(index.row() // self.page_size)
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return item.name
        if role == ITEM_ROLE:
            return item
        if role == ID_ROLE:
            return item.image_id
        if role == Qt.ItemDataRole.ToolTipRole:
            return _tooltip(item)
        return None

    # -- whole queue (small folders, tests) ----------------------------------------------
    def set_items(self, items: Sequence[QueueItem]) -> None:
        items = list(items)
        self.set_pages(len(items), {p: items[p * self.page_size:(p + 1) * self.page_size]
                                    for p in range(-(-len(items) // self.page_size))}, keep_all=True)

    def replace_items(self, items: Sequence[QueueItem]) -> bool:
        """Take a fresh queue; when it holds the same images in the same order, only changed
        cells repaint (no reset: the scroll position and selection stay). True if it reset."""
        items = list(items)
        pages = {p: items[p * self.page_size:(p + 1) * self.page_size]
                 for p in range(-(-len(items) // self.page_size))}
        return self.replace_pages(len(items), pages, keep_all=True)

    # -- pages ------------------------------------------------------------------------------
    def set_pages(self, count: int, pages: dict[int, list[QueueItem]], cursors: dict[int, object] | None = None,
                  keep_all: bool = False) -> None:
        """A new queue of ``count`` rows, with the pages already read (a reset)."""
        self.beginResetModel()
        self._count = count
        self._pages.clear()
        self._cursors.clear()
        self._rows.clear()
        self._placed.clear()
        self._wanted.clear()
        for page, items in pages.items():
            self._store(page, items, (cursors or {}).get(page), keep_all)
        self.endResetModel()

    def replace_pages(self, count: int, pages: dict[int, list[QueueItem]], cursors: dict[int, object] | None = None,
                      keep_all: bool = False) -> bool:
        """Fresh pages of the same queue: when the count and every given page's images are
        unchanged, only changed cells repaint (pages not given are dropped, to be read again
        when they come on screen); otherwise the model resets. True if it reset."""
        same = count == self._count and all(
            [it.image_id for it in items] == [it.image_id for it in self._pages.get(page, [])]
            for page, items in pages.items())
        if not same:
            self.set_pages(count, pages, cursors, keep_all)
            return True
        for page, items in pages.items():
            old = self._pages.get(page)
            if old is None:
                # an empty page never held (an empty folder shown since the model was made, or its page dropped by
                # an exact count of 0): the same nothing, held now as ``set_pages`` holds it (it raised KeyError)
                self._store(page, items, (cursors or {}).get(page), keep_all)
                continue
            for k, (before, after) in enumerate(zip(old, items)):
                if before != after:
                    old[k] = after
                    self._placed[after.image_id] = after.review_state
                    idx = self.index(page * self.page_size + k)
                    self.dataChanged.emit(idx, idx)
            if cursors and page in cursors:
                self._cursors[page] = cursors[page]
        for page in [p for p in self._pages if p not in pages]:  # not re-read: read again when seen
            self._drop(self._pages.pop(page))
            self._cursors.pop(page, None)
            first = page * self.page_size
            self.dataChanged.emit(self.index(first), self.index(min(self._count, first + self.page_size) - 1))
        return False

    def set_count(self, count: int) -> None:
        """The queue's row count changed without its rows moving (the exact count after a bounded
        one): rows are added at (or taken from) the end; the loaded pages stay."""
        if count > self._count:
            self.beginInsertRows(QModelIndex(), self._count, count - 1)
            self._count = count
            self.endInsertRows()
        elif count < self._count:
            self.beginRemoveRows(QModelIndex(), count, self._count - 1)
            self._count = count
            for page in [p for p in self._pages if p * self.page_size >= count]:
                self._drop(self._pages.pop(page))
                self._cursors.pop(page, None)
            last = self._pages.get((count - 1) // self.page_size) if count else None
            if last is not None and len(last) > count % self.page_size > 0:
                self._drop(last[count % self.page_size:])
                del last[count % self.page_size:]
            self.endRemoveRows()

    def put_page(self, page: int, items: list[QueueItem], cursor: object | None = None) -> None:
        """A page the controller read for ``page_wanted``."""
        self._wanted.discard(page)
        first = page * self.page_size
        if not 0 <= first < self._count:
            return
        self._store(page, items[:self._count - first], cursor, keep_all=False)
        last = min(self._count, first + len(items)) - 1
        if last >= first:
            self.dataChanged.emit(self.index(first), self.index(last))
            self.rows_read.emit(first, last)

    def forget_wanted(self) -> None:
        """Requests were dropped (the reader skipped them): let the next repaint ask again."""
        self._wanted.clear()

    def cursor_before(self, page: int) -> object | None:
        """Where the page before ``page`` ended, if it is loaded (the next page reads from it)."""
        return self._cursors.get(page - 1)

    def loaded_pages(self) -> list[int]:
        return sorted(self._pages)

    def _want(self, page: int) -> None:
        if page not in self._wanted:
            self._wanted.add(page)
            self.page_wanted.emit(page)

    def _store(self, page: int, items: list[QueueItem], cursor: object | None, keep_all: bool) -> None:
        self._drop(self._pages.pop(page, []))
        self._pages[page] = list(items)
        if cursor is not None:
            self._cursors[page] = cursor
        first = page * self.page_size
        self._rows.update((it.image_id, first + k) for k, it in enumerate(items))
        self._placed.update((it.image_id, it.review_state) for it in items)
        while not keep_all and len(self._pages) > self.max_pages:
            gone, gone_items = self._pages.popitem(last=False)
            self._cursors.pop(gone, None)
            self._drop(gone_items)

    def _drop(self, items: Sequence[QueueItem]) -> None:
        for it in items:
            self._rows.pop(it.image_id, None)
            self._placed.pop(it.image_id, None)

    # -- single rows ----------------------------------------------------------------------
    def update_item(self, item: QueueItem) -> None:
        row = self._rows.get(item.image_id)
        if row is None:
            return
        self._pages[row // self.page_size][row % self.page_size] = item
        idx = self.index(row)
        self.dataChanged.emit(idx, idx)

    def refresh_id(self, image_id: int) -> None:
        row = self._rows.get(image_id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def row_of(self, image_id: int) -> int | None:
        """The image's row, when its page is loaded."""
        return self._rows.get(image_id)

    def item_of(self, image_id: int) -> QueueItem | None:
        """The image's item, when its page is loaded (a look, as ``peek``)."""
        row = self._rows.get(image_id)
        return None if row is None else self.peek(row)

    def placed_state(self, image_id: int) -> str | None:
        """The review state the image had when its page was read: what placed its row in a
        by-state order (a save changes the cell, not the row, until the next refresh)."""
        return self._placed.get(image_id)

    def peek(self, row: int) -> QueueItem | None:
        """``item_at`` without marking the page as recently used (a look, not a visit)."""
        page = self._pages.get(row // self.page_size) if 0 <= row < self._count else None
        k = row % self.page_size
        return page[k] if page is not None and k < len(page) else None

    def item_at(self, row: int) -> QueueItem | None:
        """The row's item, or None when its page is not loaded (or the row does not exist)."""
        page = self._pages.get(row // self.page_size) if 0 <= row < self._count else None
        if page is None:
            return None
        self._pages.move_to_end(row // self.page_size)
        k = row % self.page_size
        return page[k] if k < len(page) else None

    def items(self) -> list[QueueItem]:
        """The loaded items, in row order (every item for a queue that fits the loaded pages)."""
        return [it for page in sorted(self._pages) for it in self._pages[page]]


def _tooltip(item: QueueItem) -> str:
    flag = f" ({item.flag_text})" if item.flagged or item.flag_override is not None else ""
    lines = [item.rel_path, f"state: {item.review_state}{flag}"]
    outside = item.out_of_domain
    if outside:
        lines.append(f"out of domain for the {', '.join(outside)} model: unlike the images it was trained on")
    if item.predicted_class and "classifier" not in outside:
        conf = f" {item.confidence:.0%}" if item.confidence is not None else ""
        lines.append(f"predicted: {item.predicted_class}{conf}")
    if item.label_class:
        lines.append(f"label: {item.label_class}")
    if item.anomaly_score is not None and "anomaly" not in outside:
        lines.append(f"anomaly score: {item.anomaly_score:.3f}")
    if item.target_count is not None and "segmenter" not in outside:
        lines.append(f"targets: {item.target_count}")
    if item.error:
        lines.append(f"{'pre-labelling failed' if prelabel_failure(item.error) else 'cannot load'}: {item.error}")
    return "\n".join(lines)
