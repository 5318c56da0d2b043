"""Counted nouns in what the station says: "1 image", "2 images", never "1 images" nor "image(s)" where the count
is known (a session-49 audit found both). Qt-free, so services, commands and widgets word counts alike."""
from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and ``noun``, the noun plural unless the count is one (``nouns`` where adding "s" is wrong)."""
    return f"{count} {agree(count, noun, nouns or noun + 's')}"


def agree(count: int, one: str, many: str) -> str:
    """``one`` for a count of one, else ``many``: the verb or pronoun that follows a counted noun ("1 image is …
    it", "2 images are … them"), chosen by the same rule as ``plural`` so the two never disagree (a re-read found
    the choice written out beside the count in some forty messages)."""
    return one if count == 1 else many
