"""SHA-256 checksums of files, and verification against a ``SHA256SUMS`` list."""

from __future__ import annotations

import hashlib
from pathlib import Path

from geoseg.errors import ChecksumError

_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def read_sha256sums(path: str | Path) -> dict[str, str]:
    """Parse a ``sha256sum``-style list into ``{relative path: hex digest}``."""
    sums: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        sums[name.strip().lstrip("*").removeprefix("./")] = digest.lower()
    return sums


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` hashes to ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"{path}: SHA-256 is {actual}, expected {expected}; the file is corrupt or was "
            "replaced: restore the original file"
        )
