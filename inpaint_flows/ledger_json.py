"""The JSON ledger of earlier releases, read once to import it into the job store.

Earlier releases kept one JSON file per job key in `<state folder>/<2 hex>/<job key>.json`.
On first use of a store with such a folder, `Ledger` imports every file in one transaction:
one that does not parse stops the run with its path (nothing is skipped silently); an entry
the store already records is kept (the store is newer than any file), except a row that only
holds a claim. The import is recorded in the store per folder, so later runs do not read the
files again; the files are left in place, untouched, and no longer written.
"""

from __future__ import annotations

from pathlib import Path

from inpaint_flows.errors import StoreError
from inpaint_flows.ledger_entry import LedgerEntry


def json_ledger_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.json"))


def read_json_entries(folder: Path) -> list[LedgerEntry]:
    """Every entry of the JSON ledger in `folder`; StoreError names a file that is not one."""
    entries = []
    for path in json_ledger_files(folder):
        try:
            entries.append(LedgerEntry.model_validate_json(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:  # ValidationError is a ValueError
            raise StoreError(
                f"{path} is part of the JSON job ledger of an earlier release and cannot be "
                f"read ({type(exc).__name__}), so it cannot be imported into the job store. "
                "Restore it from a backup, or move it out of the state folder if it is not a "
                "ledger entry; then run the batch again."
            ) from None
    return entries


def write_json_entry(folder: Path, entry: LedgerEntry) -> Path:
    """Write `entry` as an earlier release did (for tests and for moving entries by hand)."""
    path = folder / entry.job_key[:2] / f"{entry.job_key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(entry.model_dump_json(indent=1), encoding="utf-8")
    return path
