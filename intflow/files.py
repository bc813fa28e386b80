"""Writing output files atomically: a reader (or a crash) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .compiler.errors import ModelError


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename:
    the file appears whole or not at all. A ModelError naming the file when that fails."""
    p = Path(path)
    if p.is_dir():
        raise ModelError("is a directory; give a file name", file=str(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=p.absolute().parent, prefix=f".{p.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; reports are for sharing
        os.replace(tmp, p)
    except OSError as e:
        raise ModelError(f"cannot write it: {e.strerror or e}", file=str(path)) from None
