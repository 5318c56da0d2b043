"""``python main.py import FOLDER --format FORMAT``: bring existing labels in as label revisions, headless."""
from __future__ import annotations

import argparse
import getpass
from pathlib import Path

from app.cli import CommandError
from app.commands import open_project_or_fail


def run(args: argparse.Namespace) -> int:
    from app.services.import_records import LabelImportError
    from app.services.importing import ImportOptions, apply_import, parse_class_map, preview_import
    from app.services.wording import plural

    fmt = args.format
    source = Path(args.source)
    if not source.exists():   # said before the layout is guessed ("no known dataset layout found; give --format" was
        # the answer to a mistyped path: a session-48 probe)
        raise CommandError(f"{source}: not found")
    if fmt == "auto" and not source.is_dir():
        raise CommandError(f"{source}: not a folder; give the dataset's folder (or --format for a format read from "
                           "a file)")
    if fmt == "auto":
        from app.services.import_detect import detect_formats, no_layout_message
        found = detect_formats(args.source)
        if not found:
            raise CommandError(no_layout_message(args.source))
        fmt = found[0]
        print(f"format: {fmt} (found here: {', '.join(found)}; --format chooses another)")
    try:
        options = ImportOptions(format=fmt, folder=args.folder, class_map=parse_class_map(args.map or ()),
                                overwrite_newer=args.overwrite_newer, author=args.author or default_author())
    except LabelImportError as exc:
        raise CommandError(str(exc)) from None
    db = open_project_or_fail(args.db)
    try:
        preview = preview_import(db, args.source, options)
        print("\n".join(preview.summary_lines()))
        if preview.errors:
            raise CommandError("nothing imported: fix the errors above (or map classes with --map OLD=NEW)")
        if args.dry_run:
            print("dry run: nothing written")
            return 0
        result = apply_import(db, preview, options.author)
    except LabelImportError as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.close()
    print(f"imported {plural(result.written, 'label')}")
    return 0


def default_author() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name (getpass docs: OSError, KeyError)
        return "import"
