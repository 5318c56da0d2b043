"""The viewer's actions (tools, brush, layers, zoom) wired to the viewer and the layer panel."""
from __future__ import annotations

from PySide6.QtGui import QAction

from app.gui.layer_panel import LayerPanel
from app.gui.viewer import TOOLS, ViewerPane

LAYER_ACTIONS = {"heatmap": "toggle_heatmap", "prediction": "toggle_prediction", "mask": "toggle_mask"}


def wire_view_actions(a: dict[str, QAction], pane: ViewerPane, lp: LayerPanel) -> None:
    v = pane.viewer

    def sync_layer_action(name: str, on: bool) -> None:
        if name == "region":  # Shift+M stands for both labelled masks: ticked while both are drawn (a probe found it
            name, on = "mask", on and lp.checks["mask"].isChecked()  # ticked with the region hidden)
        elif name == "mask":
            on = on and lp.checks["region"].isChecked()
        if name in LAYER_ACTIONS:
            a[LAYER_ACTIONS[name]].setChecked(on)

    for tool in TOOLS:
        a[f"tool_{tool}"].triggered.connect(lambda _=False, t=tool: v.set_tool(t))
    v.tool_changed.connect(lambda t: a[f"tool_{t}"].setChecked(True))
    a["brush_smaller"].triggered.connect(lambda: lp.brush.setValue(max(1, int(lp.brush.value() / 1.4))))
    a["brush_larger"].triggered.connect(lambda: lp.brush.setValue(int(lp.brush.value() * 1.4) + 1))
    lp.brush_radius_changed.connect(v.set_brush_radius)
    a["target_mask"].triggered.connect(lambda: lp.set_target("mask"))
    a["target_region"].triggered.connect(lambda: lp.set_target("region"))
    lp.target_changed.connect(v.set_edit_target)
    lp.target_changed.connect(lambda t: a[f"target_{t}"].setChecked(True))
    wire_heat_region(a, v, lp)
    lp.visibility_changed.connect(v.set_layer_visible)
    lp.visibility_changed.connect(sync_layer_action)
    v.layer_shown.connect(lambda name: lp.checks[name].setChecked(True))  # an edit showed it: the panel says so
    lp.opacity_changed.connect(v.set_layer_opacity)
    lp.colormap_changed.connect(v.set_colormap)
    lp.heat_scale_changed.connect(v.set_heat_absolute)
    a["toggle_heatmap"].triggered.connect(lambda on: lp.checks["heatmap"].setChecked(on))
    a["toggle_prediction"].triggered.connect(lambda on: lp.checks["prediction"].setChecked(on))
    a["toggle_mask"].triggered.connect(lambda on: (lp.checks["mask"].setChecked(on),
                                                   lp.checks["region"].setChecked(on)))
    a["compare"].toggled.connect(pane.set_side_by_side)
    a["next_target"].triggered.connect(lambda: v.step_target(1))
    a["prev_target"].triggered.connect(lambda: v.step_target(-1))
    a["fit"].triggered.connect(v.fit)
    a["one_to_one"].triggered.connect(v.one_to_one)
    a["zoom_in"].triggered.connect(lambda: v.zoom_by(1.25, anchor_under_mouse=False))
    a["zoom_out"].triggered.connect(lambda: v.zoom_by(0.8, anchor_under_mouse=False))


def wire_heat_region(a: dict[str, QAction], v, lp: LayerPanel) -> None:
    """Threshold slider and grow tool: both edit the anomaly region, so the brush and eraser that
    refine it afterwards are pointed at the region too."""
    def on_heat(levels) -> None:
        lp.set_heat_levels(levels)
        a["tool_grow"].setEnabled(levels is not None)
        if levels is None and v.tool == "grow":  # no map here: Grow was left on, unseen, and left-drag did nothing
            v.set_tool("pan")

    a["tool_grow"].setEnabled(False)  # until an image with a heatmap is shown
    v.heat_changed.connect(on_heat)
    lp.threshold_previewed.connect(lambda level: v.preview_threshold(level) and lp.set_target("region"))
    lp.threshold_applied.connect(lambda level: (lp.set_target("region"), v.apply_threshold(level)))
    lp.grow_fraction_changed.connect(v.set_grow_fraction)
    v.tool_changed.connect(lambda t: t == "grow" and lp.set_target("region"))
