"""Why an image is out of a model's domain, in words an inspector can act on (plain numpy; no torch, no Qt).

Why: "out of domain (in-domain score 0.00)" on a crazing image that looks like every other one tells an inspector
nothing. Seen in session 39: a NEU image saved with an alpha channel, a 3 x 3 px thumbnail and the steel images under
the infrared segmenter all read the same. The description already knows which of its parts put the image out and,
for the image descriptor, which measured property lies beyond what the training images span: "stored as colour with
alpha (4 channels; training files: grey)" says the camera export changed; "size 3 × 3 px (training images:
200 × 200 px)" says it is not a part image at all.

``domain_notes(stats, features)`` gives one short text per image: empty for an image in domain; else the part that
decided (``inference.domain``: the largest scaled distance) and, for the descriptor, up to ``MAX_NAMED`` properties
furthest outside the training images' span, each with its value and that span in the property's own measure
(``inference.image_descriptor.unit_of`` turns a stored unit back into pixels, channels or grey level).
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np

from .domain import MIN_VARIANCE, DomainStats, Features, Gaussian, Range, select_descriptor
from .image_descriptor import FEATURES as DESCRIPTOR_FEATURES
from .image_descriptor import unit_of

MAX_NAMED = 2        # properties named per image: the furthest out, and one more as far out as half of it
NOTE_LIMIT = 400     # characters stored per note (the database column's width)
GAUSSIAN_SPAN = 3.0  # a Gaussian-only description's span: mean +- this many standard deviations per feature
EDGE = 1e-3          # a property within this share of its half-span beyond the end lies at the end, not outside
CHANNEL_NAMES = {1: "grey", 2: "grey with alpha", 3: "colour", 4: "colour with alpha"}
SCALE_WORDS = {"s1": "at full size", "s2": "at half size", "s4": "at a quarter size", "s8": "at an eighth size"}


def _span(stats: DomainStats) -> tuple[np.ndarray, np.ndarray] | None:
    """(centre, half width) per descriptor feature of the training images: the range part's box when the
    description has one, else the Gaussian's mean +- GAUSSIAN_SPAN marginal standard deviations."""
    box = stats.parts.get("descriptor_range")
    if isinstance(box, Range):
        return box.center.astype(np.float64), box.spread.astype(np.float64)
    g = stats.parts.get("descriptor")
    if isinstance(g, Gaussian):
        comps = g.components.astype(np.float64)
        inside = (comps ** 2).sum(axis=0)
        var = (comps ** 2 * g.variances.astype(np.float64)[:, None]).sum(axis=0) \
            + g.residual_variance * np.maximum(1.0 - inside, 0.0)
        return g.mean.astype(np.float64), GAUSSIAN_SPAN * np.sqrt(np.maximum(var, 1e-12))
    return None


def _channel_span(lo: float, hi: float) -> str:
    """The channel kinds the training files span ("grey", "grey to colour"), from the box's ends in channels."""
    counts = sorted({int(round(x)) for x in (lo, hi) if 1 <= round(x) <= 4}) or [1]   # by channel count
    return " to ".join(CHANNEL_NAMES.get(n, f"{n} channels") for n in counts)


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th-13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _number(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.2g}"


def _times(factor: float) -> str:
    """How many times beyond the training span a detail measure lies (``factor`` > 1). Two significant digits
    made a value just past the end read "1 times less left-right change" (a session-49 audit): below 2 it has two
    decimals ("1.02 times"), more where two would still read as 1."""
    if factor >= 2:
        return _number(factor)
    for decimals in (2, 3, 4):
        text = f"{factor:.{decimals}f}"
        if text.strip("0.") != "1":
            break
    return text


def _interval(lo: float, hi: float, fmt: Callable[[float], str], unit: str) -> str:
    return f"{fmt(lo)}{unit}" if fmt(lo) == fmt(hi) else f"{fmt(lo)}–{fmt(hi)}{unit}"


def _training(lo: float, hi: float, fmt: Callable[[float], str], unit: str) -> str:
    """The training side of a note: the value every training image has, or the range they set (the description's
    box: their median +- the farthest of them, so one end is a training image's and the other may lie beyond all)."""
    one = fmt(lo) == fmt(hi)
    return f"{'training images' if one else 'training range'}: {_interval(lo, hi, fmt, unit)}"


def _apart(value: float, bounds: tuple[float, ...], scale: Callable[[float], float]) -> Callable[[float], str]:
    """A format of ``scale(x)`` with no decimals, or with as many (up to two) as it takes for ``value`` not to read
    as one of ``bounds``: "median grey 31 % (training range: 31–37 %)" said nothing; "30.6 % (… 31.2–37.0 %)" does."""
    for decimals in range(3):
        fmt = (lambda d: lambda x: f"{scale(x):.{d}f}")(decimals)
        if all(fmt(value) != fmt(b) for b in bounds):
            return fmt
    return fmt


def describe_property(name: str, value: float, lo: float, hi: float) -> str:
    """One descriptor property of an image, in its own measure, beside the training images' span (stored units)."""
    u = unit_of(name)
    v, a, b = value * u, lo * u, hi * u
    if name in ("log_long_side", "log_short_side"):
        side = "long side" if name == "log_long_side" else "short side"
        px = _apart(v, (a, b), math.exp)
        return f"{side} {px(v)} px ({_training(a, b, px, ' px')})"
    if name == "file_channels":
        n = int(round(v))
        return (f"stored as {CHANNEL_NAMES.get(n, f'{n} channels')} ({n} channel{'s' if n != 1 else ''}; "
                f"training files: {_channel_span(a, b)})")
    pct = _apart(v, (a, b), lambda x: 100 * x)
    if name == "colour_spread":
        return f"colour spread {pct(v)} % ({_training(max(a, 0), b, pct, ' %')})"
    if name.startswith("grey_q"):
        q = int(name[len("grey_q"):])
        what = "median grey" if q == 50 else f"{_ordinal(q)} percentile of its grey levels"
        return f"{what} {pct(v)} % ({_training(max(a, 0), min(b, 1), pct, ' %')})"
    if name.startswith("clipped_"):
        kind = "black" if name.endswith("dark") else "white"
        return f"{pct(v)} % of pixels {kind} ({_training(max(a, 0), b, pct, ' %')})"
    if name.endswith("_profile_spread"):
        way = "top to bottom" if name.startswith("row") else "left to right"
        return f"brightness varying {pct(v)} % from {way} ({_training(max(a, 0), b, pct, ' %')})"
    # The rest are logs of detail measures: say how many times beyond the nearest end of the span.
    factor = math.exp(v - b) if v > b else math.exp(a - v)
    more = "more" if v > b else "less"
    if name.startswith(("log_grad_x", "log_grad_y", "log_laplacian")):
        kind = {"log_grad_x": "left-right change", "log_grad_y": "top-bottom change",
                "log_laplacian": "fine texture"}[name.rsplit("_", 1)[0]]
        where = SCALE_WORDS.get(name.rsplit("_", 1)[1], "")
        return f"{_times(factor)} times {more} {kind} {where} than any training image".replace("  ", " ")
    if name == "log_grad_peak_ratio":
        how = "in a few places" if v > b else "evenly"
        return f"its edges spread {how}, {_times(factor)} times beyond any training image"
    if name.startswith("log_block_std"):
        return f"{_times(factor)} times {more} local contrast than any training image"
    return f"{name} {_number(value)} (training range: {_number(lo)}–{_number(hi)})"


# What a camera, a product or an export changes first: the properties a version's summary names (in this order).
SUMMARY_FEATURES = ("file_channels", "log_long_side", "log_short_side", "colour_spread", "grey_q50")


def span_words(name: str, lo: float, hi: float) -> str:
    """What the training images span of one descriptor property (stored units), in its own measure."""
    u = unit_of(name)
    a, b = lo * u, hi * u
    if name == "file_channels":
        return f"files {_channel_span(a, b)}"
    if name in ("log_long_side", "log_short_side"):
        px = lambda x: f"{math.exp(x):.0f}"  # noqa: E731 - a format
        return f"{'long' if name == 'log_long_side' else 'short'} side {_interval(a, b, px, ' px')}"
    pct = lambda x: f"{100 * x:.0f}"  # noqa: E731 - a format
    if name == "colour_spread":
        return f"colour spread {_interval(max(a, 0), b, pct, ' %')}"
    if name == "grey_q50":
        return f"median grey {_interval(max(a, 0), min(b, 1), pct, ' %')}"
    return f"{name} {_number(lo)}–{_number(hi)}"


def domain_summary(stats: DomainStats) -> str:
    """What a version's description says its training images were, in words: how many, and the span of the
    properties a camera or an export changes first (``SUMMARY_FEATURES`` it reads), e.g. "862 training images; the
    ranges they set (median ± the farthest of them): files grey; long side 241–272 px; ...". Shown beside the
    version in the Models dialog, so that a note such as "stored as colour (3 channels; training files: grey)" can
    be read against the whole picture."""
    span = _span(stats)
    names = tuple(stats.descriptor_features or DESCRIPTOR_FEATURES)
    parts = []
    if span is not None:
        centre, half = span
        pinned = half <= MIN_VARIANCE["descriptor_range"] * (1 + 1e-6)
        for name in SUMMARY_FEATURES:
            if name in names:
                j = names.index(name)
                lo, hi = (centre[j], centre[j]) if pinned[j] else (centre[j] - half[j], centre[j] + half[j])
                parts.append(span_words(name, float(lo), float(hi)))
    kinds = [k for k in ("embedding", "symmetry") if k in stats.parts]
    if kinds:
        parts.append("and " + " and ".join({"embedding": "the model's own features",
                                             "symmetry": "how the frame is arranged"}[k] for k in kinds))
    return (f"{stats.images} training images" + ("; the ranges they set (median ± the farthest of them): "
                                                  + "; ".join(parts) if parts else ""))


def _descriptor_note(x: np.ndarray, names: tuple[str, ...], span: tuple[np.ndarray, np.ndarray]) -> str:
    centre, half = span
    ratio = np.abs(x - centre) / np.maximum(half, 1e-12)
    order = np.argsort(-ratio, kind="stable")
    named = [j for j in order[:MAX_NAMED] if ratio[j] > 1.0 and ratio[j] >= 0.5 * ratio[order[0]]]
    if not named:
        return ("each of its size, channels, grey levels and detail lies within the training images' range, "
                "but not together as in any of them")
    # A span at the floor (one unit either side, ``inference.domain.MIN_VARIANCE``) is a feature every training image
    # shares (every NEU image is 200 x 200): its centre is the training value, not "198-202 px".
    pinned = half <= MIN_VARIANCE["descriptor_range"] * (1 + 1e-6)
    lo, hi = np.where(pinned, centre, centre - half), np.where(pinned, centre, centre + half)
    # At the very end of the span (a training image that sets it, or its twin): "63.14 % (training range: 0.00–63.14 %)"
    # read as inside (seen under Xvfb, session 40, on a tile of the tile classifier's own training set). Said as it is.
    edge = all(ratio[j] <= 1.0 + EDGE for j in named)
    lead = ("as far out as the farthest training image" + (f", in {len(named)} properties at once" if len(named) > 1
                                                              else "") + ": ") if edge else ""
    sides = [names.index(n) for n in ("log_long_side", "log_short_side") if n in names]
    if len(sides) == 2 and all(j in named for j in sides):   # one phrase for the size, not two
        named = [j for j in named if j not in sides]
        size = _size_phrase(*(float(x[j]) for j in sides), *(float(lo[j]) for j in sides), *(float(hi[j]) for j in sides))
        return lead + "; ".join([size] + [describe_property(names[j], float(x[j]), float(lo[j]), float(hi[j]))
                                          for j in named])
    return lead + "; ".join(describe_property(names[j], float(x[j]), float(lo[j]), float(hi[j])) for j in named)


def _size_phrase(long_v: float, short_v: float, long_lo: float, short_lo: float, long_hi: float, short_hi: float) -> str:
    """The image's size against the training images' where both sides lie outside, e.g. "size 256 × 256 px (training
    images: 200 × 200 px)" (stored units of ``log_long_side`` / ``log_short_side``)."""
    u = unit_of("log_long_side")
    px = lambda x: f"{math.exp(x * u):.0f}"  # noqa: E731 - a format
    side = lambda lo, hi: px(lo) if px(lo) == px(hi) else f"{px(lo)}–{px(hi)}"  # noqa: E731 - a format
    one = px(long_lo) == px(long_hi) and px(short_lo) == px(short_hi)
    return (f"size {px(long_v)} × {px(short_v)} px ({'training images' if one else 'training range'}: "
            f"{side(long_lo, long_hi)} × {side(short_lo, short_hi)} px)")


PART_WORDS = {
    "symmetry": "its frame is arranged unlike the training images' (how it looks turned and mirrored)",
    "embedding": "the model's own features place it away from its training images",
}


def domain_notes(stats: DomainStats, features: Features,
                 parts: Mapping[str, np.ndarray] | None = None) -> list[str]:
    """One note per image (module docstring): "" in domain, else why out, at most NOTE_LIMIT characters.
    ``parts``: ``stats.part_distances(features)`` when the caller has them (the scores read the same)."""
    parts = stats.part_distances(features) if parts is None else parts
    n = len(next(iter(parts.values())))
    distance = np.max(np.stack(list(parts.values())), axis=0)
    desc: np.ndarray | None = None
    span = _span(stats)
    names = stats.descriptor_features or DESCRIPTOR_FEATURES
    if "descriptor" in features and span is not None:
        desc = select_descriptor(np.asarray(features["descriptor"]), stats.descriptor_features)
    out: list[str] = []
    for i in range(n):
        if not distance[i] > stats.threshold:
            out.append("")
            continue
        lead = max(parts, key=lambda p: float(parts[p][i]))
        if lead.startswith("descriptor") and desc is not None and span is not None:
            note = _descriptor_note(desc[i], tuple(names), span)
        else:
            note = PART_WORDS.get(lead, f"its {lead} lies outside the training images'")
        out.append(note[:NOTE_LIMIT])
    return out


def notes_by_family(notes: Mapping[str, list[str] | None], j: int) -> dict[str, str]:
    """family -> image ``j``'s note, the families with a non-empty one only (what an ``ImageResult`` carries)."""
    return {f: v[j] for f, v in notes.items() if v is not None and j < len(v) and v[j]}
