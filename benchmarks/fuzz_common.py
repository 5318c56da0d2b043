"""What the three hostile-input fuzzers share: byte mutations, the "clear message" rule, the human
label fingerprint, stderr capture and the case loop with its JSON summary.

A fuzzer's case either passes (the input worked, or was refused with a clear message and nothing
changed that should not) or is a *finding*: a traceback, an unclear message (an OpenCV assertion,
a libpng line, a driver trace), a human label changed, or the database changed where it should
not. Findings are printed with the case's seed so each can be replayed alone (--seed S --cases 1).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

UNCLEAR = ("Traceback", "Assertion failed", "libpng", "[ WARN", "error: (-", "cv::", "File \"")
MAX_MESSAGE = 600


def unclear(message: str) -> str | None:
    """Why a message shown to a person is not clear (None when it is)."""
    if not message or not message.strip():
        return "empty message"
    for marker in UNCLEAR:
        if marker in message:
            return f"contains {marker!r}"
    if len(message) > MAX_MESSAGE:
        return f"{len(message)} characters long"
    return None


def mutate(data: bytes, rng: random.Random, protect: int = 0) -> bytes:
    """One to four random damages of ``data`` (bytes before ``protect`` are left alone)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        n = len(buf)
        kind = rng.choice(("flip", "truncate", "zero", "insert", "duplicate", "delete", "extend"))
        at = rng.randint(min(protect, n), max(min(protect, n), n - 1)) if n else 0
        if kind == "flip" and n:
            buf[at] ^= 1 << rng.randint(0, 7)
        elif kind == "truncate":
            del buf[at:]
        elif kind == "zero":
            buf[at:at + rng.randint(1, 64)] = bytes(len(buf[at:at + rng.randint(1, 64)]))
        elif kind == "insert":
            buf[at:at] = rng.randbytes(rng.randint(1, 32))
        elif kind == "duplicate" and n:
            buf[at:at] = buf[at:at + rng.randint(1, 256)]
        elif kind == "delete":
            del buf[at:at + rng.randint(1, 64)]
        elif kind == "extend":
            buf += rng.randbytes(rng.randint(1, 64))
    return bytes(buf)


def label_fingerprint(db) -> str:
    """Every human label revision and review state: must be the same before and after a case."""
    h = hashlib.sha256()
    for image in sorted(db.images.query(), key=lambda i: i.id):
        h.update(f"{image.id}:{image.review_state.value}".encode())
        for r in db.labels.history(image.id):
            h.update(repr((r.revision, r.author, r.class_name, r.mask_png, r.anomaly_verdict,
                           r.anomaly_mask_png, r.review_state)).encode())
    return h.hexdigest()


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """What C libraries print on file descriptor 2 meanwhile (libpng, OpenCV), as lines."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines += [ln for ln in tmp.read().decode("utf-8", "replace").splitlines() if ln.strip()]


@dataclass
class Tally:
    name: str
    cases: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def finding(self, seed: int, what: str, detail: str) -> None:
        self.findings.append({"seed": seed, "what": what, "detail": detail[-2500:]})  # a traceback's end says most
        print(f"FINDING seed={seed}: {what}: {detail[:300]}", file=sys.stderr, flush=True)

    def summary(self) -> dict:
        kinds: dict[str, int] = {}
        for f in self.findings:  # e.g. "printed on stderr: Corrupt JPEG data"
            last = f["detail"].strip().splitlines()[-1] if f["what"] == "uncaught exception" else f["detail"]
            kind = f"{f['what']}: {last.split(':')[0][:60]}"
            kinds[kind] = kinds.get(kind, 0) + 1
        return {"fuzzer": self.name, "cases": self.cases, "seconds": round(self.seconds, 1),
                "outcomes": dict(sorted(self.outcomes.items())), "findings": len(self.findings),
                "finding_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
                "first_findings": self.findings[:20]}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--cases", type=int, default=200, help="how many generated inputs")
    p.add_argument("--seed", type=int, default=0, help="first case's seed; case i uses seed + i")
    p.add_argument("--minutes", type=float, default=None, help="stop after this long even if cases remain")
    p.add_argument("--out", type=Path, default=None, help="write the JSON summary here too")
    return p


def run_cases(tally: Tally, args: argparse.Namespace, one_case: Callable[[int, random.Random], str],
              scratch: Path | None = None) -> int:
    """Run ``one_case(seed, rng)`` for each case; it returns an outcome name or raises (a finding).
    Exit status 1 when there were findings; ``scratch`` (the fuzzer's temporary folder) is removed."""
    try:
        return _run(tally, args, one_case)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(tally: Tally, args: argparse.Namespace, one_case: Callable[[int, random.Random], str]) -> int:
    start = time.monotonic()
    for i in range(args.cases):
        if args.minutes is not None and time.monotonic() - start > args.minutes * 60:
            break
        seed = args.seed + i
        try:
            tally.count(one_case(seed, random.Random(seed)))
        except Exception:  # noqa: BLE001 - anything escaping a case is what the fuzzer looks for
            tally.count("finding")
            tally.finding(seed, "uncaught exception", traceback.format_exc())
        tally.cases += 1
        if tally.cases % 50 == 0:
            print(f"{tally.name}: {tally.cases} cases, {len(tally.findings)} findings", file=sys.stderr, flush=True)
    tally.seconds = time.monotonic() - start
    summary = tally.summary()
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 1 if tally.findings else 0
