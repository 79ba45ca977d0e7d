"""Tests of the few-pixel attack: pixel writes, the search, and the robustness bookkeeping.

Two hand-made models make the outcomes exact:

- `FragileNet` puts a Gaussian bump of weight around pixel (5, 7): bright red there turns class 0
  into class 1, bright green into class 2. The attack must find that spot.
- `MeanRedNet` classifies 4x4 images by their mean red value into ten bands of width 25.6. One
  pixel moves the mean by at most 255 / 16, so whether an image can be fooled is known in advance
  (see the helpers below), which gives exact expected rates.
"""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

from cifarlab.attack import (
    FAILED,
    MISCLASSIFIED,
    SKIPPED,
    STOPPED,
    SUCCESS,
    AttackConfig,
    AttackError,
    apply_pixels,
    attack_image,
    attack_images,
    attack_many,
    changed_pixels,
    random_pixel_baseline,
    random_target,
    sample_indices,
)
from cifarlab.attack.evolution import _distinct_partners, _make_children
from cifarlab.models import CIFAR10_MEAN, CIFAR10_STD, Classifier, build_model

SMALL = AttackConfig(popsize=40, generations=20)


class FragileNet(nn.Module):
    """On a black image, class 0 unless pixels near (5, 7) turn red (class 1) or green (2)."""

    def __init__(self):
        super().__init__()
        rows = torch.arange(32.0)[:, None]
        cols = torch.arange(32.0)[None, :]
        self.register_buffer("bump", torch.exp(-((rows - 5) ** 2 + (cols - 7) ** 2) / 8.0))

    def forward(self, x):
        # The inputs are normalized; measure each channel from the value black takes.
        black = (0.0 - torch.tensor(CIFAR10_MEAN, device=x.device)) / torch.tensor(CIFAR10_STD, device=x.device)
        red = ((x[:, 0] - black[0]) * self.bump).sum(dim=(1, 2))
        green = ((x[:, 1] - black[1]) * self.bump).sum(dim=(1, 2))
        logits = torch.zeros(x.shape[0], 10, device=x.device)
        logits[:, 0] = 3.0
        logits[:, 1] = 3.0 * red
        logits[:, 2] = 3.0 * green - 1.0
        return logits


def fragile_model() -> Classifier:
    """FragileNet behind the registry's wrapper, so it sees normalized pixels like any model."""
    return Classifier(FragileNet(), arch="fragile", options={}, num_classes=10).eval()


class MeanRedNet(nn.Module):
    """Class k when the mean red value (0..255) is in [25.6 k, 25.6 (k + 1))."""

    def forward(self, x):
        mean_red = x[:, 0].mean(dim=(1, 2)) * 255.0
        centres = 12.8 + 25.6 * torch.arange(10.0, device=x.device)
        return -((mean_red[:, None] - centres[None, :]) ** 2) / 50.0


def red_images(*reds: int, size: int = 4) -> np.ndarray:
    """Uniform ``size`` x ``size`` images whose red channel is each of ``reds``."""
    images = np.zeros((len(reds), 3, size, size), dtype=np.uint8)
    for index, red in enumerate(reds):
        images[index, 0] = red
    return images


# Red 20 is class 0, and one pixel at red >= 110 lifts the mean past 25.6: class 1.
FOOLABLE = 20
# Red 140 is class 5; one pixel moves the mean to 131.25..147.2, still class 5.
ROBUST = 140
# Red 150 is class 5; one pixel can raise the mean to 156.6 (class 6) but not further.
NEAR_SIX = 150


def mean_red_model() -> nn.Module:
    return MeanRedNet().eval()


# --- writing pixels ---------------------------------------------------------------------------


def test_apply_pixels_writes_only_requested_pixels():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=generator)
    candidates = torch.tensor(
        [
            [0, 0, 255, 0, 0, 31, 31, 0, 255, 0, 5, 17, 1, 2, 3],
            [10, 10, 0, 0, 0, 10, 11, 9, 9, 9, 11, 10, 200, 100, 50],
            [3, 4, 7, 7, 7, 30, 2, 0, 0, 0, 16, 16, 128, 128, 128],
            [31, 0, 1, 1, 1, 0, 31, 2, 2, 2, 15, 15, 3, 3, 3],
            [1, 1, 9, 8, 7, 2, 2, 6, 5, 4, 3, 3, 3, 2, 1],
            [20, 21, 90, 91, 92, 21, 20, 93, 94, 95, 22, 22, 96, 97, 98],
        ],
        dtype=torch.float32,
    )
    adversarial = apply_pixels(images, candidates)

    for index in range(6):
        pixels = candidates[index].long().view(3, 5)
        expected = images[index].clone()
        for row, col, red, green, blue in pixels.tolist():
            expected[:, row, col] = torch.tensor([red, green, blue], dtype=torch.uint8)
        assert torch.equal(adversarial[index], expected)

        written = {(row, col) for row, col in pixels[:, :2].tolist()}
        differs = (adversarial[index] != images[index]).any(dim=0)
        changed = {tuple(position) for position in torch.nonzero(differs).tolist()}
        assert changed <= written


def test_apply_pixels_leaves_input_unchanged():
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    apply_pixels(images, torch.tensor([[1.0, 2.0, 255.0, 255.0, 255.0]]))
    assert int(images.sum()) == 0


def test_apply_pixels_later_pixel_wins_on_same_position():
    images = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    adversarial = apply_pixels(images, torch.tensor([[2.0, 3.0, 10.0, 20.0, 30.0, 2.0, 3.0, 40.0, 50.0, 60.0]]))
    assert adversarial[0, :, 2, 3].tolist() == [40, 50, 60]
    assert int((adversarial != 0).sum()) == 3


def test_apply_pixels_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        apply_pixels(torch.zeros(1, 3, 4, 4), torch.zeros(1, 5))


def test_changed_pixels_lists_old_and_new_colours():
    original = np.zeros((3, 4, 4), dtype=np.uint8)
    adversarial = original.copy()
    adversarial[:, 1, 2] = (9, 8, 7)
    adversarial[:, 3, 0] = (0, 0, 1)
    changes = changed_pixels(original, adversarial)
    assert [(change.row, change.col) for change in changes] == [(1, 2), (3, 0)]
    assert changes[0].old == (0, 0, 0)
    assert changes[0].new == (9, 8, 7)
    assert changes[1].new == (0, 0, 1)


def test_model_input_differs_only_at_changed_pixels():
    """Every image the model saw, after its own normalization, differs from the clean one
    only at the candidate's pixels, and the returned image is one of them."""
    model = build_model("cnn", width=4).eval()
    seen: list[torch.Tensor] = []
    model.net.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
    generator = torch.Generator().manual_seed(3)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=generator)
    label = int(model(image[None].float() / 255).argmax())
    seen.clear()

    config = AttackConfig(pixels=3, popsize=24, generations=4, eval_batch_size=50)
    result = attack_image(model, image.numpy(), label, config=config)

    with torch.no_grad():
        clean = (image[None].float() / 255 - model.mean) / model.std
        adversarial = (torch.from_numpy(result.adversarial)[None].float() / 255 - model.mean) / model.std
    # The clean image comes first, then every distinct candidate of the search, then the
    # result, classified alone by the whole model.
    inputs = torch.cat(seen)
    assert inputs.shape[0] == 1 + result.queries + 1
    assert torch.equal(inputs[0], clean[0])
    assert torch.equal(inputs[-1], adversarial[0])
    searched = inputs[1:-1].flatten(1)
    assert torch.unique(searched, dim=0).shape[0] == result.queries
    differs = (inputs != clean).any(dim=1).flatten(1).sum(dim=1)
    assert int(differs.max()) <= 3

    changed = (adversarial != clean).any(dim=1)[0]
    expected = torch.zeros_like(changed)
    for change in result.changed:
        expected[change.row, change.col] = True
    assert torch.equal(changed, expected)
    assert any(torch.equal(row, adversarial[0]) for row in inputs)


# --- the search -------------------------------------------------------------------------------


def test_untargeted_attack_fools_fragile_model():
    model = fragile_model()
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    result = attack_image(model, image, 0, config=SMALL)

    assert result.status == SUCCESS
    assert result.success
    assert result.pred_before == 0
    assert result.pred_after != 0
    assert 1 <= len(result.changed) <= 1
    assert result.queries == SMALL.popsize * (result.generations + 1)
    assert max(range(10), key=lambda k: result.probs_after[k]) == result.pred_after
    assert math.isclose(sum(result.probs_after), 1.0, rel_tol=1e-5)
    assert result.confidence_history[-1] == pytest.approx(result.probs_after[0], rel=1e-5)


def test_returned_image_gets_the_reported_prediction():
    model = fragile_model()
    result = attack_image(model, np.zeros((3, 32, 32), dtype=np.uint8), 0, config=SMALL)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(result.adversarial)[None].float() / 255), dim=1)[0]
    assert int(probs.argmax()) == result.pred_after
    assert probs.tolist() == pytest.approx(result.probs_after, abs=1e-6)


def test_targeted_attack_reaches_target():
    model = fragile_model()
    result = attack_image(model, np.zeros((3, 32, 32), dtype=np.uint8), 0, target=2, config=SMALL)
    assert result.status == SUCCESS
    assert result.pred_after == 2
    assert result.target == 2
    assert result.tracked_class == 2


def test_same_seed_gives_same_result():
    model = fragile_model()
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    config = AttackConfig(pixels=2, popsize=30, generations=6, seed=11)
    first = attack_image(model, image, 0, target=2, config=config)
    second = attack_image(model, image, 0, target=2, config=config)
    assert np.array_equal(first.adversarial, second.adversarial)
    assert first.changed == second.changed
    assert first.queries == second.queries
    assert first.confidence_history == second.confidence_history


def test_other_seed_gives_other_search():
    model = fragile_model()
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    first = attack_image(model, image, 0, config=AttackConfig(popsize=30, generations=3, seed=1))
    second = attack_image(model, image, 0, config=AttackConfig(popsize=30, generations=3, seed=2))
    assert first.changed != second.changed


def test_batch_gives_same_result_as_single_image():
    model = mean_red_model()
    images = red_images(FOOLABLE, ROBUST, FOOLABLE)
    config = AttackConfig(popsize=20, generations=3, seed=5)
    together = attack_images(model, images, [0, 5, 0], config=config, image_ids=[7, 8, 9])
    for position, image_id in enumerate([7, 8, 9]):
        alone = attack_image(model, images[position], [0, 5, 0][position], config=config, image_id=image_id)
        assert np.array_equal(alone.adversarial, together[position].adversarial)
        assert alone.queries == together[position].queries
        assert alone.status == together[position].status


def test_robust_image_runs_whole_budget():
    model = mean_red_model()
    config = AttackConfig(popsize=20, generations=5)
    result = attack_image(model, red_images(ROBUST)[0], 5, config=config)
    assert result.status == FAILED
    assert not result.success
    assert result.generations == 5
    assert result.queries == config.max_queries
    assert result.pred_after == 5
    assert len(result.confidence_history) == 6


def test_misclassified_image_is_not_attacked():
    model = mean_red_model()
    image = red_images(FOOLABLE)[0]
    result = attack_image(model, image, 3, config=SMALL)
    assert result.status == MISCLASSIFIED
    assert not result.success
    assert result.queries == 0
    assert np.array_equal(result.adversarial, image)
    assert result.changed == []


def test_targeted_success_only_on_target():
    """Raising the mean towards class 9 reaches class 6 at most: fooled, yet no success."""
    model = mean_red_model()
    config = AttackConfig(popsize=40, generations=10)
    result = attack_image(model, red_images(NEAR_SIX)[0], 5, target=9, config=config)
    assert result.pred_after == 6
    assert not result.success
    assert result.status == FAILED


def test_callback_reports_each_generation():
    model = mean_red_model()
    records = []
    config = AttackConfig(popsize=20, generations=4)
    attack_image(model, red_images(ROBUST)[0], 5, config=config, callback=records.append)
    assert [record["generation"] for record in records] == [0, 1, 2, 3, 4]
    assert [record["queries"] for record in records] == [20, 40, 60, 80, 100]
    assert all(record["max_generations"] == 4 for record in records)
    assert all(0.0 <= record["confidence"] <= 1.0 for record in records)
    fitness = [record["fitness"] for record in records]
    assert fitness == sorted(fitness, reverse=True)


def test_stop_request_returns_best_so_far():
    model = mean_red_model()
    stop = threading.Event()

    def stop_after_second(record):
        if record["generation"] == 2:
            stop.set()

    config = AttackConfig(popsize=20, generations=50)
    result = attack_image(model, red_images(ROBUST)[0], 5, config=config, callback=stop_after_second, stop=stop)
    assert result.status == STOPPED
    assert result.generations == 2
    assert result.queries == 60
    assert not result.success


def test_training_mode_model_is_rejected():
    model = build_model("cnn", width=4)
    with pytest.raises(AttackError, match="training mode"):
        attack_image(model, np.zeros((3, 32, 32), dtype=np.uint8), 0, config=SMALL)


def test_target_equal_to_label_is_rejected():
    with pytest.raises(AttackError, match="true class"):
        attack_image(mean_red_model(), red_images(FOOLABLE)[0], 0, target=0, config=SMALL)


def test_float_image_is_rejected():
    with pytest.raises(AttackError, match="uint8"):
        attack_image(mean_red_model(), np.zeros((3, 4, 4), dtype=np.float32), 0)


def test_out_of_range_label_is_rejected():
    with pytest.raises(AttackError, match="classes 0..9"):
        attack_image(mean_red_model(), red_images(FOOLABLE)[0], 12, config=SMALL)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"pixels": 0}, "invalid pixels 0"),
        ({"pixels": 6}, "invalid pixels 6"),
        ({"popsize": 3}, "4 distinct candidates"),
        ({"generations": -1}, "invalid generations"),
        ({"mutation": 0.0}, "invalid mutation"),
        ({"crossover": 1.5}, "invalid crossover"),
        ({"seed": -2}, "invalid seed"),
        ({"eval_batch_size": 0}, "invalid eval_batch_size"),
    ],
)
def test_config_rejects_invalid_values(settings, message):
    with pytest.raises(AttackError, match=message):
        AttackConfig(**settings)


def test_distinct_partners_exclude_own_index():
    generator = torch.Generator().manual_seed(0)
    for popsize in (4, 5, 50):
        picks = _distinct_partners(popsize, generator)
        own = torch.arange(popsize)[:, None]
        indices = torch.cat([own, picks], dim=1)
        assert picks.min() >= 0
        assert picks.max() < popsize
        for row in indices.tolist():
            assert len(set(row)) == 4


def test_distinct_partners_cover_every_index():
    picks = _distinct_partners(6, torch.Generator().manual_seed(1))
    many = torch.cat([_distinct_partners(6, torch.Generator().manual_seed(seed)) for seed in range(40)])
    assert picks.shape == (6, 3)
    assert set(many.flatten().tolist()) == set(range(6))


def test_children_without_crossover_follow_rand_1():
    population = torch.arange(20.0).view(4, 5) * 3
    generator = torch.Generator().manual_seed(4)
    children = _make_children(population, generator, AttackConfig(popsize=4))
    picks = _distinct_partners(4, torch.Generator().manual_seed(4))
    expected = population[picks[:, 0]] + 0.5 * (population[picks[:, 1]] - population[picks[:, 2]])
    assert torch.equal(children, expected)


def test_children_with_zero_crossover_change_one_value():
    population = torch.arange(40.0).view(4, 10)
    children = _make_children(population, torch.Generator().manual_seed(0), AttackConfig(popsize=4, crossover=0.0))
    changed = (children != population).sum(dim=1)
    assert changed.max() <= 1


# --- bookkeeping over many images -------------------------------------------------------------


def test_summary_counts_each_case_exactly():
    """Images: 0 foolable, 1 robust, 2 misclassified; indices repeat 0 and 1."""
    model = mean_red_model()
    images = red_images(FOOLABLE, ROBUST, FOOLABLE)
    labels = [0, 5, 3]
    config = AttackConfig(popsize=20, generations=4)
    summary = attack_many(model, images, labels, [0, 1, 2, 0, 0, 1], config=config)

    assert summary.n_requested == 6
    assert summary.n_images == 3
    assert summary.n_correct == 2
    assert summary.n_misclassified == 1
    assert summary.n_fooled == 1
    assert summary.n_completed == 2
    assert summary.complete
    assert summary.clean_accuracy == pytest.approx(2 / 3)
    assert summary.success_rate == pytest.approx(1 / 2)
    assert summary.accuracy_under_attack == pytest.approx(1 / 3)
    assert [outcome.status for outcome in summary.images] == ["fooled", "robust", "misclassified"]
    # The foolable image succeeds in the first population; the robust one runs 5 populations.
    assert summary.mean_queries == pytest.approx((20 + 100) / 2)


def test_misclassified_image_costs_no_query():
    summary = attack_many(mean_red_model(), red_images(FOOLABLE), [4], config=SMALL)
    assert summary.images[0].status == "misclassified"
    assert summary.images[0].results[0].queries == 0
    assert summary.n_correct == 0
    assert summary.success_rate is None
    assert summary.mean_queries is None
    assert summary.accuracy_under_attack == 0.0


def test_repeated_index_counts_once():
    summary = attack_many(mean_red_model(), red_images(FOOLABLE), [0], [0, 0, 0, 0, 0], config=SMALL)
    assert summary.n_requested == 5
    assert summary.n_images == 1
    assert summary.n_fooled == 1
    assert summary.success_rate == 1.0
    assert len(summary.attempts) == 1


def test_rates_never_exceed_one():
    images = red_images(FOOLABLE, FOOLABLE, ROBUST, FOOLABLE)
    summary = attack_many(mean_red_model(), images, [0, 0, 5, 1], [0, 1, 0, 1, 3, 3, 2], config=SMALL)
    for rate in (summary.success_rate, summary.clean_accuracy, summary.accuracy_under_attack):
        assert 0.0 <= rate <= 1.0
    assert summary.success_rate == pytest.approx(2 / 3)
    assert summary.clean_accuracy == pytest.approx(3 / 4)
    assert summary.accuracy_under_attack == pytest.approx(1 / 4)


def test_targeted_all_counts_target_hits_only():
    """Image 0 (class 5 near 6) reaches only target 6; image 1 (robust) reaches none."""
    images = red_images(NEAR_SIX, ROBUST)
    config = AttackConfig(popsize=30, generations=6)
    summary = attack_many(mean_red_model(), images, [5, 5], config=config, targeted=True, target_mode="all")

    assert summary.target_mode == "all"
    assert len(summary.attempts) == 18
    hits = [(result.image_id, result.target) for result in summary.successes()]
    assert hits == [(0, 6)]
    assert summary.n_fooled == 1
    assert summary.success_rate == pytest.approx(1 / 2)
    assert summary.attempt_success_rate == pytest.approx(1 / 18)
    assert summary.accuracy_under_attack == pytest.approx(1 / 2)
    fooled_elsewhere = [
        result for result in summary.images[0].results if not result.success and result.pred_after != 5
    ]
    assert fooled_elsewhere, "some searches for targets 7..9 should end on class 6 without success"


def test_targeted_random_uses_seeded_other_class():
    images = red_images(FOOLABLE, FOOLABLE, FOOLABLE)
    config = AttackConfig(popsize=20, generations=2, seed=9)
    summary = attack_many(mean_red_model(), images, [0, 0, 0], config=config, targeted=True)
    targets = [outcome.results[0].target for outcome in summary.images]
    assert targets == [random_target(9, image_id, 0, 10) for image_id in range(3)]
    for outcome in summary.images:
        result = outcome.results[0]
        assert result.success == (result.target == 1)
        assert (outcome.status == "fooled") == (result.target == 1)


def test_random_target_is_never_the_label():
    for label in range(10):
        targets = {random_target(0, image_id, label, 10) for image_id in range(300)}
        assert targets == set(range(10)) - {label}


def test_stop_before_start_skips_every_image():
    stop = threading.Event()
    stop.set()
    summary = attack_many(mean_red_model(), red_images(FOOLABLE, ROBUST, FOOLABLE), [0, 5, 2], config=SMALL, stop=stop)
    assert [outcome.status for outcome in summary.images] == [SKIPPED, SKIPPED, "misclassified"]
    assert not summary.complete
    assert summary.success_rate is None
    assert summary.accuracy_under_attack is None
    assert summary.clean_accuracy == pytest.approx(2 / 3)


def test_stop_midway_keeps_finished_images():
    stop = threading.Event()

    def stop_after_first_image(record):
        if record["event"] == "image":
            stop.set()

    images = red_images(ROBUST, FOOLABLE)
    summary = attack_many(
        mean_red_model(),
        images,
        [5, 0],
        config=AttackConfig(popsize=20, generations=3),
        images_per_batch=1,
        callback=stop_after_first_image,
        stop=stop,
    )
    assert [outcome.status for outcome in summary.images] == ["robust", SKIPPED]
    assert summary.n_completed == 1
    assert summary.success_rate == 0.0
    assert summary.accuracy_under_attack is None


def test_summary_json_has_rates_and_attacks():
    summary = attack_many(mean_red_model(), red_images(FOOLABLE, ROBUST), [0, 5], config=SMALL)
    data = summary.to_dict()
    assert data["success_rate"] == 0.5
    assert data["n_images"] == 2
    assert data["images"][0]["attacks"][0]["changed_pixels"][0]["new"][0] >= 110


def test_sample_indices_is_seeded_prefix():
    first = sample_indices(10_000, 20, seed=3)
    longer = sample_indices(10_000, 100, seed=3)
    assert longer[:20] == first
    assert len(set(longer)) == 100
    assert sample_indices(10_000, 20, seed=4) != first


def test_sample_indices_rejects_too_many():
    with pytest.raises(AttackError, match="choose from 1 to 10"):
        sample_indices(10, 11)


# --- random baseline --------------------------------------------------------------------------


def test_baseline_counts_flips_on_correct_images():
    images = red_images(FOOLABLE, ROBUST, FOOLABLE)
    result = random_pixel_baseline(mean_red_model(), images, [0, 5, 7], pixels=1, trials=200, generator=0)
    assert result.n_images == 3
    assert result.n_correct == 2
    assert result.flips[1] == 0
    # A random red of 110 or more fools image 0: 146 of 256 values, about 57% of the trials.
    assert 0.45 < result.flips[0] / 200 < 0.70
    assert result.fooled_rate == 0.5
    assert result.flip_rate == pytest.approx(result.flips[0] / 400)


def test_baseline_is_seeded():
    images = red_images(FOOLABLE, FOOLABLE)
    first = random_pixel_baseline(mean_red_model(), images, [0, 0], 1, 50, torch.Generator().manual_seed(2))
    second = random_pixel_baseline(mean_red_model(), images, [0, 0], 1, 50, torch.Generator().manual_seed(2))
    assert first.flips == second.flips


# --- command line -----------------------------------------------------------------------------


def test_cli_prints_table_and_writes_json(tiny_checkpoint, tmp_path, capsys):
    from cifarlab.cli import main

    out = tmp_path / "attack.json"
    threads = torch.get_num_threads()
    try:
        code = main(
            [
                "attack", "--checkpoint", tiny_checkpoint, "--n", "4", "--popsize", "8",
                "--generations", "1", "--seed", "2", "--threads", "1", "--verbose", "--json", str(out),
            ]
        )
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert code == 0
    assert "success rate" in printed
    assert "clean accuracy" in printed
    assert "index" in printed.splitlines()[4]

    document = json.loads(out.read_text())
    assert document["indices"] == sample_indices(10_000, 4, seed=2)
    summary = document["summary"]
    assert summary["n_images"] == 4
    assert summary["n_correct"] + summary["n_misclassified"] == 4
    assert summary["config"]["popsize"] == 8
    assert len(summary["images"]) == 4


def test_cli_rejects_invalid_pixels(tiny_checkpoint, capsys):
    from cifarlab.cli import main

    code = main(["attack", "--checkpoint", tiny_checkpoint, "--pixels", "9"])
    assert code == 2
    assert "invalid --pixels 9" in capsys.readouterr().err


def test_cli_rejects_missing_checkpoint(tmp_path, capsys):
    from cifarlab.cli import main

    code = main(["attack", "--checkpoint", str(tmp_path / "none.pt")])
    assert code == 2
    assert "not found" in capsys.readouterr().err
