"""Which model families pre-label which images: path patterns per project.

Why: a station serves several lines at once (infrared frames, steel strips, tiles), and each
family was trained on one kind of part; a steel-defect class on an infrared frame or a tile
model's heatmap on a steel strip is noise an inspector has to look past. A project therefore
keeps ordered rules "images matching this pattern get these families"; the first matching rule
wins and an image no rule matches gets every family (so a project without rules behaves as
before). A pattern is a shell glob (``*``, ``?``, ``[...]``; ``*`` also crosses ``/``) matched,
case-insensitively, against the image's path inside its folder and against the same path with
the folder's name in front, so ``infrared/*`` and ``line3/*`` (a whole folder) both work.
A rule with no family skips its images.

The rules are a project setting, stored in the database with the flag thresholds
(``app.services.project_settings``); ``load_routing`` reads the JSON file older stations kept
beside a SQLite database, once, for the import. A broken file is reported with its path and
never rewritten behind the user's back.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from inference import families
from inference.model_limits import parse_json

ROUTING_FILE = "model_routing.json"
FAMILY_ORDER = families.NAMES  # pre-label order


class RoutingError(ValueError):
    """Rules that cannot be used, with the reason (unknown family, empty pattern, unreadable file)."""


MAX_VERSION_NAME = 255  # model_versions.name's length


@dataclass(frozen=True)
class RoutingRule:
    """Images matching ``pattern`` get ``families``; ``versions`` names, for some of them, the model
    version that runs there (family, version name), instead of the family's active one (ADR 0059).
    Its answers are the ones that count for those images (``database/current_predictions``)."""

    pattern: str
    families: tuple[str, ...]
    versions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.pattern.strip():
            raise RoutingError("a routing rule needs a pattern")
        unknown = [f for f in self.families if f not in FAMILY_ORDER]
        if unknown:
            raise RoutingError(f"unknown family {', '.join(map(repr, unknown))} in the rule for "
                               f"{self.pattern!r}; choose from {', '.join(FAMILY_ORDER)}")
        # One canonical order, so equal rules compare equal and jobs group the same way.
        object.__setattr__(self, "families", tuple(f for f in FAMILY_ORDER if f in self.families))
        named = dict(self.versions)
        for family, name in named.items():
            if family not in self.families:
                raise RoutingError(f"the rule for {self.pattern!r} names a {family} version but does not run "
                                   f"{family}; tick it or leave its version to the active one")
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_VERSION_NAME:
                raise RoutingError(f"the rule for {self.pattern!r} names no usable {family} version ({name!r})")
        object.__setattr__(self, "versions", tuple((f, named[f].strip()) for f in FAMILY_ORDER if f in named))

    @property
    def named(self) -> dict[str, str]:
        """family -> the version name this rule runs (families it leaves to the active version absent)."""
        return dict(self.versions)

    def matches(self, rel_path: str, folder_name: str = "") -> bool:
        pat = self.pattern.strip().replace("\\", "/").lower()
        path = rel_path.replace("\\", "/").lower()
        candidates = [path] + ([f"{folder_name.lower()}/{path}"] if folder_name else [])
        return any(fnmatch.fnmatchcase(c, pat) for c in candidates)


@dataclass(frozen=True)
class Routing:
    rules: tuple[RoutingRule, ...] = ()

    def rule_for(self, rel_path: str, folder_name: str = "") -> RoutingRule | None:
        """The first rule matching the image (None: no rule, every family with its active version)."""
        return next((rule for rule in self.rules if rule.matches(rel_path, folder_name)), None)

    def families_for(self, rel_path: str, folder_name: str = "",
                     default: Sequence[str] = FAMILY_ORDER) -> tuple[str, ...]:
        rule = self.rule_for(rel_path, folder_name)
        return rule.families if rule is not None else tuple(f for f in FAMILY_ORDER if f in default)

    def named_versions(self) -> set[tuple[str, str]]:
        """Every (family, version name) some rule names."""
        return {pair for rule in self.rules for pair in rule.versions}

    def to_dict(self) -> dict[str, Any]:
        return {"rules": [{"pattern": r.pattern, "families": list(r.families),
                           **({"versions": r.named} if r.versions else {})} for r in self.rules]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, strict: bool = True) -> "Routing":
        """``strict``: a key it does not read is refused (what a person hands ``routing set``, and what the station
        stores); not strict: passed over, as an older station's file beside the database was read (the session-46
        review: a rule's "comment" key dropped every rule of such a file)."""
        if not data:
            return cls()
        # a misspelt key was read as absent (a session-46 probe: "family" made a rule that skipped its images, "Rules"
        # wiped every rule, each saved with exit 0): only the keys below are read, every one named
        extra = sorted(map(str, set(data) - {"rules"})) if isinstance(data, Mapping) and strict else []
        if extra:
            raise RoutingError(f"unknown key {extra[0]!r} (a model routing holds 'rules' only)")
        rules = data.get("rules", []) if isinstance(data, Mapping) else None
        if not isinstance(rules, list):
            raise RoutingError("'rules' must be a list")
        out = []
        for i, r in enumerate(rules):
            if not isinstance(r, Mapping) or not isinstance(r.get("pattern"), str) \
                    or not isinstance(r.get("families", None if strict else []), list) \
                    or not isinstance(r.get("versions", {}), Mapping):
                raise RoutingError(f"rule {i + 1} must have a 'pattern' (text), 'families' (a list, [] for none) and "
                                   f"optionally 'versions' (family: version name)")
            odd = sorted(map(str, set(r) - {"pattern", "families", "versions"})) if strict else []
            if odd:
                raise RoutingError(f"rule {i + 1}: unknown key {odd[0]!r} (a rule holds 'pattern', 'families' and "
                                   "'versions')")
            versions = tuple((str(f), v) for f, v in r.get("versions", {}).items())
            out.append(RoutingRule(r["pattern"], tuple(r.get("families", [])), versions))
        return cls(tuple(out))


# What one job runs: its families, and the versions its rule names for some of them.
JobKey = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]


def group_by_families(images: Iterable[tuple[int, str, str]], routing: Routing,
                      requested: Sequence[str]) -> dict[JobKey, list[int]]:
    """(image id, path in folder, folder name) -> {(families to run, versions named): image ids},
    in first-seen order.

    Families are the image's routed ones that were also requested; images left with none are
    not in the result (nothing to run on them).
    """
    groups: dict[JobKey, list[int]] = {}
    for image_id, rel_path, folder_name in images:
        rule = routing.rule_for(rel_path, folder_name)
        routed = rule.families if rule is not None else FAMILY_ORDER
        fams = tuple(f for f in routed if f in requested)
        if fams:
            named = tuple(p for p in rule.versions if p[0] in fams) if rule is not None else ()
            groups.setdefault((fams, named), []).append(image_id)
    return groups


MAX_ROUTING_BYTES = 1 << 20  # a routing file is a few rules; anything larger is not one


def load_routing(path: Path, strict: bool = True) -> Routing:
    """Rules from a JSON file (``routing set``'s, strict; an older station's, not: ``Routing.from_dict``); a missing
    file means no rules (every family on every image)."""
    try:
        if path.stat().st_size > MAX_ROUTING_BYTES:
            raise RoutingError(f"{path}: {path.stat().st_size} bytes is not a model routing (at most {MAX_ROUTING_BYTES})")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Routing()
    except OSError as exc:
        raise RoutingError(f"{path}: cannot read the model routing ({exc.strerror or exc})") from None
    try:
        doc = parse_json(text)  # bounded nesting: a deep file raised RecursionError past every caller (a session-46 probe)
    except ValueError as exc:
        raise RoutingError(f"{path}: invalid model routing ({exc})") from None
    if strict and (not isinstance(doc, Mapping) or "rules" not in doc):  # {} or a misspelt key wiped every rule
        raise RoutingError(f"{path}: a model routing is an object with 'rules' (write {{\"rules\": []}} for none)")
    try:
        return Routing.from_dict(doc, strict=strict)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RoutingError(f"{path}: invalid model routing ({exc})") from None
