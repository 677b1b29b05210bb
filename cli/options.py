"""Command-line options generated from `BatchSettings`: one field, one option, nothing re-typed.

Every field of `BatchSettings` (but `source`, the command's argument) and every request field of
its `defaults` (`InpaintParams`) becomes an option named `--field-name`, or the names its `Cli`
metadata gives, with the field's description as help and its default shown. Options left unset
keep the model's default; the values given are validated by the model itself, so a range error
names the option and the allowed values exactly as the flow would.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from inpaint_flows.masks import MaskSettings
from inpaint_flows.models import InpaintParams
from inpaint_flows.settings import BatchSettings, Cli

# Option names kept from earlier releases for request fields (scripts use them).
_REQUEST_NAMES: dict[str, tuple[str, ...]] = {
    "model_name": ("--model",),
    "sampler_name": ("--sampler",),
    "inpainting_full_res": ("--full-res",),
    "inpainting_full_res_padding": ("--full-res-padding",),
    "inpainting_mask_invert": ("--invert-mask",),
}
# Option names of the mask settings' fields (`BatchSettings.masks`).
_MASK_NAMES: dict[str, tuple[str, ...]] = {
    "annotations": ("--annotations",),
    "labels": ("--labels",),
    "region": ("--mask-region",),
    "grow": ("--mask-grow",),
    "shrink": ("--mask-shrink",),
    "feather": ("--mask-feather",),
}
# Nested models whose fields are options of their own: field -> (model, names, JSON fields).
_NESTED: dict[str, tuple[type[BaseModel], dict[str, tuple[str, ...]], frozenset[str]]] = {
    "defaults": (InpaintParams, _REQUEST_NAMES, frozenset({"loras", "embeddings"})),
    "masks": (MaskSettings, _MASK_NAMES, frozenset()),
}
# Fields that are not options: the argument, and the nested models (flattened instead).
_NOT_OPTIONS = frozenset({"source", *_NESTED})
# Settings only the batch command has (check shares the rest).
RUN_ONLY = frozenset(
    {"chunk_size", "poll_timeout_s", "request_timeout_s", "batch_name"}
    | {"canary", "canary_timeout_s", "canary_timeout_action"}
)


@dataclass(frozen=True)
class _Option:
    field: str
    nested: str | None  # the nested model it belongs to (`defaults`, `masks`), if any
    is_json: bool
    parameter: inspect.Parameter


def _cli_meta(info: FieldInfo) -> Cli | None:
    return next((m for m in info.metadata if isinstance(m, Cli)), None)


def _scalar(annotation: Any) -> tuple[type, bool]:
    """(the option's Python type, is JSON) for a field annotation; JSON for lists of models.

    A tuple of plain strings (e.g. `labels`) is one comma-separated text, split by its model.
    """
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _scalar(args[0])
    if origin is typing.Annotated:
        return _scalar(args[0])
    if origin is typing.Literal:
        return type(args[0]), False
    if origin in (tuple, list) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        return str, True
    if annotation in (str, int, float, bool):
        return annotation, False
    raise TypeError(f"no command-line type for {annotation!r}")


def _help(info: FieldInfo, default: object, meta: Cli | None, is_json: bool) -> str:
    text = info.description or ""
    if is_json:
        text += ' JSON, e.g. [{"model_name": "x", "strength": 0.5}].'
    shown = meta.default_help if meta and meta.default_help else default
    return f"{text} [default: {shown}]" if shown not in (None, "") else text


def _option_names(owner: str | None, name: str) -> tuple[str, ...]:
    """The option names of field `name` of the settings (`owner` None) or a nested model."""
    if owner is not None:
        return _NESTED[owner][1].get(name, (f"--{name.replace('_', '-')}",))
    meta = _cli_meta(BatchSettings.model_fields[name])
    return meta.names if meta else (f"--{name.replace('_', '-')}",)


def _options(
    only: frozenset[str] | None = None, nested: tuple[str, ...] = tuple(_NESTED)
) -> list[_Option]:
    options: list[_Option] = []
    sources: list[tuple[str | None, Mapping[str, FieldInfo], BaseModel | None]] = [
        (None, BatchSettings.model_fields, None)
    ]
    sources += [(n, _NESTED[n][0].model_fields, _NESTED[n][0]()) for n in nested]
    for owner, fields, defaults in sources:
        for name, info in fields.items():
            if owner is None and (name in _NOT_OPTIONS or (only is not None and name not in only)):
                continue
            meta = _cli_meta(info)
            annotation = info.annotation
            if annotation is None:
                continue
            kind, is_json = _scalar(annotation)
            names = _option_names(owner, name)
            if owner is not None:
                default = getattr(defaults, name)
                is_json = name in _NESTED[owner][2]
            else:
                default = info.get_default(call_default_factory=True)
            if kind is bool:
                flag = names[0].removeprefix("--")
                names = (f"--{flag}/--no-{flag}",)
            option = typer.Option(None, *names, help=_help(info, default, meta, is_json))
            options.append(
                _Option(
                    field=name,
                    nested=owner,
                    is_json=is_json,
                    parameter=inspect.Parameter(
                        name if owner is None else f"{owner}__{name}",
                        inspect.Parameter.KEYWORD_ONLY,
                        default=option,
                        annotation=kind | None,
                    ),
                )
            )
    return options


def settings_from_options(source: str, values: Mapping[str, Any], **fixed: Any) -> BatchSettings:
    """A `BatchSettings` from parsed option values (None = not given) plus `fixed` fields."""
    settings: dict[str, Any] = {"source": source, **fixed}
    nested: dict[str, dict[str, Any]] = {name: {} for name in _NESTED}
    for option in _options():
        value = values.get(option.parameter.name)
        if value is None:
            continue
        if option.is_json:
            value = _json(option.field, value)
        if option.nested is None:
            settings[option.field] = value
        else:
            nested[option.nested][option.field] = value
    for name, fields in nested.items():
        try:
            settings[name] = _NESTED[name][0].model_validate(fields)
        except ValidationError as exc:
            raise typer.BadParameter(_describe(exc, name)) from None
    try:
        return BatchSettings.model_validate(settings)
    except ValidationError as exc:
        raise typer.BadParameter(_describe(exc, None)) from None


def _json(field: str, value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise typer.BadParameter(f"--{field} is not valid JSON ({exc}).") from None


def _describe(exc: ValidationError, owner: str | None) -> str:
    """Each error named by the option the user typed (`--mask-grow`, not `grow`)."""
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        known = loc and (
            loc[0] in _NESTED[owner][0].model_fields
            if owner
            else loc[0] in BatchSettings.model_fields
        )
        where = _option_names(owner, loc[0])[0] if known else "--" + "-".join(loc)
        detail = "".join(f"[{p}]" for p in loc[1:])  # e.g. loras[0][strength]
        parts.append(f"{where}{detail}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(parts)


def with_settings_options(
    only: frozenset[str] | None = None, nested: tuple[str, ...] = tuple(_NESTED)
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add every settings option (or those in `only`, plus the `nested` models' fields) to a
    command.

    The decorated function keeps its own parameters and receives the options' values in one
    `options` mapping (parameter name → value or None; nested fields as `masks__grow`).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(func)
        generated = [o.parameter for o in _options(only, nested)]
        names = {p.name for p in generated}

        def command(**kwargs: Any) -> Any:
            options = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return func(options=options, **kwargs)

        hints = typing.get_type_hints(func, include_extras=True)
        own_params = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in own.parameters.values()
            if p.name != "options"
        ]
        command.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[*own_params, *generated]
        )
        command.__annotations__ = {
            **{p.name: p.annotation for p in own_params},
            **{p.name: p.annotation for p in generated},
        }
        command.__doc__ = func.__doc__
        command.__name__ = func.__name__
        return command

    return decorate
