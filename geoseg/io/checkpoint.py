"""Model directories on disk: ``card.json`` plus weights in safetensors.

Loading verifies the weights' SHA-256 against the card and never unpickles
anything: safetensors holds plain tensors only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from geoseg.config import format_validation_error
from geoseg.errors import ChecksumError, ModelError
from geoseg.io.atomic import atomic_path
from geoseg.io.checksums import sha256_file
from geoseg.models.card import CARD_FILENAME, WEIGHTS_FILENAME, ModelCard

if TYPE_CHECKING:  # torch is imported where weights are read or written, not with the card
    import torch


def read_card(directory: str | Path) -> ModelCard:
    """Read and validate ``card.json`` of a model directory."""
    path = Path(directory) / CARD_FILENAME
    if not path.exists():
        raise ModelError(f"{directory}: not a model directory (no {CARD_FILENAME})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelError(f"{path}: not valid JSON ({error})") from None
    try:
        return ModelCard.model_validate(data)
    except ValidationError as error:
        raise ModelError(format_validation_error(str(path), error)) from None


def read_weights(directory: str | Path, card: ModelCard) -> dict[str, torch.Tensor]:
    """Load the weights of a model directory after checking their SHA-256."""
    path = Path(directory) / card.weights_file
    if not path.exists():
        raise ModelError(f"{path}: weights file missing")
    actual = sha256_file(path)
    if actual != card.weights_sha256:
        raise ChecksumError(
            f"{path}: SHA-256 {actual} does not match the card's weights_sha256 "
            f"{card.weights_sha256}; the weights were modified or belong to another card"
        )
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as error:
        message = f"{path}: not a valid safetensors file ({error}); restore the model directory"
    raise ModelError(message)  # outside the handler: no chain to pickle back from a worker


def write_model_dir(
    directory: str | Path, state_dict: dict[str, torch.Tensor], card: ModelCard
) -> ModelCard:
    """Write weights and card into ``directory``; return the card with the weights' hash.

    The ``weights_sha256`` of ``card`` is replaced by the hash of the written
    file. Floating-point tensors are stored as ``card.weights_dtype`` (integer
    buffers such as batch-norm counters keep their type). Both files are
    written atomically.
    """
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    storage = getattr(torch, card.weights_dtype)
    tensors = {
        name: (tensor.to(storage) if tensor.is_floating_point() else tensor)
        .detach()
        .cpu()
        .contiguous()
        for name, tensor in state_dict.items()
    }
    weights = directory / WEIGHTS_FILENAME
    with atomic_path(weights) as temporary:
        save_file(tensors, str(temporary))
    final = card.model_copy(
        update={"weights_sha256": sha256_file(weights), "weights_file": WEIGHTS_FILENAME}
    )
    final = ModelCard.model_validate(final.model_dump())
    with atomic_path(directory / CARD_FILENAME) as temporary:
        temporary.write_text(final.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return final
