"""The review queue's anomaly-score range: an open top reads "no limit" and filters nothing."""
from __future__ import annotations

import math

from app.gui.queue_panel import NO_LIMIT, QueuePanel


def test_score_range_is_open_ended_by_default(qtbot):
    panel = QueuePanel()
    qtbot.addWidget(panel)
    panel.set_score_defaults(62.5)
    assert panel.smax.text() == NO_LIMIT
    assert panel.current().score_min is None  # filter off: no range at all
    with qtbot.waitSignal(panel.filter_changed) as sig:
        panel.score_filter.setChecked(True)
    flt = sig.args[0]
    assert flt.score_min == math.nextafter(62.5, math.inf) and flt.score_max is None  # over it, as the panel says


def test_the_default_range_starts_over_the_exact_threshold_a_typed_one_as_typed(qtbot):
    """A session-46 probe: a threshold of 0.48463 was shown and filtered as 0.485, hiding an image of 0.4848 the panel
    and the flags call anomalous; one scored at the threshold (normal) was listed."""
    panel = QueuePanel()
    qtbot.addWidget(panel)
    panel.set_score_defaults(0.48463)
    panel.score_filter.setChecked(True)
    low = panel.current().score_min
    assert 0.48463 < low < 0.4848 and not 0.48463 > low
    panel.smin.setValue(0.5)                  # an inspector's own bound: from 0.5, 0.5 included
    assert panel.current().score_min == 0.5
    panel.smin.setValue(0.485)                # typed back to the number shown: as typed (the session-46 review)
    assert panel.current().score_min == 0.485
    panel.score_filter.setChecked(False)
    panel.set_score_defaults(2e6)             # a threshold the box cannot show is filtered as shown
    panel.score_filter.setChecked(True)
    assert panel.current().score_min == panel.smin.value()


def test_typed_upper_bound_filters_and_no_limit_can_be_typed_back(qtbot):
    panel = QueuePanel()
    qtbot.addWidget(panel)
    panel.score_filter.setChecked(True)
    panel.smax.lineEdit().selectAll()
    qtbot.keyClicks(panel.smax.lineEdit(), "80")
    panel.smax.interpretText()
    assert panel.current().score_max == 80.0
    panel.smax.lineEdit().selectAll()
    qtbot.keyClicks(panel.smax.lineEdit(), NO_LIMIT)
    panel.smax.interpretText()
    assert panel.smax.text() == NO_LIMIT and panel.current().score_max is None


def test_a_class_filtered_on_that_leaves_the_list_stays_chosen_and_says_so(qtbot):
    """Found by a session-43 probe: the box fell back to "any class" (signals blocked) while the queue kept listing
    the removed class only; the next change of any filter then showed every image."""
    panel = QueuePanel()
    qtbot.addWidget(panel)
    panel.set_classes(["crazing", "scratches"])
    panel.class_combo.setCurrentIndex(panel.class_combo.findData("scratches"))
    panel.set_classes(["crazing"])
    assert panel.class_combo.currentText() == "scratches (no longer on the list)"
    assert panel.current().class_name == "scratches"
