"""Light and dark themes: a QPalette plus a few style rules (Fusion style on every platform)."""
from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from app.gui.style import set_icon_colors

THEMES = ("light", "dark")

_DARK = {
    QPalette.ColorRole.Window: "#2b2d31", QPalette.ColorRole.WindowText: "#e6e6e6",
    QPalette.ColorRole.Base: "#1f2023", QPalette.ColorRole.AlternateBase: "#2b2d31",
    QPalette.ColorRole.ToolTipBase: "#3a3d42", QPalette.ColorRole.ToolTipText: "#f0f0f0",
    QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#35373c",
    QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Highlight: "#2f7fd1", QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#6cb4ff", QPalette.ColorRole.PlaceholderText: "#8a8f98",
}
_LIGHT = {
    QPalette.ColorRole.Window: "#f3f4f6", QPalette.ColorRole.WindowText: "#1d1f23",
    QPalette.ColorRole.Base: "#ffffff", QPalette.ColorRole.AlternateBase: "#eef0f3",
    QPalette.ColorRole.ToolTipBase: "#ffffe6", QPalette.ColorRole.ToolTipText: "#1d1f23",
    QPalette.ColorRole.Text: "#1d1f23", QPalette.ColorRole.Button: "#e9ebef",
    QPalette.ColorRole.ButtonText: "#1d1f23", QPalette.ColorRole.BrightText: "#c0392b",
    QPalette.ColorRole.Highlight: "#2f7fd1", QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#1a5fb4", QPalette.ColorRole.PlaceholderText: "#7a7f88",
}
_STYLE = """
QLabel#muted { color: palette(placeholder-text); font-size: 11px; }
QLabel#imageTitle { font-size: 13px; }
QPushButton#classButton { text-align: left; padding: 4px 8px; }
QPushButton#classButton:checked { background: palette(highlight); color: palette(highlighted-text); }
QGroupBox { font-weight: bold; margin-top: 10px; }
QGroupBox::title { subcontrol-origin: margin; left: 6px; padding: 0 3px; }
QDockWidget::title { padding: 4px; font-weight: bold; }
"""


def apply_theme(app: QApplication, name: str) -> str:
    """Apply ``name`` (falls back to light); returns the theme applied."""
    name = name if name in THEMES else "light"
    app.setStyle("Fusion")
    pal = QPalette()
    for role, color in (_DARK if name == "dark" else _LIGHT).items():
        pal.setColor(role, QColor(color))
    if name == "dark":
        pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#6b6f76"))
        pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#6b6f76"))
    app.setPalette(pal)
    set_icon_colors("#e6e6e6", "#6b6f76") if name == "dark" else set_icon_colors("#2b2d31", "#a0a4aa")
    app.setStyleSheet(_STYLE)
    app.setProperty("station_theme", name)
    return name
