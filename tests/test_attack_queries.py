"""How the attack scores candidates: the memo, incremental first layers, and the early end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cifarlab.attack import FAILED, AttackConfig, AttackError, apply_pixels, attack_image
from cifarlab.attack.queries import CandidateScorer, evaluate_candidates
from cifarlab.models import build_model


def random_candidates(count: int, pixels: int, seed: int, side: int = 32) -> torch.Tensor:
    """Candidates with integer values; every 7th repeats its first pixel's position."""
    generator = torch.Generator().manual_seed(seed)
    positions = torch.randint(0, side, (count, pixels, 2), generator=generator)
    if pixels > 1:
        positions[::7, -1] = positions[::7, 0]
    # Include the corners, where a crop window must be clamped to the image.
    positions[0, 0] = torch.tensor([0, 0])
    positions[1, 0] = torch.tensor([side - 1, side - 1])
    positions[2, 0] = torch.tensor([0, side - 1])
    colours = torch.randint(0, 256, (count, pixels, 3), generator=generator)
    return torch.cat([positions, colours], dim=2).view(count, -1).float()


def images(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)


# --- incremental first layers ----------------------------------------------------------------


@pytest.mark.parametrize("arch, options", [("lenet", {}), ("lenet", {"pooling": "avg", "activation": "tanh"}), ("mlp", {}), ("mlp", {"batchnorm": True})])
@pytest.mark.parametrize("pixels", [1, 3, 5])
def test_incremental_logits_match_the_whole_model(arch, options, pixels):
    torch.manual_seed(0)
    model = build_model(arch, **options).eval()
    batch = images(3)
    candidates = random_candidates(90, pixels, seed=pixels)
    owners = torch.arange(90) % 3
    scorer = CandidateScorer(model, batch, batch_size=32, memo=False, incremental=True)
    assert scorer.incremental

    fast, fresh = scorer.score(candidates, owners)
    whole = evaluate_candidates(model, batch, candidates, owners, batch_size=90)
    assert fresh.all()
    torch.testing.assert_close(fast, whole, rtol=1e-4, atol=1e-4)


def test_stems_split_the_network_exactly():
    torch.manual_seed(0)
    for arch in ("lenet", "mlp"):
        model = build_model(arch).eval()
        stem, rest = model.net.stem_and_rest()
        x = torch.randn(4, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(rest(stem(x)), model.net(x))


@pytest.mark.parametrize("arch", ["cnn", "alexnet"])
def test_unsplit_networks_use_whole_model(arch):
    model = build_model(arch).eval()
    batch = images(2)
    candidates = random_candidates(8, 1, seed=0)
    owners = torch.tensor([0, 1] * 4)
    scorer = CandidateScorer(model, batch, batch_size=8, incremental=True)
    assert not scorer.incremental
    logits, _ = scorer.score(candidates, owners)
    assert torch.equal(logits, evaluate_candidates(model, batch, candidates, owners, batch_size=8))


def test_padded_stem_is_not_evaluated_incrementally():
    """A padded convolution reads zeros beyond the border that a crop would read as pixels."""

    class PaddedNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 32 * 32, 10))

        def forward(self, x):
            return self.head(self.conv(x))

        def stem_and_rest(self):
            return nn.Sequential(self.conv), self.head

    from cifarlab.models import Classifier

    model = Classifier(PaddedNet(), arch="padded", options={}, num_classes=10).eval()
    assert not CandidateScorer(model, images(1), batch_size=4).incremental


# --- the memo --------------------------------------------------------------------------------


def test_memo_queries_each_candidate_once_per_image():
    model = build_model("lenet").eval()
    batch = images(2)
    calls = []
    model.net.register_forward_pre_hook(lambda module, inputs: calls.append(inputs[0].shape[0]))
    scorer = CandidateScorer(model, batch, batch_size=100, incremental=False)
    candidates = random_candidates(6, 1, seed=3)
    # Rows 0 and 3 are the same candidate for the same image; row 4 is row 0 for the other image.
    candidates[3] = candidates[0]
    candidates[4] = candidates[0]
    owners = torch.tensor([0, 0, 0, 0, 1, 1])

    first, fresh = scorer.score(candidates, owners)
    assert fresh.tolist() == [True, True, True, False, True, True]
    assert calls == [5]
    assert torch.equal(first[3], first[0])

    again, fresh = scorer.score(candidates.flip(0), owners.flip(0))
    assert not fresh.any()
    assert calls == [5]
    assert torch.equal(again, first.flip(0))

    scorer.forget(0)
    _, fresh = scorer.score(candidates[:1], owners[:1])
    assert fresh.tolist() == [True]


def test_scoring_options_do_not_change_the_attack():
    torch.manual_seed(1)
    model = build_model("lenet").eval()
    image = images(1, seed=4)[0]
    label = int(model(image[None].float() / 255).argmax())
    results = []
    for memo in (False, True):
        for incremental in (False, True):
            config = AttackConfig(popsize=30, generations=15, seed=2, memo=memo, incremental=incremental)
            results.append(attack_image(model, image.numpy(), label, config=config))
    first = results[0]
    for result in results[1:]:
        assert result.status == first.status
        assert result.generations == first.generations
        assert np.array_equal(result.adversarial, first.adversarial)
    # Without the memo every candidate is a query; with it, repeats are not.
    assert results[0].queries == results[1].queries >= results[2].queries == results[3].queries


@pytest.mark.parametrize("pixels", [1, 3])
def test_reported_probabilities_come_from_the_whole_model(pixels):
    torch.manual_seed(2)
    model = build_model("mlp").eval()
    image = images(1, seed=5)[0]
    label = int(model(image[None].float() / 255).argmax())
    result = attack_image(model, image.numpy(), label, config=AttackConfig(pixels=pixels, popsize=20, generations=5))
    with torch.no_grad():
        whole = torch.softmax(model(torch.from_numpy(result.adversarial)[None].float() / 255), dim=1)[0]
    assert result.probs_after == whole.tolist()
    assert result.pred_after == int(whole.argmax())


@pytest.mark.parametrize("name", ["memo", "incremental"])
def test_scoring_options_must_be_booleans(name):
    with pytest.raises(AttackError, match=f"invalid {name} 'yes'"):
        AttackConfig(**{name: "yes"})


# --- the early end ----------------------------------------------------------------------------


class CornerNet(nn.Module):
    """Class 0 by a wide margin; class 1 rises with red and blue and falls with green, most at (3, 0).

    Every part of a candidate matters and the best one, (3, 0) in colour (255, 0, 255), lies on
    the bounds, where clipping gathers the whole population without ever fooling the model.
    """

    def forward(self, x):
        rows = torch.arange(4.0, device=x.device)[:, None]
        cols = torch.arange(4.0, device=x.device)[None, :]
        weight = 1.0 / (1.0 + (rows - 3.0) ** 2 + cols**2)
        purple = ((x[:, 0] - x[:, 1] + x[:, 2]) * weight).sum(dim=(1, 2))
        logits = torch.zeros(x.shape[0], 10, device=x.device)
        logits[:, 0] = 50.0
        logits[:, 1] = purple
        return logits


def test_search_ends_when_the_population_is_one_candidate():
    model = CornerNet().eval()
    image = np.zeros((3, 4, 4), dtype=np.uint8)
    config = AttackConfig(popsize=100, generations=1000, seed=0)
    result = attack_image(model, image, 0, config=config)

    assert result.status == FAILED
    assert result.generations < config.generations
    # One more generation from the collapsed population would only copy it, so a budget that
    # ends exactly there gives the same result.
    shorter = attack_image(model, image, 0, config=AttackConfig(popsize=100, generations=result.generations, seed=0))
    assert shorter.status == FAILED
    assert np.array_equal(shorter.adversarial, result.adversarial)
    assert [change.to_dict() for change in result.changed] == [
        {"row": 3, "col": 0, "old": [0, 0, 0], "new": [255, 0, 255]}
    ]
    assert len(result.confidence_history) == result.generations + 1


def test_perturbed_images_match_apply_pixels_for_the_crops():
    """The crops of a conv stem come from the image with every pixel of the candidate written."""
    batch = images(1)
    candidates = torch.tensor([[5.0, 5.0, 1.0, 2.0, 3.0, 6.0, 7.0, 4.0, 5.0, 6.0]])
    written = apply_pixels(batch, candidates)
    assert written[0, :, 5, 5].tolist() == [1, 2, 3]
    model = build_model("lenet").eval()
    scorer = CandidateScorer(model, batch, batch_size=1, memo=False)
    logits, _ = scorer.score(candidates, torch.tensor([0]))
    with torch.no_grad():
        torch.testing.assert_close(logits[0], model(written.float() / 255)[0], rtol=1e-5, atol=1e-5)


def test_converged_search_is_described_as_such():
    from ui.attack import describe_result

    image = np.zeros((3, 4, 4), dtype=np.uint8)
    config = AttackConfig(popsize=100, generations=1000, seed=0)
    result = attack_image(CornerNet().eval(), image, 0, config=config)
    kind, text = describe_result(result, [f"class {index}" for index in range(10)])
    assert kind == "warning"
    assert "converged on the same pixel change" in text
    assert f"after {result.generations} generations" in text
