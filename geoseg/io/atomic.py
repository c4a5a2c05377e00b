"""Atomic file outputs: write beside the target, then rename over it.

A crash or an exception while writing leaves the previous file (if any)
untouched and no partial file at the final path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from geoseg.errors import DISK_FULL_ERRNOS, DiskFullError, OutputError, from_os_error


def _check_parent(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        raise OutputError(f"{path}: the output directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: the output directory {parent} is not writable")


def _default_file_mode() -> int:
    """``0o666`` less the process umask (what ``open(path, "w")`` would give)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(
    path: str | Path, *, copy_existing: bool = False, sync: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` on success.

    Parameters
    ----------
    path
        The final output path.
    copy_existing
        Start the temporary file as a copy of the existing ``path`` (for
        updating one layer of a GeoPackage while keeping the others).
    sync
        fsync the file before the rename, so it survives a machine crash too.
        Intermediates of a work directory skip it (a killed process still
        never leaves a partial file; after a machine crash the work directory
        is deleted): an fsync stalls the writing worker for milliseconds.

    Yields
    ------
    Path
        Where to write. On a clean exit it replaces ``path`` atomically; on an
        exception it is deleted and ``path`` is left as it was.
    """
    final = Path(path)
    _check_parent(final)
    descriptor, name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=f".partial{final.suffix}", dir=final.parent
    )
    os.close(descriptor)
    temporary = Path(name)
    try:
        if copy_existing and final.exists():
            shutil.copy2(final, temporary)
        else:
            temporary.unlink()
        yield temporary
        if not temporary.exists():
            raise OutputError(f"{final}: nothing was written")
        if sync:
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the output the permissions of a normal new file
        os.chmod(temporary, _default_file_mode())
        os.replace(temporary, final)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        if isinstance(error, Exception) and not isinstance(error, DiskFullError):
            if _out_of_space(error, final.parent):
                raise DiskFullError(
                    f"{final}: no space left on device in {final.parent} "
                    f"({_free_mib(final.parent)} MiB free); free some space or choose a folder "
                    "on another file system (nothing was written there)"
                ) from None
            if isinstance(error, OSError) and error.errno is not None:
                raise from_os_error(error, final) from None
        raise


LOW_SPACE_BYTES = 4 * 2**20
"""Below this much free space, a failed write is taken to have filled the disk."""
_FULL_MESSAGES = ("no space left on device", "database or disk is full")


def _free_mib(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free // 2**20
    except OSError:
        return -1


def _out_of_space(error: Exception, folder: Path) -> bool:
    """Whether ``error``, raised while writing into ``folder``, came from a full file system.

    Libraries report a full disk in their own words (GDAL "No space left on
    device", SQLite "database or disk is full", or a later "cannot rollback"
    that hides the first error), so the folder's free space decides too.
    """
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    text = str(error).lower()
    if any(message in text for message in _FULL_MESSAGES):
        return True
    try:
        return shutil.disk_usage(folder).free < LOW_SPACE_BYTES
    except OSError:
        return False
