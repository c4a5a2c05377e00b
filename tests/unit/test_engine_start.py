"""What a run costs before its first tile: hardware probes without torch, the fp32
ONNX cache, and ``--engine auto`` ordered by the card's measured speeds."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from geoseg.models import export
from geoseg.models.card import CpuSpeeds, OnnxRecord
from geoseg.predict import hardware, onnx_runtime
from geoseg.predict.engines import CPU_SPEED_ORDER, cpu_order, select_engine
from geoseg.predict.inference import DeviceSupport, ModelKey, model_key
from geoseg.training.quantize import cpu_speeds
from tests.conftest import write_geotiff
from tests.unit.test_predict import DESCRIPTIONS, landscape

ROOT = Path(__file__).resolve().parents[2]
FAST_CPU = DeviceSupport(cuda=False, cpu_bf16=True, onnxruntime=True, cpu_vnni=True)


def _speeds(**ms: float) -> CpuSpeeds:
    return CpuSpeeds(
        cpu="test CPU",
        bf16=True,
        int8_dot=True,
        tile=512,
        threads=1,
        ms_per_tile={name.replace("_", ":", 1): value for name, value in ms.items()},
    )


# --- the hardware probe --------------------------------------------------------------


def test_cpu_flags_decide_native_bf16_and_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"sse2", "avx512_vnni"}))
    assert hardware.has_any_flag(hardware.INT8_DOT_FLAGS) is True
    assert hardware.has_any_flag(hardware.BF16_FLAGS) is False
    monkeypatch.setattr(hardware, "cpu_flags", lambda: None)
    assert hardware.has_any_flag(hardware.BF16_FLAGS) is None  # unknown: the caller asks torch


def test_intra_op_threads_follow_the_worker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert hardware.intra_op_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")
    assert hardware.intra_op_threads() >= 1


@pytest.mark.skipif(hardware.cuda_possible(), reason="a GPU driver is present: torch is asked")
def test_submitting_a_run_imports_neither_torch_nor_smp() -> None:
    code = textwrap.dedent(
        """
        import sys
        import workflows.predict, workflows.predict_instances, workflows.run_bbox
        import workflows.run_change, geoseg.cli.predict, geoseg.cli.run
        from geoseg.predict.inference import device_support, model_key
        from geoseg.predict.placement import place_inference
        from geoseg.models.loading import resolve_model_dir
        from geoseg.io.checkpoint import read_card
        card = read_card(resolve_model_dir("landcover-landsat"))
        placement = place_inference(
            "auto", {"local": device_support()}, precision="auto",
            cpu_bf16_agreement=card.cpu_bf16_agreement, engine="auto", onnx=card.onnx,
        )
        model_key("landcover-landsat", placement.device)
        heavy = sorted({"torch", "segmentation_models_pytorch", "timm"} & set(sys.modules))
        print(heavy)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# --- the fp32 graph cache ------------------------------------------------------------


def _forest_in_a_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModelKey, Path]:
    """``forest``'s model key, with the ONNX cache in ``tmp_path``, and its cache file."""
    monkeypatch.setenv(onnx_runtime.CACHE_ENV, str(tmp_path / "cache"))
    key = model_key("forest", "cpu")
    return key, onnx_runtime.onnx_cache_dir() / f"{key.weights_sha256}-fp32.onnx"


def test_the_fp32_graph_is_exported_once_then_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cached = _forest_in_a_cache(tmp_path, monkeypatch)
    assert not cached.exists()
    first = onnx_runtime.fp32_session(key, 1)
    assert cached.is_file()

    def no_export(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("exported again despite the cache")

    monkeypatch.setattr(export, "onnx_bytes", no_export)
    second = onnx_runtime.fp32_session(key, 1)
    inputs = np.random.default_rng(0).random((1, 4, 64, 64), dtype=np.float32)
    np.testing.assert_array_equal(
        onnx_runtime.session_probabilities(first, inputs, "cpu"),
        onnx_runtime.session_probabilities(second, inputs, "cpu"),
    )


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(onnx_runtime.CACHE_ENV, "/somewhere/geoseg")
    assert onnx_runtime.onnx_cache_dir() == Path("/somewhere/geoseg/onnx")
    monkeypatch.delenv(onnx_runtime.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert onnx_runtime.onnx_cache_dir() == Path("/xdg/geoseg/onnx")
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert onnx_runtime.onnx_cache_dir().parts[-2:] == ("geoseg", "onnx")


def test_a_damaged_cache_file_is_exported_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cached = _forest_in_a_cache(tmp_path, monkeypatch)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not an onnx graph")
    session = onnx_runtime.fp32_session(key, 1)
    assert session.get_inputs()[0].name == onnx_runtime.INPUT_NAME
    assert cached.read_bytes() != b"not an onnx graph"


@pytest.mark.skipif(hardware.cuda_possible(), reason="a GPU driver is present: torch is asked")
def test_an_onnxruntime_run_never_imports_torch_once_the_graph_is_cached(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    env = {"GEOSEG_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    data = landscape(np.random.default_rng(2), 200, 230)
    scene = write_geotiff(tmp_path / "scene.tif", data, descriptions=DESCRIPTIONS)
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from distributed import Client, LocalCluster
        from geoseg.predict.settings import InferenceSettings, PredictOutputs
        from workflows.predict import predict_file

        def heavy():
            import sys
            return sorted({{"torch", "segmentation_models_pytorch"}} & set(sys.modules))

        settings = InferenceSettings(device="cpu", engine="onnxruntime", precision="fp32")
        with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                predict_file(Path({str(scene)!r}), "forest", settings,
                             PredictOutputs(Path(sys.argv[1])), client=client, progress=False)
                print(heavy(), list(client.run(heavy).values()))
        """
    )
    runs = []
    for name in ("first.tif", "second.tif"):
        runs.append(
            subprocess.run(
                [sys.executable, "-c", code, str(tmp_path / name)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    # the first run on this machine exports the graph (its worker imports torch), the next
    # reads it: neither the submitting process nor the worker imports torch
    assert runs[0].splitlines()[-1] == "[] [['torch']]"
    assert runs[1].splitlines()[-1] == "[] [[]]"


# --- --engine auto ordered by the card's speeds ----------------------------------------


def test_measured_speeds_order_the_engines_on_the_same_kind_of_cpu() -> None:
    speeds = _speeds(torch_fp32=190.0, torch_bf16=104.0, onnxruntime_fp32=85.0)
    assert cpu_order(speeds, FAST_CPU)[:3] == (
        ("onnxruntime", "fp32"),
        ("torch", "bf16"),
        ("torch", "fp32"),
    )
    assert cpu_order(speeds, FAST_CPU)[3] == ("onnxruntime", "int8")  # untimed: last
    other_kind = replace(FAST_CPU, cpu_bf16=False)
    assert cpu_order(speeds, other_kind) == CPU_SPEED_ORDER
    assert cpu_order(None, FAST_CPU) == CPU_SPEED_ORDER


def test_auto_takes_the_engine_measured_fastest_for_this_model() -> None:
    onnx = OnnxRecord(
        opset=17,
        fp32_agreement=1.0,
        int8_agreement=0.99,
        pixels=100,
        cpu_speeds=_speeds(torch_fp32=190.0, torch_bf16=104.0, onnxruntime_fp32=85.0),
    )
    chosen = select_engine("auto", "auto", "cpu", FAST_CPU, cpu_bf16_agreement=0.9997, onnx=onnx)
    assert chosen == ("onnxruntime", "fp32")
    unmeasured = onnx.model_copy(update={"cpu_speeds": None})
    fixed = select_engine(
        "auto", "auto", "cpu", FAST_CPU, cpu_bf16_agreement=0.9997, onnx=unmeasured
    )
    assert fixed == ("torch", "bf16")


def test_speeds_name_known_engines_only() -> None:
    with pytest.raises(ValidationError, match="unknown engines"):
        _speeds(torch_int4=3.0)


def test_cpu_speeds_time_every_engine_the_model_has() -> None:
    from geoseg.models.loading import load_model, resolve_model_dir
    from geoseg.predict.inference import native_cpu_bf16

    loaded = load_model(resolve_model_dir("forest"))
    fp32 = export.onnx_bytes(loaded.module, 4)
    sample = np.random.default_rng(1).random((4, 40, 50), dtype=np.float32)
    speeds = cpu_speeds(loaded, fp32, None, sample, repeats=1)
    expected = {"torch:fp32", "onnxruntime:fp32"} | ({"torch:bf16"} if native_cpu_bf16() else set())
    assert set(speeds.ms_per_tile) == expected
    assert speeds.tile == 512 and speeds.threads == 1
    assert all(ms > 0 for ms in speeds.ms_per_tile.values())
