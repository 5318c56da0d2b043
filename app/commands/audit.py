"""``python main.py audit --out FILE.csv [--folder PATH]``: every label decision as CSV, headless."""
from __future__ import annotations

import argparse

from app.cli import CommandError
from app.commands import open_project_or_fail


def run(args: argparse.Namespace) -> int:
    from app.services.audit import AuditError, write_audit
    from app.services.export_source import FolderNotFound, resolve_folder
    from app.services.project_settings import (
        ProjectSettingsError,
        load_project_settings,
    )

    db = open_project_or_fail(args.db)
    try:
        folder = resolve_folder(db, args.folder)
        flags = load_project_settings(db).flags
        result = write_audit(db, args.out, folder.id if folder is not None else None, flags)
    except (FolderNotFound, ProjectSettingsError, AuditError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.close()
    print(result.text())
    return 0
