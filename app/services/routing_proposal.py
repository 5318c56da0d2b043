"""Model-routing rules proposed from a folder's own pre-label results (Project ▸ Model routing… ▸ Propose).

Why: a new user opens a folder that holds several lines (infrared frames, tiles, steel strips) with no
routing, so every model runs on every image, and each model then calls the other lines' images out of
domain (ADR 0021). Those in-domain scores already say which family fits which subfolder. The station
proposes one rule per subfolder (one for the folder where its lots all get the same models), shows the
evidence beside it, and the inspector edits and saves it
(nothing is saved by proposing). Plain data and Qt-free; the window asks for it on a helper thread.

The rule for a subfolder keeps a family when at least ``IN_DOMAIN_SHARE`` of the images it scored are in
domain; a family with no answer there is kept as the rules in force have it (no evidence: never added or
dropped on a guess; with no rules, every family runs). A subfolder the rules already route that way gets
no rule, nor does one whose images every model calls out of domain: skipping them would hide a new line
from the inspector, while their out-of-domain flags put them first in "label next". Images directly in
a folder that also has subfolders get no rule: a pattern cannot name "no subfolder" (``*`` crosses ``/``). A folder
of images alone (no subfolder: one line, one folder, the common case) gets one rule for the whole folder,
``<folder>/*`` (seen under Xvfb, session 36: a flat folder of infrared frames got "No proposal: the folder has no
subfolders ... pre-label the folder first" after its pre-label).

Where a family's answers call most of a subfolder foreign, its other versions are tried on a sample of the
subfolder's images by their own domain descriptions (``app.services.version_fit``, ADR 0066): one that calls
most of them in domain keeps the family there, named in the rule (a folder of bottles gets the bundled bottle
anomaly model instead of "every model calls these images out of domain").
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from app.services.routing import FAMILY_ORDER, Routing, RoutingRule
from app.services.version_fit import FitCache, VersionFit, sample, versions_fit
from app.services.wording import agree, plural
from inference.domain import OUT_OF_DOMAIN_BELOW

if TYPE_CHECKING:
    from app.services.routing_answers import Answer
    from database import Database

log = logging.getLogger(__name__)

IN_DOMAIN_SHARE = 0.5
# Subfolders whose foreign families get other versions tried (each costs a few dozen decodes): a folder of a
# year of daily subfolders is proposed in seconds, and the evidence says where the trying stopped.
MAX_TRIED_SUBFOLDERS = 24


@dataclass(frozen=True)
class FamilyEvidence:
    family: str
    scored: int      # images of the subfolder with an in-domain score by the family's active version
    in_domain: int   # of those, how many are in domain
    runs_now: bool   # the rules in force (or being edited) run this family on the subfolder
    other: VersionFit | None = None  # another version that calls most of a sample in domain (where this one does not)

    @property
    def fits(self) -> bool:
        """The answers that count call at least half of what they scored in domain."""
        return self.scored > 0 and self.in_domain >= IN_DOMAIN_SHARE * self.scored

    @property
    def kept(self) -> bool:
        """In domain for at least half of what it scored, or another version is; without a score, as the
        rules have it."""
        return self.fits or self.other is not None if self.scored else self.runs_now

    @property
    def named(self) -> str | None:
        """The version the proposed rule names for this family (None: the one that runs now)."""
        return self.other.name if self.other is not None and not self.fits else None

    def text(self) -> str:
        if self.scored == 0:
            return f"{self.family}: no answer here ({'runs' if self.runs_now else 'not run'} now)"
        seen = f"{self.family} in domain {self.in_domain} of {self.scored}"
        review = (", a challenger not yet reviewed: compare it in Project ▸ Models… before you keep this rule"
                  if self.other is not None and self.other.challenger else "")
        return seen + (f" ({self.named}: in domain {self.other.in_domain} of a sample of {self.other.scored}{review})"
                       if self.named and self.other else "")


@dataclass(frozen=True)
class SubfolderEvidence:
    subfolder: str
    pattern: str
    families: tuple[FamilyEvidence, ...]
    rule: RoutingRule | None  # None: no rule proposed (the rules already do it, or every model is out of domain)
    # Where every model calls the images out of domain: one image's reason per family, "family: path: why"
    # (``inference.domain_notes``), so the verdict says what to change (the files, or a model trained on them)
    why: tuple[str, ...] = ()

    @property
    def all_foreign(self) -> bool:
        return self.rule is None and not any(f.kept for f in self.families)

    def text(self) -> str:
        seen = "; ".join(f.text() for f in self.families)
        kept = [f for f in self.families if f.kept]
        if self.rule is not None:
            named = dict(self.rule.versions)
            verdict = "→ " + ", ".join(f"{f} ({named[f]})" if f in named else f for f in self.rule.families) + " only"
        elif not kept:
            verdict = "→ no rule: every model calls these images out of domain (they stay flagged for labelling)"
            if self.why:
                verdict += "; why, e.g. " + "; ".join(self.why)
        elif len(kept) == len(self.families) and all(f.runs_now for f in self.families):
            verdict = "→ no rule (every model fits)"
        else:
            verdict = "→ no rule: the rules already do this"
        return f"{self.pattern}: {seen} {verdict}"


@dataclass(frozen=True)
class RoutingProposal:
    rules: tuple[RoutingRule, ...]
    evidence: tuple[SubfolderEvidence, ...]
    root_images: int  # images directly in the folder (no rule can name them)
    whole_folder: bool = False  # every subfolder got the same rule: ``rules`` is one rule for the folder
    untried: int = 0  # subfolders called foreign whose families' other versions were not tried (MAX_TRIED_SUBFOLDERS)

    def merged_into(self, current: Routing) -> Routing:
        """``current`` with the proposal: a rule of the same pattern (case aside) takes the proposed families
        in its place and keeps its spelling and the versions it names for families it still runs; the other
        proposed rules go above every current one, so a subfolder's rule wins over a broader one."""
        rules = list(current.rules)
        above = []
        for rule in self.rules:
            at = next((i for i, r in enumerate(rules) if r.pattern.strip().lower() == rule.pattern.lower()), None)
            if at is None:
                above.append(rule)
            else:
                named = {f: v for f, v in rules[at].versions if f in rule.families} | dict(rule.versions)
                rules[at] = RoutingRule(rules[at].pattern, rule.families, tuple(named.items()))
        return Routing(tuple(above) + tuple(rules))

    def text(self) -> str:
        if not self.evidence:
            return "No proposal: no image of the folder has a pre-label answer yet (pre-label the folder first)."
        lines = [e.text() for e in self.evidence]
        if self.whole_folder and self.rules:
            lines.append(f"Every subfolder gets the same models: one rule for the whole folder, {self.rules[0].pattern} "
                         "(it also covers subfolders added later).")
        if self.root_images:
            lines.append(f"{plural(self.root_images, 'image')} directly in the folder: no rule can name "
                         f"{agree(self.root_images, 'it', 'them')}.")
        if self.untried:
            lines.append(f"Other versions were tried on the first {MAX_TRIED_SUBFOLDERS} subfolders only; "
                         f"{self.untried} more keep the evidence of their answers.")
        return "\n".join(lines)


def subfolder_of(rel_path: str) -> str:
    """The first folder of an image's path inside its folder; "" for an image directly in the folder."""
    path = rel_path.replace("\\", "/")
    return path.split("/", 1)[0] if "/" in path else ""


def glob_literal(text: str) -> str:
    """``text`` as a pattern that matches only itself (``*``, ``?`` and ``[`` bracketed)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def propose_from_scores(folder_name: str, scores: Iterable[tuple[str, str, float | None]],
                        current: Routing | None = None,
                        others: Mapping[tuple[str, str], VersionFit] | None = None) -> RoutingProposal:
    """(image path in the folder, family, in-domain score or None) rows -> the proposal, beside the rules
    ``current`` (in force or being edited; a family with no answer in a subfolder is kept as they have it);
    ``others``: (subfolder, family) -> another version that fits there, named where the answers do not fit.
    Pure: tested alone."""
    others = others or {}
    current = current or Routing()
    scored: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    inside: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    example: dict[str, str] = {}  # a path of each subfolder, to ask the current rules what they run there
    root: set[str] = set()
    for rel_path, family, score in scores:
        path = rel_path.replace("\\", "/")
        sub = subfolder_of(path)
        if not sub:
            root.add(path)
        example[sub] = min(example.get(sub, path), path)
        if score is None or family not in FAMILY_ORDER:
            continue
        scored[sub][family] += 1
        inside[sub][family] += int(score >= OUT_OF_DOMAIN_BELOW)
    flat = set(example) == {""} and bool(folder_name)  # images alone, no subfolder: one rule names the folder
    evidence, rules = [], []
    for sub in sorted(example, key=str.lower):
        if not sub and not flat:
            continue  # images beside subfolders: no pattern names them alone (said in the text)
        now = current.families_for(example[sub], folder_name)
        fams = tuple(FamilyEvidence(f, scored[sub][f], inside[sub][f], f in now, others.get((sub, f)))
                     for f in FAMILY_ORDER)
        kept = tuple(f.family for f in fams if f.kept)
        named = tuple((f.family, f.named) for f in fams if f.kept and f.named)
        pattern = ("/".join(glob_literal(part) for part in (folder_name, sub) if part) + "/*")
        rule = RoutingRule(pattern, kept, named) if kept and (kept != now or named) else None
        if rule is not None:
            rules.append(rule)
        evidence.append(SubfolderEvidence(sub, pattern, fams, rule))
    whole = _one_rule_for_folder(folder_name, evidence, rules, current, example) if not root else None
    return RoutingProposal((whole,) if whole else tuple(rules), tuple(evidence), 0 if flat else len(root),
                           whole is not None)


def _one_rule_for_folder(folder_name: str, evidence: list[SubfolderEvidence], rules: list[RoutingRule],
                         current: Routing, example: Mapping[str, str]) -> RoutingRule | None:
    """``<folder>/*`` where two or more subfolders, every one of the folder's, get the same rule and no rule in
    force covers any of them: the lots of one line. Why: seven identical rules for seven lots (seen under Xvfb,
    session 40) left a lot added later matching none of them, back to every model and every image out of domain."""
    if len(evidence) < 2 or len(rules) != len(evidence) or not folder_name:
        return None
    if len({(r.families, r.versions) for r in rules}) != 1:
        return None
    if any(current.rule_for(example[e.subfolder], folder_name) is not None for e in evidence):
        return None
    return RoutingRule(glob_literal(folder_name) + "/*", rules[0].families, rules[0].versions)


def propose_routing(db: "Database", folder_id: int, current: Routing | None = None) -> RoutingProposal:
    """The proposal for one folder, from the in-domain scores of its answers that count (one query), beside
    ``current`` (default: the project's stored rules)."""
    from app.services.routing_answers import active_answers

    name, family_of, answers = active_answers(db, folder_id)
    if current is None:
        from app.services.project_settings import load_project_settings
        current = load_project_settings(db).routing
    rows = [(p, family_of[v], d) for _i, p, v, d in answers]
    first = propose_from_scores(name, rows, current)
    others, untried = _other_versions(db, folder_id, first, answers, family_of)
    proposal = propose_from_scores(name, rows, current, others) if others else first
    proposal = with_reasons(proposal, db.predictions.domain_notes_in_folder(folder_id)
                            if any(e.all_foreign for e in proposal.evidence) else [])
    return replace(proposal, untried=untried) if untried else proposal


def with_reasons(proposal: RoutingProposal, notes: Iterable[tuple[str, str, str]]) -> RoutingProposal:
    """``proposal`` whose subfolders every model calls foreign say why: the first image's note per family
    ((path in the folder, family, note) rows, by path). Pure: tested alone."""
    foreign = {e.subfolder for e in proposal.evidence if e.all_foreign}
    if not foreign:
        return proposal
    why: dict[str, dict[str, str]] = defaultdict(dict)
    for rel_path, family, note in notes:
        sub = subfolder_of(rel_path.replace("\\", "/"))
        if sub in foreign and family not in why[sub]:
            why[sub][family] = f"{family}: {rel_path}: {note}"
    evidence = tuple(replace(e, why=tuple(why[e.subfolder][f] for f in FAMILY_ORDER if f in why[e.subfolder]))
                     if e.subfolder in why else e for e in proposal.evidence)
    return replace(proposal, evidence=evidence)


def _other_versions(db: "Database", folder_id: int, first: RoutingProposal, answers: "list[Answer]", family_of: dict[int, str]
                    ) -> tuple[dict[tuple[str, str], VersionFit], int]:
    """(subfolder, family) -> the best other version of the family, where the answers call most of the
    subfolder foreign and that version calls most of a sample of its images in domain; and how many such
    subfolders were past ``MAX_TRIED_SUBFOLDERS`` (not tried)."""
    folder = db.folders.get(folder_id)
    if folder is None:
        return {}, 0
    paths: dict[str, list[str]] = defaultdict(list)
    answered: dict[tuple[str, str], set[int]] = defaultdict(set)
    for _i, p, v, _d in answers:
        sub = subfolder_of(p)
        paths[sub].append(p)
        answered[(sub, family_of[v])].add(v)
    out = {}
    cache = FitCache()
    foreign = [e for e in first.evidence if any(f.scored and not f.fits for f in e.families)]
    if foreign:  # the bundled versions no job has run yet are candidates too (seen: the tile classifier was not)
        from app.services.model_catalog import ensure_bundled
        try:
            ensure_bundled(db)
        except Exception as exc:  # noqa: BLE001 - a project that cannot register them (read-only) still gets a proposal
            log.warning("bundled versions not registered for the routing proposal: %s", exc)
    for e in foreign[:MAX_TRIED_SUBFOLDERS]:
        images = [Path(folder.root_path) / p for p in sample(list(set(paths[e.subfolder])))]
        for f in e.families:
            if f.scored == 0 or f.fits:
                continue
            fits = [v for v in versions_fit(db, f.family, images, answered[(e.subfolder, f.family)], cache)
                    if v.scored and v.in_domain >= IN_DOMAIN_SHARE * v.scored]
            if fits:
                out[(e.subfolder, f.family)] = fits[0]
    return out, max(0, len(foreign) - MAX_TRIED_SUBFOLDERS)
