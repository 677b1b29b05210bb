"""A batch's settings saved beside its report (`batch.json`), and what a rerun redoes.

The settings are saved whole (`BatchSettings`), so rerun-failed redoes a batch exactly as it was
asked for: same timeouts, name, chunk size, pacing and request defaults.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from inpaint_flows.errors import ConfigError
from inpaint_flows.models import RERUN_STATUSES
from inpaint_flows.report import outcomes_from_frame, read_report
from inpaint_flows.settings import BatchSettings
from inpaint_flows.storage import atomic_write_text

SPEC_FILE = "batch.json"


def save_settings(settings: BatchSettings) -> Path:
    path = Path(settings.out) / SPEC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, settings.model_dump_json(indent=2))
    return path


def load_settings(report_path: str | Path) -> BatchSettings:
    """The settings of the batch that wrote `report_path` (its `batch.json`)."""
    path = Path(report_path).parent / SPEC_FILE
    try:
        return BatchSettings.model_validate_json(path.read_text(encoding="utf-8"))
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
    outcomes = outcomes_from_frame(read_report(report_path))
    return [o.name for o in outcomes if o.status in RERUN_STATUSES]
