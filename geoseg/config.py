"""Base class for validated configuration models.

All configs in geoseg (training configs, job specs, model cards) derive from
:class:`StrictModel`: unknown keys are rejected and values are immutable once
validated. Runtime objects (torch modules, Dask clients) are built from configs
by factories elsewhere, never by the configs themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from geoseg.errors import ConfigError

ModelT = TypeVar("ModelT", bound="StrictModel")


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(source: str, error: ValidationError) -> str:
    """Render a pydantic error as one line per problem, prefixed by its source.

    Parameters
    ----------
    source
        The file or option the values came from.
    error
        The pydantic validation error.

    Returns
    -------
    str
        A readable multi-line message.
    """
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  - {location}: {item['msg']}")
    return "\n".join(lines)


def validate_mapping(model: type[ModelT], data: Any, source: str) -> ModelT:
    """Validate a mapping against ``model``, raising :class:`ConfigError`.

    Parameters
    ----------
    model
        The config class.
    data
        Parsed YAML/JSON content.
    source
        Where the content came from, for the error message.

    Returns
    -------
    ModelT
        The validated config.
    """
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {kind}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(source, error)) from None


def load_yaml_config(model: type[ModelT], path: str | Path) -> ModelT:
    """Read a YAML (or JSON) file and validate it against ``model``.

    Parameters
    ----------
    model
        The config class.
    path
        The YAML or JSON file.

    Returns
    -------
    ModelT
        The validated config.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    return validate_mapping(model, data, str(path))
