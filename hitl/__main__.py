"""`python -m hitl export|import|adduser|deluser|revoke`: offline tools for a session folder
and its logins.

DuckDB lets one process own a session file, so these work while the app is stopped; when it
runs they say so in one line instead of a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hitl.settings import CHECKPOINTS, DB_NAME, MODEL_STATE

LOCKED = "the session is open in a running app: stop it or export from the page"


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _open_store(session: Path):
    """The session's Store, or None (after printing why) when it cannot be opened."""
    import duckdb

    from hitl.store import Store

    db = session / DB_NAME
    if not db.is_file():
        _fail(f"no session database at {db}")
        return None
    try:
        return Store(db)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            _fail(LOCKED)
        else:
            _fail(f"cannot open {db}: {exc}")
        return None


def export_main(argv: list[str]) -> int:
    from hitl.export import FORMATS, ExportError, export

    parser = argparse.ArgumentParser(prog="python -m hitl export",
                                     description="Export a session's labels, masks or model.")
    parser.add_argument("--session", required=True, type=Path, help="the session folder")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, type=Path, help="file or folder to write")
    parser.add_argument("--split", action="store_true", help="imagefolder: train/ and val/")
    parser.add_argument("--symlink", action="store_true", help="link images instead of copying")
    args = parser.parse_args(argv)
    if args.format == "model":  # the trainer's own file: validated and copied, no database
        source = args.session / CHECKPOINTS / MODEL_STATE
        if not source.is_file():
            return _fail(f"no trained model yet ({source} does not exist): label some images "
                         "with the app running, then export again")
        from hitl.model_file import read_state, save_model

        out = args.out / "model.pt" if args.out.is_dir() else args.out
        try:
            save_model(out, read_state(source))
        except (ValueError, OSError) as exc:
            return _fail(f"cannot export the model: {exc}")
        print(out)
        return 0
    store = _open_store(args.session)
    if store is None:
        return 2
    try:
        out = export(store, args.format, args.out, split=args.split, symlink=args.symlink)
    except (ExportError, OSError) as exc:
        return _fail(str(exc))
    finally:
        store.close()
    print(out)
    return 0


def import_main(argv: list[str]) -> int:
    from hitl.importer import ImportSourceError, import_labels

    parser = argparse.ArgumentParser(prog="python -m hitl import",
                                     description="Import labels or masks into a session.")
    parser.add_argument("--session", required=True, type=Path, help="the session folder")
    parser.add_argument("source", help="a CSV (path,label), an ImageFolder tree or a masks folder")
    args = parser.parse_args(argv)
    args.session.mkdir(parents=True, exist_ok=True)
    if not (args.session / DB_NAME).exists():
        from hitl.store import Store
        Store(args.session / DB_NAME).close()
    store = _open_store(args.session)
    if store is None:
        return 2
    try:
        report = import_labels(store, args.source)
    except (ImportSourceError, OSError) as exc:
        return _fail(str(exc))
    finally:
        store.close()
    print(report.summary())
    for problem in report.problems:
        print(f"  {problem}")
    return 0


def deluser_main(argv: list[str]) -> int:
    from hitl.logins import deluser_main as run
    return run(argv)


def revoke_main(argv: list[str]) -> int:
    from hitl.logins import revoke_main as run
    return run(argv)


def adduser_main(argv: list[str]) -> int:
    from hitl.auth import adduser_main as run
    return run(argv)


COMMANDS = {"export": export_main, "import": import_main, "adduser": adduser_main,
            "deluser": deluser_main, "revoke": revoke_main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(f"usage: python -m hitl {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
