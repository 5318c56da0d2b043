"""Layers and tools: visibility and opacity per overlay, heatmap colour map, brush size, target."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QRadioButton,
                               QSlider, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from app.services.display import COLORMAPS

LAYER_TITLES = {"heatmap": "Heatmap", "prediction": "Predicted mask",
                "mask": "Defect mask", "region": "Anomaly region"}
DEFAULT_OPACITY = {"heatmap": 50, "prediction": 45, "mask": 55, "region": 45}


class LayerPanel(QWidget):
    visibility_changed = Signal(str, bool)
    opacity_changed = Signal(str, float)
    colormap_changed = Signal(str)
    heat_scale_changed = Signal(bool)  # True: the model's threshold scale, False: this image's range
    brush_radius_changed = Signal(int)
    target_changed = Signal(str)

    def __init__(self, actions: dict[str, QAction], parent=None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)

        tools = QGroupBox("Tools")
        tl = QGridLayout(tools)
        for i, key in enumerate(("tool_pan", "tool_brush", "tool_eraser", "tool_polygon")):
            b = QToolButton()
            b.setDefaultAction(actions[key])
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
            tl.addWidget(b, 0, i)
        tl.addWidget(QLabel("Size"), 1, 0)
        self.brush = QSpinBox()
        self.brush.setRange(1, 500)
        self.brush.setValue(8)
        self.brush.setSuffix(" px")
        self.brush.valueChanged.connect(self.brush_radius_changed)
        tl.addWidget(self.brush, 1, 1, 1, 3)
        self.target_mask = QRadioButton("Defect mask (M)")
        self.target_region = QRadioButton("Anomaly region (R)")
        self.target_mask.setChecked(True)
        self.target_mask.toggled.connect(lambda on: on and self.target_changed.emit("mask"))
        self.target_region.toggled.connect(lambda on: on and self.target_changed.emit("region"))
        tl.addWidget(self.target_mask, 2, 0, 1, 4)
        tl.addWidget(self.target_region, 3, 0, 1, 4)
        lay.addWidget(tools)

        layers = QGroupBox("Layers")
        ll = QGridLayout(layers)
        self.checks: dict[str, QCheckBox] = {}
        self.sliders: dict[str, QSlider] = {}
        for row, (name, title) in enumerate(LAYER_TITLES.items()):
            cb = QCheckBox(title)
            cb.setChecked(True)
            cb.toggled.connect(lambda on, n=name: self.visibility_changed.emit(n, on))
            sl = QSlider(Qt.Orientation.Horizontal)
            sl.setRange(0, 100)
            sl.setValue(DEFAULT_OPACITY[name])
            sl.setToolTip("opacity")
            sl.valueChanged.connect(lambda v, n=name: self.opacity_changed.emit(n, v / 100.0))
            ll.addWidget(cb, row, 0)
            ll.addWidget(sl, row, 1)
            self.checks[name], self.sliders[name] = cb, sl
        cm = QHBoxLayout()
        cm.addWidget(QLabel("Colour map"))
        self.colormap = QComboBox()
        self.colormap.addItems(list(COLORMAPS))
        self.colormap.currentTextChanged.connect(self.colormap_changed)
        cm.addWidget(self.colormap, 1)
        self.heat_scale = QComboBox()
        self.heat_scale.addItem("scale: model threshold", True)
        self.heat_scale.addItem("scale: this image's range", False)
        self.heat_scale.setToolTip("Threshold scale: the pixel threshold sits mid-colour, so good parts stay cool.\n"
                                   "Image range: stretch this map's own min..max (shows where the model looks "
                                   "even when everything is over the threshold).")
        self.heat_scale.currentIndexChanged.connect(lambda _i: self.heat_scale_changed.emit(
            bool(self.heat_scale.currentData())))
        cm.addWidget(self.heat_scale, 1)
        ll.addLayout(cm, len(LAYER_TITLES), 0, 1, 2)
        compare = QToolButton()
        compare.setDefaultAction(actions["compare"])
        compare.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        ll.addWidget(compare, len(LAYER_TITLES) + 1, 0, 1, 2)
        lay.addWidget(layers)
        lay.addStretch(1)

    def set_target(self, target: str) -> None:
        (self.target_mask if target == "mask" else self.target_region).setChecked(True)

    def toggle_layer(self, name: str) -> None:
        self.checks[name].toggle()
