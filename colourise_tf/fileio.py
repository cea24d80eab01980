"""Paths of run, export and evaluation directories, and atomic file writes.

Run, export and evaluation directories may be local paths or URIs of any file system
TensorFlow knows (``gs://bucket/run``, ``s3://``, ``hdfs://``, TensorFlow's in-memory
``ram://``); ``file:///tmp/run`` means the local ``/tmp/run``. Code that reads or
writes them joins paths with :func:`join` (never ``pathlib``, which folds ``gs://b``
into ``gs:/b``) and touches them through ``tf.io.gfile`` or the helpers here.

Every file the package writes for a user (colourised images, configs, evaluation
tables, TFLite models, TF Serving's ``models.config``) goes through
:func:`atomic_writer`, so a destination is either absent, the old file or the complete
new one, also when the process is killed mid-write, and a failed write leaves no
temporary file behind. Locally that is a temporary file in the destination folder,
fsynced, then ``os.replace``; on another file system a temporary object written with
``tf.io.gfile`` and renamed over the destination (on object stores such as GCS a
rename is a copy, so readers see the old or the new object, never a partial one).
This module imports nothing from the package.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
from collections.abc import Iterator
from typing import IO

__all__ = [
    "atomic_writer",
    "atomic_write_bytes",
    "atomic_write_text",
    "describe_os_error",
    "is_remote",
    "normalize",
    "local_path_or_uri",
    "join",
    "parent",
    "basename",
    "makedirs",
    "exists",
    "isdir",
    "read_bytes",
    "read_text",
    "remove",
    "rmtree",
    "listdir",
]


def _gfile():
    import tensorflow as tf  # only where a remote path needs it

    return tf.io.gfile


def normalize(path: str | os.PathLike) -> str:
    """``path`` as a string; ``file://`` URIs become the local path they name."""
    path = os.fspath(path)
    if path.startswith("file://"):
        path = path[len("file://") :]
        if path.startswith("localhost/"):  # file://localhost/x names /x too
            path = path[len("localhost") :]
        return path or "/"
    return path


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URI of a file system other than the local one (``gs://``, ``ram://``...)."""
    return "://" in normalize(path)


def local_path_or_uri(path: str | os.PathLike):
    """A local path (``file://`` URIs included) as a :class:`pathlib.Path`, any other
    URI as its string (``pathlib`` would fold ``gs://b`` into ``gs:/b``)."""
    from pathlib import Path

    path = normalize(path)
    return path if is_remote(path) else Path(path)


def join(path: str | os.PathLike, *parts: str) -> str:
    """Joins path components; URIs with ``/``, local paths as the OS does."""
    path = normalize(path)
    return posixpath.join(path, *parts) if is_remote(path) else os.path.join(path, *parts)


def parent(path: str | os.PathLike) -> str:
    """The folder that holds ``path``."""
    path = normalize(path).rstrip("/") or "/"
    if is_remote(path):
        scheme, _, rest = path.partition("://")
        return f"{scheme}://{posixpath.dirname(rest)}" if "/" in rest else path  # a bucket is its own parent
    return os.path.dirname(os.path.abspath(path))


def basename(path: str | os.PathLike) -> str:
    """The last component of ``path``."""
    return posixpath.basename(normalize(path).rstrip("/"))


def makedirs(path: str | os.PathLike) -> None:
    """Creates ``path`` and its parents (no error if it exists)."""
    path = normalize(path)
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def exists(path: str | os.PathLike) -> bool:
    path = normalize(path)
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str | os.PathLike) -> bool:
    path = normalize(path)
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def listdir(path: str | os.PathLike) -> list[str]:
    path = normalize(path)
    return [n.rstrip("/") for n in _gfile().listdir(path)] if is_remote(path) else os.listdir(path)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The content of ``path`` (local or remote)."""
    path = normalize(path)
    if is_remote(path):
        with _gfile().GFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def remove(path: str | os.PathLike) -> None:
    """Deletes the file ``path``."""
    path = normalize(path)
    if is_remote(path):
        _gfile().remove(path)
    else:
        os.unlink(path)


def rmtree(path: str | os.PathLike) -> None:
    """Deletes the folder ``path`` with everything in it (no error if it is gone)."""
    path = normalize(path)
    if is_remote(path):
        if _gfile().exists(path):
            _gfile().rmtree(path)
    else:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


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
    path = normalize(path)
    if is_remote(path):
        with _remote_atomic_writer(path, mode, encoding) as f:
            yield f
        return
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


@contextlib.contextmanager
def _remote_atomic_writer(path: str, mode: str, encoding: str | None) -> Iterator[IO]:
    """:func:`atomic_writer` on a non-local file system, through ``tf.io.gfile``."""
    import io

    gfile = _gfile()
    tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.{secrets.token_hex(4)}.tmp")
    buffer = io.BytesIO()
    if mode == "w":
        text = io.TextIOWrapper(buffer, encoding=encoding or "utf-8", write_through=True)
        yield text
        text.flush()
        text.detach()
    else:
        yield buffer
    try:
        with gfile.GFile(tmp, "wb") as f:
            f.write(buffer.getvalue())
        gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        with contextlib.suppress(Exception):
            if gfile.exists(tmp):
                gfile.remove(tmp)
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
