"""A batch's settings saved beside its report (`batch.json`), and what a rerun redoes.

The settings are saved whole (`BatchSettings`), so rerun-failed redoes a batch exactly as it was
asked for: same timeouts, name, chunk size, pacing and request defaults.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from inpaint_flows.errors import ConfigError
from inpaint_flows.locations import download, is_remote, join, name_of, parent_of, read_bytes
from inpaint_flows.models import RERUN_STATUSES
from inpaint_flows.output_folder import OutputFolder
from inpaint_flows.report import outcomes_from_frame, read_report
from inpaint_flows.settings import BatchSettings
from inpaint_flows.storage import atomic_write_text

SPEC_FILE = "batch.json"


def save_settings(settings: BatchSettings, output: OutputFolder | None = None) -> str:
    """Write `batch.json` into the output folder (uploaded whole, for a bucket); its location."""
    output = output or OutputFolder(settings.out)
    path = output.work / SPEC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, settings.model_dump_json(indent=2))
    output.publish(SPEC_FILE)
    return output.location(SPEC_FILE)


def load_settings(report_path: str | Path) -> BatchSettings:
    """The settings of the batch that wrote `report_path` (its `batch.json`), which may be in
    a bucket."""
    text = os.fspath(report_path)
    path = join(parent_of(text), SPEC_FILE) if is_remote(text) else Path(text).parent / SPEC_FILE
    try:
        data = read_bytes(path) if isinstance(path, str) else path.read_bytes()
        return BatchSettings.model_validate_json(data)
    except FileNotFoundError:
        raise ConfigError(
            f"{path} is missing: rerun-failed needs the batch.json that a run writes beside "
            "its report. Run the batch again with `inpaint-flows run`."
        ) from None
    except ValidationError as exc:
        raise ConfigError(
            f"{path} does not hold a batch's settings ({exc.error_count()} problems, first: "
            f"{exc.errors()[0]['msg']}). It may come from an older release: run the batch "
            "again with `inpaint-flows run` (nothing done is paid twice)."
        ) from None


def failed_names(report_path: str | Path) -> list[str]:
    """Names of the rows a rerun should redo: failed, invalid and not submitted."""
    text = os.fspath(report_path)
    if is_remote(text):
        with tempfile.TemporaryDirectory(prefix="inpaint-report-") as folder:
            local = Path(folder) / name_of(text)
            if not download(text, local):
                raise FileNotFoundError(2, "no such report", text)
            outcomes = outcomes_from_frame(read_report(local))
    else:
        outcomes = outcomes_from_frame(read_report(text))
    return [o.name for o in outcomes if o.status in RERUN_STATUSES]
