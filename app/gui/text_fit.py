"""Text that gives way to the width it is given, the whole of it in a tooltip, instead of widening its row.

Why: a long job title pushed a row's progress, Retry and Cancel off the Jobs dock's right edge (seen under Xvfb), and a
long class name widened the label panel past its dock (no horizontal scroll bar), so Reject, Clear label and Anomalous
lay out of sight (a session-49 audit).
"""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QGroupBox, QLabel, QPushButton, QSizePolicy, QStyle, QStyleOptionButton, QWidget

ELLIPSIS = "…"


def _paint_elided(widget: QWidget, full: str, room: int, painted: str, paint: Callable[[str], None]) -> None:
    """Paint ``full`` shortened with "…" to ``room`` pixels (at least 20) of ``widget``'s font, through ``paint``, where
    that differs from what is ``painted`` now. The one eliding rule of ``ElidedLabel`` and ``ElidedGroupBox`` (two
    copies of it before), which differ only in their room and in the Qt text they paint."""
    shown = widget.fontMetrics().elidedText(full, Qt.TextElideMode.ElideRight, max(room, 20))
    if shown != painted:
        paint(shown)


class ElidedLabel(QLabel):
    """A label that shortens its text with "…" to the width it is given (the whole text in its tooltip)."""

    def __init__(self, text: str = "", parent=None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setMinimumWidth(80)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full = text
        self.setToolTip(text)
        self._elide()

    def text(self) -> str:  # the whole title (what is painted may be shortened)
        return self._full

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(self.fontMetrics().horizontalAdvance(self._full) + 4, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(self.minimumWidth(), super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        _paint_elided(self, self._full, self.width(), QLabel.text(self), super().setText)


class ElidedButton(QPushButton):
    """A push button whose text after ``keep`` (a hotkey's number) ends in "…" where the button is narrower than it;
    ``keep`` always shows, the whole text is in the tooltip and ``text()``."""

    def __init__(self, text: str, keep: str = "", parent=None) -> None:
        super().__init__(text, parent)
        self._keep, self._rest = keep, text[len(keep):] if text.startswith(keep) else text
        self.setToolTip(self.text())
        self.setSizePolicy(QSizePolicy.Policy.Preferred, self.sizePolicy().verticalPolicy())  # may be narrower

    def text(self) -> str:  # noqa: D102 - the whole text (what is painted may be shortened)
        return self._keep + self._rest

    def _size_for(self, text: str) -> QSize:
        """The size the style gives this button around ``text`` (its padding, frame and style sheet)."""
        opt = QStyleOptionButton()
        self.initStyleOption(opt)
        opt.text = text
        fm = self.fontMetrics()
        return self.style().sizeFromContents(QStyle.ContentsType.CT_PushButton, opt,
                                             QSize(fm.horizontalAdvance(text), fm.height()), self)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return self._size_for(self.text()).expandedTo(QSize(0, super().sizeHint().height()))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(self._size_for(self._keep + ELLIPSIS).width(), super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        room = self.width() - self._size_for("").width() - self.fontMetrics().horizontalAdvance(self._keep)
        shown = self._keep + self.fontMetrics().elidedText(self._rest, Qt.TextElideMode.ElideRight, max(room, 0))
        if shown != QPushButton.text(self):
            super().setText(shown)


class ElidedGroupBox(QGroupBox):
    """A group box whose title ends in "…" where the box is narrower than it (the whole title in the tooltip and
    ``title()``): its title names the image's class, and a long one set the box's, so the panel's, least width."""

    def __init__(self, title: str = "", parent=None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setTitle(title)

    def setTitle(self, title: str) -> None:  # noqa: N802 - Qt's name
        self._full = title
        self.setToolTip(title)
        self._elide()

    def title(self) -> str:  # noqa: D102 - the whole title (what is painted may be shortened)
        return self._full

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name: what the contents need, whatever the title
        lay = self.layout()
        least = super().minimumSizeHint()
        if lay is None:
            return least
        m = self.contentsMargins()
        return QSize(lay.totalMinimumSize().width() + m.left() + m.right(), least.height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        room = self.width() - 3 * self.fontMetrics().horizontalAdvance("x")   # the title's indent
        _paint_elided(self, self._full, room, QGroupBox.title(self), super().setTitle)
