"""Where inference runs: device and precision resolved for the workers, tasks routed to GPUs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from distributed import Client, get_task_stream

from geoseg.errors import ConfigError
from geoseg.predict.inference import DeviceSupport, device_support, select_device, select_precision
from geoseg.predict.placement import InferencePlacement, place_inference
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from geoseg.predict.sources import FileSource
from tests.clusters import started_client, started_cluster
from tests.conftest import write_geotiff
from tests.predict_fixtures import make_model_dir
from tests.unit.test_predict import DESCRIPTIONS, landscape
from workflows import cluster as cluster_module
from workflows import predict as predict_module
from workflows.cluster import inference_placement
from workflows.predict import predict_file

CPU = DeviceSupport(cuda=False)
CPU_BF16 = DeviceSupport(cuda=False, cpu_bf16=True)
GPU = DeviceSupport(cuda=True, cuda_bf16=True)
OLD_GPU = DeviceSupport(cuda=True, cuda_bf16=False)


def test_auto_runs_on_the_gpus_of_the_workers_not_of_the_submitting_machine() -> None:
    everywhere = place_inference("auto", {"a": GPU, "b": GPU})
    assert everywhere == InferencePlacement(
        "cuda", everywhere.support, {}, precision=everywhere.precision
    )
    assert everywhere.support.cuda and everywhere.support.cuda_bf16
    assert place_inference("auto", {"a": CPU, "b": CPU}).device == "cpu"
    assert place_inference("cpu", {"a": GPU}).device == "cpu"
    assert place_inference("cuda", {"a": GPU}).device == "cuda"


def test_only_the_gpu_workers_of_a_mixed_cluster_run_inference() -> None:
    workers = {"tcp://b:2": GPU, "tcp://a:1": CPU, "tcp://c:3": GPU}
    by_address = place_inference("auto", workers)
    assert by_address.device == "cuda"
    assert by_address.restrictions == {"workers": ["tcp://b:2", "tcp://c:3"]}
    # exactly the GPU workers advertise the resource: route by it (survives restarts)
    resources = {"tcp://a:1": {}, "tcp://b:2": {"GPU": 1.0}, "tcp://c:3": {"GPU": 1.0}}
    by_resource = place_inference("auto", workers, resources)
    assert by_resource.restrictions == {"resources": {"GPU": 1}}
    # a CPU worker advertising a GPU would get inference tasks: fall back to addresses
    wrong = {**resources, "tcp://a:1": {"GPU": 1.0}}
    assert place_inference("auto", workers, wrong).restrictions == {
        "workers": ["tcp://b:2", "tcp://c:3"]
    }


def test_precision_support_is_what_every_inference_worker_offers() -> None:
    mixed_gpus = place_inference("cuda", {"a": GPU, "b": OLD_GPU})
    assert select_precision("auto", "cuda", None, mixed_gpus.support) == "fp16"
    assert select_precision("auto", "cuda", None, place_inference("cuda", {"a": GPU}).support) == (
        "bf16"
    )
    # CPU workers: bf16 only when the card's agreement is high enough and every CPU has it
    agreement = 0.999
    both = place_inference("auto", {"a": CPU_BF16, "b": CPU_BF16}).support
    one = place_inference("auto", {"a": CPU_BF16, "b": CPU}).support
    assert select_precision("auto", "cpu", agreement, both) == "bf16"
    assert select_precision("auto", "cpu", agreement, one) == "fp32"
    assert select_precision("auto", "cpu", 0.98, both) == "fp32"
    # the CPU workers' support counts, not the GPU workers', when the run is forced to cpu
    assert place_inference("cpu", {"a": GPU, "b": CPU}).support.cpu_bf16 is False


def test_impossible_requests_say_what_to_do() -> None:
    with pytest.raises(
        ConfigError,
        match=r"none of its 2 workers\).*--device auto or cpu, or add GPU workers to it",
    ):
        place_inference("cuda", {"a": CPU, "b": CPU}, where="the Dask cluster at tcp://x:8786")
    with pytest.raises(
        ConfigError, match=r"this machine has no CUDA device; use --device auto or cpu$"
    ):
        place_inference("cuda", {"local": CPU}, where="this machine")
    with pytest.raises(ConfigError, match="has no workers"):
        place_inference("auto", {})
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        place_inference("tpu", {"a": GPU})
    with pytest.raises(ConfigError, match="this machine has no CUDA device"):
        select_device("cuda", CPU)
    assert select_device("cuda", GPU) == "cuda"
    assert select_device("auto", GPU) == "cuda"


def test_without_a_cluster_the_placement_is_this_machines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(cluster_module.SCHEDULER_ENV, raising=False)
    placement = inference_placement(None, "auto")
    local = device_support()
    assert placement.device == ("cuda" if local.cuda else "cpu")
    assert placement.restrictions == {}
    assert placement.support.where == "this machine"


@pytest.fixture(scope="module")
def two_workers() -> Iterator[Client]:
    with started_client(2) as client:
        yield client


def test_a_cluster_is_asked_about_its_workers_hardware(two_workers: Client) -> None:
    placement = inference_placement(two_workers, "auto")
    address = two_workers.scheduler_info()["address"]
    assert placement.support.where == f"the Dask cluster at {address}"
    assert placement.device == ("cuda" if device_support().cuda else "cpu")
    if not device_support().cuda:
        with pytest.raises(ConfigError, match=r"none of its 2 workers"):
            inference_placement(two_workers, "cuda")


def test_forward_tasks_go_only_to_the_workers_placed_for_inference(
    two_workers: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stand-in for a cluster where one worker has the GPU: the run stays on the CPU, but is
    # routed the way a mixed cluster's would be
    chosen = sorted(two_workers.scheduler_info()["workers"])[1]
    placed = InferencePlacement("cpu", CPU, {"workers": [chosen]}, precision="fp32")
    monkeypatch.setattr(predict_module, "model_placement", lambda *arguments: placed)
    data = landscape(np.random.default_rng(3), 300, 280)
    scene = write_geotiff(tmp_path / "scene.tif", data, nodata=65535, descriptions=DESCRIPTIONS)
    model = make_model_dir(tmp_path / "model")
    with get_task_stream(client=two_workers) as stream:
        result = predict_file(
            scene,
            model,
            InferenceSettings(tile=64, overlap=16, batch_size=2, chunk_size=100),
            PredictOutputs(tmp_path / "labels.tif"),
            client=two_workers,
            progress=False,
        )
    where: dict[str, str] = {}
    for record in stream.data:
        key = record["key"][0] if isinstance(record["key"], tuple) else record["key"]
        where.setdefault(str(key), record["worker"])
    forward = {key: worker for key, worker in where.items() if key.startswith("forward_batch")}
    chunks = {key: worker for key, worker in where.items() if key.startswith("assemble_chunk")}
    assert len(forward) > 10 and len(chunks) == 9
    assert set(forward.values()) == {chosen}
    with rasterio.open(result.labels) as dataset:
        assert dataset.read(1).shape == (300, 280)


def _queued_tasks(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def test_a_cluster_without_workers_yet_is_asked_through_its_first_worker() -> None:
    # as an adaptive cluster: no worker until there is a task to run
    with (
        started_cluster(0) as cluster,
        Client(cluster, set_as_default=False) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        asking = pool.submit(inference_placement, client, "auto")
        deadline = time.monotonic() + 60
        while client.run_on_scheduler(_queued_tasks) == 0:  # the probe task is waiting
            assert time.monotonic() < deadline and not asking.done()
            time.sleep(0.05)
        assert not asking.done()
        cluster.scale(1)
        placement = asking.result(timeout=60)
    assert placement.device == ("cuda" if device_support().cuda else "cpu")
    assert placement.support.where.startswith("the Dask cluster at ")


def test_a_placement_given_by_the_caller_is_used_as_it_is(
    two_workers: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # geoseg run records its placement in the manifest, then predicts with it: no second probe
    def no_probe(*arguments: Any) -> InferencePlacement:
        raise AssertionError("the cluster was asked again")

    monkeypatch.setattr(predict_module, "model_placement", no_probe)
    data = landscape(np.random.default_rng(4), 120, 110)
    scene = write_geotiff(tmp_path / "scene.tif", data, nodata=65535, descriptions=DESCRIPTIONS)
    result = predict_module.predict_source(
        FileSource.open(scene),
        make_model_dir(tmp_path / "model"),
        InferenceSettings(tile=64, overlap=16, device="cuda"),  # device ignored: placed
        PredictOutputs(tmp_path / "labels.tif"),
        client=two_workers,
        progress=False,
        placement=InferencePlacement("cpu", CPU, precision="fp32"),
    )
    assert (result.device, result.precision) == ("cpu", "fp32")
