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
# Fields that are not options: the argument, and the nested request model (flattened instead).
_NOT_OPTIONS = frozenset({"source", "defaults"})
# Settings only the batch command has (check shares the rest).
RUN_ONLY = frozenset({"chunk_size", "poll_timeout_s", "request_timeout_s", "batch_name"})


@dataclass(frozen=True)
class _Option:
    field: str
    request: bool  # an `InpaintParams` field (goes into `defaults`)
    parameter: inspect.Parameter


def _cli_meta(info: FieldInfo) -> Cli | None:
    return next((m for m in info.metadata if isinstance(m, Cli)), None)


def _scalar(annotation: Any) -> tuple[type, bool]:
    """(the option's Python type, is JSON) for a field annotation; JSON for lists of models."""
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


def _options(only: frozenset[str] | None = None) -> list[_Option]:
    options: list[_Option] = []
    request_defaults = InpaintParams()
    sources: list[tuple[bool, Mapping[str, FieldInfo]]] = [
        (False, BatchSettings.model_fields),
        (True, InpaintParams.model_fields),
    ]
    for request, fields in sources:
        for name, info in fields.items():
            if not request and (name in _NOT_OPTIONS or (only is not None and name not in only)):
                continue
            meta = _cli_meta(info)
            annotation = info.annotation
            if annotation is None:
                continue
            kind, is_json = _scalar(annotation)
            if request:
                names = _REQUEST_NAMES.get(name, (f"--{name.replace('_', '-')}",))
                default = getattr(request_defaults, name)
            else:
                names = meta.names if meta else (f"--{name.replace('_', '-')}",)
                default = info.get_default(call_default_factory=True)
            if kind is bool:
                flag = names[0].removeprefix("--")
                names = (f"--{flag}/--no-{flag}",)
            option = typer.Option(None, *names, help=_help(info, default, meta, is_json))
            options.append(
                _Option(
                    field=name,
                    request=request,
                    parameter=inspect.Parameter(
                        name,
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
    request: dict[str, Any] = {}
    for option in _options():
        value = values.get(option.field)
        if value is None:
            continue
        if option.request:
            request[option.field] = (
                _json(option.field, value)
                if option.field
                in (
                    "loras",
                    "embeddings",
                )
                else value
            )
        else:
            settings[option.field] = value
    try:
        settings["defaults"] = InpaintParams.model_validate(request)
        return BatchSettings.model_validate(settings)
    except ValidationError as exc:
        raise typer.BadParameter(_describe(exc)) from None


def _json(field: str, value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise typer.BadParameter(f"--{field} is not valid JSON ({exc}).") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = "--" + "-".join(str(p) for p in error["loc"] if isinstance(p, str)).replace(
            "_", "-"
        )
        parts.append(f"{where}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(parts)


def with_settings_options(
    only: frozenset[str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add every settings option (or those in `only`, plus request fields) to a command.

    The decorated function keeps its own parameters and receives the options' values in one
    `options` mapping (field name → value or None).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(func)
        generated = [o.parameter for o in _options(only)]
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
