"""Atomic file writes, shared by every stage that writes artefacts.

A reader (another process, a compiler, ``dlopen``, ``import``) must never see a half-written
file. Each write goes to a temporary file in the *same* directory (so the final
``os.replace`` is a rename within one filesystem, atomic on POSIX), is flushed and fsynced,
and only then replaces the target. Replacing also gives the target a new inode, so a process
that still has the old file open or memory-mapped (a loaded shared library) keeps reading
the old, intact bytes instead of faulting on a file truncated under it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: Prefix of in-flight temporary files; readers of a directory must skip names with it.
TEMP_PREFIX = ".tmp-"


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        # Leave no partial temp file behind, then re-raise the original error.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, mode: int = 0o644) -> Path:
    """Write ``text`` as UTF-8 with ``\\n`` newlines (no platform translation), atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode)
