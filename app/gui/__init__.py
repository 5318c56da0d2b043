"""PySide6 widgets of the review station (see main_window.py for the layout).

Importing this package first applies ``qt_runtime.make_none_immortal``: the PySide6 6.12 wheels
(abi3, built for Python >= 3.12 where None is immortal) hand back ``None`` from every void
method without a new reference, so on Python 3.11 each ``painter.setPen(...)`` costs None one
reference and a busy window aborts with "deallocating None" after a few thousand calls.
"""
from app.gui.qt_runtime import make_none_immortal

make_none_immortal()
