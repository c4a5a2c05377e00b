"""The resumable work directory of a prediction run.

It holds what each batch keeps of its tiles (one ``.batch`` file: weighted bands
and solo results, see :mod:`geoseg.predict.stitching`; written a tile at a time and
read back by positioned reads of only the rows a chunk needs, so neither task
holds a whole batch in memory), the chunk GeoTIFFs and one small
JSON summary per finished chunk. Every file is written atomically; a chunk is
finished exactly when its summary exists. Nothing here is fsynced (an fsync
stalls the writing worker): a killed run resumes safely, but after a machine
crash the work directory must be deleted.

A batch file whose last chunk is done is not deleted but kept as a *spare*
(:func:`recycle_tile_batch`), and the next batch is written into a spare in
place. Creating a new file of tens of MB costs the kernel page allocation and, on
ext4, frequent stalls of 150 ms of system CPU; rewriting a file whose pages
are cached does not (measured on this machine, 64 MB batches written every
0.3 s: 52 ms mean per batch into new files, 14 ms into recycled ones).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoseg.errors import OutputError, WorkFolderBusyError, from_os_error
from geoseg.grid import PixelWindow
from geoseg.io.atomic import atomic_path


@dataclass(frozen=True)
class ChunkSummary:
    """What a finished chunk reports back (small: no pixels)."""

    window: PixelWindow
    valid_pixels: int
    class_pixels: dict[int, int]


def batch_path(work_dir: Path, batch_number: int) -> Path:
    """File of the weighted outputs of batch ``batch_number``."""
    return work_dir / f"batch_{batch_number:07d}.batch"


def chunk_path(work_dir: Path, window: PixelWindow, kind: str) -> Path:
    """File of one output chunk (``kind`` is ``labels``, ``probabilities`` or ``summary``)."""
    suffix = ".json" if kind == "summary" else ".tif"
    return work_dir / f"{kind}_r{window.row:07d}_c{window.col:07d}{suffix}"


def overview_chunk_path(work_dir: Path, window: PixelWindow, kind: str, factor: int) -> Path:
    """File of a chunk's share of the overview at ``factor`` of output ``kind``."""
    return chunk_path(work_dir, window, f"{kind}_x{factor}")


SPARE_PATTERN = "spare_*.batch"

BATCH_MAGIC = b"GEOSEG-BATCH-1\n\0"
"""First bytes of a batch file; the header then holds four little-endian uint64."""

BATCH_HEADER_BYTES = 64
"""Header size: magic, then band values, solo values, tiles, tile side (zero-padded)."""


def _claim_spare(directory: Path, claimed: Path) -> bool:
    """Move any spare batch file of ``directory`` to ``claimed``; False when none is left.

    The rename is atomic, so two workers never claim the same spare.
    """
    for spare in directory.glob(SPARE_PATTERN):
        try:
            os.rename(spare, claimed)
        except FileNotFoundError:  # another worker took it first
            continue
        return True
    return False


def _batch_header(band_values: int, solo_values: int, tiles: int, tile: int) -> bytes:
    counts = np.array([band_values, solo_values, tiles, tile], dtype="<u8").tobytes()
    return (BATCH_MAGIC + counts).ljust(BATCH_HEADER_BYTES, b"\0")


@dataclass(frozen=True)
class _BatchLayout:
    """Byte offsets of a batch file's solo results and validity, and its size."""

    solo_start: int
    valid_start: int
    size: int

    @classmethod
    def of(cls, band_values: int, solo_values: int, tiles: int, tile: int) -> _BatchLayout:
        solo_start = BATCH_HEADER_BYTES + 4 * band_values
        valid_start = solo_start + solo_values
        return cls(solo_start, valid_start, valid_start + tiles * tile * ((tile + 7) // 8))


class TileBatchWriter:
    """Positioned writes into a batch file being written (see :func:`tile_batch_writer`)."""

    def __init__(self, handle: Any, layout: _BatchLayout) -> None:
        self._fd: int = handle.fileno()
        self._layout = layout

    def _write(self, array: NDArray[Any], offset: int) -> None:
        if array.nbytes == 0:
            return
        data = np.ascontiguousarray(array).data.cast("B")
        while data:
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written

    def write_bands(self, start: int, values: NDArray[np.float32]) -> None:
        """Write float32 ``values`` at value ``start`` of the flat bands."""
        self._write(values.astype(np.float32, copy=False), BATCH_HEADER_BYTES + 4 * start)

    def write_solo(self, start: int, values: NDArray[np.uint8]) -> None:
        """Write uint8 ``values`` at value ``start`` of the flat solo results."""
        self._write(values, self._layout.solo_start + start)

    def write_valid(self, valid: NDArray[np.bool_]) -> None:
        """Write the validity of every tile pixel ``(tiles, tile, tile)``, 8 pixels a byte."""
        self._write(np.packbits(valid, axis=-1), self._layout.valid_start)


@contextlib.contextmanager
def tile_batch_writer(
    path: Path, band_values: int, solo_values: int, tiles: int, tile: int
) -> Iterator[TileBatchWriter]:
    """Write what a forward task keeps of a batch to one file, part by part.

    The file holds a 64-byte header, the tiles' weighted bands (flat float32,
    ``band_values`` long), their solo labels and quantized probabilities (flat
    uint8, ``solo_values`` long) and the validity of their pixels
    (``(tiles, tile, tile)``, packed 8 pixels a byte); the caller writes every
    part (a tile at a time, so no whole batch is held in memory). It is written
    into a spare file in place when one is left (:func:`recycle_tile_batch`),
    then renamed to ``path`` when the block ends without error: a batch exists
    exactly when ``path`` does. One file rather than one per array: creating
    the small files cost more than writing the bands (measured 12-21 ms per
    batch of eight 512 px tiles against 3 ms). Not fsynced (short-lived
    intermediates; syncing tens of MB per batch costs more than the
    bookkeeping around a forward pass): a killed process never leaves a
    partial file; after a machine crash, delete the work directory.
    """
    header = _batch_header(band_values, solo_values, tiles, tile)
    layout = _BatchLayout.of(band_values, solo_values, tiles, tile)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        mode = "r+b" if _claim_spare(path.parent, temporary) else "wb"
        with open(temporary, mode, buffering=0) as handle:
            handle.write(header)
            yield TileBatchWriter(handle, layout)
            handle.truncate(layout.size)
        os.replace(temporary, path)
    except OSError as error:
        failure = from_os_error(error, path)
    else:
        return
    finally:
        temporary.unlink(missing_ok=True)
    raise failure  # outside the handler: no chain to pickle back to the client


def write_tile_batch(
    path: Path, bands: NDArray[np.float32], solo: NDArray[np.uint8], valid: NDArray[np.bool_]
) -> None:
    """Write a whole batch held in memory (see :func:`tile_batch_writer`)."""
    with tile_batch_writer(path, bands.size, solo.size, valid.shape[0], valid.shape[-1]) as writer:
        writer.write_bands(0, bands)
        writer.write_solo(0, solo)
        writer.write_valid(valid)


class TileBatchFile:
    """A batch file open for reading parts of it (positioned reads, nothing mapped).

    Use as a context manager; ``tile`` is the tile size the batch must have
    been written with.

    Raises
    ------
    OutputError
        The file is missing, damaged or from another tile size; the message
        names the work directory.
    """

    def __init__(self, path: Path, tile: int) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError as error:
            raise self._damaged(str(error)) from None
        try:
            header = os.pread(self._fd, BATCH_HEADER_BYTES, 0)
            size = os.fstat(self._fd).st_size
        except OSError as error:
            self.close()
            raise self._damaged(str(error)) from None
        if len(header) < BATCH_HEADER_BYTES or not header.startswith(BATCH_MAGIC):
            self.close()
            raise self._damaged("not a batch file")
        counts = np.frombuffer(header, dtype="<u8", count=4, offset=len(BATCH_MAGIC))
        band_values, solo_values, tiles, stored_tile = (int(value) for value in counts)
        self.row_bytes = (stored_tile + 7) // 8
        self._layout = _BatchLayout.of(band_values, solo_values, tiles, stored_tile)
        if stored_tile != tile or size != self._layout.size:
            self.close()
            raise self._damaged(f"{size} bytes, tile {stored_tile}; expected tile {tile}")
        self.band_values = band_values
        self.solo_values = solo_values
        self.tiles = tiles
        self.tile = tile

    def _damaged(self, reason: str) -> OutputError:
        return OutputError(
            f"{self.path}: intermediate tile outputs are missing or damaged ({reason}); once "
            f"this run has ended, delete its work folder {self.path.parent} and run again"
        )

    def __enter__(self) -> TileBatchFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (again: nothing)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _read_into(self, out: NDArray[Any], offset: int) -> None:
        if out.nbytes == 0:
            return
        data = out.data.cast("B")
        while data:
            try:
                read = os.preadv(self._fd, [data], offset)
            except OSError as error:
                raise self._damaged(str(error)) from None
            if read == 0:
                raise self._damaged("file ends early")
            data, offset = data[read:], offset + read

    def read_bands(self, start: int, out: NDArray[np.float32]) -> None:
        """Fill the contiguous ``out`` from value ``start`` of the flat bands on."""
        self._read_into(out, BATCH_HEADER_BYTES + 4 * start)

    def read_solo(self, start: int, out: NDArray[np.uint8]) -> None:
        """Fill the contiguous ``out`` from value ``start`` of the flat solo results on."""
        self._read_into(out, self._layout.solo_start + start)

    def read_valid(self, position: int, rows: slice) -> NDArray[np.bool_]:
        """Validity of rows ``rows`` (a step-1 slice) of the batch's tile at ``position``."""
        first, stop, _ = rows.indices(self.tile)
        packed = np.empty((max(0, stop - first), self.row_bytes), dtype=np.uint8)
        offset = self._layout.valid_start + (position * self.tile + first) * self.row_bytes
        self._read_into(packed, offset)
        valid: NDArray[np.bool_] = np.unpackbits(packed, axis=-1, count=self.tile).view(bool)
        return valid


def read_tile_batch(
    path: Path, tile: int
) -> tuple[NDArray[np.float32], NDArray[np.uint8], NDArray[np.bool_]]:
    """Read a whole batch written by :func:`tile_batch_writer`: bands, solo, validity.

    ``tile`` is the tile size the batch must have been written with.

    Raises
    ------
    OutputError
        The file is missing, damaged or from another tile size; the message
        names the work directory.
    """
    with TileBatchFile(path, tile) as batch:
        bands = np.empty(batch.band_values, dtype=np.float32)
        solo = np.empty(batch.solo_values, dtype=np.uint8)
        batch.read_bands(0, bands)
        batch.read_solo(0, solo)
        valid = np.empty((batch.tiles, tile, tile), dtype=bool)
        for position in range(batch.tiles):
            valid[position] = batch.read_valid(position, slice(0, tile))
    return bands, solo, valid


def recycle_tile_batch(path: Path) -> None:
    """Retire a batch no chunk needs any more: its file becomes a spare.

    The next :func:`write_tile_batch` in the same work directory writes into a
    spare in place instead of creating a file. Spares go with the work
    directory (:func:`remove_work_dir`).
    """
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, path.with_name(f"spare_{uuid.uuid4().hex}.batch"))


def write_summary(path: Path, summary: ChunkSummary) -> None:
    """Write a chunk summary atomically (not fsynced: see :func:`write_tile_batch`)."""
    data: dict[str, Any] = asdict(summary)
    data["class_pixels"] = {str(key): value for key, value in summary.class_pixels.items()}
    try:
        with atomic_path(path, sync=False) as temporary:
            temporary.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    except OSError as error:
        failure = from_os_error(error, path)
    else:
        return
    raise failure


def read_summary(path: Path) -> ChunkSummary | None:
    """A chunk summary, or None when the chunk is not finished (no or unreadable file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return ChunkSummary(
        window=PixelWindow(**data["window"]),
        valid_pixels=int(data["valid_pixels"]),
        class_pixels={int(key): int(value) for key, value in data["class_pixels"].items()},
    )


LOCK_NAME = ".lock"
"""The work directory's lock file; the run holding its ``flock`` owns the directory."""


@contextlib.contextmanager
def locked_work_dir(work_dir: Path) -> Iterator[None]:
    """Create ``work_dir`` if needed and hold its exclusive lock for the block.

    The lock is an OS file lock (``flock``) on ``work_dir/.lock``, released
    when the block ends or the process dies, however it dies. A directory
    removed by its holder while another process was opening its lock file is
    created again (the inode check below), so two runs never share one.

    Raises
    ------
    WorkFolderBusyError
        Another process holds the lock; the message names it (by process id).
    """
    while True:
        work_dir.mkdir(parents=True, exist_ok=True)
        lock = work_dir / LOCK_NAME
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(descriptor)
            raise WorkFolderBusyError(
                f"{work_dir}: another geoseg run (process {holder}) is using this work folder; "
                "wait for it to end, or write to another output"
            ) from None
        try:
            same = os.fstat(descriptor).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(descriptor)  # locked a file its holder had just removed: start over
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(descriptor)


def finished_chunks(work_dir: Path) -> int:
    """How many chunks of ``work_dir`` are finished (have their summary)."""
    return sum(1 for _ in work_dir.glob("summary_*.json"))


def folder_bytes(work_dir: Path) -> int:
    """Bytes of the files in ``work_dir`` (0 when it is gone)."""
    return sum(path.stat().st_size for path in work_dir.glob("*") if path.is_file())


def prepare_work_dir(work_dir: Path, description: dict[str, Any]) -> None:
    """Create the work directory and record what it is for (``run.json``)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    record = work_dir / "run.json"
    if not record.exists():
        with atomic_path(record) as temporary:
            temporary.write_text(json.dumps(description, indent=2, sort_keys=True), "utf-8")


def remove_work_dir(work_dir: Path) -> None:
    """Delete the work directory and everything in it.

    It is first renamed out of the way: after a failure, tasks of the run
    still running on the cluster (cancelling a running Dask task lets it run
    to its end) write by its old path and find it gone, instead of putting new
    files into it while it is being deleted (which left the directory behind
    with their batch files).
    """
    doomed = work_dir.with_name(f"{work_dir.name}.removed-{uuid.uuid4().hex}")
    try:
        os.rename(work_dir, doomed)
    except FileNotFoundError:
        return
    except OSError:  # e.g. not allowed to rename here: delete in place
        doomed = work_dir
    shutil.rmtree(doomed, ignore_errors=True)
