"""Resolving a model by shipped name, alias or directory, and building it with its weights.

A shipped model is found by its folder name under :data:`SHIPPED_DIR` or by
an alias its card lists (``aliases``, e.g. a former name kept when a model is
renamed): :func:`resolve_model_dir` takes any of them; :func:`model_name`
tells the name asked for from the canonical one, which runs record, and
:func:`alias_notice` is the one line saying what an alias resolves to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geoseg.errors import ModelError
from geoseg.io.checkpoint import read_card, read_weights
from geoseg.models.card import CARD_FILENAME, ModelCard
from geoseg.models.registry import architecture_task, build_model

if TYPE_CHECKING:
    from torch import nn

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
"""Folder of the default models shipped inside the package, one sub-folder each."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in evaluation mode on the CPU, with its card and where it came from."""

    module: nn.Module
    card: ModelCard
    directory: Path


def shipped_models() -> list[str]:
    """Names of the models shipped with geoseg."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / CARD_FILENAME).exists())


def shipped_aliases() -> dict[str, str]:
    """``{alias: shipped model name}`` from the shipped cards' ``aliases``.

    Raises
    ------
    ModelError
        Two shipped models claim the same alias, or an alias is a shipped
        model's own name.
    """
    names = shipped_models()
    table: dict[str, str] = {}
    for name in names:
        for alias in read_card(SHIPPED_DIR / name).aliases:
            if alias in table or alias in names:
                other = table.get(alias, alias)
                raise ModelError(
                    f"{SHIPPED_DIR / name / CARD_FILENAME}: alias {alias!r} is also "
                    f"{'an alias of' if alias in table else 'the name of'} shipped model "
                    f"{other!r}; remove it from one of the cards"
                )
            table[alias] = name
    return table


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A model directory from a shipped model name, one of its aliases, or a path.

    Raises
    ------
    ModelError
        Neither a shipped name, an alias nor a model directory; lists the shipped names.
    """
    candidate = Path(name_or_path)
    if (candidate / CARD_FILENAME).exists():
        return candidate
    shipped = SHIPPED_DIR / str(name_or_path)
    if (shipped / CARD_FILENAME).exists():
        return shipped
    target = shipped_aliases().get(str(name_or_path))
    if target is not None:
        return SHIPPED_DIR / target
    names = ", ".join(shipped_models()) or "(none shipped)"
    raise ModelError(
        f"{name_or_path!r} is neither a shipped model nor a model directory with {CARD_FILENAME}; "
        f"shipped models: {names}"
    )


@dataclass(frozen=True)
class ModelName:
    """The name a model was asked for and the name it has (its card's)."""

    requested: str
    canonical: str
    alias: bool
    """Whether ``requested`` is an alias of the shipped model ``canonical``."""


def model_name(name_or_path: str | Path, card: ModelCard) -> ModelName:
    """How ``name_or_path`` (resolved to ``card``) is named: asked for, canonical, alias or not.

    A directory is named by its card; a shipped name is itself; an alias is
    asked for by the alias and named by its card (pure, besides checking
    whether ``name_or_path`` is a directory).
    """
    requested = str(name_or_path)
    if (Path(name_or_path) / CARD_FILENAME).exists():
        return ModelName(requested, card.name, alias=False)
    alias = requested in card.aliases and not (SHIPPED_DIR / requested / CARD_FILENAME).exists()
    return ModelName(requested, card.name if alias else requested, alias=alias)


def alias_notice(name: ModelName) -> str:
    """One line saying what an alias resolves to; empty when ``name`` is not an alias."""
    if not name.alias:
        return ""
    return f"model {name.requested!r} is an alias: it resolves to {name.canonical!r}"


def build_from_card(card: ModelCard) -> nn.Module:
    """An untrained module with the architecture the card describes.

    Raises
    ------
    ModelError
        The card's task is not its architecture's task.
    """
    task = architecture_task(card.architecture)
    if task != card.task:
        raise ModelError(
            f"model {card.name!r}: architecture {card.architecture} is a {task} model but the "
            f"card says task {card.task!r}; set task to {task!r}"
        )
    return build_model(
        card.architecture,
        encoder=card.encoder,
        in_channels=len(card.bands),
        num_classes=card.num_classes,
        options=card.architecture_options,
    )


def load_model(name_or_path: str | Path) -> LoadedModel:
    """Load a model (shipped name or directory): verified weights, eval mode, on CPU."""
    directory = resolve_model_dir(name_or_path)
    card = read_card(directory)
    module = build_from_card(card)
    state = read_weights(directory, card)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"{directory}: weights do not fit {card.architecture}/{card.encoder}: "
            f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
        )
    module.eval()
    return LoadedModel(module=module, card=card, directory=directory)


@dataclass(frozen=True)
class Model:
    """A model chosen by name or directory: its card, without loading the weights.

    :func:`geoseg.segment` accepts it wherever a model name is accepted; the
    card says which bands the model reads (``card.band_names``), its classes
    and its tiling.
    """

    name: str
    directory: Path
    card: ModelCard

    def __repr__(self) -> str:
        """Name, bands and classes, as a notebook shows them."""
        classes = ", ".join(f"{spec.id}={spec.name}" for spec in self.card.classes)
        return (
            f"Model({self.name!r}, bands={self.card.band_names}, classes=[{classes}], "
            f"tile={self.card.tile_size}, overlap={self.card.overlap})"
        )


def open_model(name_or_path: str | Path) -> Model:
    """A shipped model (by name) or a model directory, with its card read and checked.

    Parameters
    ----------
    name_or_path
        A shipped model name (``geoseg models`` lists them, e.g.
        ``"forest"``) or a directory holding ``card.json``.

    Returns
    -------
    Model
        The model's name, directory and card; the weights are loaded (and
        checked against the card's SHA-256) when it first runs.

    Raises
    ------
    ModelError
        Neither a shipped name nor a model directory; lists the shipped names.
    """
    directory = resolve_model_dir(name_or_path).resolve()
    card = read_card(directory)
    return Model(name=card.name, directory=directory, card=card)
