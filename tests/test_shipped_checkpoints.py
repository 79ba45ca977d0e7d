"""Every checkpoint in checkpoints/ loads, matches its model card and keeps its accuracy.

The shipped report beside each checkpoint records the model's prediction for every test image;
the model is run again here on a fixed slice of the test set and must agree with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cifarlab import paths
from cifarlab.checkpoints import load_checkpoint
from cifarlab.data import CLASSES, load_cifar10
from cifarlab.models import model_card
from cifarlab.train.dataset import stratified_subset

SHIPPED = sorted(paths.SHIPPED_CHECKPOINT_DIR.glob("*.pt"))
# A fixed, class-balanced sample of the official test split: the bundled test images are
# stored class by class, so the first 500 would all be airplanes.
SLICE_SIZE = 500
TOLERANCE_POINTS = 0.5


@pytest.fixture(scope="module")
def test_slice():
    data = load_cifar10("bundled")
    ids = stratified_subset(data.test_labels, np.arange(len(data.test_labels)), SLICE_SIZE, seed=0)
    assert np.bincount(data.test_labels[ids], minlength=10).tolist() == [SLICE_SIZE // 10] * 10
    images = torch.from_numpy(np.ascontiguousarray(data.test_images[ids]))
    return ids, images, data.test_labels[ids]


def test_checkpoint_folder_not_empty():
    assert SHIPPED, f"no .pt file in {paths.SHIPPED_CHECKPOINT_DIR}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_shipped_checkpoint_matches_card(path: Path):
    loaded = load_checkpoint(path)
    meta = loaded.meta
    card = model_card(meta["arch"], **(meta.get("options") or {}))
    params = sum(parameter.numel() for parameter in loaded.model.parameters())

    assert params == card.params
    assert meta["class_names"] == list(CLASSES)
    assert meta["data"]["split"]["val_size"] > 0, "model selection needs a validation split"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_shipped_checkpoint_reproduces_accuracy(path: Path, test_slice):
    report_path = path.with_name(path.stem + ".report.json")
    assert report_path.exists(), f"missing {report_path.name}; run cifarlab evaluate --json"
    report = json.loads(report_path.read_text())
    assert report["split"] == "test"
    assert report["limit"] is None

    predictions = report["predictions"]
    recorded = {
        image_id: predicted
        for image_id, predicted in zip(predictions["image_id"], predictions["predicted"])
    }
    ids, images, labels = test_slice
    recorded_correct = [recorded[int(image_id)] == label for image_id, label in zip(ids, labels)]
    recorded_accuracy = 100.0 * float(np.mean(recorded_correct))

    model = load_checkpoint(path).model
    with torch.inference_mode():
        logits = model(images.float() / 255.0)
    measured_accuracy = 100.0 * float((logits.argmax(1).numpy() == labels).mean())

    assert abs(measured_accuracy - recorded_accuracy) <= TOLERANCE_POINTS, (
        f"{path.name}: {measured_accuracy:.1f}% on {SLICE_SIZE} sampled test images, "
        f"report says {recorded_accuracy:.1f}%"
    )


def test_results_page_matches_command(capsys):
    from cifarlab.cli import main as cli_main

    assert cli_main(["checkpoints", "results"]) == 0

    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    results_page = (paths.REPO_ROOT / "docs" / "RESULTS.md").read_text()
    for row in rows:
        assert row in results_page, f"docs/RESULTS.md lacks this row of 'cifarlab checkpoints results': {row}"
