"""Exporting a model to ONNX, quantizing it to int8, and checking both against PyTorch.

- :func:`onnx_bytes`: the card's PyTorch module as a serialized ONNX graph
  (input ``inputs`` ``(batch, bands, height, width)`` float32, output
  ``logits``; batch, height and width dynamic), in memory. The TorchScript
  exporter (``torch.onnx.export(dynamo=False)``) is tried first: it takes 1-3 s
  for the shipped U-Nets where the ``torch.export`` one takes 10-20 s; SegNet's
  max-unpooling indices do not trace there, so it falls back to
  ``torch.export`` (``dynamo=True``, height and width multiples of 32).
- :func:`quantize_int8`: static QDQ quantization with ONNX Runtime
  (per-channel int8 weights, uint8 activations, MinMax ranges from
  calibration tiles). Dynamic quantization (``ConvInteger``) was measured 6x
  slower than fp32 on the shipped U-Net; static QDQ 1.5x faster.
- :func:`scene_agreement`: the share of a scene's valid tile pixels labelled
  alike by a candidate and by PyTorch fp32, through the prediction's own
  tiling and scaling (:func:`geoseg.predict.plan.make_plan`).
- :func:`export_model`: ``geoseg models export``, checked and written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from geoseg.errors import ModelError, OutputError
from geoseg.io.atomic import atomic_path
from geoseg.io.checkpoint import read_card
from geoseg.models.card import CARD_FILENAME, ExportRecord
from geoseg.models.loading import load_model, resolve_model_dir
from geoseg.predict.engines import INT8_AGREEMENT
from geoseg.predict.onnx_runtime import INPUT_NAME, OUTPUT_NAME, make_session, session_probabilities

OPSET = 17
"""ONNX opset of the TorchScript exporter's graphs."""
DYNAMO_OPSET = 18
"""ONNX opset of the ``torch.export`` exporter's graphs (its lowest)."""
EXPORT_AGREEMENT = 0.999
"""Least label agreement with PyTorch fp32 on the check scene for an export to be written."""
EXPORT_FILENAME = "model.onnx"

Probabilities = Callable[[NDArray[np.float32]], NDArray[np.float32]]
"""A batch ``(n, bands, h, w)`` of scaled inputs to class probabilities ``(n, classes, h, w)``."""


def onnx_bytes(module: nn.Module, bands: int, tile: int = 64) -> bytes:
    """``module`` (evaluation mode, on the CPU) exported to ONNX, serialized.

    Parameters
    ----------
    module
        A semantic segmentation module mapping ``(n, bands, h, w)`` to logits.
    bands
        Input bands.
    tile
        Side of the example input the graph is traced with (a multiple of 32).

    Raises
    ------
    ModelError
        Neither exporter can export the module.
    """
    module = module.to("cpu").to(memory_format=torch.contiguous_format).eval()
    example = torch.zeros(1, bands, tile, tile)
    try:
        return _torchscript_export(module, example)
    except Exception as first:  # the TorchScript exporter fails with many error types
        try:
            return _dynamo_export(module, example)
        except Exception as error:
            raise ModelError(
                f"cannot export {type(module).__name__} to ONNX: {str(first).splitlines()[0]}; "
                f"torch.export: {str(error).splitlines()[0]}"
            ) from None


def _torchscript_export(module: nn.Module, example: torch.Tensor) -> bytes:
    """The TorchScript exporter (deprecated in torch 2.9, still the fast one)."""
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # its own deprecation, and tracer warnings about shapes it records as constants
        # (the graph is checked against PyTorch before it is used or written)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object works; the stub names paths only
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
        )
    return buffer.getvalue()


def _dynamo_export(module: nn.Module, example: torch.Tensor) -> bytes:
    """The ``torch.export`` exporter, batch and height/width (multiples of 32) dynamic."""
    from torch.export import Dim

    shapes = (
        {
            0: Dim("batch", min=1, max=4096),
            2: 32 * Dim("rows", min=1, max=512),
            3: 32 * Dim("cols", min=1, max=512),
        },
    )
    quiet = logging.getLogger("onnxscript")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                opset_version=DYNAMO_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=shapes,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
    if program is None:
        raise ModelError("torch.export produced no ONNX program")
    data: bytes = program.model_proto.SerializeToString()
    return data


def graph_opset(model: bytes) -> int:
    """The default-domain opset of a serialized ONNX graph."""
    import onnx

    proto = onnx.load_from_string(model)
    return next(
        int(entry.version) for entry in proto.opset_import if entry.domain in ("", "ai.onnx")
    )


FLOAT_OUTPUT_CONVS = 2
"""Convolutions at the output that :func:`quantize_int8` keeps in float (and the first one)."""

QUANTIZATION = (
    "ONNX Runtime static QDQ: per-channel int8 weights, uint8 activations, MinMax ranges from "
    "16 tiles of the training windows; the first and the last two convolutions in float"
)
"""How :func:`quantize_int8` quantizes, as the card records it."""


def quantize_int8(model: bytes, calibration: Iterable[NDArray[np.float32]]) -> bytes:
    """Static QDQ int8 quantization of a serialized fp32 ONNX graph.

    Weights per channel in int8, activations in uint8, with MinMax ranges
    from ``calibration`` (scaled input tiles ``(bands, h, w)``, fed one at a
    time); the graph is shape-inferred and optimized first (ONNX Runtime's
    ``quant_pre_process``). The first convolution and the last
    :data:`FLOAT_OUTPUT_CONVS` stay in float: on the shipped landcover U-Net
    every convolution in int8 labelled 98.5% of the validation pixels as fp32
    does, the first and last two in float 99.56% (the first and last only:
    99.44%), at 0.7x fp32's time per tile. The same inputs give the same bytes.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Tiles(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.tiles = iter(calibration)

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            tile = next(self.tiles, None)
            return None if tile is None else {INPUT_NAME: tile[None].astype(np.float32)}

    with tempfile.TemporaryDirectory(prefix="geoseg-quantize-") as folder:
        source, prepared, output = (Path(folder) / n for n in ("in.onnx", "pre.onnx", "q.onnx"))
        source.write_bytes(model)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        convs = [
            node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"
        ]
        float_convs = convs[:1] + convs[-FLOAT_OUTPUT_CONVS:] if len(convs) > 3 else convs
        quantize_static(
            str(prepared),
            str(output),
            Tiles(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=float_convs,
        )
        return output.read_bytes()


def onnx_candidate(model: bytes, threads: int = 1) -> Probabilities:
    """A CPU ONNX Runtime session over ``model`` as a :data:`Probabilities` function."""
    session = make_session(model, "cpu", threads)
    return lambda inputs: session_probabilities(session, inputs, "cpu")


def torch_reference(name_or_dir: str | Path) -> Probabilities:
    """The model's PyTorch fp32 forward on the CPU (as ``geoseg predict`` runs it)."""
    from geoseg.predict.inference import forward_probabilities

    loaded = load_model(name_or_dir)
    loaded.module.to(memory_format=torch.channels_last)
    return lambda inputs: forward_probabilities(loaded, inputs, "cpu", "fp32")


def scene_agreement(
    scene: Path, model: str | Path, candidate: Probabilities, *, bands: dict[str, int] | None = None
) -> tuple[float, int]:
    """Share of the valid tile pixels of ``scene`` labelled alike by ``candidate`` and PyTorch fp32.

    The scene is cut into the card's tiles and scaled exactly as ``geoseg
    predict`` does; every valid pixel of every tile counts (pixels in the
    overlap of two tiles count twice).

    Returns
    -------
    tuple[float, int]
        The agreement and the number of pixels (``(1.0, 0)`` without valid pixels).
    """
    from geoseg.predict.forward import batch_inputs
    from geoseg.predict.inference import DeviceSupport
    from geoseg.predict.placement import InferencePlacement
    from geoseg.predict.plan import make_plan
    from geoseg.predict.settings import InferenceSettings
    from geoseg.predict.sources import FileSource

    source = FileSource.open(scene, band_map=bands)
    placement = InferencePlacement("cpu", DeviceSupport(cuda=False), precision="fp32")
    settings = InferenceSettings(batch_size=4, allow_pixel_size_mismatch=True)
    with tempfile.TemporaryDirectory(prefix="geoseg-export-") as root:
        plan = make_plan(
            source, model, settings, placement, work_root=Path(root), write_probabilities=False
        )
    reference = torch_reference(model)
    agreeing = counted = 0
    for indexes in plan.batches:
        inputs, valid = batch_inputs(plan, indexes)
        keep = valid.any(axis=(1, 2))
        if not keep.any():
            continue
        inputs, valid = inputs[keep], valid[keep]
        expected = reference(inputs).argmax(axis=1)
        found = candidate(inputs).argmax(axis=1)
        agreeing += int(np.count_nonzero((expected == found) & valid))
        counted += int(np.count_nonzero(valid))
    return (agreeing / counted if counted else 1.0), counted


def export_model(
    model: str | Path,
    out: Path,
    scene: Path,
    *,
    format: Literal["onnx"] = "onnx",
    precision: Literal["fp32", "int8"] = "fp32",
    bands: dict[str, int] | None = None,
) -> ExportRecord:
    """Export ``model`` into the folder ``out``: ``model.onnx`` and ``card.json``.

    The graph is checked first, on ``scene`` (:func:`scene_agreement`): when
    fewer than :data:`EXPORT_AGREEMENT` of its pixels get PyTorch fp32's label
    (int8: :data:`~geoseg.predict.engines.INT8_AGREEMENT`), nothing is
    written. ``int8`` exports the card's accepted quantized model (``geoseg
    models quantize``). The card written is the model's with an
    :class:`~geoseg.models.card.ExportRecord` (``export``).

    Raises
    ------
    ModelError
        The model cannot be exported, has no accepted int8 model, or its export
        disagrees with PyTorch.
    OutputError
        ``out`` holds files other than a previous export's.
    """
    from geoseg.predict.onnx_runtime import int8_model_bytes

    directory = resolve_model_dir(model)
    card = read_card(directory)
    if card.task != "semantic":
        raise ModelError(f"{directory}: only semantic models export to ONNX, not {card.task}")
    names = {EXPORT_FILENAME, CARD_FILENAME}
    if out.exists() and (not out.is_dir() or any(p.name not in names for p in out.iterdir())):
        raise OutputError(f"{out}: not an empty folder; choose a new or empty one")
    if precision == "int8":
        data = int8_model_bytes(directory)
        exporter = "the card's accepted int8 model (geoseg models quantize)"
    else:
        data = onnx_bytes(load_model(directory).module, len(card.bands))
        exporter = "torch.onnx.export"
    agreement, pixels = scene_agreement(scene, directory, onnx_candidate(data), bands=bands)
    required = EXPORT_AGREEMENT if precision == "fp32" else INT8_AGREEMENT
    if agreement < required:
        raise ModelError(
            f"{card.name}: the {precision} ONNX export's labels agree with PyTorch fp32 on "
            f"{100 * agreement:.3f}% of {scene.name}'s pixels, below the "
            f"{100 * required:.1f}% required; nothing was written to {out}"
        )
    record = ExportRecord(
        format=format,
        file=EXPORT_FILENAME,
        sha256=hashlib.sha256(data).hexdigest(),
        opset=graph_opset(data),
        precision=precision,
        label_agreement=round(agreement, 6),
        pixels=pixels,
        scene=scene.name,
        inputs=f"{INPUT_NAME}: float32 (batch, {len(card.bands)} bands in card order, height, "
        f"width), scaled as the card says; batch, height and width dynamic; output "
        f"{OUTPUT_NAME}: (batch, {card.num_classes} classes, height, width); exported by "
        f"{exporter}",
    )
    exported = card.model_copy(update={"export": record})
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out / EXPORT_FILENAME) as temporary:
            temporary.write_bytes(data)
        with atomic_path(out / CARD_FILENAME) as temporary:
            temporary.write_text(exported.model_dump_json(indent=2) + "\n", encoding="utf-8")
    except BaseException:
        for name in names:
            (out / name).unlink(missing_ok=True)
        if created:
            out.rmdir()
        raise
    return record
