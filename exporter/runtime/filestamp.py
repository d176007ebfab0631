"""Has the config file changed? Its identity as the filesystem sees it, polled once per tick."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileStamp:
    """Identity of the config file's content as the filesystem sees it (follows symlinks)."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: str) -> FileStamp | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)
