"""One way to resolve every command's settings: defaults < config file < ``AXION_*`` < flags.

A command's settings are a pydantic model, either flat (``prepare``, ``evaluate``,
``infer``, ...) or grouped in sections (``train``: data, model, training, ...). Every
field name is unique within a command, so it doubles as the flag (``lora_rank`` ->
``--lora-rank``) and the environment variable (``AXION_LORA_RANK``). A config file may
be flat or grouped, and may hold settings of other commands (one ``run.yaml`` for the
whole pipeline); a name that no command knows is refused as a typo.

This module imports no torch, so ``--help`` stays fast.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from axion.config.base import PROVENANCE_KEY, flat_fields, sections
from axion.errors import ConfigError

ENV_PREFIX = "AXION_"
M = TypeVar("M", bound=BaseModel)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML, TOML or JSON config file into a (possibly grouped) dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in {".yaml", ".yml", ".json"}:
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: config file must be .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # the parsers raise many types; all mean "unreadable"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: cannot parse config file: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config file must hold a mapping of settings")
    return data


def flatten(data: Mapping[str, Any], source: str, known: Iterable[str], section_names: Iterable[str]) -> dict:
    """Accept grouped (``{training: {lr: ..}}``) or flat (``{lr: ..}``) settings; refuse unknown names."""
    section_names = set(section_names)
    flat: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key).replace("-", "_")
        if key == PROVENANCE_KEY:
            continue
        if key in section_names and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                flat[str(sub).replace("-", "_")] = sub_value
        else:
            flat[key] = value
    known = set(known)
    unknown = sorted(k for k in flat if k not in known)
    if unknown:
        raise ConfigError(f"{source}: unknown setting {unknown[0]!r}")
    return flat


def env_settings(names: Iterable[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from ``AXION_<FIELD>`` environment variables, for the given field names."""
    return {
        name: environ[ENV_PREFIX + name.upper()] for name in names if ENV_PREFIX + name.upper() in environ
    }


def flag_of(field: str) -> str:
    """``lora_rank`` -> ``--lora-rank``."""
    return "--" + field.replace("_", "-")


def format_validation_error(exc: ValidationError, names: Iterable[str]) -> str:
    """One line: the field (its flag and variable), the value and the rule it broke."""
    names = set(names)
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    field = next((p for p in reversed(loc) if p in names), loc[-1] if loc else "?")
    where = f"{flag_of(field)}, {ENV_PREFIX}{field.upper()}"
    if err["type"] == "missing":
        return f"missing required setting {field} ({where})"
    value = err.get("input")
    rule = err["msg"].removeprefix("Value error, ")
    return f"invalid {field} ({where}) = {value!r}: {rule}"


def given_settings(
    model: type[BaseModel],
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    known: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The settings a user gave (file < environment < flags), flat and not yet validated.

    What :func:`resolve_config` merges over the defaults and the base; useful on its own to
    look at one setting (``--resume``) before the others can be validated.

    Raises:
        ConfigError: an unreadable config file, a setting no command knows, or a flag this
            model does not have.
    """
    from axion.config.registry import ALL_SETTINGS, SECTION_NAMES

    environ = os.environ if environ is None else environ
    fields = flat_fields(model)
    unknown_flags = sorted(set(flags or {}) - set(fields))
    if unknown_flags:
        raise ConfigError(f"unknown setting {unknown_flags[0]!r}")
    merged: dict[str, Any] = {}
    if config_file is not None:
        known = set(ALL_SETTINGS if known is None else known) | set(fields)
        groups = SECTION_NAMES | set(sections(model))
        from_file = flatten(read_config_file(config_file), str(config_file), known, groups)
        merged.update({k: v for k, v in from_file.items() if k in fields})
    merged.update(env_settings(fields, environ))
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    return merged


def resolve_config(
    model: type[M],
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
    known: Iterable[str] | None = None,
) -> M:
    """Merge defaults < base < file < environment < flags and validate.

    Args:
        model: the settings model to build.
        config_file: optional YAML/TOML/JSON file (flat or grouped).
        environ: environment mapping (default ``os.environ``).
        flags: settings given explicitly on the command line (None values are ignored).
        base: settings under all others (a resumed checkpoint's configuration).
        known: every setting name a config file may hold without being a typo (default: the
            settings of all commands, see :data:`axion.config.registry.ALL_SETTINGS`).

    Raises:
        ConfigError: one-line message naming the field, value and rule.
    """
    fields = flat_fields(model)
    groups = sections(model)
    merged: dict[str, Any] = {}
    if base is not None:
        merged.update(flatten(base, "checkpoint configuration", fields, groups))
    merged.update(given_settings(model, config_file=config_file, environ=environ, flags=flags, known=known))
    if groups:
        payload: dict[str, Any] = {section: {} for section in groups}
        for key, value in merged.items():
            payload[fields[key]][key] = value  # type: ignore[index]
    else:
        payload = merged
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, fields)) from None


def settings_yaml(settings: BaseModel) -> str:
    """The resolved settings as YAML (paths as strings), for ``--print-config``."""
    import yaml

    return yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False)
