"""The work directory's batch files: written atomically, part by part, retired batches reused
in place, read back by offset and by rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from geoseg.errors import OutputError
from geoseg.io.workdir import (
    BATCH_HEADER_BYTES,
    SPARE_PATTERN,
    TileBatchFile,
    batch_path,
    read_tile_batch,
    recycle_tile_batch,
    remove_work_dir,
    tile_batch_writer,
    write_tile_batch,
)


def _batch(rng: np.random.Generator, tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bands = rng.random(tiles * 3 * 100, dtype=np.float32)
    solo = rng.integers(0, 255, tiles * 64, dtype=np.uint8)
    valid = rng.random((tiles, 13, 13)) > 0.2  # 13: not a whole number of bytes
    return bands, solo, valid


def _file_size(bands: np.ndarray, solo: np.ndarray, valid: np.ndarray) -> int:
    tiles, tile = valid.shape[0], valid.shape[-1]
    return BATCH_HEADER_BYTES + bands.nbytes + solo.nbytes + tiles * tile * ((tile + 7) // 8)


def test_a_retired_batch_file_is_rewritten_in_place_and_truncated(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    first = batch_path(tmp_path, 0)
    write_tile_batch(first, *_batch(rng, 8))
    inode = first.stat().st_ino
    recycle_tile_batch(first)
    assert not first.exists()
    assert len(list(tmp_path.glob(SPARE_PATTERN))) == 1
    # a smaller batch (the scene's last) goes into the spare: same file, cut to size
    bands, solo, valid = _batch(rng, 3)
    second = batch_path(tmp_path, 1)
    write_tile_batch(second, bands, solo, valid)
    assert second.stat().st_ino == inode
    assert second.stat().st_size == _file_size(bands, solo, valid)
    assert list(tmp_path.glob(SPARE_PATTERN)) == []
    stored, stored_solo, stored_valid = read_tile_batch(second, 13)
    assert np.array_equal(stored, bands) and np.array_equal(stored_solo, solo)
    assert np.array_equal(stored_valid, valid)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["batch_0000001.batch"]


def test_without_a_spare_a_new_file_is_written(tmp_path: Path, rng: np.random.Generator) -> None:
    bands, solo, valid = _batch(rng, 2)
    path = batch_path(tmp_path, 5)
    write_tile_batch(path, bands, solo, valid)
    assert np.array_equal(read_tile_batch(path, 13)[0], bands)
    recycle_tile_batch(batch_path(tmp_path, 6))  # never written: nothing happens
    assert len(list(tmp_path.glob(SPARE_PATTERN))) == 0


def test_each_spare_is_claimed_once(tmp_path: Path, rng: np.random.Generator) -> None:
    for number in range(2):
        write_tile_batch(batch_path(tmp_path, number), *_batch(rng, 4))
        recycle_tile_batch(batch_path(tmp_path, number))
    inodes = {path.stat().st_ino for path in tmp_path.glob(SPARE_PATTERN)}
    for number in range(2, 5):
        write_tile_batch(batch_path(tmp_path, number), *_batch(rng, 4))
    used = {batch_path(tmp_path, number).stat().st_ino for number in range(2, 5)}
    assert inodes < used  # both spares reused, one batch in a new file
    assert list(tmp_path.glob(SPARE_PATTERN)) == []


def test_a_damaged_or_foreign_batch_file_is_refused_naming_the_work_dir(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    path = batch_path(tmp_path, 0)
    bands, solo, valid = _batch(rng, 2)
    write_tile_batch(path, bands, solo, valid)
    with pytest.raises(OutputError, match="delete its work folder"):
        read_tile_batch(path, 16)  # written with 13 px tiles
    with path.open("r+b") as handle:  # cut short, as by a full disk
        handle.truncate(path.stat().st_size - 10)
    with pytest.raises(OutputError, match=str(tmp_path)):
        read_tile_batch(path, 13)
    path.write_bytes(b"")
    with pytest.raises(OutputError, match="missing or damaged"):
        read_tile_batch(path, 13)
    path.write_bytes(b"\x93NUMPY" + bytes(100))  # an old .npy intermediate
    with pytest.raises(OutputError, match="not a batch file"):
        read_tile_batch(path, 13)
    with pytest.raises(OutputError, match="missing or damaged"):
        read_tile_batch(batch_path(tmp_path, 1), 13)


def test_a_batch_written_part_by_part_is_the_file_written_whole(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    bands, solo, valid = _batch(rng, 3)
    whole, parts = batch_path(tmp_path, 0), batch_path(tmp_path, 1)
    write_tile_batch(whole, bands, solo, valid)
    with tile_batch_writer(parts, bands.size, solo.size, 3, 13) as writer:
        for start in (600, 0, 300):  # tile by tile, in any order
            writer.write_bands(start, bands[start : start + 300])
            writer.write_solo(start // 300 * 64, solo[start // 300 * 64 : start // 300 * 64 + 64])
        writer.write_valid(valid)
    assert parts.read_bytes() == whole.read_bytes()


def test_a_failed_writer_leaves_no_batch_and_no_partial_file(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    bands, solo, _ = _batch(rng, 2)
    path = batch_path(tmp_path, 0)
    with (
        pytest.raises(ValueError, match="model failed"),
        tile_batch_writer(path, bands.size, solo.size, 2, 13) as writer,
    ):
        writer.write_bands(0, bands)
        raise ValueError("model failed")
    assert list(tmp_path.iterdir()) == []


def test_parts_of_a_batch_file_are_read_by_offset_and_by_rows(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    bands, solo, valid = _batch(rng, 3)
    path = batch_path(tmp_path, 0)
    write_tile_batch(path, bands, solo, valid)
    with TileBatchFile(path, 13) as batch:
        assert (batch.band_values, batch.solo_values, batch.tiles) == (900, 192, 3)
        some_bands = np.empty(57, dtype=np.float32)
        batch.read_bands(411, some_bands)
        assert np.array_equal(some_bands, bands[411:468])
        some_solo = np.empty((2, 5), dtype=np.uint8)
        batch.read_solo(100, some_solo)
        assert np.array_equal(some_solo.ravel(), solo[100:110])
        assert np.array_equal(batch.read_valid(2, slice(4, 11)), valid[2, 4:11])
        assert batch.read_valid(1, slice(5, 5)).shape == (0, 13)
        path.write_bytes(path.read_bytes()[:200])  # replaced by a short file meanwhile
        with pytest.raises(OutputError, match="file ends early"):
            batch.read_solo(0, np.empty(100, dtype=np.uint8))


def test_a_task_writing_while_the_work_folder_is_removed_finds_it_gone(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    work_dir = tmp_path / ".geoseg-work-abc"
    work_dir.mkdir()
    write_tile_batch(batch_path(work_dir, 0), *_batch(rng, 2))
    real_rmtree = shutil.rmtree
    late: list[BaseException] = []

    def rmtree_with_a_late_task(path: Path, ignore_errors: bool = False) -> None:
        try:  # a cancelled task still running writes its batch meanwhile
            write_tile_batch(batch_path(work_dir, 9), *_batch(rng, 2))
        except OutputError as error:
            late.append(error)
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(shutil, "rmtree", rmtree_with_a_late_task)
    remove_work_dir(work_dir)
    assert len(late) == 1  # it found no folder to write into
    assert list(tmp_path.iterdir()) == []
    remove_work_dir(work_dir)  # gone already: nothing to do
