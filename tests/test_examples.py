"""The README's Python API example (`examples/quickstart.py`) runs end to end."""

import importlib.util
import pathlib

import numpy as np

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


def test_quickstart_trains_recommends_and_serves_the_same_items(tmp_path):
    spec = importlib.util.spec_from_file_location("quickstart", EXAMPLE)
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    metrics, recommended, served = quickstart.main("tiny", epochs=2, workdir=str(tmp_path))
    assert {"HR@10", "NDCG@10", "MRR", "valid"} <= set(metrics)
    assert 0.0 <= metrics["HR@10"] <= 1.0 and np.isfinite(metrics["NDCG@10"])
    assert len(recommended) == 5 and recommended == served
    _, items = quickstart.make_dataframes()
    assert set(recommended) <= set(items.item_id)
    assert not {"space-1", "space-7", "space-3"} & set(recommended)  # history items are never recommended
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert (tmp_path / "exports" / "quickstart" / "1" / "saved_model.pb").is_file()
