"""Why an image is out of a model's domain, in words (``inference.domain_notes``): described on real decoded images
against statistics fitted on grey 200 x 200 textures, as the NEU classifier's are."""
from __future__ import annotations

import numpy as np
import pytest

from inference.domain import fit_domain, is_out_of_domain
from inference.domain_notes import NOTE_LIMIT, _descriptor_note, describe_property, domain_notes, notes_by_family
from inference.image_descriptor import describe, symmetry, unit_of


def _texture(seed: int, side: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.35, 0.55)
    noise = rng.normal(0, 0.06, (side, side))
    return np.clip(base + noise, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def grey_domain():
    images = [_texture(i) for i in range(120)]
    feats = {"descriptor": np.stack([describe(im) for im in images])}
    return fit_domain(feats, components=8, parts=("descriptor", "descriptor_range"))


def _notes(stats, images, sources=None):
    d = np.stack([describe(im, None if sources is None else sources[i]) for i, im in enumerate(images)])
    return stats.scores({"descriptor": d}), domain_notes(stats, {"descriptor": d})


def test_an_image_in_domain_has_no_note_and_a_foreign_one_says_what_lies_outside(grey_domain) -> None:
    same = _texture(999)
    alpha = _texture(1000)  # the same texture, the file stored with an alpha channel
    tiny = _texture(1001)[:3, :3]
    scores, notes = _notes(grey_domain, [same, alpha, tiny], [(200, 200, 1), (200, 200, 4), (3, 3, 1)])
    assert not is_out_of_domain(float(scores[0])) and notes[0] == ""
    assert is_out_of_domain(float(scores[1]))
    assert notes[1] == "stored as colour with alpha (4 channels; training files: grey)"
    assert is_out_of_domain(float(scores[2]))
    # Every training image is 200 px: the span is said as that size, not as the floor's 198-202.
    assert notes[2].startswith("size 3 × 3 px (training images: 200 × 200 px)")


def test_a_darker_image_names_its_grey_levels_with_the_training_span(grey_domain) -> None:
    dark = np.clip(_texture(5) - 0.3, 0, 1)
    scores, notes = _notes(grey_domain, [dark])
    assert is_out_of_domain(float(scores[0]))
    # A darker tile: its grey levels, each beside the range the training images set (not "1th percentile").
    assert "percentile of its grey levels" in notes[0] and "% (training range: " in notes[0], notes[0]
    assert describe_property("grey_q01", 7.0, 21.0, 44.0) == \
        "1st percentile of its grey levels 7 % (training range: 21–44 %)"


def test_symmetry_and_embedding_parts_are_named_in_words() -> None:
    rng = np.random.default_rng(0)
    sym = np.stack([symmetry(_texture(i, 64)) for i in range(60)])
    stats = fit_domain({"symmetry": sym, "embedding": rng.normal(0, 1, (60, 6))}, components=3)
    far = {"symmetry": np.stack([sym[0], sym[1], sym[2] + 60.0]), "embedding": np.array([[40.0] * 6, [0.0] * 6, [0.0] * 6])}
    notes = domain_notes(stats, far)
    assert notes[0] == "the model's own features place it away from its training images"
    assert notes[1] == ""
    assert notes[2].startswith("its frame is arranged unlike the training images'")


def test_notes_are_bounded_and_only_families_with_a_note_are_kept() -> None:
    assert notes_by_family({"classifier": ["", "why"], "segmenter": None, "anomaly": ["x" * 5, ""]}, 1) == \
        {"classifier": "why"}
    text = describe_property("log_grad_x_s1", 100.0, 10.0, 20.0)
    assert text.startswith("more than") is False and "times more left-right change at full size" in text
    assert len(text) < NOTE_LIMIT


def test_a_value_just_outside_the_range_never_reads_as_inside_it() -> None:
    """Seen under Xvfb (session 39): a contaminated bottle read "median grey 31 % (training range: 31–37 %)"."""
    assert describe_property("grey_q50", 30.6, 31.2, 37.0) == "median grey 30.6 % (training range: 31.2–37.0 %)"
    assert describe_property("grey_q50", 20.0, 31.2, 37.0) == "median grey 20 % (training range: 31–37 %)"


def test_the_training_files_channels_read_in_channel_order() -> None:
    assert describe_property("file_channels", 40.0, 10.0, 30.0) == \
        "stored as colour with alpha (4 channels; training files: grey to colour)"


def test_an_image_at_the_end_of_the_training_span_says_so_rather_than_reading_inside_it() -> None:
    """Seen under Xvfb (session 40): a tile of the tile classifier's own training set, flagged, read "5th percentile of its
    grey levels 63.14 % (training range: 0.00–63.14 %); 19.80 % of pixels white (training range: 0.00–19.80 %)"."""
    names = ("grey_q05", "clipped_bright", "grey_q50")
    centre, half = np.array([0.3, 0.1, 0.5]), np.array([0.3314, 0.098, 0.2])
    at_end = centre + half * np.array([1.0000001, 1.0000001, 0.1])
    note = _descriptor_note(at_end, names, (centre, half))
    assert note.startswith("as far out as the farthest training image, in 2 properties at once: 5th percentile"), note
    beyond = centre + half * np.array([1.5, 0.2, 0.1])
    assert _descriptor_note(beyond, names, (centre, half)).startswith("5th percentile of its grey levels ")


def test_a_detail_measure_just_past_the_training_span_reads_its_true_ratio() -> None:
    """Seen in a session-49 audit: a detail measure 2 % past the training span read "1 times less left-right change
    than any training image" (two significant digits); below 2 the ratio has two decimals."""
    u = unit_of("log_grad_x_s4")
    assert describe_property("log_grad_x_s4", 0.98 / u, 1.0 / u, 2.0 / u).startswith("1.02 times less left-right change")
    v = unit_of("log_block_std_8")
    assert describe_property("log_block_std_8", 2.03 / v, 1.0 / v, 2.0 / v) == \
        "1.03 times more local contrast than any training image"
    assert describe_property("log_block_std_8", 3.0 / v, 1.0 / v, 2.0 / v).startswith("2.7 times more")
    assert describe_property("log_block_std_8", 2.0005 / v, 1.0 / v, 2.0 / v).startswith("1.001 times more")
