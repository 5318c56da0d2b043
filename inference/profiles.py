"""Speed profiles a model card names: the same weights run with fewer passes (issue 21, ADR 0025).

Why: the accurate settings of a card (an ensemble, test-time views, a verifier) cost several
network passes per image; on a CPU station that is the difference between keeping up with a
line and falling behind it. Where they cost more than they give, the card names profiles:

    "profiles": {
      "accurate": {"settings": {}, "held_out": {...}, "images_per_second": ...},
      "fast": {"settings": {"ensemble": [], "test_time_flips": false}, "held_out": {...}, ...}
    },
    "default_profile": "accurate"

A profile's ``settings`` override card keys the family allows (``Family.profile_keys`` in the
catalogue: which members, which views, the verifier); ``null`` removes a key (and the part of
the same name, e.g. the verifier). Everything else in a profile entry (its held-out figures,
its speed, the command that measured them) is for people and the station's display. Applying a
profile only rewrites the card the family's prediction helper reads, so a profile runs exactly
the code the card's own settings run, and ``evaluate --profile`` scores what the worker runs.

A card without profiles runs as it is, whatever profile a project asks for; a profile the card
does not name falls back to the card's default (a project choosing ``fast`` keeps models that
have no fast profile). Torch-free: the services and the GUI read cards through it too.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from . import families

PROFILES = "profiles"
DEFAULT_PROFILE = "default_profile"
NAMES = ("accurate", "fast")  # what a station offers a project; a card may name either or both


class ProfileError(ValueError):
    """A card's profiles entry that cannot be used (the model directory is broken)."""


def card_profiles(card: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The card's profiles by name (empty when it names none); a malformed entry is a ProfileError."""
    entry = card.get(PROFILES)
    if entry is None:
        return {}
    if not isinstance(entry, Mapping) or not all(isinstance(v, Mapping) for v in entry.values()):
        raise ProfileError("the card's 'profiles' must map names to objects")
    out = {str(k): dict(v) for k, v in entry.items()}
    for name, prof in out.items():
        if not isinstance(prof.get("settings", {}), Mapping):
            raise ProfileError(f"profile {name!r}: 'settings' must be an object")
    default = card.get(DEFAULT_PROFILE)
    if default is not None and default not in out:
        raise ProfileError(f"default_profile {default!r} is not among the card's profiles ({', '.join(out)})")
    return out


def default_profile(card: Mapping[str, Any]) -> str | None:
    """The profile a card runs when nothing else is asked for (None: the card names none)."""
    profiles = card_profiles(card)
    if not profiles:
        return None
    default = card.get(DEFAULT_PROFILE)
    return str(default) if default is not None else ("accurate" if "accurate" in profiles else next(iter(profiles)))


def resolve_profile(card: Mapping[str, Any], wanted: str | None) -> str | None:
    """The profile that runs when ``wanted`` is asked for: it, when the card names it, else the
    card's default (None when the card names no profile)."""
    profiles = card_profiles(card)
    if wanted and wanted in profiles:
        return wanted
    return default_profile(card)


def profile_card(card: Mapping[str, Any], family: str, wanted: str | None) -> tuple[dict[str, Any], str | None]:
    """(the card as the chosen profile runs it, that profile's name)."""
    name = resolve_profile(card, wanted)
    out = dict(card)
    if name is None:
        return out, None
    settings = card_profiles(card)[name].get("settings", {})
    allowed = families.family(family).profile_keys
    bad = sorted(k for k in settings if k not in allowed)
    if bad:
        raise ProfileError(f"profile {name!r} sets {', '.join(bad)}; a {family} profile may set only "
                           f"{', '.join(allowed) or 'nothing'}")
    for key, value in settings.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out, name


def apply_profile(loaded: Any, wanted: str | None) -> Any:
    """A LoadedModel running profile ``wanted`` (see ``resolve_profile``): its card rewritten by the
    profile's settings, parts removed by the profile (a ``null`` verifier) dropped; the weights are shared."""
    card, name = profile_card(loaded.card, loaded.family, wanted)
    if name is None:
        return loaded
    settings = card_profiles(loaded.card)[name].get("settings", {})
    parts = {k: v for k, v in loaded.parts.items() if not (k in settings and settings[k] is None)}
    return dataclasses.replace(loaded, card=card, parts=parts)
