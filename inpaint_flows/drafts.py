"""Drafts: a batch's inputs before their names and output stems are made unique.

Discovery (`jobs`) and manifest parsing (`manifest`) each produce drafts; `to_jobs` turns the
whole batch's drafts into `Job`s with unique names and output stems, the first problem's reason
becoming the job's `problem_reason`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from inpaint_flows.masks import MaskRecipe, ShapeGroup
from inpaint_flows.models import InpaintParams, Job
from inpaint_flows.output_names import assign_output_stems


@dataclass
class Draft:
    rel: str  # image path relative to the source (POSIX); names and stems derive from it
    image_path: str
    mask_path: str | None
    params: InpaintParams
    problems: list[tuple[str, str]] = field(default_factory=list)  # (reason, message)
    row: int | None = None  # manifest row, None for folders
    discriminator: str = ""
    groups: list[ShapeGroup] = field(default_factory=list)  # manifest shape cells
    recipe: MaskRecipe | None = None


def to_jobs(drafts: list[Draft]) -> list[Job]:
    per_rel = Counter(d.rel for d in drafts if d.row is not None)
    names: list[str] = []
    for d in drafts:
        if d.row is not None and (not d.rel or per_rel[d.rel] > 1):
            names.append(f"{d.rel} (row {d.row})" if d.rel else f"row {d.row}")
        else:
            names.append(d.rel)
    seen: Counter[str] = Counter()
    for i, name in enumerate(names):  # last resort: names must be unique in a batch
        seen[name] += 1
        if seen[name] > 1:
            names[i] = f"{name} #{seen[name]}"
    stems = assign_output_stems([d.rel for d in drafts], [d.discriminator for d in drafts])
    jobs = []
    for d, name, stem in zip(drafts, names, stems, strict=True):
        problem = reason = None
        if d.problems:
            reason = d.problems[0][0]
            problem = " ".join(message for _, message in d.problems)
        jobs.append(
            Job(
                name=name,
                image_path=d.image_path,
                mask_path=d.mask_path,
                params=d.params,
                output_stem=stem,
                problem=problem,
                problem_reason=reason,
                mask_recipe=d.recipe,
            )
        )
    return jobs
