"""Reading a config: the YAML file, `${VAR}` interpolation, `SHIPPER_*` variables, flags.

Precedence, lowest first: built-in defaults, the YAML file (after `${VAR}` interpolation),
`SHIPPER_<SECTION>_<KEY>` environment variables, command line flags. Whatever is wrong
becomes one ConfigError naming the dotted key and the problem (exit code 2), never a
pydantic traceback, and never a secret echoed back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from shipper.config.schema import Config, KeyProblem
from shipper.config.views import is_secret_key, short_repr
from shipper.errors import ConfigError

ENV_PREFIX = "SHIPPER_"
# SHIPPER_* variables that are not config keys: the config file's path, the image's
# HEALTHCHECK URL (Dockerfile), and the test suite's own settings.
ENV_NOT_KEYS = frozenset({"SHIPPER_CONFIG", "SHIPPER_HEALTHCHECK_URL", "SHIPPER_NATIVE"})
ENV_IGNORED_PREFIXES = ("SHIPPER_TEST_",)
# Another name for a key: (alias, the key). `docker.start_at` is the name issue 20 gave
# `start_at`, which applies to every source (Docker, CRI) and so lives at the top level. An
# alias is folded into its key within each layer (file, environment, flags), so the usual
# precedence holds between layers; the two given differently in one layer is an error.
ALIASES = {"docker.start_at": "start_at"}
_MISSING = object()
_INTERPOLATION = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\})")
_NULL_WORDS = frozenset({"", "null", "none"})


def load_config(
    path: str | Path | None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Reads and validates the config; raises ConfigError naming the key and the problem.

    `environ` (default: the process environment) feeds `${VAR}` interpolation in the file
    and the `SHIPPER_<SECTION>_<KEY>` overrides; `overrides` (dotted keys, from command line
    flags) win over both.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        raw = interpolate(_read_yaml(Path(path)), env)
        for key, alias in fold_aliases(raw, "the config file").items():
            sources[key] = alias
    from_environment: dict[str, str] = {}
    for variable, (dotted, value) in env_overrides(env).items():
        dotted = ALIASES.get(dotted, dotted)
        other = from_environment.get(dotted)
        if other is not None and _get_dotted(raw, dotted) != value:
            raise ConfigError(
                variable, f"differs from {other}: they set the same key ({dotted}), give one"
            )
        _set_dotted(raw, dotted, value)
        sources[dotted] = from_environment[dotted] = variable
    for dotted, value in (overrides or {}).items():
        dotted = ALIASES.get(dotted, dotted)
        _set_dotted(raw, dotted, value)
        sources.pop(dotted, None)
    return parse_config(raw, sources)


def fold_aliases(raw: dict[str, Any], where: str) -> dict[str, str]:
    """Moves each alias's value to its key (in place); ConfigError if both differ. Returns
    key -> alias of the keys given by their alias, for error messages."""
    folded: dict[str, str] = {}
    for alias, key in ALIASES.items():
        value = _pop_dotted(raw, alias)
        if value is _MISSING or value is None:
            continue  # absent, or null: not given
        existing = _get_dotted(raw, key)
        if existing is not _MISSING and existing != value:
            raise ConfigError(
                alias,
                f"{short_repr(value)} differs from {key} {short_repr(existing)} in {where}: "
                "they are the same setting, give one of them",
            )
        _set_dotted(raw, key, value)
        folded[key] = alias
    return folded


def parse_config(raw: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> Config:
    """Validates raw config data; `sources` maps dotted keys to the variable that set them."""
    if any(_get_dotted(raw, alias) is not _MISSING for alias in ALIASES):
        raw = _copy_tree(raw)
        sources = {**(sources or {}), **fold_aliases(raw, "the config")}
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        problem = first["msg"]
        error = (first.get("ctx") or {}).get("error")
        if isinstance(error, KeyProblem):
            loc.append(error.key)
            problem = error.problem
        elif first["type"] == "value_error" and isinstance(error, ValueError):
            problem = str(error)  # our own sentence, without pydantic's "Value error, "
        key = ".".join(loc) or "(top level)"
        if first["type"] == "extra_forbidden":
            problem = "unknown key"
        elif (
            "input" in first
            and first["type"] != "missing"
            and not is_secret_key(key)
            # A mapping (a model-level check failed) may hold secrets: never echo one.
            and not isinstance(first["input"], Mapping)
        ):
            problem = f"{problem} (got {short_repr(first['input'])})"
        for dotted, variable in (sources or {}).items():
            if key == dotted or key.startswith(dotted + "."):
                if variable in ALIASES:
                    problem += f" (given as {variable})"
                else:
                    problem += f" (set by the environment variable {variable})"
                break
        raise ConfigError(key, problem) from None


def env_variables() -> dict[str, tuple[str, Any]]:
    """Every `SHIPPER_*` override: variable -> (dotted key, the field's annotation).

    Derived from the models, so a new key gets its variable without a table to maintain.
    Keys holding rules or mappings (lists of objects, `processing.fields`) have none.
    """
    table: dict[str, tuple[str, Any]] = {}

    def walk(model: type[BaseModel], prefix: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            path = (*prefix, name)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, path)
            elif _env_kind(annotation) is not None:
                table[ENV_PREFIX + "_".join(path).upper()] = (".".join(path), annotation)

    walk(Config, ())
    return table


def env_overrides(environ: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """`SHIPPER_*` variables present in `environ`: variable -> (dotted key, parsed value).

    Values are parsed by the field's type: lists are comma-separated, `""`/`null`/`none`
    give null where null is allowed; numbers, booleans and enums stay strings for the
    schema to validate (it accepts `true`/`false`/`1`/`0`/`yes`/`no`). An unknown
    `SHIPPER_*` name is a ConfigError naming it, like an unknown key in the file.
    """
    table = env_variables()
    result: dict[str, tuple[str, Any]] = {}
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in ENV_NOT_KEYS:
            continue
        if variable.startswith(ENV_IGNORED_PREFIXES):
            continue
        entry = table.get(variable)
        if entry is None:
            raise ConfigError(variable, "unknown environment variable (no such config key)")
        dotted, annotation = entry
        result[variable] = (dotted, _parse_env_value(environ[variable], annotation))
    return result


def _env_kind(annotation: Any) -> str | None:
    """'list', 'scalar' or None (not settable from one environment variable)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin is list:
        return "list" if args and _env_kind(args[0]) == "scalar" else None
    if origin is Literal or annotation in (str, int, float, bool):
        return "scalar"
    if origin in (Union, UnionType) and len(args) == 1:
        return _env_kind(args[0])
    return None


def _parse_env_value(text: str, annotation: Any) -> Any:
    nullable = type(None) in get_args(annotation)
    if nullable and text.strip().lower() in _NULL_WORDS:
        return None
    args = [a for a in get_args(annotation) if a is not type(None)]
    inner = args[0] if get_origin(annotation) in (Union, UnionType) and args else annotation
    if get_origin(inner) is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def interpolate(data: Any, environ: Mapping[str, str], key: str = "") -> Any:
    """Replaces `${VAR}`, `${VAR:-default}` (unset or empty) and `${VAR-default}` (unset)
    in every string value; `$$` is a literal `$`. A variable that is not set and has no
    default is a ConfigError naming the key."""
    if isinstance(data, dict):
        return {
            k: interpolate(v, environ, f"{key}.{k}" if key else str(k)) for k, v in data.items()
        }
    if isinstance(data, list):
        return [interpolate(v, environ, f"{key}.{i}") for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def substitute(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2), match.group(3)
        if name is None:
            return "$"
        value = environ.get(name)
        if operator == ":-" and not value:
            return str(default)
        if operator == "-" and value is None:
            return str(default)
        if value is None:
            raise ConfigError(
                key or "(top level)",
                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)",
            )
        return value

    result = _INTERPOLATION.sub(substitute, data)
    leftover = _INTERPOLATION.sub("", data)
    if "${" in leftover:
        raise ConfigError(key or "(top level)", "unterminated or invalid ${...} reference")
    return result


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("--config", f"file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("--config", f"{path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("(top level)", "the config file must hold a mapping of keys")
    return data


def _get_dotted(raw: Mapping[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _pop_dotted(raw: dict[str, Any], dotted: str) -> Any:
    *parents, leaf = dotted.split(".")
    node: Any = raw
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node:
        return _MISSING
    return node.pop(leaf)


def _copy_tree(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy_tree(v) if isinstance(v, Mapping) else v for k, v in raw.items()}


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(dotted, f"{part} is not a mapping")
        node = child
    node[leaf] = value
