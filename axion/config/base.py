"""The base of every settings model, and how a model's fields are named on the command line."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

#: Key of the record of versions and run identity in files that also hold settings (config.json);
#: resolving settings from such a file skips it.
PROVENANCE_KEY = "provenance"


class Settings(BaseModel):
    """Base of every settings model: unknown fields are refused, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def sections(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The sections of a grouped model (name -> section model); empty for a flat one."""
    found = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found[name] = annotation
    return found


def flat_fields(model: type[BaseModel]) -> dict[str, str | None]:
    """Every setting of a model by its flat name, with the section it lives in (None: flat)."""
    groups = sections(model)
    if not groups:
        return {name: None for name in model.model_fields}
    return {field: section for section, sub in groups.items() for field in sub.model_fields}


def field_help(section: type[BaseModel], name: str) -> str:
    """The description of a settings field, for ``--help``."""
    return section.model_fields[name].description or ""


def field_required(section: type[BaseModel], name: str) -> bool:
    """Whether a settings field has no default."""
    return section.model_fields[name].is_required()


def field_default(section: type[BaseModel], name: str) -> Any:
    """The default of a settings field, for ``--help`` (None for a required field)."""
    info = section.model_fields[name]
    return None if info.is_required() else info.get_default(call_default_factory=True)
