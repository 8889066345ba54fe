"""Filesystem facts every writer and reader shares (leaf module: standard library only).

What a path is, said in words for error messages, and the permissions a finished output gets:
temporary files are created 0600, the file that replaces the output must get what ``open()``
would have given it under the user's umask.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any


def path_kind(path: str | os.PathLike) -> str:
    """``"a regular file"``, ``"a directory"``, ``"a FIFO (named pipe)"``, ... (symlinks followed)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return "a broken symlink" if p.is_symlink() else "missing"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def set_default_permissions(path: Path) -> None:
    """mkstemp makes 0600 files; give the finished file the permissions open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def open_video(path: str) -> tuple[Any, Any]:
    """``(container, first video stream)`` of a video file via PyAV; ValueError naming the path
    when it cannot be opened or holds no video.  The caller closes the container (``with``)."""
    import av  # imported here: only video readers need it

    try:
        container = av.open(path)
    except av.error.FFmpegError as exc:
        raise ValueError(f"cannot open {path!r} as a video: {exc}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path!r} has no video stream")
    return container, container.streams.video[0]
