"""The prediction graph on a real multi-process cluster started by the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

from geoseg.cli import main
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from tests.clusters import started_client, started_cluster
from tests.predict_fixtures import make_model_dir
from tests.unit.test_predict import DESCRIPTIONS, landscape
from workflows.cluster import WORKER_ENV
from workflows.predict import predict_file

pytestmark = [
    pytest.mark.slow,
]


def test_two_worker_processes_give_the_default_result(
    tmp_path: Path, make_geotiff: Callable[..., Path]
) -> None:
    data = landscape(np.random.default_rng(5), 300, 260)
    data[:, 150:170, 20:60] = 65535
    scene = make_geotiff(data, name="scene.tif", nodata=65535, descriptions=DESCRIPTIONS)
    model = make_model_dir(tmp_path / "model")
    with started_client(1) as client:
        default = predict_file(
            scene,
            model,
            InferenceSettings(),
            PredictOutputs(tmp_path / "default.tif"),
            client=client,
            progress=False,
        )
    with started_cluster(2, processes=True, env=WORKER_ENV) as cluster:
        with Client(cluster, set_as_default=False) as client:
            pids = set(client.run(lambda: __import__("os").getpid()).values())
            assert len(pids) == 2 and __import__("os").getpid() not in pids
            distributed_run = predict_file(
                scene,
                model,
                InferenceSettings(chunk_size=128),
                PredictOutputs(tmp_path / "cluster.tif", tmp_path / "cluster_probabilities.tif"),
                client=client,
                progress=False,
            )
            assert distributed_run.chunks_computed == 9
            loads = client.run(
                lambda: __import__("geoseg.predict.inference").predict.inference.model_loads()
            )
            assert all(count <= 1 for count in loads.values())
        # the command line on the same cluster, through --scheduler
        main(
            [
                "predict",
                str(scene),
                "--model",
                str(model),
                "--out",
                str(tmp_path / "cli.tif"),
                "--scheduler",
                cluster.scheduler_address,
            ]
        )
    reference = default.labels.read_bytes()
    assert distributed_run.labels.read_bytes() == reference
    assert (tmp_path / "cli.tif").read_bytes() == reference
