"""The few-pixel attack of Su, Vargas and Sakurai (2019) and honest robustness bookkeeping.

- `attack_image` / `attack_images`: differential evolution on one image or several at once.
- `attack_many`: attack a sample of a split and summarize it (`AttackSummary`).
- `random_pixel_baseline`: how often random pixels alone change the prediction.
- `apply_pixels`: write candidate pixels into images, exactly as the search does.
"""

from cifarlab.attack.config import (
    FAILED,
    MISCLASSIFIED,
    SKIPPED,
    STATUSES,
    STOPPED,
    SUCCESS,
    AttackConfig,
    AttackError,
    AttackResult,
)
from cifarlab.attack.evolution import predict_logits
from cifarlab.attack.images import attack_image, attack_images
from cifarlab.attack.pixels import PixelChange, apply_pixels, changed_pixels
from cifarlab.attack.summary import (
    TARGET_MODES,
    AttackSummary,
    BaselineResult,
    ImageOutcome,
    attack_many,
    random_pixel_baseline,
    random_target,
    sample_indices,
)

__all__ = [
    "FAILED",
    "MISCLASSIFIED",
    "SKIPPED",
    "STATUSES",
    "STOPPED",
    "SUCCESS",
    "TARGET_MODES",
    "AttackConfig",
    "AttackError",
    "AttackResult",
    "AttackSummary",
    "BaselineResult",
    "ImageOutcome",
    "PixelChange",
    "apply_pixels",
    "attack_image",
    "attack_images",
    "attack_many",
    "changed_pixels",
    "predict_logits",
    "random_pixel_baseline",
    "random_target",
    "sample_indices",
]
