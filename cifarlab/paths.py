"""Where cifarlab reads and writes files.

Everything the app writes lives under one home folder (``CIFARLAB_HOME``, default
``~/.cifarlab``), outside the repository's tracked files. Each sub-folder can be moved on its
own with its environment variable; the CLI's ``--data-dir`` and ``--cache-dir`` flags override
both.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Files that ship with the repository.
BUNDLED_ARCHIVE = REPO_ROOT / "data" / "cifar10-jpeg.tar.gz"
SHIPPED_CHECKPOINT_DIR = REPO_ROOT / "checkpoints"


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def home_dir() -> Path:
    """Return the root of everything cifarlab writes (``CIFARLAB_HOME``)."""
    return _env_path("CIFARLAB_HOME", Path.home() / ".cifarlab")


def data_dir() -> Path:
    """Return the folder for downloaded data sets (``CIFARLAB_DATA_DIR``)."""
    return _env_path("CIFARLAB_DATA_DIR", home_dir() / "data")


def cache_dir() -> Path:
    """Return the folder for decoded arrays and other caches (``CIFARLAB_CACHE_DIR``)."""
    return _env_path("CIFARLAB_CACHE_DIR", home_dir() / "cache")


def user_checkpoint_dir() -> Path:
    """Return the folder for checkpoints trained or uploaded by users (``CIFARLAB_CHECKPOINT_DIR``)."""
    return _env_path("CIFARLAB_CHECKPOINT_DIR", home_dir() / "checkpoints")


def runs_dir() -> Path:
    """Return the folder for background training runs: logs and status (``CIFARLAB_RUNS_DIR``)."""
    return _env_path("CIFARLAB_RUNS_DIR", home_dir() / "runs")
