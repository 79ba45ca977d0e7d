"""Tests of cifarlab.data on image folders, batches and archives the tests write themselves."""

from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarlab import data
from cifarlab.data import (
    CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    NUM_CLASSES,
    Cifar10,
    DataError,
    load_cifar10,
    split_train_val,
)

# Distinct solid colours, one per class, so a test can tell each decoded image's class by eye.
CLASS_COLOURS = [
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
    (255, 0, 255), (128, 0, 0), (0, 128, 0), (0, 0, 128), (128, 128, 128),
]


def write_image_tree(root: Path, per_class: int = 2, fmt: str = "PNG") -> Path:
    """Write train/<class>/ and test/<class>/ with solid-colour images of mixed sizes."""
    suffix = ".png" if fmt == "PNG" else ".jpg"
    for split in ("train", "test"):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                size = (32, 32) if index == 0 else (48 + index, 40)
                Image.new("RGB", size, CLASS_COLOURS[label]).save(folder / f"{index:04d}{suffix}", fmt)
    return root


def tar_folder(folder: Path, archive: Path, arcname: str = "") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(Path(arcname) / path.relative_to(folder)), recursive=False)
    return archive


def zip_folder(folder: Path, archive: Path, arcname: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zipped.write(path, str(Path(arcname) / path.relative_to(folder)))
    return archive


def write_batch(path: Path, images: np.ndarray, labels: list[int], numpy_core: bool = True) -> None:
    """Write a batch in the official format: a protocol-2 pickle of a dict with bytes keys."""
    batch = {
        b"batch_label": path.name.encode(),
        b"labels": list(labels),
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"{index}.png".encode() for index in range(len(images))],
    }
    payload = pickle.dumps(batch, protocol=2)
    if numpy_core:
        # The official files were written before numpy 2 and name numpy.core.multiarray.
        payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(payload)


def write_batches(root: Path, per_batch: int = 10) -> Path:
    folder = root / data.BATCHES_FOLDER
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    names = [*data.TRAIN_BATCHES, data.TEST_BATCH]
    for number, name in enumerate(names):
        images = generator.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = [(number + index) % NUM_CLASSES for index in range(per_batch)]
        write_batch(folder / name, images, labels)
    meta = {b"label_names": [name.encode() for name in CLASSES], b"num_vis": 3072}
    (folder / data.META_FILE).write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# ---------------------------------------------------------------------------------------------
# Constants


def test_classes_in_canonical_order():
    assert CLASSES[0] == "airplane"
    assert CLASSES[9] == "truck"
    assert NUM_CLASSES == 10


def test_canonical_constants_match_torchvision():
    from torchvision.datasets import CIFAR10

    assert data.CANONICAL_URL == CIFAR10.url
    assert data.CANONICAL_FILENAME == CIFAR10.filename
    assert data.CANONICAL_MD5 == CIFAR10.tgz_md5
    assert data.BATCHES_FOLDER == CIFAR10.base_folder


# ---------------------------------------------------------------------------------------------
# Split


def test_split_sizes_and_disjoint():
    labels = np.repeat(np.arange(10), 100)
    split = split_train_val(labels, val_size=200, seed=3)
    assert len(split.val_idx) == 200
    assert split.train_size == 800
    assert not set(split.train_idx) & set(split.val_idx)
    assert sorted([*split.train_idx, *split.val_idx]) == list(range(1000))


def test_split_is_stratified():
    labels = np.repeat(np.arange(10), 100)
    split = split_train_val(labels, val_size=200, seed=3)
    assert np.bincount(labels[split.val_idx]).tolist() == [20] * 10


def test_split_uneven_classes_sum_exactly():
    labels = np.array([0] * 7 + [1] * 5 + [2] * 3)
    split = split_train_val(labels, val_size=4, seed=0)
    assert len(split.val_idx) == 4
    # Shares 1.87, 1.33, 0.8 round by largest remainder to 2, 1, 1.
    assert np.bincount(labels[split.val_idx], minlength=3).tolist() == [2, 1, 1]


def test_split_deterministic_per_seed():
    labels = np.repeat(np.arange(10), 50)
    first = split_train_val(labels, val_size=50, seed=7)
    again = split_train_val(labels, val_size=50, seed=7)
    other = split_train_val(labels, val_size=50, seed=8)
    assert np.array_equal(first.val_idx, again.val_idx)
    assert first.fingerprint == again.fingerprint
    assert not np.array_equal(first.val_idx, other.val_idx)
    assert first.fingerprint != other.fingerprint


def test_split_as_dict_records_seed_and_sizes():
    labels = np.repeat(np.arange(10), 50)
    record = split_train_val(labels, val_size=50, seed=7).as_dict()
    assert record["seed"] == 7
    assert record["val_size"] == 50
    assert record["train_size"] == 450
    assert len(record["val_fingerprint"]) == 12


def test_split_zero_validation():
    split = split_train_val(np.repeat(np.arange(10), 3), val_size=0)
    assert len(split.val_idx) == 0
    assert split.train_size == 30


@pytest.mark.parametrize(
    ("val_size", "seed", "message"),
    [
        (-1, 0, "invalid validation size -1"),
        (100, 0, "invalid validation size 100"),
        (2.5, 0, "invalid validation size 2.5"),
        (10, -4, "invalid seed -4"),
    ],
)
def test_split_rejects_bad_arguments(val_size, seed, message):
    with pytest.raises(DataError, match=message):
        split_train_val(np.repeat(np.arange(10), 10), val_size=val_size, seed=seed)


# ---------------------------------------------------------------------------------------------
# Bundled archive (the real 60,000 images)


@pytest.fixture(scope="module")
def bundled() -> Cifar10:
    # The session's shared cache dir (see conftest.py) makes this a fast read after the first run.
    return load_cifar10()


def test_bundled_shapes_and_counts(bundled):
    assert bundled.train_images.shape == (50_000, 3, 32, 32)
    assert bundled.test_images.shape == (10_000, 3, 32, 32)
    assert bundled.train_images.dtype == np.uint8
    assert bundled.train_labels.dtype == np.int64
    assert bundled.class_counts("train").tolist() == [5000] * 10
    assert bundled.class_counts("test").tolist() == [1000] * 10
    assert bundled.source == "bundled"


def test_bundled_statistics_near_constants(bundled):
    pixels = bundled.train_images[::10].astype(np.float64) / 255
    # JPEG compression smooths the images slightly, so the std is a little below the official one.
    assert np.allclose(pixels.mean(axis=(0, 2, 3)), CIFAR10_MEAN, atol=0.005)
    assert np.allclose(pixels.std(axis=(0, 2, 3)), CIFAR10_STD, atol=0.005)


def test_bundled_pixels_match_pillow(bundled):
    files = data._read_archive(data.paths.BUNDLED_ARCHIVE)
    generator = np.random.default_rng(0)
    for split, images in (("train", bundled.train_images), ("test", bundled.test_images)):
        for label, name in enumerate(CLASSES):
            # Within a class, images are stored in file-name order.
            names = sorted(path for path in files if path.startswith(f"{split}/{name}/"))
            position = int(generator.integers(len(names)))
            with Image.open(io.BytesIO(files[names[position]])) as image:
                expected = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
            assert np.array_equal(images[label * len(names) + position], expected), names[position]


def test_bundled_split_has_500_per_class(bundled):
    split = split_train_val(bundled.train_labels)
    assert np.bincount(bundled.train_labels[split.val_idx]).tolist() == [500] * 10


# ---------------------------------------------------------------------------------------------
# Image folders and their archives


def test_folder_loads_every_class(tmp_path, cache):
    root = write_image_tree(tmp_path / "images")
    loaded = load_cifar10("folder", path=root, cache_dir=cache)
    assert loaded.train_images.shape == (20, 3, 32, 32)
    assert loaded.test_images.shape == (20, 3, 32, 32)
    assert loaded.train_labels.tolist() == [label for label in range(10) for _ in range(2)]
    assert loaded.source == "folder"


def test_folder_pixels_are_class_colours(tmp_path, cache):
    root = write_image_tree(tmp_path / "images")
    loaded = load_cifar10("folder", path=root, cache_dir=cache)
    for image, label in zip(loaded.train_images, loaded.train_labels):
        assert image.reshape(3, -1).T.tolist() == [list(CLASS_COLOURS[label])] * 1024


def test_folder_jpeg_close_to_colours(tmp_path, cache):
    root = write_image_tree(tmp_path / "images", fmt="JPEG")
    loaded = load_cifar10("folder", path=root, cache_dir=cache)
    expected = np.array(CLASS_COLOURS)[loaded.test_labels][:, :, None, None]
    assert np.abs(loaded.test_images.astype(int) - expected).max() <= 3


def test_folder_converts_modes_to_rgb(tmp_path, cache):
    root = write_image_tree(tmp_path / "images", per_class=1)
    cat = root / "train" / "cat"
    Image.new("L", (20, 30), 77).save(cat / "gray.png")
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(cat / "transparent.png")
    Image.new("I;16", (32, 32), 65535).save(cat / "wide.png")
    Image.new("P", (32, 32), 0).save(cat / "palette.gif")
    loaded = load_cifar10("folder", path=root, cache_dir=cache)
    cats = loaded.train_images[loaded.train_labels == CLASSES.index("cat")]
    assert len(cats) == 5
    by_name = dict(zip(["0000.png", "gray.png", "palette.gif", "transparent.png", "wide.png"], cats))
    assert (by_name["gray.png"] == 77).all()
    assert (by_name["transparent.png"] == 255).all()
    assert (by_name["wide.png"] == 255).all()
    assert (by_name["palette.gif"] == 0).all()


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
@pytest.mark.parametrize("arcname", ["", "my-images"])
def test_archive_matches_folder(tmp_path, cache, kind, arcname):
    root = write_image_tree(tmp_path / "images")
    pack = tar_folder if kind == "tar.gz" else zip_folder
    archive = pack(root, tmp_path / f"images.{kind}", arcname)
    from_folder = load_cifar10("folder", path=root, cache_dir=cache)
    from_archive = load_cifar10("folder", path=archive, cache_dir=cache)
    assert np.array_equal(from_archive.train_images, from_folder.train_images)
    assert np.array_equal(from_archive.test_labels, from_folder.test_labels)


def test_folder_ignores_hidden_and_text_files(tmp_path, cache):
    root = write_image_tree(tmp_path / "images", per_class=1)
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\0\1")
    (root / "train" / "README.txt").write_text("notes")
    loaded = load_cifar10("folder", path=root, cache_dir=cache)
    assert loaded.num_train == 10


def test_folder_cache_reused_and_refreshed(tmp_path, cache):
    root = write_image_tree(tmp_path / "images", per_class=1)
    load_cifar10("folder", path=root, cache_dir=cache)
    assert len(list(cache.iterdir())) == 1
    load_cifar10("folder", path=root, cache_dir=cache)
    assert len(list(cache.iterdir())) == 1
    Image.new("RGB", (32, 32), (1, 2, 3)).save(root / "train" / "dog" / "new.png")
    reloaded = load_cifar10("folder", path=root, cache_dir=cache)
    assert reloaded.num_train == 11
    assert len(list(cache.iterdir())) == 2


def test_damaged_cache_is_rebuilt(tmp_path, cache):
    root = write_image_tree(tmp_path / "images", per_class=1)
    first = load_cifar10("folder", path=root, cache_dir=cache)
    (cache_folder,) = cache.iterdir()
    (cache_folder / "test_images.npy").write_bytes(b"not numpy")
    again = load_cifar10("folder", path=root, cache_dir=cache)
    assert np.array_equal(again.test_images, first.test_images)


def test_cache_has_no_leftover_staging(tmp_path, cache):
    root = write_image_tree(tmp_path / "images", per_class=1)
    load_cifar10("folder", path=root, cache_dir=cache)
    assert [path.name.startswith(".") for path in cache.iterdir()] == [False]


# ---------------------------------------------------------------------------------------------
# Bad image folders and archives


def test_missing_class_named(tmp_path, cache):
    root = write_image_tree(tmp_path / "images", per_class=1)
    for file in (root / "test" / "frog").iterdir():
        file.unlink()
    (root / "test" / "frog").rmdir()
    with pytest.raises(DataError, match=r"no images for class frog in test/"):
        load_cifar10("folder", path=root, cache_dir=cache)


def test_unknown_class_named(tmp_path, cache):
    root = write_image_tree(tmp_path / "images", per_class=1)
    (root / "train" / "cow").mkdir()
    Image.new("RGB", (32, 32)).save(root / "train" / "cow" / "1.png")
    with pytest.raises(DataError, match=r"unknown class folder train/cow"):
        load_cifar10("folder", path=root, cache_dir=cache)


def test_missing_test_folder(tmp_path, cache):
    root = write_image_tree(tmp_path / "images", per_class=1)
    for file in (root / "test").rglob("*.png"):
        file.unlink()
    with pytest.raises(DataError, match=r"no images in test/; expected train/<class>/\*"):
        load_cifar10("folder", path=root, cache_dir=cache)


def test_image_outside_class_folder(tmp_path, cache):
    root = write_image_tree(tmp_path / "images", per_class=1)
    Image.new("RGB", (32, 32)).save(root / "train" / "stray.png")
    with pytest.raises(DataError, match=r"train/stray.png is not inside a class folder"):
        load_cifar10("folder", path=root, cache_dir=cache)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0garbage"])
def test_unreadable_image_named(tmp_path, cache, content):
    root = write_image_tree(tmp_path / "images", per_class=1)
    (root / "train" / "ship" / "broken.jpg").write_bytes(content)
    with pytest.raises(DataError, match=r"cannot use image train/ship/broken.jpg"):
        load_cifar10("folder", path=root, cache_dir=cache)


def test_wrong_path(tmp_path, cache):
    with pytest.raises(DataError, match=r"nowhere does not exist; give an image folder"):
        load_cifar10("folder", path=tmp_path / "nowhere", cache_dir=cache)


def test_file_that_is_not_archive(tmp_path, cache):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes.txt is not a folder or a supported archive"):
        load_cifar10("folder", path=tmp_path / "notes.txt", cache_dir=cache)


def test_folder_source_needs_path(cache):
    with pytest.raises(DataError, match=r"'folder' source needs a path"):
        load_cifar10("folder", cache_dir=cache)


def test_unknown_source(cache):
    with pytest.raises(DataError, match=r"unknown data source 'mnist'"):
        load_cifar10("mnist", cache_dir=cache)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_empty_archive(tmp_path, cache, kind):
    archive = tmp_path / f"empty.{kind}"
    if kind == "zip":
        zipfile.ZipFile(archive, "w").close()
    else:
        tarfile.open(archive, "w:gz").close()
    with pytest.raises(DataError, match=r"empty archive"):
        load_cifar10("folder", path=archive, cache_dir=cache)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_truncated_archive(tmp_path, cache, kind):
    root = write_image_tree(tmp_path / "images")
    pack = tar_folder if kind == "tar.gz" else zip_folder
    archive = pack(root, tmp_path / f"images.{kind}")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"is truncated or corrupt"):
        load_cifar10("folder", path=archive, cache_dir=cache)


def test_missing_bundled_archive(tmp_path, cache):
    with pytest.raises(DataError, match=r"gone.tar.gz not found; it should be the bundled"):
        load_cifar10("bundled", path=tmp_path / "gone.tar.gz", cache_dir=cache)


# ---------------------------------------------------------------------------------------------
# cifar-10-batches-py


def test_batches_load(tmp_path, cache):
    folder = write_batches(tmp_path)
    loaded = load_cifar10("batches", path=folder, cache_dir=cache)
    assert loaded.train_images.shape == (50, 3, 32, 32)
    assert loaded.test_images.shape == (10, 3, 32, 32)
    assert loaded.train_labels.dtype == np.int64
    assert loaded.train_labels[:3].tolist() == [0, 1, 2]


def test_batches_parent_folder_accepted(tmp_path, cache):
    write_batches(tmp_path)
    loaded = load_cifar10("batches", path=tmp_path, cache_dir=cache)
    assert loaded.num_test == 10


def test_batches_channel_layout(tmp_path, cache):
    folder = write_batches(tmp_path)
    # One row: 1024 red values, then 1024 green, then 1024 blue, each row-major.
    row = np.zeros(3072, dtype=np.uint8)
    row[0] = 200          # red at (0, 0)
    row[1024 + 33] = 100  # green at (1, 1)
    row[2048 + 1023] = 50  # blue at (31, 31)
    write_batch(folder / data.TEST_BATCH, row[None], [3])
    loaded = load_cifar10("batches", path=folder, cache_dir=cache)
    image = loaded.test_images[0]
    assert image[0, 0, 0] == 200
    assert image[1, 1, 1] == 100
    assert image[2, 31, 31] == 50
    assert image.sum() == 350


def test_batches_new_numpy_pickles(tmp_path, cache):
    folder = write_batches(tmp_path)
    images = np.full((2, 3, 32, 32), 9, dtype=np.uint8)
    write_batch(folder / data.TEST_BATCH, images, [1, 2], numpy_core=False)
    loaded = load_cifar10("batches", path=folder, cache_dir=cache)
    assert loaded.test_labels.tolist() == [1, 2]


def test_batches_missing_file(tmp_path, cache):
    folder = write_batches(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"lacks data_batch_3; a cifar-10-batches-py folder contains"):
        load_cifar10("batches", path=folder, cache_dir=cache)


def test_batches_truncated_file(tmp_path, cache):
    folder = write_batches(tmp_path)
    batch = folder / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DataError, match=r"data_batch_2 is truncated or not a CIFAR-10 batch"):
        load_cifar10("batches", path=folder, cache_dir=cache)


def test_batches_refuse_code_in_pickle(tmp_path, cache):
    folder = write_batches(tmp_path)

    class RunsCode:
        def __reduce__(self):
            return (print, ("pickle ran code",))

    (folder / data.TEST_BATCH).write_bytes(pickle.dumps({b"data": RunsCode()}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch is not a CIFAR-10 batch: it asks to load (__builtin__|builtins).print"):
        load_cifar10("batches", path=folder, cache_dir=cache)


def test_batches_wrong_classes(tmp_path, cache):
    folder = write_batches(tmp_path)
    meta = {b"label_names": [f"class{index}".encode() for index in range(10)]}
    (folder / data.META_FILE).write_bytes(pickle.dumps(meta, protocol=2))
    with pytest.raises(DataError, match=r"expected the CIFAR-10 classes"):
        load_cifar10("batches", path=folder, cache_dir=cache)


def test_batches_bad_labels(tmp_path, cache):
    folder = write_batches(tmp_path)
    write_batch(folder / "data_batch_1", np.zeros((2, 3, 32, 32), np.uint8), [0, 12])
    with pytest.raises(DataError, match=r"labels must be 0..9, found 0..12"):
        load_cifar10("batches", path=folder, cache_dir=cache)


def test_batches_wrong_path(tmp_path, cache):
    with pytest.raises(DataError, match=r"missing is not a folder; give the extracted cifar-10"):
        load_cifar10("batches", path=tmp_path / "missing", cache_dir=cache)


# ---------------------------------------------------------------------------------------------
# Canonical archive: offline, failing and truncated downloads against localhost servers


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    declared_length: int | None = None

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        if self.declared_length is not None:
            self.send_header("Content-Length", str(self.declared_length))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """Serve a body on localhost; return its URL. ``declared_length`` may overstate the body."""
    servers = []

    def start(body: bytes, declared_length: int | None = None) -> str:
        handler = type("Handler", (_Handler,), {"body": body, "declared_length": declared_length})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/{data.CANONICAL_FILENAME}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_canonical_absent_names_file_size_md5(tmp_path, cache):
    with pytest.raises(DataError) as caught:
        load_cifar10("canonical", data_dir=tmp_path, cache_dir=cache)
    message = str(caught.value)
    assert "cifar-10-python.tar.gz" in message
    assert "170,498,071 bytes" in message
    assert "c58f30108f718f92721af3b95e74349a" in message
    assert f"put it in {tmp_path}" in message
    assert "python -m cifarlab data download" in message


def test_download_offline_one_clear_message(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(data, "CANONICAL_URL", f"http://127.0.0.1:{_closed_port()}/x.tar.gz")
    with pytest.raises(DataError, match=r"cannot download .*refused.*170,498,071 bytes, MD5 c58f3"):
        load_cifar10("canonical", data_dir=tmp_path, cache_dir=cache, download=True)
    assert list(tmp_path.iterdir()) == []


def test_download_times_out(tmp_path, monkeypatch):
    # A listening socket that never accepts: the connection succeeds, then no bytes arrive.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setattr(data, "CANONICAL_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/")
        with pytest.raises(DataError, match=r"timed out after 0.5 s without data"):
            data.download_cifar10(tmp_path, timeout_s=0.5)
    assert list(tmp_path.iterdir()) == []


def test_download_connection_closed_early(tmp_path, serve, monkeypatch):
    monkeypatch.setattr(data, "CANONICAL_URL", serve(b"x" * 1000, declared_length=5000))
    with pytest.raises(DataError, match=r"connection closed after 1,000 of 5,000 bytes"):
        data.download_cifar10(tmp_path, timeout_s=5)
    assert list(tmp_path.iterdir()) == []


def test_download_short_file_reported_truncated(tmp_path, serve, monkeypatch):
    monkeypatch.setattr(data, "CANONICAL_URL", serve(b"x" * 1000))
    with pytest.raises(DataError, match=r"is truncated: 1,000 bytes instead of 170,498,071"):
        data.download_cifar10(tmp_path, timeout_s=5)


def test_download_extracts_and_loads(tmp_path, cache, serve, monkeypatch):
    source = tmp_path / "source"
    write_batches(source)
    archive = tar_folder(source, tmp_path / "served.tar.gz")
    body = archive.read_bytes()
    monkeypatch.setattr(data, "CANONICAL_URL", serve(body))
    monkeypatch.setattr(data, "CANONICAL_SIZE", len(body))
    monkeypatch.setattr(data, "CANONICAL_MD5", hashlib.md5(body).hexdigest())
    data_dir = tmp_path / "data"
    progress = []
    loaded_folder = data.download_cifar10(data_dir, progress=lambda *record: progress.append(record))
    assert loaded_folder == data_dir / data.BATCHES_FOLDER
    assert progress[-1] == ("download", len(body), len(body))
    loaded = load_cifar10("canonical", data_dir=data_dir, cache_dir=cache)
    assert loaded.num_train == 50
    assert "extracted in" in data.canonical_status(data_dir)


def test_canonical_truncated_archive(tmp_path, cache):
    (tmp_path / data.CANONICAL_FILENAME).write_bytes(b"\x1f\x8b" + b"\0" * 1000)
    with pytest.raises(DataError, match=r"is truncated: 1,002 bytes instead of 170,498,071"):
        load_cifar10("canonical", data_dir=tmp_path, cache_dir=cache)


def test_canonical_corrupt_archive(tmp_path, cache):
    archive = tmp_path / data.CANONICAL_FILENAME
    with open(archive, "wb") as file:
        file.truncate(data.CANONICAL_SIZE)  # sparse: the right size, all zeros
    with pytest.raises(DataError, match=r"is corrupt: its MD5 is [0-9a-f]{32}, not c58f3"):
        load_cifar10("canonical", data_dir=tmp_path, cache_dir=cache)


def test_tar_long_names_use_tarfile(tmp_path, cache):
    # Paths over 100 characters need pax headers, which only tarfile's own parser reads.
    root = write_image_tree(tmp_path / "images", per_class=1)
    long_name = "x" * 120 + ".png"
    Image.new("RGB", (32, 32), (9, 9, 9)).save(root / "test" / "cat" / long_name)
    archive = tar_folder(root, tmp_path / "long.tar.gz")
    with tarfile.open(archive) as tar:
        assert any(len(name) > 100 for name in tar.getnames())
    loaded = load_cifar10("folder", path=archive, cache_dir=cache)
    assert loaded.num_test == 11


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT])
def test_tar_damaged_header_reported(tmp_path, cache, tar_format):
    root = write_image_tree(tmp_path / "images", per_class=1)
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(damaged, "w", format=tar_format) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    with tarfile.open(damaged) as tar:
        fifth = tar.getmembers()[4]
    raw = bytearray(damaged.read_bytes())
    raw[fifth.offset] ^= 0x01  # the first letter of the fifth member's name
    damaged.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"damaged.tar is truncated or corrupt \((bad checksum|damaged tar header)"):
        load_cifar10("folder", path=damaged, cache_dir=cache)


def test_bundled_description_is_repository_relative(bundled):
    assert bundled.description == "bundled JPEG archive data/cifar10-jpeg.tar.gz"
