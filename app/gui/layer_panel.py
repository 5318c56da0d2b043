"""Layers and tools: visibility and opacity per overlay, heatmap colour map, brush radius, target,
and the heatmap → region group (threshold slider, Apply, grow tool), shown only for an image
that has an anomaly heatmap."""
from __future__ import annotations

from typing import Mapping

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.style import OUT_OF_DOMAIN_TEXT
from app.gui.viewer import TOOLS
from app.services.display import COLORMAPS
from app.services.heat_region import DEFAULT_GROW_FRACTION

LAYER_TITLES = {"heatmap": "Heatmap", "prediction": "Predicted mask",
                "mask": "Defect mask", "region": "Anomaly region"}
DEFAULT_OPACITY = {"heatmap": 50, "prediction": 45, "mask": 55, "region": 45}
THRESHOLD_STEPS = 1000  # slider positions across the map's min..max


class LayerPanel(QWidget):
    visibility_changed = Signal(str, bool)
    opacity_changed = Signal(str, float)
    colormap_changed = Signal(str)
    heat_scale_changed = Signal(bool)  # True: the model's threshold scale, False: this image's range
    brush_radius_changed = Signal(int)
    target_changed = Signal(str)
    threshold_previewed = Signal(float)  # the slider moved: show the region at this heat level
    threshold_applied = Signal(float)    # let go / Apply: that region becomes the label's
    grow_fraction_changed = Signal(float)

    def __init__(self, actions: dict[str, QAction], parent=None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)

        tools = QGroupBox("Tools")
        tl = QGridLayout(tools)
        for i, key in enumerate(f"tool_{t}" for t in TOOLS if t != "grow"):
            b = QToolButton()
            b.setDefaultAction(actions[key])
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
            tl.addWidget(b, 0, i)
        # The number is the brush's radius (ImageViewer.brush_radius): labelled "Size", 8 px painted strokes 16 px
        # wide (a session-51 audit). Relabelled, not made the diameter, so every brush keeps the size it paints.
        radius = QLabel("Radius")
        self.brush = QSpinBox()
        radius.setBuddy(self.brush)
        self.brush.setRange(1, 500)
        self.brush.setValue(8)
        self.brush.setSuffix(" px")
        self.brush.setToolTip("The brush's radius in image pixels: a stroke is twice as wide ([ and ] change it)")
        self.brush.valueChanged.connect(self.brush_radius_changed)
        tl.addWidget(radius, 1, 0)
        tl.addWidget(self.brush, 1, 1, 1, 3)
        self.target_mask = QRadioButton("Defect mask (M)")
        self.target_region = QRadioButton("Anomaly region (R)")
        self.target_mask.setChecked(True)
        self.target_mask.toggled.connect(lambda on: on and self.target_changed.emit("mask"))
        self.target_region.toggled.connect(lambda on: on and self.target_changed.emit("region"))
        tl.addWidget(self.target_mask, 2, 0, 1, 4)
        tl.addWidget(self.target_region, 3, 0, 1, 4)
        lay.addWidget(tools)
        lay.addWidget(self._heat_region_group(actions["tool_grow"]))

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

    def set_withheld(self, layers: Mapping[str, str]) -> None:
        """Say which layers the image on screen leaves empty, and why: their model calls it out of domain,
        or its map is not on this station (ADR 0061: the layer said only "Heatmap" and drew nothing)."""
        for name, cb in self.checks.items():
            why = layers.get(name)
            if why is None:
                cb.setText(LAYER_TITLES[name])
                cb.setToolTip("")
            elif why == OUT_OF_DOMAIN_TEXT:
                cb.setText(f"{LAYER_TITLES[name]} (out of domain)")
                cb.setToolTip("Not drawn: the model that makes this layer calls the image unlike its training "
                              "images, so its answer is not shown, as in the Label panel")
            else:
                cb.setText(f"{LAYER_TITLES[name]} (map not on this station)")
                cb.setToolTip(why)

    def _heat_region_group(self, grow_action: QAction) -> QGroupBox:
        box = QGroupBox("Heatmap → region")
        box.setToolTip("Turn the anomaly heatmap into the anomaly region, then refine it with brush and eraser.")
        g = QGridLayout(box)
        self._bounds = (0.0, 1.0)
        self.threshold = QSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(0, THRESHOLD_STEPS)
        self.threshold.setToolTip("Heat threshold: the region is every pixel at or above it.\n"
                                  "Drag to preview; letting go (or Apply) saves it as one undoable change.")
        self.threshold.valueChanged.connect(self._on_threshold_moved)
        self.threshold.sliderPressed.connect(lambda: setattr(self, "_pressed_at", self.threshold.value()))
        self.threshold.sliderReleased.connect(self._on_threshold_released)
        self._pressed_at: int | None = None  # the handle's value when pressed on the image shown
        # (position, level) of the model's pixel threshold: 1,000 positions cannot hold it exactly (a session-50 audit)
        self._default: tuple[int, float] | None = None
        self._previewing = False
        # A drag sends many positions; a big image is thresholded once per pass of the event loop,
        # for the newest one only, so the handle never lags behind the mouse.
        self._preview = QTimer(self)
        self._preview.setSingleShot(True)
        self._preview.setInterval(0)
        self._preview.timeout.connect(lambda: self.threshold_previewed.emit(self.threshold_level()))
        self.threshold_value = QLabel()
        self.threshold_value.setMinimumWidth(52)
        self.apply = QPushButton("Apply")
        self.apply.setToolTip("Save the region at this threshold as the anomaly region (Ctrl+Z undoes it)")
        self.apply.clicked.connect(self.apply_threshold)
        g.addWidget(QLabel("Threshold"), 0, 0)
        g.addWidget(self.threshold, 0, 1)
        g.addWidget(self.threshold_value, 0, 2)
        g.addWidget(self.apply, 0, 3)
        grow = QToolButton()
        grow.setDefaultAction(grow_action)
        grow.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.grow_fraction = QSpinBox()
        self.grow_fraction.setRange(5, 100)
        self.grow_fraction.setSingleStep(5)
        self.grow_fraction.setValue(round(DEFAULT_GROW_FRACTION * 100))
        self.grow_fraction.setSuffix(" % of click")
        self.grow_fraction.setToolTip("Grow: a click adds the connected area whose heat reaches this share of "
                                      "the clicked value (above the map's minimum); lower grows wider")
        self.grow_fraction.valueChanged.connect(lambda v: self.grow_fraction_changed.emit(v / 100.0))
        g.addWidget(grow, 1, 0, 1, 2)
        g.addWidget(self.grow_fraction, 1, 2, 1, 2)
        self.heat_region_box = box
        box.setVisible(False)
        return box

    def set_heat_levels(self, levels: tuple[float, float, float] | None) -> None:
        """Show the group for a heatmap's (min, max, default) levels, or hide it (None)."""
        self._preview.stop()  # a preview still due belongs to the previous image
        # so does a drag of the handle: let go after J, it saved a region on the next image at its default level
        # and the one previewed was lost (a session-45 probe)
        self._pressed_at = None
        self._previewing = False
        if self.threshold.isSliderDown():
            self.threshold.blockSignals(True)
            self.threshold.setSliderDown(False)
            self.threshold.blockSignals(False)
        self.heat_region_box.setVisible(levels is not None)
        self._default = None
        if levels is None:
            return
        lo, hi, default = levels
        self._bounds = (lo, hi)
        self.threshold.blockSignals(True)  # a new image: show its default, do not preview it
        self.threshold.setValue(round((default - lo) / (hi - lo) * THRESHOLD_STEPS) if hi > lo else THRESHOLD_STEPS)
        self.threshold.blockSignals(False)
        self._default = (self.threshold.value(), default)
        self._show_level()

    def threshold_level(self) -> float:
        """The heat level at the handle. At the default's position it is the default itself, not the nearest of the
        slider's steps: Apply on the untouched slider saved a region other than the model's (5,050 pixels for 5,045 on
        a 16-bit bottle whose map spans 70, a session-50 audit), and the step grows with the map's range."""
        if self._default is not None and self.threshold.value() == self._default[0]:
            return self._default[1]
        lo, hi = self._bounds
        return lo + (hi - lo) * self.threshold.value() / THRESHOLD_STEPS

    def _show_level(self) -> None:
        self.threshold_value.setText(f"{self.threshold_level():.3g}")

    def _on_threshold_moved(self, _value: int) -> None:
        self._show_level()
        self._previewing = True
        self._preview.start()

    def previewing(self) -> bool:
        """A region is previewed on screen (the handle moved by keys or wheel) and not applied yet."""
        return self._previewing and self.heat_region_box.isVisible()

    def _on_threshold_released(self) -> None:
        """Letting go saves the region, unless the handle was only clicked (nothing previewed)."""
        if self._pressed_at is not None and self.threshold.value() != self._pressed_at:
            self.apply_threshold()
        self._pressed_at = None

    def apply_threshold(self) -> None:
        self._preview.stop()  # the applied region is the preview's last word
        self._previewing = False
        self.threshold_applied.emit(self.threshold_level())

    def set_target(self, target: str) -> None:
        (self.target_mask if target == "mask" else self.target_region).setChecked(True)

    def toggle_layer(self, name: str) -> None:
        self.checks[name].toggle()
