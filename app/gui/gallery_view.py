"""The thumbnail grid: a QListView in icon mode with a delegate that draws review badges.

Badges, so an inspector can triage without opening an image: review state (coloured corner
and ring), predicted class (bottom chip), anomaly score (top-right chip, orange above the
threshold), target count (top-left), flag. Unloadable images get a placeholder and the reason.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.gui.gallery_model import ITEM_ROLE, GalleryModel
from app.gui.style import ANOMALY_COLOR, FLAG_COLOR, OUT_OF_DOMAIN_COLOR, OUT_OF_DOMAIN_TEXT, STATE_COLORS, state_icon
from app.gui.thumbnails import ThumbnailCache
from app.services.flags import over_threshold
from app.services.review_types import QueueItem

TEXT_H = 18


def ood_chip_place(item: QueueItem) -> str | None:
    """Where a cell says "out of domain" (one chip at most): in place of the class (bottom left) when the classifier
    calls the image foreign and no class is labelled, else of the anomaly score (top right), else of the target count
    (top left). It stood top right for any family but the classifier: seen under Xvfb (session 43), the segmenter's
    "out of domain" hid every tile's in-domain anomaly score once the classifier had no answer."""
    outside = item.out_of_domain
    if "classifier" in outside:
        return None if item.label_class else "bl"
    if "anomaly" in outside:
        return "tr"
    if "segmenter" in outside:
        return "tl"
    return None


class GalleryDelegate(QStyledItemDelegate):
    def __init__(self, cache: ThumbnailCache, parent=None) -> None:
        super().__init__(parent)
        self.cache = cache
        self.anomaly_threshold = 0.5
        # anomaly version id -> its threshold in the open folder: a score is over the threshold of the model that
        # gave it (``anomaly_threshold`` where its version is not known here)
        self.anomaly_thresholds: dict[int, float] = {}
        self.cell = QSize(cache.size + 12, cache.size + 12 + TEXT_H)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        return self.cell

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        item: QueueItem = index.data(ITEM_ROLE)
        if item is None:
            return
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        r = option.rect.adjusted(3, 3, -3, -3)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        pal = option.palette
        p.fillRect(r, pal.highlight() if selected else pal.base())
        state_color = STATE_COLORS.get(item.review_state, QColor("gray"))
        p.setPen(QPen(state_color, 3 if item.review_state != "unreviewed" else 1))
        p.drawRect(r.adjusted(1, 1, -1, -1))

        thumb_rect = QRect(r.left() + 3, r.top() + 3, r.width() - 6, r.height() - TEXT_H - 6)
        pm = self.cache.pixmap(item.image_id, item.path, item.content_hash)
        err = item.error or self.cache.error(item.image_id, item.content_hash)
        if pm is not None:
            scaled = pm.size().scaled(thumb_rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, scaled.width(), scaled.height())
            target.moveCenter(thumb_rect.center())
            p.drawPixmap(target, pm)
        else:
            self._placeholder(p, thumb_rect, err)

        self._badges(p, thumb_rect, item)
        p.setPen(pal.highlightedText().color() if selected else pal.text().color())
        font = QFont(option.font)
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        p.setFont(font)
        text_rect = QRect(r.left() + 22, r.bottom() - TEXT_H, r.width() - 24, TEXT_H)
        p.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                   QFontMetrics(font).elidedText(item.name, Qt.TextElideMode.ElideMiddle, text_rect.width()))
        state_icon(item.review_state).paint(p, QRect(r.left() + 3, r.bottom() - TEXT_H + 1, 16, 16))
        p.restore()

    def _placeholder(self, p: QPainter, rect: QRect, error: str | None) -> None:
        p.fillRect(rect, QColor(60, 60, 60, 60))
        p.setPen(QColor("#c0392b") if error else QColor("#888"))
        text = f"⚠ cannot load\n{error}" if error else "…"
        p.drawText(rect.adjusted(4, 4, -4, -4), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)

    def _chip(self, p: QPainter, text: str, anchor: QRect, where: str, bg: QColor, room: int | None = None) -> int:
        """Draw a chip in a corner; ``room``: the most width it may take (its text elided). Returns its width."""
        fm = p.fontMetrics()
        w, h = fm.horizontalAdvance(text) + 8, fm.height() + 2
        if room is not None:
            w = max(12, min(w, room))
        if where == "tl":
            rect = QRect(anchor.left() + 2, anchor.top() + 2, w, h)
        elif where == "tr":
            rect = QRect(anchor.right() - w - 2, anchor.top() + 2, w, h)
        else:
            rect = QRect(anchor.left() + 2, anchor.bottom() - h - 2, min(w, anchor.width() - 4), h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(bg)
        p.drawRoundedRect(rect, 4, 4)
        p.setPen(QColor("white"))
        p.drawText(rect, Qt.AlignmentFlag.AlignCenter,
                   fm.elidedText(text, Qt.TextElideMode.ElideRight, rect.width() - 4))
        return rect.width()

    def over_threshold(self, item: QueueItem) -> bool:
        """The item's anomaly score is over the threshold of the version that gave it (the score chip's colour; "over"
        as the model and the flags count it); the open folder's default threshold where that version's is not
        known."""
        if item.anomaly_score is None:
            return False
        threshold = self.anomaly_thresholds.get(item.anomaly_version, self.anomaly_threshold) \
            if item.anomaly_version is not None else self.anomaly_threshold
        return over_threshold(item.anomaly_score, threshold)

    def _badges(self, p: QPainter, rect: QRect, item: QueueItem) -> None:
        font = p.font()
        font.setPointSizeF(max(6.5, font.pointSizeF() - 1.5))
        font.setBold(True)
        p.setFont(font)
        hot = self.over_threshold(item)
        outside = item.out_of_domain  # those families' scores mean nothing here: say so instead
        where = ood_chip_place(item)
        score_w = 0
        if item.anomaly_score is not None and "anomaly" not in outside:
            score_w = self._chip(p, f"{item.anomaly_score:.3g}", rect, "tr",
                                 ANOMALY_COLOR if hot else QColor(40, 40, 40, 170))
        if where in ("tr", "tl"):  # top left beside a score: elided to leave the score whole
            self._chip(p, OUT_OF_DOMAIN_TEXT, rect, where, OUT_OF_DOMAIN_COLOR,
                       rect.width() - score_w - 8 if where == "tl" and score_w else None)
        elif item.target_count and "segmenter" not in outside:
            self._chip(p, f"◎{item.target_count}", rect, "tl", QColor(0, 140, 170, 200))
        cls = item.label_class or (item.predicted_class if "classifier" not in outside else None)
        if where == "bl":
            self._chip(p, OUT_OF_DOMAIN_TEXT, rect, "bl", OUT_OF_DOMAIN_COLOR)
        elif cls:
            conf = "" if item.label_class or item.confidence is None else f" {item.confidence:.0%}"
            bg = QColor(47, 127, 209, 220) if item.label_class else QColor(30, 30, 30, 180)
            self._chip(p, f"{cls}{conf}", rect, "bl", bg)
        if item.flagged:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(FLAG_COLOR)
            x, y = rect.right() - 10, rect.top() + 24  # under the score chip, clear of the class chip
            if item.flag_override:  # an inspector's flag: outlined, the models' flags are plain
                p.setPen(QPen(QColor(255, 255, 255), 1))
            p.drawPolygon([QPoint(x, y), QPoint(x + 8, y + 4), QPoint(x, y + 8)])


class GalleryView(QListView):
    """Icon grid; emits ``current_image_changed`` with the image id under the cursor."""

    current_image_changed = Signal(int)

    def __init__(self, model: GalleryModel, cache: ThumbnailCache, parent=None) -> None:
        super().__init__(parent)
        self.setModel(model)
        self.delegate = GalleryDelegate(cache, self)
        self.setItemDelegate(self.delegate)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(500)
        self.setSpacing(2)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setWrapping(True)
        self.setObjectName("gallery")
        cache.ready.connect(self._thumb_ready)
        self.selectionModel().currentChanged.connect(self._current_changed)
        self._model = model
        # The selection is the images the inspector chose, not row numbers: a page is dropped and read again in
        # another order (a new sort, another station's save re-sorting the queue) and Qt's row selection then
        # named other images; a class key labelled images never chosen, and left out chosen ones (session-45
        # probes). Rows selected before their page was read (Ctrl+A on a large folder) wait in ``_unread``.
        self._chosen: dict[int, None] = {}
        self._unread: set[int] = set()
        self._seen_at: dict[int, int] = {}  # row -> the chosen image last read there (its page may be dropped since)
        self._syncing = False
        self._holding = False
        self._current_unread: int | None = None   # the current row, its page not read yet (its image opens then)
        self.selectionModel().selectionChanged.connect(self._selection_changed)
        model.rows_read.connect(self._rows_read)
        model.modelReset.connect(self._forget_selection)

    def _thumb_ready(self, image_id: int) -> None:
        row = self._model.row_of(image_id)
        if row is not None:
            self.viewport().update(self.visualRect(self._model.index(row)))

    def _current_changed(self, current: QModelIndex, _prev: QModelIndex) -> None:
        self._current_unread = None
        if current.isValid():
            item = current.data(ITEM_ROLE)   # asks for the row's page when it is not read yet
            if item is None:
                # End (or PageDown) onto a row whose page is not read yet: an AttributeError, the gallery on the last
                # row and the screen, and the next key, on the first image (a session-48 probe). The image is opened
                # once its page comes.
                self._current_unread = current.row()
                return
            self.current_image_changed.emit(item.image_id)

    def current_unread(self) -> bool:
        """Whether the current row's page is not read yet (its image opens when it comes)."""
        return self._current_unread is not None and self.currentIndex().row() == self._current_unread

    def select_image(self, image_id: int, alone: bool = False, keep_selection: bool = False) -> bool:
        """Make ``image_id`` the current image, selected alone when it was not current yet
        (or always, with ``alone``); a multi-selection around the current image is kept otherwise, and with
        ``keep_selection`` where the image is one of those chosen (a re-read of the same view).

        ``setCurrentIndex`` would read the keyboard modifiers still held (Ctrl of ``Ctrl+Z``)
        and toggle the image into the selection, leaving two images selected for the next
        ``A`` (issue 16); the selection model is told to clear and select instead.
        """
        row = self._model.row_of(image_id)
        if row is None:
            return False
        idx = self._model.index(row)
        if keep_selection and image_id in self._chosen and self.selectionModel().isSelected(idx):
            self.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.NoUpdate)
        elif alone or self.currentIndex() != idx:
            self.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.scrollTo(idx)
        return True

    def selected_ids(self) -> list[int]:
        """The images the inspector selected, wherever the queue has moved them since (see ``unread_selected``)."""
        return list(self._chosen)

    def unread_selected(self) -> int:
        """Selected rows whose images are not read yet (their ids are not known)."""
        return len(self._unread)

    def unread_rows(self) -> set[int]:
        """The selected rows whose images are not read yet."""
        return set(self._unread)

    @staticmethod
    def _ranges(selection: QItemSelection) -> list[tuple[int, int]]:
        return [(selection.at(k).top(), selection.at(k).bottom()) for k in range(selection.count())]

    @classmethod
    def _rows(cls, selection: QItemSelection) -> list[int]:
        return [row for top, bottom in cls._ranges(selection) for row in range(top, bottom + 1)]

    def _selection_changed(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        if self._syncing:
            return
        for row in self._rows(deselected):
            item = self._model.peek(row)
            # a row whose page was dropped since (a background re-read) is the image last seen there: deselected on
            # screen, it stayed chosen and the next key decided it (the session-45 review)
            gone = item.image_id if item is not None else self._seen_at.get(row)
            if gone is not None:
                self._chosen.pop(gone, None)
            self._seen_at.pop(row, None)
            self._unread.discard(row)
        now = self._rows(selected)
        if sum(b - t + 1 for t, b in self._ranges(self.selectionModel().selection())) == len(now):
            self._chosen.clear()  # a fresh selection: nothing chosen earlier stays, wherever it has moved
            self._unread.clear()
            self._seen_at.clear()
        for row in now:
            item = self._model.peek(row)
            if item is not None:
                self._chosen[item.image_id] = None
                self._seen_at[row] = item.image_id
            else:
                self._unread.add(row)
        if deselected.count() and len(self._chosen) == 1 and not self._unread:
            # Ctrl+click took the image on screen out of a selection of two: one image highlighted, another on screen,
            # and G / A / 1–9 decided the one on screen, not highlighted (a session-47 audit). The one left is shown.
            left = self._model.row_of(next(iter(self._chosen)))
            if left is not None and self.currentIndex().row() != left:
                self.selectionModel().setCurrentIndex(self._model.index(left), QItemSelectionModel.SelectionFlag.NoUpdate)

    @contextmanager
    def selection_held(self, held: bool = True) -> Iterator[None]:
        """A reset inside reads the same view again (another station's save moved rows): the chosen images stay
        selected where the new pages list them."""
        self._holding = held
        try:
            yield
        finally:
            self._holding = False

    def _forget_selection(self) -> None:
        """A reset (another folder, filter or order) clears Qt's selection without a signal."""
        self._unread.clear()
        self._seen_at.clear()  # rows of another view (rebuilt below where the chosen are read again)
        if not self._holding:
            self._chosen.clear()
            return
        # where the new pages hold the whole view, a chosen image they do not list has left it (another station's
        # label took it out of an "unreviewed" filter): no longer chosen. Otherwise it may sit on a page not read
        # yet, and is selected there when that page is read.
        listed = {it.image_id for it in self._model.items()}
        if len(listed) >= self._model.rowCount():
            for gone in [i for i in self._chosen if i not in listed]:
                del self._chosen[gone]
        size = self._model.page_size
        for page in self._model.loaded_pages():
            self._rows_read(page * size, min(self._model.rowCount(), (page + 1) * size) - 1)

    def _rows_read(self, first: int, last: int) -> None:
        """A page was stored: its rows are selected where they hold a chosen image, and only there; the current row,
        moved to before its page was read, opens its image now."""
        unread = self._current_unread
        if unread is not None and first <= unread <= last and self.currentIndex().row() == unread:
            self._current_unread = None
            item = self._model.peek(unread)
            if item is not None:
                self.current_image_changed.emit(item.image_id)
        sm = self.selectionModel()
        add, drop = QItemSelection(), QItemSelection()
        for row in range(first, last + 1):
            item = self._model.peek(row)
            if item is None:
                continue
            idx = self._model.index(row)
            self._seen_at.pop(row, None)
            if row in self._unread:  # selected before it was read: now it is known which image that is
                self._unread.discard(row)
                self._chosen[item.image_id] = None
                self._seen_at[row] = item.image_id
            elif item.image_id in self._chosen:
                self._seen_at[row] = item.image_id
                if not sm.isSelected(idx):
                    add.select(idx, idx)
            elif sm.isSelected(idx):
                drop.select(idx, idx)
        if add.isEmpty() and drop.isEmpty():
            return
        self._syncing = True
        try:
            sm.select(add, QItemSelectionModel.SelectionFlag.Select)
            sm.select(drop, QItemSelectionModel.SelectionFlag.Deselect)
        finally:
            self._syncing = False
