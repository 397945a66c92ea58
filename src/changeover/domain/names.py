"""The one rule for model names, checked at every edge (CLI, API, registry): a letter or digit,
then letters, digits, ``.``, ``_`` or ``-``, 128 characters at most. No ``/``, no ``..`` alone,
nothing empty: a name is safe in a URL path and in a folder name under the home."""

from __future__ import annotations

import re

from changeover.errors import InvalidRequest

__all__ = ["NAME_RULE", "check_name"]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
NAME_RULE = ("a letter or digit, then letters, digits, '.', '_' or '-' (at most 128 characters; "
             "no '/', no spaces)")


def check_name(name: str, field: str = "name") -> str:
    """``name`` when it follows the rule; InvalidRequest (422) naming ``field`` and the rule."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidRequest(field, f"{name!r} is not a model name: a name is {NAME_RULE}")
    return name
