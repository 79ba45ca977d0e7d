"""CIFAR-10 from four sources, decoded once into a cache, and a leak-free validation split.

Every source loads into the same `Cifar10` record: ``uint8`` images of shape ``(N, 3, 32, 32)``
and ``int64`` labels in the order of `CLASSES`, 50,000 training and 10,000 test images for the
real data set.

- ``bundled`` (the default, works offline): the JPEG archive shipped with the repository,
  ``data/cifar10-jpeg.tar.gz``, laid out as ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``.
- ``canonical``: the official ``cifar-10-python.tar.gz``, downloaded on request into
  `cifarlab.paths.data_dir` or placed there by hand.
- ``batches``: an extracted ``cifar-10-batches-py`` folder.
- ``folder``: any ``train/<class>/*`` and ``test/<class>/*`` image folder, or the same as a
  ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive; images of any size or colour mode become
  32x32 RGB.

Decoding 60,000 JPEGs takes seconds, so each source is decoded once into ``.npy`` files under
`cifarlab.paths.cache_dir`, in a folder named after the source's content (a SHA-256 of an archive,
or the names, sizes and modification times of a folder's files). A later load reads those files.

The validation split (`split_train_val`) is carved from the training images only; the test
images never take part in training or model selection.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import logging
import os
import pickle
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cifarlab import paths

log = logging.getLogger(__name__)

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(CLASSES)
IMAGE_SHAPE = (3, 32, 32)

# Per-channel mean and standard deviation of the 50,000 official training images, in [0, 1]
# pixel units, over all pixels of a channel at once. The often quoted std (0.2023, 0.1994,
# 0.2010) is close to the mean of per-image stds instead (0.200, 0.199, 0.201 on the bundled
# set), which leaves out the variation between images.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

SOURCES = ("bundled", "canonical", "batches", "folder")

# The official archive, as published by its authors and checked by torchvision.datasets.CIFAR10.
CANONICAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CANONICAL_FILENAME = "cifar-10-python.tar.gz"
CANONICAL_SIZE = 170_498_071
CANONICAL_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"

# Seconds a download waits for the server to connect or to send the next bytes. A stalled
# transfer fails after this long instead of hanging.
DOWNLOAD_TIMEOUT_S = 30.0

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")

# Bump when the cached arrays' layout or the decoding changes, so old caches are rebuilt.
CACHE_VERSION = 1

# A progress callback receives the stage ("decode train", "decode test" or "download"), the work
# done and the total, in the stage's own units (images or bytes).
ProgressCallback = Callable[[str, int, int], None]

_EXPECTED_LAYOUT = (
    "expected train/<class>/* and test/<class>/* image folders for the 10 classes "
    + ", ".join(CLASSES)
)


class DataError(ValueError):
    """A data source that cannot be loaded; the message names the path and what is expected."""


@dataclass(frozen=True, eq=False)
class Cifar10:
    """The training and test images of one source, with their labels.

    Images are ``uint8`` arrays of shape ``(N, 3, 32, 32)``; labels are ``int64`` class indices
    into `CLASSES`. An image's id is its row in ``train_images`` or ``test_images``.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    description: str
    classes: tuple[str, ...] = field(default=CLASSES)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
                raise ValueError(
                    f"{split}_images must be uint8 of shape (N, 3, 32, 32), "
                    f"got {images.dtype} {images.shape}"
                )
            if labels.dtype != np.int64 or labels.shape != (len(images),):
                raise ValueError(
                    f"{split}_labels must be int64 of shape ({len(images)},), "
                    f"got {labels.dtype} {labels.shape}"
                )

    @property
    def num_train(self) -> int:
        return len(self.train_labels)

    @property
    def num_test(self) -> int:
        return len(self.test_labels)

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Return the number of images of each class in ``"train"`` or ``"test"``."""
        if split not in ("train", "test"):
            raise ValueError(f"invalid split {split!r}; choose 'train' or 'test'")
        labels = getattr(self, f"{split}_labels")
        return np.bincount(labels, minlength=len(self.classes))


# ---------------------------------------------------------------------------------------------
# Validation split


@dataclass(frozen=True, eq=False)
class Split:
    """Training and validation image ids, both drawn from the training images.

    ``train_idx`` and ``val_idx`` are sorted ``int64`` ids into `Cifar10.train_images`; they are
    disjoint and together cover every training image.
    """

    train_idx: np.ndarray
    val_idx: np.ndarray
    seed: int
    val_size: int

    @property
    def train_size(self) -> int:
        return len(self.train_idx)

    @property
    def fingerprint(self) -> str:
        """A short hash of the validation ids, so two records of a split can be compared."""
        digest = hashlib.sha256(self.val_idx.astype("<i8").tobytes()).hexdigest()
        return digest[:12]

    def as_dict(self) -> dict:
        """Return the split as plain data for a checkpoint or report."""
        return {
            "seed": self.seed,
            "train_size": self.train_size,
            "val_size": self.val_size,
            "stratified": True,
            "val_fingerprint": self.fingerprint,
        }


def split_train_val(labels: np.ndarray, val_size: int = 5000, seed: int = 0) -> Split:
    """Carve a seeded, class-stratified validation set out of the training labels.

    Each class gives its share of ``val_size`` in proportion to its count. The shares are rounded
    by largest remainder, so they sum to ``val_size`` exactly: 500 per class for the real data
    set and the default size. The same labels, size and seed always give the same split.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)):
        raise DataError(f"invalid validation size {val_size!r}; give a whole number of images")
    if not 0 <= val_size < len(labels):
        raise DataError(
            f"invalid validation size {val_size}; choose 0 to {len(labels) - 1} of the "
            f"{len(labels)} training images"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"invalid seed {seed!r}; give a non-negative whole number")

    counts = np.bincount(labels)
    exact = counts * (val_size / len(labels))
    shares = np.floor(exact).astype(np.int64)
    leftover = val_size - int(shares.sum())
    # Largest remainder first; ties go to the lower class index because argsort is stable.
    order = np.argsort(-(exact - shares), kind="stable")
    shares[order[:leftover]] += 1

    generator = np.random.default_rng(seed)
    val_parts = []
    for label, share in enumerate(shares):
        ids = np.flatnonzero(labels == label)
        val_parts.append(generator.permutation(ids)[:share])
    val_idx = np.sort(np.concatenate(val_parts)).astype(np.int64)
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[val_idx] = True
    train_idx = np.flatnonzero(~is_val).astype(np.int64)
    return Split(train_idx=train_idx, val_idx=val_idx, seed=int(seed), val_size=int(val_size))


# ---------------------------------------------------------------------------------------------
# Loading


def load_cifar10(
    source: str = "bundled",
    *,
    path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    progress: ProgressCallback | None = None,
) -> Cifar10:
    """Load CIFAR-10 from ``source``, decoding it into the cache on first use.

    ``path`` is the archive for ``bundled`` (default: the shipped one), the
    ``cifar-10-batches-py`` folder for ``batches``, and the image folder or archive for
    ``folder``. ``canonical`` looks in ``data_dir`` (default `cifarlab.paths.data_dir`) and
    downloads the official archive there only when ``download`` is true.

    Raises `DataError` for a missing, incomplete or unreadable source.
    """
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}")
    cache_root = Path(cache_dir) if cache_dir is not None else paths.cache_dir()

    if source == "bundled":
        archive = Path(path) if path is not None else paths.BUNDLED_ARCHIVE
        _require_file(archive, "the bundled CIFAR-10 archive; restore data/cifar10-jpeg.tar.gz")
        key = _file_digest(archive)
        description = f"bundled JPEG archive {_display_path(archive)}"
        return _cached(
            cache_root, source, key, description,
            lambda: _decode_image_tree(_read_archive(archive), archive, progress),
        )

    if source == "canonical":
        folder = _prepare_canonical(
            Path(data_dir) if data_dir is not None else paths.data_dir(), download, progress
        )
        key = _tree_digest(folder, [*TRAIN_BATCHES, TEST_BATCH, META_FILE])
        description = f"official CIFAR-10 python batches in {folder}"
        return _cached(cache_root, source, key, description, lambda: _read_batches(folder))

    if path is None:
        raise DataError(f"the {source!r} source needs a path; pass the folder or archive to load")
    path = Path(path).expanduser()

    if source == "batches":
        folder = _find_batches_folder(path)
        key = _tree_digest(folder, [*TRAIN_BATCHES, TEST_BATCH, META_FILE])
        description = f"CIFAR-10 python batches in {folder}"
        return _cached(cache_root, source, key, description, lambda: _read_batches(folder))

    # source == "folder"
    if path.is_dir():
        key = _tree_digest(path, None)
        description = f"image folder {path}"
        return _cached(
            cache_root, source, key, description,
            lambda: _decode_image_tree(_read_folder(path), path, progress),
        )
    if not path.is_file():
        raise DataError(
            f"{path} does not exist; give an image folder or archive ({_EXPECTED_LAYOUT})"
        )
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise DataError(
            f"{path} is not a folder or a supported archive; give a folder or a "
            f"{', '.join(ARCHIVE_SUFFIXES)} file ({_EXPECTED_LAYOUT})"
        )
    key = _file_digest(path)
    description = f"image archive {path}"
    return _cached(
        cache_root, source, key, description,
        lambda: _decode_image_tree(_read_archive(path), path, progress),
    )


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DataError(f"{path} not found; it should be {what}")


# ---------------------------------------------------------------------------------------------
# Cache


_ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels")


def _display_path(path: Path) -> str:
    """Return ``path`` relative to the repository when it is inside it, so that reports and
    checkpoints made on one machine do not show that machine's folders on another."""
    try:
        return str(path.resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)


def _cached(
    cache_root: Path,
    source: str,
    key: str,
    description: str,
    build: Callable[[], dict[str, np.ndarray]],
) -> Cifar10:
    """Load the arrays for ``key`` from the cache, or build and store them first.

    NOTE: a cache whose source has changed is not deleted, so a folder edited many times leaves
    one stale cache per version in the cache folder until someone removes them.
    """
    folder = cache_root / f"cifar10-{source}-v{CACHE_VERSION}-{key[:20]}"
    arrays = _read_cache(folder)
    if arrays is None:
        started = time.perf_counter()
        arrays = build()
        log.info("decoded %s in %.1f s", description, time.perf_counter() - started)
        _write_cache(folder, arrays)
    return Cifar10(**arrays, source=source, description=description)


def _read_cache(folder: Path) -> dict[str, np.ndarray] | None:
    if not folder.is_dir():
        return None
    try:
        arrays = {
            name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in _ARRAY_NAMES
        }
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if images.shape[1:] != IMAGE_SHAPE or labels.shape != (len(images),):
                raise ValueError(f"{split} arrays of shapes {images.shape} and {labels.shape}")
    except (OSError, ValueError) as error:
        # A cache folder only appears complete (see _write_cache), so this is damage from
        # outside, such as a deleted file; decoding again repairs it.
        log.warning("ignoring unreadable cache %s (%s); decoding again", folder, error)
        return None
    return arrays


def _write_cache(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays into a temporary folder and rename it, so a cache is complete or absent."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    except OSError as error:
        log.warning(
            "cannot write the data cache in %s (%s); continuing without it", folder.parent, error
        )
        return
    try:
        for name in _ARRAY_NAMES:
            np.save(staging / f"{name}.npy", arrays[name], allow_pickle=False)
        if folder.exists():
            shutil.rmtree(folder)  # an unreadable old cache
        os.replace(staging, folder)
    except OSError as error:
        # Another process may have finished the same cache first, which is fine.
        if not (folder / f"{_ARRAY_NAMES[-1]}.npy").exists():
            log.warning("cannot write the data cache %s (%s); continuing without it", folder, error)
        shutil.rmtree(staging, ignore_errors=True)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_digest(root: Path, names: Sequence[str] | None) -> str:
    """Hash a folder's path and its files' relative names, sizes and modification times."""
    digest = hashlib.sha256(str(root.resolve()).encode())
    files = [root / name for name in names] if names is not None else sorted(root.rglob("*"))
    for file in files:
        if file.is_file():
            stat = file.stat()
            relative = file.relative_to(root).as_posix()
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Image trees: train/<class>/* and test/<class>/*, on disk or in an archive


def _read_archive(archive: Path) -> dict[str, bytes]:
    """Return every file of a tar or zip archive as {relative path: bytes}."""
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                files = {
                    info.filename: zipped.read(info)
                    for info in zipped.infolist()
                    if not info.is_dir()
                }
        else:
            files = _read_tar(archive)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(
            f"{archive} is truncated or corrupt ({error}); download or copy it again"
        ) from error
    except OSError as error:
        raise DataError(f"cannot read {archive}: {error}") from error
    if not files:
        raise DataError(f"{archive} is an empty archive; {_EXPECTED_LAYOUT}")
    return files


def _read_tar(archive: Path) -> dict[str, bytes]:
    # Decompressing the whole archive into memory and slicing members out of it is about twice
    # as fast as tarfile's streaming reads for tens of thousands of tiny files.
    raw = archive.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    files = _read_plain_ustar(raw)
    if files is not None:
        return files
    files = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for member in tar:
            if member.isfile():
                files[member.name] = raw[member.offset_data : member.offset_data + member.size]
        # tarfile ends its listing quietly at a damaged header; only zero blocks may follow.
        if raw[tar.offset :].strip(b"\0"):
            raise tarfile.ReadError(f"damaged tar header at byte {tar.offset:,}")
    return files


_TAR_BLOCK = 512
_TAR_REGULAR = (ord("0"), 0)
_TAR_DIRECTORY = ord("5")


def _read_plain_ustar(raw: bytes) -> dict[str, bytes] | None:
    """Read a tar of plain files and folders, or return None to leave it to tarfile.

    tarfile spends about 50 µs on each member's header, 3 s for the 60,000 bundled images. This
    reads the few fields a plain ustar header needs and checks the headers' checksums with numpy.
    Anything else (pax or GNU long names, links, an unreadable field) returns None, so tarfile
    parses it and reports its errors. Unlike tarfile, which stops quietly at a damaged header
    after the first, a bad checksum raises `tarfile.ReadError`.
    """
    offsets, files = [], {}
    position = 0
    while position + _TAR_BLOCK <= len(raw):
        header = raw[position : position + _TAR_BLOCK]
        if header[0] == 0:
            break  # the zero blocks that end the archive
        kind = header[156]
        if kind not in (*_TAR_REGULAR, _TAR_DIRECTORY) or header[124] & 0x80:
            return None
        try:
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            name = header[:100].split(b"\0", 1)[0].decode("utf-8")
            if header[257:262] == b"ustar":
                prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8")
                name = f"{prefix}/{name}" if prefix else name
        except (ValueError, UnicodeDecodeError):
            return None
        start = position + _TAR_BLOCK
        if start + size > len(raw):
            return None
        offsets.append(position)
        if kind != _TAR_DIRECTORY:
            files[name] = raw[start : start + size]
        position = start + -(-size // _TAR_BLOCK) * _TAR_BLOCK
    if not offsets:
        return None
    _check_tar_checksums(raw, offsets)
    return files


def _check_tar_checksums(raw: bytes, offsets: list[int]) -> None:
    """Raise `tarfile.ReadError` for a header whose checksum does not match its bytes.

    The checksum is the sum of the header's bytes with the checksum field read as spaces. Some
    old tar programs summed signed bytes, so either sum is accepted, as tarfile does.
    """
    buffer = np.frombuffer(raw, dtype=np.uint8)
    starts = np.asarray(offsets, dtype=np.int64)
    for first in range(0, len(starts), 4096):
        block = buffer[starts[first : first + 4096, None] + np.arange(_TAR_BLOCK)]
        fields = block[:, 148:156]
        unsigned = block.sum(axis=1, dtype=np.int64) - fields.sum(axis=1) + 8 * ord(" ")
        high_bytes = (block >= 128).sum(axis=1) - (fields >= 128).sum(axis=1)
        signed = unsigned - 256 * high_bytes
        for index, field in enumerate(fields):
            try:
                stored = int(bytes(field).split(b"\0", 1)[0].strip() or b"0", 8)
            except ValueError:
                stored = -1
            if stored not in (unsigned[index], signed[index]):
                offset = int(starts[first + index])
                raise tarfile.ReadError(f"bad checksum in the tar header at byte {offset:,}")


def _read_folder(root: Path) -> dict[str, bytes]:
    files = {}
    for file in sorted(root.rglob("*")):
        if file.is_file():
            try:
                files[file.relative_to(root).as_posix()] = file.read_bytes()
            except OSError as error:
                raise DataError(f"cannot read {file}: {error.strerror}") from error
    return files


def _is_ignored(relative: str) -> bool:
    """Skip hidden files and the resource forks macOS adds to zip files."""
    parts = relative.split("/")
    return parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts)


def _group_by_class(files: dict[str, bytes], origin: Path) -> dict[str, list[list[str]]]:
    """Sort image paths into {split: [paths of class 0, ..., paths of class 9]}.

    The tree may sit at the top of ``files`` or inside one top-level folder, as when a folder is
    zipped whole.
    """
    names = [name for name in files if not _is_ignored(name)]
    prefix = ""
    if not any(name.startswith(("train/", "test/")) for name in names):
        tops = {name.split("/", 1)[0] for name in names if "/" in name}
        if len(tops) == 1:
            prefix = tops.pop() + "/"

    grouped = {"train": [[] for _ in CLASSES], "test": [[] for _ in CLASSES]}
    for name in sorted(names):
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix) :].split("/")
        if parts[0] not in grouped:
            continue
        if not name.lower().endswith(IMAGE_SUFFIXES):
            log.info("skipping %s in %s: not an image file", name, origin)
            continue
        if len(parts) < 3:
            raise DataError(
                f"{origin}: image {name} is not inside a class folder; {_EXPECTED_LAYOUT}"
            )
        if parts[1] not in CLASSES:
            raise DataError(
                f"{origin}: unknown class folder {prefix}{parts[0]}/{parts[1]}; {_EXPECTED_LAYOUT}"
            )
        grouped[parts[0]][CLASSES.index(parts[1])].append(name)

    for split, by_class in grouped.items():
        if not any(by_class):
            raise DataError(f"{origin}: no images in {prefix}{split}/; {_EXPECTED_LAYOUT}")
        missing = [CLASSES[label] for label, names in enumerate(by_class) if not names]
        if missing:
            raise DataError(
                f"{origin}: no images for class {', '.join(missing)} in {prefix}{split}/; "
                f"{_EXPECTED_LAYOUT}"
            )
    return grouped


def _decode_image_tree(
    files: dict[str, bytes], origin: Path, progress: ProgressCallback | None
) -> dict[str, np.ndarray]:
    files = {name.removeprefix("./"): blob for name, blob in files.items()}
    grouped = _group_by_class(files, origin)
    arrays = {}
    for split, by_class in grouped.items():
        names = [name for class_names in by_class for name in class_names]
        labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), [len(n) for n in by_class])
        arrays[f"{split}_images"] = decode_images(
            [files[name] for name in names], names, origin, progress, stage=f"decode {split}"
        )
        arrays[f"{split}_labels"] = labels
    return arrays


def decode_images(
    blobs: Sequence[bytes],
    names: Sequence[str],
    origin: Path | str,
    progress: ProgressCallback | None = None,
    stage: str = "decode",
) -> np.ndarray:
    """Decode image files into a ``uint8`` array of shape ``(N, 3, 32, 32)``.

    32x32 JPEGs (all of the bundled set) go through torchvision's libjpeg-turbo decoder in
    batches, about three times faster than Pillow and identical pixel for pixel. Every other image
    goes through `cifarlab.imageio.load_image_for_model`: any colour mode becomes RGB
    (transparency over white) and the centre square is resized to 32x32 with Lanczos.
    """
    images = np.empty((len(blobs), *IMAGE_SHAPE), dtype=np.uint8)
    is_done = np.zeros(len(blobs), dtype=bool)
    jpeg_ids = [index for index, blob in enumerate(blobs) if blob[:3] == b"\xff\xd8\xff"]
    chunk_size = 2500
    for start in range(0, len(jpeg_ids), chunk_size):
        chunk = jpeg_ids[start : start + chunk_size]
        for index, image in zip(chunk, _decode_jpeg_batch([blobs[index] for index in chunk])):
            if image is not None and image.shape == IMAGE_SHAPE:
                images[index] = image
                is_done[index] = True
        if progress is not None:
            progress(stage, int(is_done.sum()), len(blobs))

    remaining = np.flatnonzero(~is_done)
    if len(remaining):
        from cifarlab.imageio import ImageInputError, load_image_for_model

        for count, index in enumerate(remaining, start=1):
            try:
                images[index], _ = load_image_for_model(blobs[index])
            except ImageInputError as error:
                raise DataError(f"{origin}: cannot use image {names[index]}: {error}") from error
            if progress is not None and (count % 500 == 0 or count == len(remaining)):
                progress(stage, len(blobs) - len(remaining) + count, len(blobs))
    return images


def _decode_jpeg_batch(blobs: list[bytes]) -> list[np.ndarray | None]:
    """Decode JPEGs with torchvision; ``None`` marks images left to the Pillow path."""
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return [None] * len(blobs)
    tensors = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
    try:
        with warnings.catch_warnings():
            # NOTE: torchvision 0.29 deprecates its image decoders in favour of TorchCodec. They
            # still work and are pinned with torchvision; Pillow takes over if they go away.
            warnings.simplefilter("ignore", DeprecationWarning)
            # EXIF orientation is applied as on the Pillow path, so a photo is upright either way.
            decoded = decode_jpeg(tensors, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except RuntimeError:
        # One damaged or unusual JPEG fails the whole batch, so the Pillow path decodes this
        # batch one image at a time and names the file that fails.
        return [None] * len(blobs)
    return [tensor.numpy() for tensor in decoded]


# ---------------------------------------------------------------------------------------------
# cifar-10-batches-py


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle only the numpy arrays and plain containers a CIFAR-10 batch contains.

    A pickle can run any code while it loads; refusing every other global keeps a downloaded or
    copied batch file from doing so.
    """

    _ALLOWED = {
        # Python 3's protocol-2 pickles store bytes as _codecs.encode(text, "latin1").
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise _ForbiddenGlobal(f"{module}.{name}")
        # numpy 2 moved numpy.core to numpy._core; the official batches name the old module.
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            # encoding="bytes" reads the Python 2 pickles of the official release; keys are bytes.
            content = _ArrayUnpickler(file, encoding="bytes").load()
    except FileNotFoundError as error:
        raise DataError(
            f"{path} not found; a {BATCHES_FOLDER} folder contains {', '.join(TRAIN_BATCHES)}, "
            f"{TEST_BATCH} and {META_FILE}"
        ) from error
    except _ForbiddenGlobal as error:
        raise DataError(
            f"{path} is not a CIFAR-10 batch: it asks to load {error}, which a batch never "
            "contains, so it was not loaded"
        ) from error
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{path} is truncated or not a CIFAR-10 batch ({error})") from error
    if not isinstance(content, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch: it contains a {type(content).__name__}")
    return content


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data = batch.get(b"data")
    labels = batch.get(b"labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path} is not a CIFAR-10 batch: it lacks b'data' or b'labels'")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: b'data' is {data.dtype} {data.shape}; expected uint8 rows of 3072 values"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as error:
        raise DataError(f"{path}: b'labels' must be whole numbers 0..9 ({error})") from error
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path}: labels must be 0..9, found {labels.min()}..{labels.max()}")
    # Each row contains the 1024 red values, then green, then blue, each row-major.
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _read_batches(folder: Path) -> dict[str, np.ndarray]:
    meta = _unpickle(folder / META_FILE)
    names = tuple(
        name.decode() if isinstance(name, bytes) else str(name)
        for name in meta.get(b"label_names", [])
    )
    if names != CLASSES:
        raise DataError(
            f"{folder / META_FILE} lists classes {list(names)}; expected the CIFAR-10 classes "
            f"{list(CLASSES)}"
        )
    train = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    test_images, test_labels = _read_batch(folder / TEST_BATCH)
    return {
        "train_images": np.concatenate([images for images, _ in train]),
        "train_labels": np.concatenate([labels for _, labels in train]),
        "test_images": test_images,
        "test_labels": test_labels,
    }


def _find_batches_folder(path: Path) -> Path:
    """Accept the batches folder itself or a folder that contains it."""
    if (path / BATCHES_FOLDER).is_dir():
        path = path / BATCHES_FOLDER
    if not path.is_dir():
        raise DataError(
            f"{path} is not a folder; give the extracted {BATCHES_FOLDER} folder, which contains "
            f"{', '.join(TRAIN_BATCHES)}, {TEST_BATCH} and {META_FILE}"
        )
    expected = (*TRAIN_BATCHES, TEST_BATCH, META_FILE)
    missing = [name for name in expected if not (path / name).is_file()]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)}; a {BATCHES_FOLDER} folder contains "
            f"{', '.join(TRAIN_BATCHES)}, {TEST_BATCH} and {META_FILE}"
        )
    return path


# ---------------------------------------------------------------------------------------------
# Canonical archive: download, check, extract


def _manual_download_hint(folder: Path) -> str:
    return (
        f"download {CANONICAL_FILENAME} ({CANONICAL_SIZE:,} bytes, MD5 {CANONICAL_MD5}) from "
        f"{CANONICAL_URL} on a machine with internet access and put it in {folder}"
    )


def canonical_status(data_dir: str | os.PathLike | None = None) -> str:
    """Describe what of the official data set is in ``data_dir``: extracted, archive or nothing."""
    folder = Path(data_dir) if data_dir is not None else paths.data_dir()
    if (folder / BATCHES_FOLDER / TEST_BATCH).is_file():
        return f"extracted in {folder / BATCHES_FOLDER}"
    archive = folder / CANONICAL_FILENAME
    if archive.is_file():
        return f"archive {archive} present, not yet extracted"
    return f"not downloaded (looked in {folder})"


def download_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
    progress: ProgressCallback | None = None,
) -> Path:
    """Download, check and extract the official archive; return the batches folder.

    ``data_dir`` defaults to `cifarlab.paths.data_dir`.

    Does nothing where the archive or its extracted folder is already there. Makes one attempt
    over HTTPS with certificate checks, and fails after ``timeout_s`` seconds without data.
    """
    folder = Path(data_dir) if data_dir is not None else paths.data_dir()
    return _prepare_canonical(folder, True, progress, timeout_s=timeout_s)


def _prepare_canonical(
    folder: Path,
    download: bool,
    progress: ProgressCallback | None,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    batches = folder / BATCHES_FOLDER
    if batches.is_dir():
        return _find_batches_folder(batches)
    archive = folder / CANONICAL_FILENAME
    if not archive.is_file():
        if not download:
            raise DataError(
                f"the official CIFAR-10 archive is not in {folder}; run "
                f"'python -m cifarlab data download', or {_manual_download_hint(folder)}"
            )
        _download(CANONICAL_URL, archive, timeout_s, progress)
    _check_canonical_archive(archive)
    _extract_canonical(archive, folder)
    return _find_batches_folder(batches)


def _download(
    url: str, destination: Path, timeout_s: float, progress: ProgressCallback | None
) -> None:
    """Fetch ``url`` into ``destination`` through a temporary file, in one attempt.

    torchvision 0.29's ``download_url`` retries a failed HTTPS download over plain HTTP and
    writes straight into the final file. So this uses urllib directly, with a timeout on every
    socket operation and default certificate checks, and renames the file once every byte has
    arrived.
    """
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"cannot create the data folder {destination.parent}: {error.strerror}"
        ) from error
    partial = destination.with_name(destination.name + ".part")
    log.info("downloading %s to %s", url, destination)
    request = urllib.request.Request(url, headers={"User-Agent": "cifarlab"})
    received = 0
    declared = None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            declared = response.headers.get("Content-Length")
            declared = int(declared) if declared and declared.isdigit() else None
            with open(partial, "wb") as file:
                while chunk := response.read(1 << 20):
                    file.write(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress("download", received, declared or CANONICAL_SIZE)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            reason = f"timed out after {timeout_s:g} s without data"
        elif isinstance(reason, socket.gaierror):
            reason = f"the host name could not be resolved, so there is no network or DNS: {reason}"
        raise DataError(
            f"cannot download {url} ({reason}); {_manual_download_hint(destination.parent)}, "
            "then run again"
        ) from error

    # http.client ends a body that stops short of its Content-Length without an error.
    if declared is not None and received != declared:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"cannot download {url} (the connection closed after {received:,} of {declared:,} "
            f"bytes); {_manual_download_hint(destination.parent)}, then run again"
        )
    os.replace(partial, destination)
    log.info("downloaded %s (%d bytes)", destination, received)


def _check_canonical_archive(archive: Path) -> None:
    size = archive.stat().st_size
    hint = _manual_download_hint(archive.parent)
    if size != CANONICAL_SIZE:
        state = "truncated" if size < CANONICAL_SIZE else "not the official file"
        raise DataError(
            f"{archive} is {state}: {size:,} bytes instead of {CANONICAL_SIZE:,}; delete it and "
            f"{hint}"
        )
    digest = hashlib.md5(usedforsecurity=False)
    with open(archive, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != CANONICAL_MD5:
        raise DataError(
            f"{archive} is corrupt: its MD5 is {digest.hexdigest()}, not {CANONICAL_MD5}; "
            f"delete it and {hint}"
        )


def _extract_canonical(archive: Path, folder: Path) -> None:
    """Extract the batches into a temporary folder, then rename it into place."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=folder))
    except OSError as error:
        raise DataError(f"cannot extract {archive} into {folder}: {error.strerror}") from error
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")
        extracted = staging / BATCHES_FOLDER
        if not extracted.is_dir():
            raise DataError(f"{archive} does not contain a {BATCHES_FOLDER} folder")
        os.replace(extracted, folder / BATCHES_FOLDER)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(
            f"{archive} could not be extracted ({error}); delete it and download it again"
        ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Overview for `cifarlab data info` and the pages


def find_sources(data_dir: str | os.PathLike | None = None) -> list[dict]:
    """List the sources that can be loaded without a path, with a line on each one's state."""
    folder = Path(data_dir) if data_dir is not None else paths.data_dir()
    bundled = paths.BUNDLED_ARCHIVE
    return [
        {
            "source": "bundled",
            "available": bundled.is_file(),
            "detail": f"{bundled}" if bundled.is_file() else f"{bundled} is missing",
        },
        {
            "source": "canonical",
            "available": (folder / BATCHES_FOLDER).is_dir()
            or (folder / CANONICAL_FILENAME).is_file(),
            "detail": canonical_status(folder),
        },
    ]
