"""Exception types for bad input and for a disk that refuses writes, so the CLI can print one
line instead of a traceback; and `safe_name`, the one check for config values that become paths."""

from __future__ import annotations

import os
import re
from typing import Any


class ConfigError(ValueError):
    """Bad user input; the message is one line that names the fix."""


_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
MAX_NAME = 200


def safe_name(value: Any, what: str) -> str:
    """VALUE as one path component (a folder or file name), or ConfigError naming WHAT to fix.

    Refused, not rewritten, so two different names never land in one folder: empty names,
    `.`/`..`, path separators (`/`, `\\`), control characters, and names over 200 characters.
    Anything else (spaces, brackets, `=`, unicode) is a legal file name and kept as it is.
    Use it wherever a config value is joined to a path: store folders, logger run names,
    sweep audit labels.
    """
    text = str(value)
    why = None
    if text in ("", ".", ".."):
        why = "is empty" if not text else f"is {text!r}"
    elif _UNSAFE.search(text):
        why = "contains '/', '\\' or a control character"
    elif len(text) > MAX_NAME:
        why = f"is {len(text)} characters long (at most {MAX_NAME})"
    if why is not None:
        raise ConfigError(
            f"{what}={text!r} becomes a folder name but {why}; use letters, digits, '_', '-' and '.' "
            f"(e.g. {what}=my_{what.rsplit('.', 1)[-1]})"
        )
    return text


NAME_MAX = 255  # bytes in one path component on Linux and macOS file systems (and NTFS characters)


def check_path_length(path: Any, what: str) -> None:
    """Refuse, in one line, a path with a component the file system cannot hold (the OS would
    say ENAMETOOLONG at the first mkdir or open, as a traceback)."""
    for part in str(path).split(os.sep):
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise ConfigError(f"{what}: the path component {part[:30]}… is {size} bytes long, and file systems allow "
                              f"{NAME_MAX}; use a shorter name")
