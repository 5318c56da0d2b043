"""The image viewer: zoom to the cursor, pan, fit, 1:1, overlay layers and the mask tools.

Layers, bottom to top: image, anomaly heatmap, predicted mask, labelled anomaly region,
labelled defect mask, tool previews. Tools: pan (drag; a click picks the object under it,
``object_clicked``, and a right click asks for its class menu), brush, eraser, polygon (click the
vertices, double-click or Enter closes, Backspace removes the last vertex, Esc cancels; with
Shift held, the polygon erases), grow (click the heatmap: the connected area around the click
joins the anomaly region). A finished stroke emits ``mask_edited(target, mask)`` with the whole
numpy mask: the controller turns it into one undoable, autosaved revision. The heatmap threshold
previews its region on the region layer while the slider moves (``preview_threshold``) and is
emitted once, like a stroke, when the inspector lets go (``apply_threshold``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsEllipseItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QScrollBar,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.gui.layers import MaskLayer, RasterLayer
from app.gui.object_overlay import ObjectTags
from app.gui.style import MASK_RGB, PRED_MASK_RGB, REGION_RGB
from app.gui.target_rings import TargetRings
from app.gui.thumbnails import rgb_to_qimage
from app.services.display import (
    ViewerPixels,
    colorize_heatmap,
    colorize_mask,
    pixel_readout,
    resize_to,
    targets_of,
)
from app.services.heat_region import DEFAULT_GROW_FRACTION, cold_flood, grow_region, heat_bounds, threshold_region

TOOLS = ("pan", "brush", "eraser", "polygon", "grow")
LAYERS = ("heatmap", "prediction", "region", "mask")
ZOOM_MIN, ZOOM_MAX = 0.02, 64.0
FIT_MIN_SIDE_PX = 32   # a fitted image's short side is shown at least this many pixels across


class ImageView(QGraphicsView):
    """A zoomable, pannable view of one scene (shared by the main viewer and the comparison)."""

    view_changed = Signal()
    # the inspector moved this view by hand: zoomed (wheel), panned (middle-button drag) or scrolled (a scroll bar
    # dragged or clicked, an arrow key or Page Up / Page Down)
    navigated = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor(45, 45, 48))
        self.image_item = QGraphicsPixmapItem()
        self.image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self.image_item)
        self._message = QGraphicsSimpleTextItem()
        self._message.setBrush(QColor("#f0a0a0"))
        self.scene().addItem(self._message)
        self._fit_on_resize = True
        for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
            bar.valueChanged.connect(self.view_changed)
            bar.actionTriggered.connect(self._scrolled_by_hand)
        self._panning: QPointF | None = None

    # -- content --------------------------------------------------------------------------
    def set_rgb(self, rgb: np.ndarray | None, message: str = "") -> None:
        if rgb is None:
            self.image_item.setPixmap(QPixmap())
            self._message.setText(message)
            self._message.setVisible(bool(message))
            self.scene().setSceneRect(QRectF(0, 0, 400, 300))
        else:
            self._message.setVisible(False)
            self.image_item.setPixmap(QPixmap.fromImage(rgb_to_qimage(rgb)))
            self.scene().setSceneRect(QRectF(0, 0, rgb.shape[1], rgb.shape[0]))
        self.fit()

    def image_rect(self) -> QRectF:
        return self.scene().sceneRect()

    # -- navigation -----------------------------------------------------------------------
    def zoom(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        """The whole image in view; a strip far longer than it is wide (a line-scan frame, 4000 x 3) is shown at least
        ``FIT_MIN_SIDE_PX`` across, scrolled along its length: fitted whole it was under a pixel high, and the viewer
        looked empty, its masks with it (a session-49 audit)."""
        self._fit_on_resize = True
        self._fit_view()
        self.view_changed.emit()

    def _fit_view(self) -> None:
        rect = self.image_rect()
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        short = min(rect.width(), rect.height())
        if short > 0 and short * self.zoom() < min(FIT_MIN_SIDE_PX, short * ZOOM_MAX):
            factor = min(FIT_MIN_SIDE_PX, short * ZOOM_MAX) / (short * self.zoom())
            self.scale(factor, factor)
            self.centerOn(rect.topLeft())   # from its start, scrolled along

    def one_to_one(self) -> None:
        self._fit_on_resize = False
        center = self.mapToScene(self.viewport().rect().center())
        self.resetTransform()
        self.centerOn(center)
        self.view_changed.emit()

    def zoom_by(self, factor: float, anchor_under_mouse: bool = True) -> None:
        z = self.zoom()
        # a fit can leave the zoom outside the limits (an 8 x 6 image fitted at 99x, a 60000 x 40 one at 0.013x): the
        # clamp below then turned zoom in into zoom out and back (a probe); a step there only moves towards the limits
        if (z >= ZOOM_MAX and factor > 1) or (z <= ZOOM_MIN and factor < 1):
            return
        factor = max(ZOOM_MIN / z, min(ZOOM_MAX / z, factor)) if ZOOM_MIN <= z <= ZOOM_MAX else factor
        self._fit_on_resize = False
        old = self.transformationAnchor()
        if not anchor_under_mouse:
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.scale(factor, factor)
        self.setTransformationAnchor(old)
        self.view_changed.emit()

    def copy_view_of(self, other: "ImageView") -> None:
        self._fit_on_resize = False
        self.setTransform(other.transform())
        self.horizontalScrollBar().setValue(other.horizontalScrollBar().value())
        self.verticalScrollBar().setValue(other.verticalScrollBar().value())
        self.view_changed.emit()  # a zoom alone moves no scroll bar, and what follows this view must hear of it

    def _scrolled_by_hand(self, _action: int) -> None:
        """A scroll bar moves by hand: its handle dragged, its groove or arrows clicked, the wheel over it, or the view's
        arrow keys and Page Up / Page Down (Qt scrolls with those through the bar's actions too). Side by side, the
        original moved so alone, off the overlays' pixels beside it (a session-52 audit). Said here, not on
        valueChanged: that also comes with the view's own fit, resizing and copying, which must lead nothing. The
        action has moved the slider's position only, its value follows this slot: it is set now, for whoever follows
        to read, and the bar then finds it already there."""
        bar = self.sender()
        if isinstance(bar, QScrollBar) and bar.sliderPosition() != bar.value():
            bar.setValue(bar.sliderPosition())
            self.navigated.emit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25 ** steps)
            self.navigated.emit()
        event.accept()

    def resizeEvent(self, event) -> None:
        """A fitted view is fitted again, and says so: side by side turned on while zoomed in, the viewer fitted once,
        its scroll bars then went and it fitted again unheard, the original left about 4 % smaller and offset (a
        session-51 audit)."""
        super().resizeEvent(event)
        if self._fit_on_resize:
            self._fit_view()
            self.view_changed.emit()

    # Middle button pans whatever the tool.
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.MiddleButton:
            self._panning = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._panning is not None:
            d = event.position() - self._panning
            self._panning = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(d.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(d.y()))
            self.navigated.emit()
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._panning is not None and event.button() == Qt.MouseButton.MiddleButton:
            self._panning = None
            self.viewport().unsetCursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)


class ImageViewer(ImageView):
    """The working view: overlays and mask tools on top of ``ImageView``."""

    mask: MaskLayer  # type: ignore[assignment]  # shadows QWidget.mask(): the label mask layer
    mask_edited = Signal(str, object)   # target ("mask" | "region"), bool ndarray
    cursor_moved = Signal(str)          # "x, y  value  zoom" for the status bar ("zoom" alone off the image)
    layer_shown = Signal(str)           # a hidden layer an edit made visible: the Layers panel and View menu follow
    tool_changed = Signal(str)
    target_stepped = Signal(int, int)   # which target Tab reached (1-based; 0: none) and how many
    heat_changed = Signal(object)       # (min, max, default level) of the shown heatmap, or None
    said = Signal(str)                  # a tool's answer for the status bar (a grow refused, and why)
    # An object picked with the pan tool: image x, y and how far (image pixels) a miss may be.
    object_clicked = Signal(float, float, float)
    object_menu_requested = Signal(float, float, float, QPoint)  # right click: ... and the global position
    CLICK_SLOP_PX = 4.0  # a press and release this close is a click, not a pan
    PICK_PX = 8.0        # on screen: how near a tiny object a click still picks it

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.heatmap = RasterLayer(1)
        self.prediction = RasterLayer(2)
        self.region = MaskLayer(3, REGION_RGB)
        self.mask = MaskLayer(4, MASK_RGB)
        self.layers = {"heatmap": self.heatmap, "prediction": self.prediction,
                       "region": self.region, "mask": self.mask}
        for item in self.layers.values():
            self.scene().addItem(item)
        self.heatmap.setOpacity(0.5)
        self.prediction.setOpacity(0.45)
        self.region.setOpacity(0.45)
        self.mask.setOpacity(0.55)
        self._poly_item = QGraphicsPathItem()
        self._poly_item.setZValue(10)
        self._poly_item.setPen(QPen(QColor("white"), 0, Qt.PenStyle.DashLine))
        self.scene().addItem(self._poly_item)
        self._brush_item = QGraphicsEllipseItem()
        self._brush_item.setZValue(11)
        self._brush_item.setPen(QPen(QColor("white"), 0))
        self._brush_item.setVisible(False)
        self.scene().addItem(self._brush_item)
        self.tool = "pan"
        self.edit_target = "mask"
        self.brush_radius = 8.0
        self.grow_fraction = DEFAULT_GROW_FRACTION
        self.colormap = "jet"
        self._heat: np.ndarray | None = None
        self._heat_range: tuple[float, float] | None = None
        self.heat_absolute = True
        self._rgb: np.ndarray | None = None
        self._pixels: ViewerPixels | None = None
        self._last: QPointF | None = None
        self._poly: list[QPointF] = []
        self.editable = True
        # the predicted targets the first mask edit starts from where the label holds no mask (None: its own layer),
        # asked when that edit begins; set by the viewer controller (ReviewService.mask_start)
        self.mask_start: Callable[[], np.ndarray | None] | None = None
        self._mask_unset = True  # the label holds no mask: the first mask edit may start from the prediction
        self.rings = TargetRings()  # predicted targets, ringed at a visible size (drawForeground)
        self.object_tags = ObjectTags()  # each object's number and class; the selected one boxed
        self._off_image = False  # the brush stroke in progress has not come onto the image yet
        self._click_at: QPointF | None = None
        self._hover: QPoint | None = None  # where the cursor is on the viewport (None: not over it)
        self.setMouseTracking(True)
        self.set_tool("pan")
        self.view_changed.connect(self._say_cursor)

    # -- content --------------------------------------------------------------------------
    @property
    def stroking(self) -> bool:
        """A brush or eraser stroke is in progress (the button is down)."""
        return self._last is not None

    def end_stroke(self) -> None:
        """The image the stroke began on is being replaced: the stroke ends here and nothing more of it is painted or
        saved (a session-44 probe: a stroke held across J went on painting the next image and was saved to it as
        "corrected", its predicted target dropped)."""
        self._last = None
        self._off_image = False

    def show_image(self, rgb: np.ndarray | None, message: str = "", pixels: ViewerPixels | None = None) -> None:
        """``pixels``: the file's own values for the cursor readout, where ``rgb`` stretches a deep image."""
        self._rgb = rgb
        self._pixels = pixels if pixels is not None else (ViewerPixels(rgb) if rgb is not None else None)
        self.end_stroke()
        self.cancel_polygon()
        self._heat = None  # before the fit reads the cursor out: the previous image's map has its own size
        self.set_rgb(rgb, message)
        h, w = (rgb.shape[:2] if rgb is not None else (0, 0))
        for layer in (self.heatmap, self.prediction):
            layer.set_rgba(None)
        self.region.reset(w, h, None)
        self.mask.reset(w, h, None)
        self.heat_changed.emit(None)
        self.rings.set_targets([])

    def image_size(self) -> tuple[int, int]:
        return (0, 0) if self._rgb is None else (self._rgb.shape[1], self._rgb.shape[0])

    def set_heatmap(self, heat: np.ndarray | None, heat_range: tuple[float, float] | None = None) -> None:
        """Show an anomaly map; ``heat_range`` fixes the colour scale (else the map's own range)."""
        w, h = self.image_size()
        self._heat = None if heat is None or not w else resize_to(heat.astype(np.float32), w, h)
        self._heat_range = heat_range
        self._paint_heat()
        self._say_cursor()  # the readout gains (or loses) the map's value under the cursor
        # Tools only for a map spanning a range a threshold or a grow can cut: a flat map (every level the whole image:
        # Apply made all of a good part the region) or one without a finite value (Apply saved an empty "corrected"
        # revision) offers none (a session-45 probe). Its bounds are read once (a full-resolution pass).
        levels = self.heat_levels() if self._heat is not None else None
        self.heat_changed.emit(levels if levels is not None and levels[1] > levels[0] else None)

    def heat_levels(self) -> tuple[float, float, float]:
        """(min, max, default threshold) of the map on screen; the default is the model's pixel
        threshold (mid-scale of its colour range) when known, else mid-range. A threshold over the map's hottest
        pixel stays as it is (the slider's top stands for it): clamped to the maximum, Apply on the untouched slider
        saved that one pixel as the region where the model's region is empty (a session-50 audit)."""
        assert self._heat is not None, "heat_levels needs a map on screen"  # callers check first
        lo, hi = heat_bounds(self._heat)
        default = (self._heat_range[0] + self._heat_range[1]) / 2 if self._heat_range else (lo + hi) / 2
        return lo, hi, max(lo, default)

    def has_heat(self) -> bool:
        return self._heat is not None

    # -- heatmap → region -----------------------------------------------------------------
    def preview_threshold(self, level: float) -> bool:
        """Show the region the heatmap gives at ``level`` (nothing saved yet); False when there
        is no map or the image cannot be edited now."""
        if self._heat is None or not self.editable:
            return False
        w, h = self.image_size()
        self._show_layer(self.region)
        self.region.reset(w, h, threshold_region(self._heat, level))
        return True

    def shows_threshold(self, level: float) -> bool:
        """The region layer shows exactly the heatmap's region at ``level``: a preview nothing has refined since
        (a grow or an eraser stroke after it were saved, and Accept must not put the bare threshold back over them;
        the session-45 review)."""
        if self._heat is None or self._rgb is None:
            return False
        return bool(np.array_equal(self.region.to_bool(), threshold_region(self._heat, level)))

    def apply_threshold(self, level: float) -> None:
        """The region at ``level`` becomes the label's anomaly region: one edit, like a stroke. A level no pixel
        reaches leaves no region, and says so: Apply on a map cooler than the model's threshold changed nothing on
        screen and said nothing (seen under Xvfb in session 50)."""
        if self.preview_threshold(level):
            region = self.region.to_bool()
            if not region.any():
                self.said.emit(f"No pixel of the map reaches {level:.3g}: no region to apply. Lower the threshold, "
                               "grow the region from a hot spot (W) or paint it (B).")
            self.mask_edited.emit("region", region)

    def set_grow_fraction(self, fraction: float) -> None:
        self.grow_fraction = max(0.01, min(1.0, float(fraction)))

    def grow_at(self, pos: QPointF) -> None:
        """Add the heatmap's connected area around ``pos`` to the region (see ``grow_region``)."""
        if self._heat is None or not self._inside(pos):
            return
        x, y = int(pos.x()), int(pos.y())
        blob = grow_region(self._heat, x, y, self.grow_fraction)
        threshold = (self._heat_range[0] + self._heat_range[1]) / 2 if self._heat_range else None  # mid-scale
        share = cold_flood(self._heat, x, y, blob, threshold)
        if share is not None:
            self.said.emit(f"Grow: nothing hot here. The map is {float(self._heat[y, x]):.3g} at the click, under the "
                           f"model's region threshold {threshold:.3g}, and growing from it would cover {share:.0%} of "
                           "the image. Click a hot spot, or paint the region with the brush (B).")
            return
        region = self.region.to_bool()
        if not blob.any() or region[blob].all():
            return
        w, h = self.image_size()
        self._show_layer(self.region)
        self.region.reset(w, h, region | blob)
        self.mask_edited.emit("region", self.region.to_bool())

    def set_heat_absolute(self, absolute: bool) -> None:
        """Colour the heatmap on the model's threshold scale (True) or on its own range (False)."""
        self.heat_absolute = absolute
        self._paint_heat()

    def _paint_heat(self) -> None:
        if self._heat is None:
            self.heatmap.set_rgba(None)
            return
        lo, hi = self._heat_range if self._heat_range and self.heat_absolute else (None, None)
        self.heatmap.set_rgba(colorize_heatmap(self._heat, self.colormap, lo, hi))

    def set_colormap(self, name: str) -> None:
        self.colormap = name
        self._paint_heat()

    def set_predicted_mask(self, mask: np.ndarray | None) -> None:
        w, h = self.image_size()
        if mask is None or not w:
            self.prediction.set_rgba(None)
            self.rings.set_targets([])
        else:
            fitted = resize_to(mask.astype(bool), w, h, nearest=True)
            self.prediction.set_rgba(colorize_mask(fitted, PRED_MASK_RGB))
            self.rings.set_targets(targets_of(fitted))
        self.viewport().update()

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:
        super().drawForeground(painter, rect)
        if self.prediction.isVisible():  # the rings belong to the predicted-mask layer (T)
            self.rings.paint(painter, self)
        if self.mask.isVisible():  # the tags belong to the labelled mask (Shift+M)
            self.object_tags.paint(painter, self)

    def show_objects(self, objects: list, selected) -> None:
        """The objects' tags (``LabelObject`` list) and the selected one, drawn over the image."""
        self.object_tags.set_objects(objects, selected)
        self.viewport().update()

    def _pick_tolerance(self) -> float:
        return self.PICK_PX / max(self.zoom(), 1e-6)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        pos = self.mapToScene(event.pos())
        if self._inside(pos):
            self.object_menu_requested.emit(pos.x(), pos.y(), self._pick_tolerance(), event.globalPos())
            event.accept()
            return
        super().contextMenuEvent(event)

    def step_target(self, delta: int) -> None:
        """Tab / Shift+Tab: centre the view on the next / previous predicted target."""
        t = self.rings.step(delta)
        if t is None:
            self.target_stepped.emit(0, 0)
            return
        if self.zoom() < 1.0:  # a target is not found at a fraction of its pixels
            self._fit_on_resize = False
            self.resetTransform()
        self.centerOn(QPointF(t.cx, t.cy))
        self.viewport().update()
        self.view_changed.emit()
        self.target_stepped.emit(self.rings.current + 1, len(self.rings.targets))

    def set_label_masks(self, mask: np.ndarray | None, region: np.ndarray | None) -> None:
        w, h = self.image_size()
        # no image shown (its file could not be read: 0 x 0): nothing drawn, the label panel still lists the masks. A
        # session-52 audit: resizing to 0 x 0 raised cv2.error "inv_scale_x > 0" and image_shown was never sent.
        fit = (lambda m: None if m is None or not (w and h) else resize_to(m.astype(bool), w, h, nearest=True))
        self.mask.reset(w, h, fit(mask))
        self.region.reset(w, h, fit(region))
        self._mask_unset = mask is None

    def _begin_edit(self) -> None:
        """Before the first stroke or polygon on a mask the label does not hold: start from the predicted targets,
        so a brushed missed target keeps the others and the eraser removes a false one (ReviewService.mask_start)."""
        if self.edit_target != "mask" or not self._mask_unset:
            return
        self._mask_unset = False
        start = self.mask_start() if self.mask_start is not None else None
        if start is not None and start.any():
            w, h = self.image_size()
            self.mask.reset(w, h, resize_to(start.astype(bool), w, h, nearest=True))

    def set_layer_visible(self, name: str, visible: bool) -> None:
        self.layers[name].setVisible(visible)
        self.viewport().update()  # the target rings follow the predicted-mask layer

    def set_layer_opacity(self, name: str, opacity: float) -> None:
        self.layers[name].setOpacity(max(0.0, min(1.0, opacity)))

    # -- tools ----------------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self.cancel_polygon()
        self.tool = tool
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag if tool == "pan"
                         else QGraphicsView.DragMode.NoDrag)
        self.viewport().setCursor(Qt.CursorShape.OpenHandCursor if tool == "pan" else Qt.CursorShape.CrossCursor)
        self._brush_item.setVisible(False)
        self.tool_changed.emit(tool)

    def set_edit_target(self, target: str) -> None:
        if target not in ("mask", "region"):
            raise ValueError(f"unknown edit target {target!r}")
        self.cancel_polygon()
        self.edit_target = target

    def set_brush_radius(self, radius: float) -> None:
        self.brush_radius = max(1.0, min(500.0, float(radius)))
        self._update_brush_cursor(self._brush_item.rect().center())

    def _target_layer(self) -> MaskLayer:
        return self.mask if self.edit_target == "mask" else self.region

    def _show_layer(self, layer: MaskLayer) -> None:
        """Make a hidden layer an edit draws on visible, and say so: a session-44 probe had a stroke show the hidden
        mask layer while the Layers panel and View menu still said it was off, so Shift+M then showed it again."""
        if not layer.isVisible():
            layer.setVisible(True)
            self.layer_shown.emit(next(n for n, lay in self.layers.items() if lay is layer))

    def _emit_edit(self) -> None:
        self.mask_edited.emit(self.edit_target, self._target_layer().to_bool())

    def _inside(self, pos: QPointF) -> bool:
        """``pos`` falls on a pixel of the image: the far edges are outside (a rectangle's ``contains`` counts them in,
        and the cursor readout then indexed one past the last column or row on every move there: a probe)."""
        if self._rgb is None:
            return False
        h, w = self._rgb.shape[:2]
        return 0 <= pos.x() < w and 0 <= pos.y() < h

    def _start_stroke(self) -> None:
        """A brush or eraser stroke begins on the image: the layer it paints starts (from the prediction, for a
        mask the label lacks) and is shown."""
        self._begin_edit()
        self._show_layer(self._target_layer())

    def _reaches(self, pos: QPointF) -> bool:
        """The brush disc at ``pos`` covers part of the image: painting a border's defect with the cursor just
        beside the image works, while a click whose disc misses the image starts nothing (the session-45 review:
        the first fix asked for the cursor itself on the image)."""
        if self._rgb is None:
            return False
        h, w = self._rgb.shape[:2]
        dx = max(0.0, -pos.x(), pos.x() - w)
        dy = max(0.0, -pos.y(), pos.y() - h)
        return dx * dx + dy * dy < max(0.0, self.brush_radius - 0.5) ** 2 or self._inside(pos)

    def cancel_polygon(self) -> None:
        self._poly = []
        self._poly_item.setPath(QPainterPath())

    def close_polygon(self, erase: bool = False) -> None:
        if not self.editable:  # the next image is on its way: these vertices were clicked on the one it replaces
            self.cancel_polygon()
            return
        if len(self._poly) >= 3 and not _flat(self._poly):
            # a shape with no area (every corner clicked beside the image is taken to one edge) fills nothing: it saved
            # the untouched label as "corrected" and took the image out of the queue (a session-48 probe), as a brush
            # press in the margin did before session 45
            self._begin_edit()
            self._show_layer(self._target_layer())
            self._target_layer().fill_polygon(self._poly, erase)
            self.cancel_polygon()
            self._emit_edit()
        else:
            self.cancel_polygon()

    def _update_poly_preview(self, hover: QPointF | None = None) -> None:
        path = QPainterPath()
        if self._poly:
            path.moveTo(self._poly[0])
            for pt in self._poly[1:]:
                path.lineTo(pt)
            if hover is not None:
                path.lineTo(hover)
        self._poly_item.setPath(path)

    def _update_brush_cursor(self, pos: QPointF) -> None:
        r = self.brush_radius
        self._brush_item.setRect(QRectF(pos.x() - r, pos.y() - r, 2 * r, 2 * r))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        pos = self.mapToScene(event.position().toPoint())
        if event.button() == Qt.MouseButton.LeftButton and self.tool == "pan":
            self._click_at = event.position()  # a release close by picks the object there
        if (event.button() == Qt.MouseButton.LeftButton and self.editable and self.tool != "pan"
                and self._rgb is not None):
            if self.tool in ("brush", "eraser"):
                self._last = pos
                # A press in the margin starts nothing until the cursor comes onto the image: a click there saved
                # the untouched label as "corrected" (the predicted targets, or "no target") and took the image out of
                # the unreviewed queue though nothing on screen changed (a session-45 probe).
                self._off_image = not self._reaches(pos)
                if not self._off_image:
                    self._start_stroke()
                    self._target_layer().stroke(pos, pos, self.brush_radius, self.tool == "eraser")
            elif self.tool == "polygon":
                # a corner clicked beyond the image is taken to its edge (a shape hugging the border), not dropped:
                # the filled shape was not the one clicked, or nothing at all (a session-45 probe)
                h, w = self._rgb.shape[:2]
                self._poly.append(QPointF(min(max(pos.x(), 0.0), float(w)), min(max(pos.y(), 0.0), float(h))))
                self._update_poly_preview()
            elif self.tool == "grow":
                self.grow_at(pos)
            event.accept()
            return
        super().mousePressEvent(event)

    def _say_cursor(self) -> None:
        """The status bar's readout of the pixel under the cursor now, and the zoom: said on every move and on every
        change of the view or the image. Said only on a move, it kept the old zoom after + / - / Ctrl+1, and after J
        the previous image's position and value (a session-51 audit). Off the image it says the zoom alone."""
        if self._pixels is None:
            self.cursor_moved.emit("")
            return
        pos = self.mapToScene(self._hover) if self._hover is not None else None
        zoom = f"zoom {self.zoom():.0%}"
        if pos is None or not self._inside(pos):
            self.cursor_moved.emit(zoom)
            return
        x, y = int(pos.x()), int(pos.y())
        heat = f"  heat {self._heat[y, x]:.3f}" if self._heat is not None else ""
        self.cursor_moved.emit(f"x {x}, y {y}  {pixel_readout(self._pixels, x, y)}{heat}  {zoom}")

    def viewportEvent(self, event: QEvent) -> bool:
        """The cursor has left the image's area (for a scroll bar or beyond the viewer): the readout keeps no
        position, and no brush circle stays painted where it left (a session-51 audit)."""
        if event.type() == QEvent.Type.Leave:
            self._hover = None
            self._brush_item.setVisible(False)
            self._say_cursor()
        return super().viewportEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = self.mapToScene(event.position().toPoint())
        self._hover = event.position().toPoint()
        self._say_cursor()
        if self.tool in ("brush", "eraser"):
            self._brush_item.setVisible(True)
            self._update_brush_cursor(pos)
            if self._last is not None and event.buttons() & Qt.MouseButton.LeftButton:
                if self._off_image and self._reaches(pos):  # the stroke reaches the image: it starts here
                    self._off_image = False
                    self._start_stroke()
                if not self._off_image:
                    self._target_layer().stroke(self._last, pos, self.brush_radius, self.tool == "eraser")
                self._last = pos
                event.accept()
                return
        elif self.tool == "polygon" and self._poly:
            self._update_poly_preview(pos)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._click_at is not None:
            moved = event.position() - self._click_at
            self._click_at = None
            pos = self.mapToScene(event.position().toPoint())
            if abs(moved.x()) + abs(moved.y()) <= self.CLICK_SLOP_PX and self._inside(pos):
                self.object_clicked.emit(pos.x(), pos.y(), self._pick_tolerance())
        if event.button() == Qt.MouseButton.LeftButton and self._last is not None:
            self._last = None
            if self.editable and not self._off_image:  # else it began on an image another one is replacing, or
                self._emit_edit()                      # never came onto the image: nothing of it is saved
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self.tool == "polygon" and self._poly:
            self.close_polygon(bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier))
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if self.tool == "polygon" and self._poly:
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.close_polygon(bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier))
                return
            if event.key() == Qt.Key.Key_Escape:
                self.cancel_polygon()
                return
            if event.key() == Qt.Key.Key_Backspace:
                self._poly.pop()
                self._update_poly_preview()
                return
        super().keyPressEvent(event)


class ViewerPane(QWidget):
    """The viewer, optionally beside an overlay-free copy of the image (views kept in step).

    The viewer leads: the original copies every change of its view. The wheel and a middle-button drag over the
    original, its scroll bars and the arrow keys and Page Up / Page Down there move it by hand, and the viewer then
    copies it (and the original copies that back, unchanged): they zoomed, panned and scrolled the original alone, the
    overlays beside it left where they were (a session-51 audit; the scroll bars and keys, a session-52 audit). Only
    those hand moves lead back, and only while the original is shown; the original's own fit and resizing never move
    the viewer."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.viewer = ImageViewer()
        self.original = ImageView()
        self.original.setVisible(False)
        self.original.setInteractive(False)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.original)
        split.addWidget(self.viewer)
        self.split = split
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)
        self._following = False
        self.viewer.view_changed.connect(self._sync)
        self.original.navigated.connect(self._follow_original)
        # The original copies the viewer again once its scroll bars have come or gone (see _sync_later).
        self.original.horizontalScrollBar().rangeChanged.connect(self._sync_later)
        self.original.verticalScrollBar().rangeChanged.connect(self._sync_later)

    def show_image(self, rgb: np.ndarray | None, message: str = "", pixels: ViewerPixels | None = None) -> None:
        self.viewer.show_image(rgb, message, pixels)
        self.original.set_rgb(rgb, message)
        self._sync()

    def set_side_by_side(self, on: bool) -> None:
        self.original.setVisible(on)
        if on:
            half = max(1, self.split.width() // 2)
            self.split.setSizes([half, half])
        QTimer.singleShot(0, self.viewer.fit)  # after the splitter has laid the views out

    def side_by_side(self) -> bool:
        return self.original.isVisible()

    def _follow_original(self) -> None:
        """The viewer copies the original moved by hand, and the original copies the result back once. Not on each of
        the viewer's scroll bars as it goes: its horizontal one, set first, had the original copy the viewer's vertical
        value while still the old one, and the viewer then read that back, losing a drag's vertical part (a session-51
        review). Hidden (side by side off), the original leads nothing."""
        if not self.original.isVisible():
            return
        self._following = True
        try:
            self.viewer.copy_view_of(self.original)
        finally:
            self._following = False
        self._sync()

    def _sync_later(self) -> None:
        """Copy the viewer again on the next pass of the event loop. The first zoom from a fitted view copied it before
        the original's scroll bars came; its viewport then shrank by their width and its values moved by half of it,
        the panes left 7 px apart (a session-51 review). Queued, the copy comes once those have settled; it moves no
        range again (the same transform and viewport), so it does not repeat."""
        QTimer.singleShot(0, self, self._sync)  # with the pane as context: not called once it is gone

    def _sync(self) -> None:
        if self.original.isVisible() and not self._following:
            self.original.copy_view_of(self.viewer)


def _flat(points: list[QPointF]) -> bool:
    """Whether the polygon fills nothing: its corners on one line (every corner clicked beside the image, taken to the
    same edge). Not its signed area: a shape clicked in crossing order (an hourglass) has none and fills both lobes."""
    x0, y0 = points[0].x(), points[0].y()
    return all(abs((a.x() - x0) * (b.y() - y0) - (b.x() - x0) * (a.y() - y0)) < 0.5
               for i, a in enumerate(points[1:], 1) for b in points[i + 1:])
