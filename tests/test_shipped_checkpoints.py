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

SHIPPED = sorted(paths.SHIPPED_CHECKPOINT_DIR.glob("*.pt"))
SLICE_SIZE = 500  # the first 500 images of the official test split
TOLERANCE_POINTS = 0.5


@pytest.fixture(scope="module")
def test_slice():
    data = load_cifar10("bundled")
    images = torch.from_numpy(np.ascontiguousarray(data.test_images[:SLICE_SIZE]))
    labels = data.test_labels[:SLICE_SIZE]
    return images, labels


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
    images, labels = test_slice
    recorded_correct = [recorded[image_id] == labels[image_id] for image_id in range(SLICE_SIZE)]
    recorded_accuracy = 100.0 * float(np.mean(recorded_correct))

    model = load_checkpoint(path).model
    with torch.inference_mode():
        logits = model(images.float() / 255.0)
    measured_accuracy = 100.0 * float((logits.argmax(1).numpy() == labels).mean())

    assert abs(measured_accuracy - recorded_accuracy) <= TOLERANCE_POINTS, (
        f"{path.name}: {measured_accuracy:.1f}% on the first {SLICE_SIZE} test images, "
        f"report says {recorded_accuracy:.1f}%"
    )


def test_results_page_matches_command(capsys):
    from cifarlab.cli import main as cli_main

    assert cli_main(["checkpoints", "results"]) == 0

    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    results_page = (paths.REPO_ROOT / "docs" / "RESULTS.md").read_text()
    for row in rows:
        assert row in results_page, f"docs/RESULTS.md lacks this row of 'cifarlab checkpoints results': {row}"
