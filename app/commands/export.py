"""``python main.py export --out DIR``: write the reviewed labels as datasets, headless."""
from __future__ import annotations

import argparse
import sys

from app.cli import CommandError
from app.commands import open_project_or_fail


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.services.export import ExportError, ExportOptions, export_database, parse_formats
    from app.services.export_split import SplitSpec

    try:
        formats = parse_formats(args.format)
        split = SplitSpec.parse(args.split, seed=getattr(args, "seed", 0)) if args.split else None
    except (ExportError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    options = ExportOptions(formats=formats, split=split, overwrite=getattr(args, "overwrite", False))
    db = open_project_or_fail(args.db)
    bars: list[tqdm] = []  # opened at the first report, so a refused export prints only its error

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="export", unit="img", file=sys.stderr, dynamic_ncols=True,
                             mininterval=0.5))
        bars[0].update(done - bars[0].n)

    try:
        result = export_database(db, args.out, options, folder=args.folder, progress=progress)
    except ExportError as exc:
        raise CommandError(str(exc)) from None
    finally:
        for bar in bars:
            bar.close()
        db.close()
    print("\n".join(result.summary_lines()))
    return 0
