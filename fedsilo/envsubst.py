"""Environment variable interpolation in silo and coordinator configs: ``${NAME}``.

Secrets (a database password, a whole database URL) stay out of config files: a string value
may hold ``${NAME}``, replaced by the variable's value when the config is read. When ``NAME`` is
not set but ``NAME_FILE`` is, the file's contents (one trailing newline dropped) are used: the
convention of docker secrets mounted under ``/run/secrets``. ``$${`` writes a literal ``${``.

Only string *values* are expanded, after TOML parsing, so a value cannot inject TOML. A missing
variable is one line naming it, the file and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedsilo.errors import ConfigError

__all__ = ["expand_env"]

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _lookup(name: str, env: Mapping[str, str], where: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: '${{{name}}}' is not a valid environment variable name")
    if name in env:
        return env[name]
    file = env.get(f"{name}_FILE")
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(
                f"{where}: cannot read {name}_FILE={file} for '${{{name}}}' ({err})"
            ) from None
        return text[:-1] if text.endswith("\n") else text
    raise ConfigError(f"{where}: environment variable '{name}' is not set (nor {name}_FILE)")


def _expand_str(value: str, env: Mapping[str, str], where: str) -> str:
    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        return _lookup(match.group(1), env, where)

    return _REF.sub(sub, value)


def _expand(value: Any, env: Mapping[str, str], label: str, key: str) -> Any:
    if isinstance(value, str):
        return _expand_str(value, env, f"{label}: '{key}'") if "${" in value else value
    if isinstance(value, dict):
        return {k: _expand(v, env, label, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, label, key) for v in value]
    return value


def expand_env(
    raw: dict[str, Any], label: str, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``raw`` (a parsed TOML document) with ``${NAME}`` replaced in every string value.

    ``label`` (the file's name) prefixes every error; ``env`` defaults to ``os.environ``.
    """
    expanded: dict[str, Any] = _expand(raw, os.environ if env is None else env, label, "")
    return expanded
