"""Colours and icons shared by the gallery, the viewer and the panels (one place to restyle)."""
from __future__ import annotations

import logging

import qtawesome as qta
from PySide6.QtGui import QColor, QIcon

log = logging.getLogger(__name__)

STATE_COLORS = {
    "unreviewed": QColor("#8a8f98"),
    "accepted": QColor("#2e9d5b"),
    "corrected": QColor("#2f7fd1"),
    "rejected": QColor("#d14343"),
}
STATE_ICONS = {
    "unreviewed": "mdi6.circle-outline",
    "accepted": "mdi6.check-circle",
    "corrected": "mdi6.pencil-circle",
    "rejected": "mdi6.close-circle",
}
MASK_RGB = (255, 200, 0)        # defect / target mask: amber
REGION_RGB = (255, 60, 200)     # anomaly region: magenta
PRED_MASK_RGB = (0, 220, 255)   # predicted mask: cyan
ANOMALY_COLOR = QColor("#e8590c")
FLAG_COLOR = QColor("#f2c14e")
# An image unlike a model's training images: shown instead of that model's class or score.
OUT_OF_DOMAIN_COLOR = QColor(120, 80, 170, 220)
OUT_OF_DOMAIN_TEXT = "out of domain"


_ICON_COLOR = {"color": "#2b2d31", "disabled": "#a0a4aa"}


def set_icon_colors(color: str, disabled: str) -> None:
    """Theme-dependent tint of monochrome icons (dark on light, light on dark)."""
    _ICON_COLOR.update(color=color, disabled=disabled)


def icon(name: str, color: str | QColor | None = None) -> QIcon:
    """A qtawesome icon; falls back to an empty icon if the font lacks the name."""
    try:
        if color is not None:
            return qta.icon(name, color=color)
        return qta.icon(name, color=_ICON_COLOR["color"], color_disabled=_ICON_COLOR["disabled"])
    except Exception as exc:  # noqa: BLE001 - qtawesome raises plain Exception for unknown names; logged
        log.warning("icon %s unavailable: %s", name, exc)
        return QIcon()


def state_icon(state: str) -> QIcon:
    return icon(STATE_ICONS.get(state, "mdi6.circle-outline"), STATE_COLORS.get(state, QColor("gray")))
