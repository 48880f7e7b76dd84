"""The model manager checks a version's files before it serves, and reloads a version replaced in place."""

import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

import serving_fixtures as sf
from test_serving_export import _export
from tfrec.server import config
from tfrec.server.model_manager import ModelManager

State = get_model_status_pb2.ModelVersionStatus.State


def _states(manager, name):
    return {s.version: (State.Name(s.state), s.error.message if s.error else "") for s in manager.status(name)}


def _copy_version(model_dir, source, version):
    """Copies version `source` to `version` as a deployment would: under another name, then renamed."""
    staging = os.path.join(model_dir, f".copy-{version}")
    shutil.copytree(os.path.join(model_dir, str(source)), staging)
    return staging, os.path.join(model_dir, str(version))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The model directory of a tfrec retrieval export (version 1)."""
    base = tmp_path_factory.mktemp("exports")
    result = _export("retrieval", base)
    return os.path.dirname(result.path)


def test_a_version_with_a_truncated_catalogue_is_refused_and_the_previous_one_serves(tmp_path, exported, caplog):
    model_dir = str(tmp_path / "retrieval")
    shutil.copytree(exported, model_dir)
    manager = ModelManager(config.single_model_config("retrieval", model_dir))
    try:
        manager.poll()
        for version, drop_manifest in ((2, False), (3, True)):  # 3: as an export written before manifests
            staging, final = _copy_version(model_dir, 1, version)
            ids = os.path.join(staging, "assets", "item_ids.txt")
            with open(ids, "rb+") as f:
                f.truncate(os.path.getsize(ids) // 2)
            if drop_manifest:
                os.remove(os.path.join(staging, "manifest.json"))
            os.rename(staging, final)
            with caplog.at_level(logging.ERROR):
                manager.poll()
            states = _states(manager, "retrieval")
            assert states[1] == ("AVAILABLE", "")
            state, error = states[version]
            expected = "items; export_info.json says the version serves 30" if drop_manifest else \
                "bytes; manifest.json says"
            assert state == "END" and f"refused {final}: {final}/assets/item_ids.txt: " in error and expected in error
            assert any(f"version {version}" in r.getMessage() and expected in r.getMessage() for r in caplog.records)
        with manager.acquire(model_pb2.ModelSpec(name="retrieval")) as servable:
            assert servable.version == 1
    finally:
        manager.stop()


def _recommend(manager):
    inputs = {"history": tf.make_tensor_proto([["item1", "item2"]]), "k": tf.make_tensor_proto([5], tf.int32)}
    with manager.acquire(model_pb2.ModelSpec(name="tiny")) as servable:
        outputs = servable.run("serving_default", inputs)
    return tf.make_ndarray(outputs["item_ids"]), tf.make_ndarray(outputs["scores"])


def test_a_version_replaced_in_place_by_another_model_is_reloaded_and_logged(tmp_path, caplog):
    base, other = tmp_path / "tiny", tmp_path / "other"
    sf.save_version(str(base), 1, seed=0, warmup=False)
    replacement = sf.save_version(str(other), 1, seed=1, warmup=False)
    manager = ModelManager(config.single_model_config("tiny", str(base)))
    try:
        manager.poll()
        before = _recommend(manager)
        manager.poll()  # unchanged files: nothing is reloaded
        shutil.rmtree(base / "1")
        shutil.copytree(other / "1", base / "1")  # copy2 keeps the replacement's sizes and mtimes
        with caplog.at_level(logging.INFO, logger="absl"):
            manager.poll()
        ids, scores = _recommend(manager)
        expected = replacement.signatures["serving_default"](history=tf.constant([["item1", "item2"]]),
                                                            k=tf.constant([5]))
        np.testing.assert_array_equal(ids, expected["item_ids"].numpy())
        np.testing.assert_allclose(scores, expected["scores"].numpy(), rtol=1e-6)
        assert not np.array_equal(scores, before[1])
        messages = [r.getMessage() for r in caplog.records]
        assert any("model 'tiny' version 1 changed on disk" in m for m in messages), messages
        assert any("Reloaded model 'tiny' version 1" in m for m in messages), messages
        assert _states(manager, "tiny") == {1: ("AVAILABLE", "")}
    finally:
        manager.stop()
