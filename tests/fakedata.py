"""Tiny data sets written in torchvision's own on-disk formats, so tests load them through
torchvision with download=False (the test machines have no internet).

Images are class-dependent (a bright square whose grid cell is the class, tinted by class on
colour images, over dim noise) so a model can learn them. Image 0 of each split carries a
marker: channel C-1, row 1, column 2 = 255, with channels 0..C-2 and the transposed position
(row 2, column 1) dark — a layout mistake moves it.

Checksums: CIFAR-10/100 and SVHN compare the md5 of each file with the real files' md5s
(`check_integrity`), which no fake file can match. `accept_checksums` therefore puts the md5s
of the files written here into torchvision's checksum tables (class attributes) for one test;
torchvision's integrity check itself still runs, on the real bytes, so a missing or corrupted
file still fails. MNIST/FashionMNIST only check that the raw (uncompressed) idx files exist.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import pickle
from dataclasses import dataclass, field

import numpy as np

MARKER = (1, 2)  # (row, column) of the marker pixel in image 0 of each split


@dataclass
class Written:
    """What a writer put on disk, in the Source layout (uint8 NCHW images, int64 labels)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    tv_class: str = ""  # torchvision.datasets class that reads it
    md5: dict[str, str] = field(default_factory=dict)  # file name -> md5 of what was written
    groups: np.ndarray | None = None  # image_folder: subject per row
    classes: tuple[str, ...] = ()


def class_images(labels: np.ndarray, num_classes: int, channels: int, size: int, rng) -> np.ndarray:
    """uint8 (n, C, size, size): dim noise plus a bright square in the class's grid cell."""
    x = rng.integers(0, 64, (len(labels), channels, size, size), dtype=np.uint8)
    grid = math.ceil(math.sqrt(num_classes))
    cell = size // grid
    for i, label in enumerate(labels):
        r, c = divmod(int(label), grid)
        tint = np.full(channels, 255 if channels == 1 else 150, dtype=np.uint8)
        tint[int(label) % channels] = 255
        x[i, :, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = tint[:, None, None]
    if len(x):
        x[0, :, MARKER[0], MARKER[1]] = 0
        x[0, -1, MARKER[0], MARKER[1]] = 255
        x[0, :, MARKER[1], MARKER[0]] = 0
    return x


def _split(n_train, n_test, num_classes, channels, size, seed):
    rng = np.random.default_rng(seed)
    out = []
    for n in (n_train, n_test):
        y = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        out += [class_images(y, num_classes, channels, size, rng), y]
    return out


def _md5(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def _pickle(path, obj) -> str:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return _md5(path)


def _cifar_batch(x: np.ndarray, y: np.ndarray, label_key: str, name: str, extra=None) -> dict:
    """One CIFAR pickle: "data" is (n, 3072) uint8, rows = R plane, G plane, B plane (row-major)."""
    return {
        "batch_label": name,
        label_key: [int(v) for v in y],
        "data": x.reshape(len(x), -1),
        "filenames": [f"{name}_{i}.png" for i in range(len(x))],
        **(extra or {}),
    }


def write_cifar10(root, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Written:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}."""
    tx, ty, vx, vy = _split(n_train, n_test, 10, 3, 32, seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    md5 = {}
    for i, idx in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        name = f"data_batch_{i}"
        md5[name] = _pickle(os.path.join(folder, name), _cifar_batch(tx[idx], ty[idx], "labels", name))
    md5["test_batch"] = _pickle(os.path.join(folder, "test_batch"), _cifar_batch(vx, vy, "labels", "test_batch"))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072}
    md5["batches.meta"] = _pickle(os.path.join(folder, "batches.meta"), meta)
    return Written(tx, ty, vx, vy, "CIFAR10", md5, classes=tuple(names))


def write_cifar100(root, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Written:
    """root/cifar-100-python/{train, test, meta}; fine labels 0..99, coarse = fine // 5."""
    tx, ty, vx, vy = _split(n_train, n_test, 100, 3, 32, seed)
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    md5 = {}
    for name, x, y in (("train", tx, ty), ("test", vx, vy)):
        batch = _cifar_batch(x, y, "fine_labels", name, {"coarse_labels": [int(v) // 5 for v in y]})
        md5[name] = _pickle(os.path.join(folder, name), batch)
    names = [f"fine_{i:02d}" for i in range(100)]
    meta = {"fine_label_names": names, "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)]}
    md5["meta"] = _pickle(os.path.join(folder, "meta"), meta)
    return Written(tx, ty, vx, vy, "CIFAR100", md5, classes=tuple(names))


def _idx(path, array: np.ndarray) -> None:
    """An idx file: magic 0x0000 08 <ndim> (uint8 data), big-endian int32 sizes, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(root, kind: str = "MNIST", n_train: int = 60, n_test: int = 30, seed: int = 0) -> Written:
    """root/<kind>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, uncompressed: torchvision's
    `_check_exists` looks for exactly these names (the .gz archives are only for download)."""
    assert kind in ("MNIST", "FashionMNIST")
    tx, ty, vx, vy = _split(n_train, n_test, 10, 1, 28, seed)
    raw = os.path.join(root, kind, "raw")
    os.makedirs(raw, exist_ok=True)
    for prefix, x, y in (("train", tx, ty), ("t10k", vx, vy)):
        _idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), x[:, 0])
        _idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), y)
    return Written(tx, ty, vx, vy, kind)


def write_svhn(root, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Written:
    """root/{train,test}_32x32.mat: X is (32, 32, 3, n) uint8, y is (n, 1) with 10 for digit 0."""
    import scipy.io

    tx, ty, vx, vy = _split(n_train, n_test, 10, 3, 32, seed)
    os.makedirs(root, exist_ok=True)
    md5 = {}
    for name, x, y in (("train_32x32.mat", tx, ty), ("test_32x32.mat", vx, vy)):
        path = os.path.join(root, name)
        scipy.io.savemat(path, {"X": x.transpose(2, 3, 1, 0), "y": np.where(y == 0, 10, y).astype(np.uint8)[:, None]})
        md5[name] = _md5(path)
    return Written(tx, ty, vx, vy, "SVHN", md5)


def accept_checksums(monkeypatch, written: Written) -> None:
    """Make torchvision's checksum tables expect the md5s of the files `written` holds (for
    this test only, via pytest's monkeypatch); its integrity check still runs on the files."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, written.tv_class)
    md5 = written.md5
    if written.tv_class == "SVHN":
        table = {k: [url, f, md5.get(f, m)] for k, (url, f, m) in cls.split_list.items()}
        monkeypatch.setattr(cls, "split_list", table)
    elif written.tv_class in ("CIFAR10", "CIFAR100"):
        monkeypatch.setattr(cls, "train_list", [[f, md5[f]] for f, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[f, md5[f]] for f, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})


def write_image_folder(
    root,
    n: int = 40,
    subjects: int = 8,
    num_classes: int = 4,
    size: int = 16,
    string_labels: bool = False,
    split_column: bool = False,
    seed: int = 0,
) -> Written:
    """root/img_0000.png ... + root/labels.csv (file,label,subject[,split]). Each subject has
    one class (subject % num_classes), like a person in one age group. With split_column,
    every 5th row is marked 'test'. The returned Written holds all rows, in CSV order, in
    train_x/train_y, and the subject of each row in `groups`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    groups = np.arange(n) % subjects
    y = (groups % num_classes).astype(np.int64)
    x = class_images(y, num_classes, 3, size, rng)
    names = tuple(f"age_{k}" for k in range(num_classes)) if string_labels else tuple(str(k) for k in range(num_classes))
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "subject"] + (["split"] if split_column else []))
        for i in range(n):
            file = f"img_{i:04d}.png"
            Image.fromarray(x[i].transpose(1, 2, 0)).save(os.path.join(root, file))
            row = [file, names[y[i]], f"s{groups[i]:03d}" if string_labels else groups[i]]
            w.writerow(row + (["test" if i % 5 == 4 else "train"] if split_column else []))
    empty = np.zeros((0, 3, size, size), np.uint8)
    return Written(x, y, empty, np.zeros(0, np.int64), "", groups=groups, classes=names)
