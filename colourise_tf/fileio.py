"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

Every file the package writes for a user (colourised images, configs, evaluation
tables, TFLite models, TF Serving's ``models.config``) goes through
:func:`atomic_writer`, so a destination is either absent, the old file or the complete
new one, also when the process is killed mid-write, and a failed write leaves no
temporary file behind. This module imports nothing from the package.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import IO

__all__ = ["atomic_writer", "atomic_write_bytes", "atomic_write_text", "describe_os_error"]


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """Yields a file to write ``path``'s new content to; replaces ``path`` on success.

    The temporary file ``.<name>.<random>.tmp`` sits in ``path``'s folder (same file
    system, so the rename is atomic), gets the permissions of any new file (0666 minus
    the umask) and is flushed and fsynced before the rename. On an exception it is
    removed and the exception propagates; an ``OSError`` of the final rename names
    ``path`` rather than the temporary file.

    Args:
        path: destination; its folder must exist.
        mode: ``"wb"`` or ``"w"``.
        encoding: for text mode (default UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_writer: mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask pick the permissions, as for any new file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        text = mode == "w"
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if text else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, path) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def describe_os_error(err: OSError) -> str:
    """``"<file>: <reason>"`` for a command-line message (``"<reason>"`` without a file)."""
    reason = err.strerror or str(err) or type(err).__name__
    return f"{err.filename}: {reason}" if err.filename else reason


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (:func:`atomic_writer`)."""
    with atomic_writer(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Writes ``text`` to ``path`` atomically (:func:`atomic_writer`)."""
    with atomic_writer(path, "w", encoding=encoding) as f:
        f.write(text)
