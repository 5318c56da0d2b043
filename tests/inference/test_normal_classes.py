"""One rule for which class names stand for a good part (inference.normal_classes), read by the queue's flags, the
operating point and the retrained head's pool class alike."""
from __future__ import annotations

from app.services.flags import FlagSettings
from inference.normal_classes import DEFAULT_NORMAL_CLASSES, is_normal_class


def test_a_class_is_normal_whatever_its_case_and_the_flags_read_the_same_rule() -> None:
    assert is_normal_class("Free", DEFAULT_NORMAL_CLASSES) and is_normal_class("OK", ("ok",))
    assert not is_normal_class("crack", DEFAULT_NORMAL_CLASSES) and not is_normal_class("free", ())
    flags = FlagSettings(good_classes=("Good",))
    assert not flags.is_defect("good") and flags.is_defect("free")
    assert FlagSettings().good_classes == DEFAULT_NORMAL_CLASSES
