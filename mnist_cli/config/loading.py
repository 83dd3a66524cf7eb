"""Loading a config: defaults <- the YAML file <- each `--set dotted.key=value` <- the
dedicated flags (`--epochs`, `--batch-size`, ...), later wins; then validation against the
schema, whose first problem becomes one `ConfigError` line naming the key. Only
`yaml.safe_load` is ever used: a config cannot run code.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mnist_cli.config.schema import Config, Initializer, plain_types
from mnist_cli.errors import ConfigError

_UNION_TAGS = {"size", "layer", "str", "Initializer"}


def _format_location(location: tuple) -> str:
    """('model', 'layers', 1, 'layer', 'units') -> 'model.layers[1].units'."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part not in _UNION_TAGS:
            name = str(part)
            if not name.isprintable():  # a key with a newline must not break the one line
                name = repr(name)
            text += f".{name}" if text else name
    return text


def valid_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key the schema knows, sections included (`train`, `train.epochs`)."""
    keys = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        for kind in plain_types(field.annotation):
            if isinstance(kind, type) and issubclass(kind, BaseModel) and kind is not Initializer:
                keys.extend(valid_keys(kind, f"{dotted}."))
    return keys


def _unknown_key_message(location: str) -> str:
    """'unknown key; did you mean train.learning_rate?', as click does for a command."""
    parent = location.rpartition(".")[0]
    siblings = [key for key in valid_keys() if key.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(location, siblings, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]}?"
    return "unknown key (docs/configuration.md lists every key)"


def _readable_message(detail: dict, location: str) -> str:
    kind = detail["type"]
    message = detail["msg"]
    if kind == "extra_forbidden":
        return _unknown_key_message(location)
    if kind == "literal_error":
        return f"must be one of {detail.get('ctx', {}).get('expected', '')}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"must be a mapping of keys, not a {type(detail.get('input')).__name__}"
    if kind == "missing":
        return "is required"
    if message.startswith("Value error, "):
        return message[len("Value error, "):]
    if message.startswith("Input should be"):
        return "must be" + message[len("Input should be"):]
    return message


def first_problem_location(error: ValidationError) -> str:
    """The dotted key of the first problem, `model.layers[1].units` ('' for the whole)."""
    return _format_location(error.errors()[0]["loc"])


def describe_validation_error(error: ValidationError) -> str:
    """Every problem of a pydantic error as `key: message (got value)`, joined on one line,
    so that a config is fixed in one pass rather than one problem per try."""
    return "; ".join(_describe_problem(problem) for problem in error.errors())


def _describe_problem(problem: Any) -> str:
    location = _format_location(problem["loc"])
    message = _readable_message(problem, location)
    got = problem.get("input")
    show_input = problem["type"] not in {"extra_forbidden", "missing"} and isinstance(
        got, (str, int, float, bool)
    )
    suffix = f" (got {got!r})" if show_input else ""
    return f"{location}: {message}{suffix}" if location else f"{message}{suffix}"


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a config file as a mapping, with errors that name the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a YAML config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: YAML syntax error: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the config file is empty: write at least `name: my-run`")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the config must be a mapping of keys (name, data, model, train, ...), "
            f"not a {type(data).__name__}"
        )
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.epochs=5` -> (['train', 'epochs'], 5); the value is parsed as YAML."""
    key, separator, raw_value = text.partition("=")
    key = key.strip()
    if not separator:  # `--set train.epochs 5`, as other tools take it
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE as one word: write "
                          f"--set {key}=VALUE, for example --set train.epochs=5")
    if not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, for example --set train.epochs=5")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML") from None
    parts = key.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"--set {text!r}: the key has an empty part")
    return parts, value


def apply_override(data: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set `value` at the dotted key `parts` of `data`, making missing sections; a number
    after a list's key is a position in it (`model.layers.1=300`: the first hidden layer)."""
    target: Any = data
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        if isinstance(target, list):
            index = _list_index(target, part, parts)
            if last:
                target[index] = value
                return
            target = target[index]
            continue
        if not isinstance(target, dict):
            raise ConfigError(f"--set {'.'.join(parts)}: {parts[position - 1]} is not a section")
        if last:
            target[part] = value
            return
        child = target.get(part)
        if child is None:
            child = {}
            target[part] = child
        if not isinstance(child, (dict, list)):
            raise ConfigError(f"--set {'.'.join(parts)}: {part} is not a section")
        target = child


def _list_index(items: list, part: str, parts: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(
            f"--set {'.'.join(parts)}: {part!r} is not a position in a list of {len(items)} "
            f"items (0 to {len(items) - 1})"
        )
    return int(part)


def build_config(data: dict[str, Any], source: str = "config",
                 origins: dict[str, str] | None = None) -> Config:
    """Validate `data`; a problem is reported as coming from `source` (the file), or from
    the command-line option that set that key (`origins`: dotted key -> option text)."""
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        where = _origin(first_problem_location(error), origins or {}) or source
        raise ConfigError(f"{where}: {describe_validation_error(error)}") from None


def _origin(location: str, origins: dict[str, str]) -> str | None:
    """The option that set `location` or the section holding it (the longest match)."""
    for key in sorted(origins, key=len, reverse=True):
        if location == key or location.startswith((key + ".", key + "[")):
            return origins[key]
    return None


def load_config(
    path: str | Path | None,
    overrides: list[str] = (),
    flags: dict[str, Any] | None = None,
    flag_names: dict[str, str] | None = None,
) -> Config:
    """Defaults <- YAML file <- `--set` overrides <- flags (dotted keys -> values, None =
    unset). `flag_names` names the option of each flag (`train.epochs` -> `--epochs`), so
    that a bad value is reported as coming from the command line."""
    data = read_yaml_mapping(path) if path is not None else {}
    source = str(path) if path is not None else "config"
    origins: dict[str, str] = {}
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(data, parts, value)
        origins[".".join(parts)] = f"--set {text}"
    for dotted, value in (flags or {}).items():
        if value is not None:
            apply_override(data, dotted.split("."), value)
            origins[dotted] = (flag_names or {}).get(dotted, f"--set {dotted}")
    return build_config(data, source, origins)
