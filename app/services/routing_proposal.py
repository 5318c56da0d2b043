"""Model-routing rules proposed from a folder's own pre-label results (Project ▸ Model routing… ▸ Propose).

Why: a new user opens a folder that holds several lines (infrared frames, tiles, steel strips) with no
routing, so every model runs on every image, and each model then calls the other lines' images out of
domain (ADR 0021). Those in-domain scores already say which family fits which subfolder. The station
proposes one rule per subfolder, shows the evidence beside it, and the inspector edits and saves it
(nothing is saved by proposing). Plain data and Qt-free; the window asks for it on a helper thread.

The rule for a subfolder keeps a family when at least ``IN_DOMAIN_SHARE`` of the images it scored are in
domain, or when it has no in-domain score there (no evidence: never dropped on a guess). A subfolder whose
images every family calls out of domain gets no rule: skipping them would hide a new line from the
inspector, while their out-of-domain flags put them first in "label next". A subfolder whose rule would
keep every family gets none either (the same as no rule). Images directly in the folder get no rule: a
pattern cannot name "no subfolder" (``*`` crosses ``/``).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

from app.services.routing import FAMILY_ORDER, RoutingRule
from inference.domain import OUT_OF_DOMAIN_BELOW

if TYPE_CHECKING:
    from database import Database

IN_DOMAIN_SHARE = 0.5


@dataclass(frozen=True)
class FamilyEvidence:
    family: str
    scored: int      # images of the subfolder with an in-domain score by the family's active version
    in_domain: int   # of those, how many are in domain

    @property
    def kept(self) -> bool:
        return self.scored == 0 or self.in_domain >= IN_DOMAIN_SHARE * self.scored

    def text(self) -> str:
        if self.scored == 0:
            return f"{self.family}: no in-domain score yet (kept)"
        return f"{self.family} in domain {self.in_domain} of {self.scored}"


@dataclass(frozen=True)
class SubfolderEvidence:
    subfolder: str
    pattern: str
    families: tuple[FamilyEvidence, ...]
    rule: RoutingRule | None  # None: no rule proposed (every family kept, or every family out of domain)

    def text(self) -> str:
        seen = "; ".join(f.text() for f in self.families)
        if self.rule is not None:
            verdict = "→ " + (", ".join(self.rule.families) + " only")
        elif all(f.kept for f in self.families):
            verdict = "→ no rule (every model fits)"
        else:
            verdict = "→ no rule: every model calls these images out of domain (they stay flagged for labelling)"
        return f"{self.pattern}: {seen} {verdict}"


@dataclass(frozen=True)
class RoutingProposal:
    rules: tuple[RoutingRule, ...]
    evidence: tuple[SubfolderEvidence, ...]
    root_images: int  # images directly in the folder (no rule can name them)

    def text(self) -> str:
        if not self.evidence:
            return ("No proposal: the folder has no subfolders with pre-labelled images (a rule names a "
                    "subfolder; pre-label the folder first).")
        lines = [e.text() for e in self.evidence]
        if self.root_images:
            lines.append(f"{self.root_images} image(s) directly in the folder: no rule can name them, they get "
                         "every model.")
        return "\n".join(lines)


def glob_literal(text: str) -> str:
    """``text`` as a pattern that matches only itself (``*``, ``?`` and ``[`` bracketed)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def propose_from_scores(folder_name: str, scores: Iterable[tuple[str, str, float | None]]) -> RoutingProposal:
    """(image path in the folder, family, in-domain score or None) rows -> the proposal. Pure: tested alone."""
    scored: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    inside: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    subfolders: set[str] = set()
    root: set[str] = set()
    for rel_path, family, score in scores:
        path = rel_path.replace("\\", "/")
        if "/" not in path:
            root.add(path)
            continue
        sub = path.split("/", 1)[0]
        subfolders.add(sub)
        if score is None or family not in FAMILY_ORDER:
            continue
        scored[sub][family] += 1
        inside[sub][family] += int(score >= OUT_OF_DOMAIN_BELOW)
    evidence, rules = [], []
    for sub in sorted(subfolders, key=str.lower):
        fams = tuple(FamilyEvidence(f, scored[sub][f], inside[sub][f]) for f in FAMILY_ORDER)
        kept = tuple(f.family for f in fams if f.kept)
        pattern = f"{glob_literal(folder_name)}/{glob_literal(sub)}/*" if folder_name else f"{glob_literal(sub)}/*"
        rule = RoutingRule(pattern, kept) if kept and len(kept) < len(FAMILY_ORDER) else None
        if rule is not None:
            rules.append(rule)
        evidence.append(SubfolderEvidence(sub, pattern, fams, rule))
    return RoutingProposal(tuple(rules), tuple(evidence), len(root))


def propose_routing(db: "Database", folder_id: int) -> RoutingProposal:
    """The proposal for one folder, from its active model versions' in-domain scores (one query)."""
    folder = db.folders.get(folder_id)
    if folder is None:
        raise ValueError(f"folder {folder_id} is not indexed")
    active: Mapping[str, int] = db.model_versions.active_ids()
    family_of = {v: f for f, v in active.items()}
    rows = db.predictions.in_domain_in_folder(folder_id, list(family_of))
    return propose_from_scores(folder.name, ((p, family_of[v], d) for p, v, d in rows))
