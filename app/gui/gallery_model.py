"""The gallery's model: one row per image of the review queue (plain ``QueueItem`` records)."""
from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

from app.services.review_types import QueueItem

ITEM_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2


class GalleryModel(QAbstractListModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._items: list[QueueItem] = []
        self._rows: dict[int, int] = {}

    # -- Qt interface -------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return item.name
        if role == ITEM_ROLE:
            return item
        if role == ID_ROLE:
            return item.image_id
        if role == Qt.ItemDataRole.ToolTipRole:
            return _tooltip(item)
        return None

    # -- updates --------------------------------------------------------------------------
    def set_items(self, items: Sequence[QueueItem]) -> None:
        self.beginResetModel()
        self._items = list(items)
        self._rows = {it.image_id: i for i, it in enumerate(self._items)}
        self.endResetModel()

    def replace_items(self, items: Sequence[QueueItem]) -> bool:
        """Take a fresh queue; when it holds the same images in the same order, only changed
        cells repaint (no reset: the scroll position and selection stay). True if it reset."""
        items = list(items)
        if [it.image_id for it in items] != [it.image_id for it in self._items]:
            self.set_items(items)
            return True
        for row, (old, new) in enumerate(zip(self._items, items)):
            if old != new:
                self._items[row] = new
                idx = self.index(row)
                self.dataChanged.emit(idx, idx)
        return False

    def update_item(self, item: QueueItem) -> None:
        row = self._rows.get(item.image_id)
        if row is None:
            return
        self._items[row] = item
        idx = self.index(row)
        self.dataChanged.emit(idx, idx)

    def refresh_id(self, image_id: int) -> None:
        row = self._rows.get(image_id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def row_of(self, image_id: int) -> int | None:
        return self._rows.get(image_id)

    def item_at(self, row: int) -> QueueItem | None:
        return self._items[row] if 0 <= row < len(self._items) else None

    def items(self) -> list[QueueItem]:
        return list(self._items)


def _tooltip(item: QueueItem) -> str:
    lines = [item.rel_path, f"state: {item.review_state}" + (" (flagged)" if item.flagged else "")]
    if item.predicted_class:
        conf = f" {item.confidence:.0%}" if item.confidence is not None else ""
        lines.append(f"predicted: {item.predicted_class}{conf}")
    if item.label_class:
        lines.append(f"label: {item.label_class}")
    if item.anomaly_score is not None:
        lines.append(f"anomaly score: {item.anomaly_score:.3f}")
    if item.target_count is not None:
        lines.append(f"targets: {item.target_count}")
    if item.error:
        lines.append(f"cannot load: {item.error}")
    return "\n".join(lines)
