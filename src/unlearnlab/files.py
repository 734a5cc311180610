"""Writing a result file whole or not at all.

`write_atomic(path, text)` writes a temp file beside PATH, flushes it to disk and renames it over
PATH in one step: a reader (or a rerun) finds the previous complete file or the new complete file,
never half of one. A full disk or a kill mid-write leaves the previous file as it was and no temp
file behind; the refusal is a one-line StoreWriteError-like ConfigError naming the file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from unlearnlab.errors import ConfigError


class ResultWriteError(ConfigError):
    """The disk refused a result file (full, read-only, no permission); any previous file is intact."""


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    tmp = None
    try:
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask's usual permissions
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise ResultWriteError(
            f"could not write {path} ({err.strerror or err}); "
            f"{'the previous file is unchanged' if path.exists() else 'nothing was written'}: "
            f"free space or fix permissions there, then rerun (finished cells are in the store)"
        ) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path
