"""Data sources: shapes, dtypes, labels, fixed splits, and on-disk format correctness
(torchvision reads files written by tests/fakedata.py with download=False)."""

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import fakedata  # noqa: E402

from unlearnlab.data.sources import CIFAR_MEAN, CIFAR_STD, SOURCES, channel_stats, fixed_split, load_source  # noqa: E402


def assert_well_formed(src, n_classes, shape):
    for x, y in ((src.train_x, src.train_y), (src.test_x, src.test_y)):
        assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == shape
        assert y.dtype == torch.int64 and y.shape == (len(x),)
        assert 0 <= int(y.min()) and int(y.max()) < n_classes
    assert len(src.classes) == n_classes
    assert len(src.mean) == len(src.std) == shape[0]


def assert_same_as_written(src, w):
    """Every pixel and label comes back where the writer put it; the marker pins the layout."""
    for x, y, wx, wy in ((src.train_x, src.train_y, w.train_x, w.train_y), (src.test_x, src.test_y, w.test_x, w.test_y)):
        assert torch.equal(x, torch.from_numpy(wx)) and torch.equal(y, torch.from_numpy(wy))
        r, c = fakedata.MARKER
        assert x[0, -1, r, c] == 255 and x[0, -1, c, r] == 0
        assert (x[0, :-1, r, c] == 0).all()


# ------------------------------------------------------------------- embedded data


def test_digits_fixed_stratified_split():
    a, b = load_source("digits"), load_source("digits")
    assert_well_formed(a, 10, (1, 8, 8))
    assert (len(a.train_x), len(a.test_x)) == (1437, 360)
    for f in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert int(a.train_x.max()) == 255
    all_counts = torch.bincount(torch.cat([a.train_y, a.test_y]), minlength=10)
    test_counts = torch.bincount(a.test_y, minlength=10)
    assert ((test_counts - 0.2 * all_counts).abs() <= 1).all()
    train, test = fixed_split(torch.cat([a.train_y, a.test_y]).numpy())
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 1797
    assert a.train_groups is None


def test_mnist5k():
    src = load_source("mnist5k")
    assert_well_formed(src, 10, (1, 28, 28))
    assert torch.equal(torch.bincount(src.test_y), torch.full((10,), 100))
    assert torch.equal(torch.bincount(src.train_y), torch.full((10,), 400))
    assert 0.1 < src.mean[0] < 0.15 and 0.28 < src.std[0] < 0.33  # MNIST's ~0.13 / ~0.31


def test_channel_stats_exact():
    x = torch.randint(0, 256, (50, 3, 5, 5), dtype=torch.uint8)
    mean, std = channel_stats(x)
    f = x.double() / 255
    assert np.allclose(mean, f.mean(dim=(0, 2, 3)), atol=1e-6)
    assert np.allclose(std, f.std(dim=(0, 2, 3), correction=0), atol=1e-6)


# ------------------------------------------------------------------- torchvision formats


def test_cifar10(tmp_path, monkeypatch):
    w = fakedata.write_cifar10(tmp_path / "cifar10", n_train=50, n_test=20)
    fakedata.accept_checksums(monkeypatch, w)
    src = load_source("cifar10", root=str(tmp_path / "cifar10"))
    assert_well_formed(src, 10, (3, 32, 32))
    assert_same_as_written(src, w)
    assert src.classes == w.classes and src.classes[0] == "airplane"
    assert (src.mean, src.std) == (CIFAR_MEAN, CIFAR_STD)
    assert torch.equal(torch.bincount(src.train_y), torch.full((10,), 5))


def test_cifar10_integrity_check_still_runs(tmp_path, monkeypatch):
    w = fakedata.write_cifar10(tmp_path)
    fakedata.accept_checksums(monkeypatch, w)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "ab") as f:
        f.write(b"x")
    with pytest.raises(FileNotFoundError, match="corrupted"):
        load_source("cifar10", root=str(tmp_path))


def test_cifar100(tmp_path, monkeypatch):
    w = fakedata.write_cifar100(tmp_path, n_train=200, n_test=100)
    fakedata.accept_checksums(monkeypatch, w)
    src = load_source("cifar100", root=str(tmp_path))
    assert_well_formed(src, 100, (3, 32, 32))
    assert_same_as_written(src, w)
    assert torch.equal(torch.bincount(src.train_y), torch.full((100,), 2))


def test_svhn(tmp_path, monkeypatch):
    w = fakedata.write_svhn(tmp_path, n_train=50, n_test=20)
    fakedata.accept_checksums(monkeypatch, w)
    src = load_source("svhn", root=str(tmp_path))
    assert_well_formed(src, 10, (3, 32, 32))
    assert_same_as_written(src, w)  # includes digit 0, stored on disk as label 10
    assert (src.train_y == 0).sum() == 5
    assert np.allclose(src.mean, channel_stats(torch.from_numpy(w.train_x))[0])


@pytest.mark.parametrize("name,kind", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_formats(tmp_path, name, kind):
    w = fakedata.write_mnist(tmp_path, kind=kind, n_train=60, n_test=30)
    src = load_source(name, root=str(tmp_path))
    assert_well_formed(src, 10, (1, 28, 28))
    assert_same_as_written(src, w)
    assert torch.equal(torch.bincount(src.test_y), torch.full((10,), 3))
    f = src.train_x.double() / 255
    assert np.allclose(src.mean, [f.mean()], atol=1e-6) and np.allclose(src.std, [f.std(correction=0)], atol=1e-6)


@pytest.mark.parametrize(
    "name,expected",
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("svhn", "train_32x32.mat"),
     ("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")],
)
def test_missing_dataset_names_path_and_fix(tmp_path, name, expected):
    root = str(tmp_path / name)
    with pytest.raises(FileNotFoundError) as e:
        load_source(name, root=root, download=False)
    msg = str(e.value)
    assert "\n" not in msg and root in msg and expected in msg and "dataset.download=true" in msg


def test_unknown_source_lists_known():
    with pytest.raises(ValueError) as e:
        load_source("imagenet")
    assert all(k in str(e.value) for k in SOURCES)


# ------------------------------------------------------------------- image folder


def test_image_folder_groups_and_fixed_split(tmp_path):
    w = fakedata.write_image_folder(tmp_path, n=40, subjects=8, num_classes=4, size=16)
    src = load_source("image_folder", root=str(tmp_path), size=16)
    assert_well_formed(src, 4, (3, 16, 16))
    train, test = fixed_split(w.train_y)
    assert torch.equal(src.train_x, torch.from_numpy(w.train_x[train]))
    assert torch.equal(src.test_y, torch.from_numpy(w.train_y[test]))
    assert torch.equal(src.train_groups, torch.from_numpy(w.groups[train]))
    assert src.train_groups.dtype == torch.int64 and set(src.train_groups.tolist()) == set(range(8))
    assert torch.equal(torch.bincount(src.test_y), torch.full((4,), 2))
    # every subject has one class, as in the faces-by-age data
    assert all(len(set(src.train_y[src.train_groups == g].tolist())) == 1 for g in range(8))


def test_image_folder_split_column_string_labels_resize_gray(tmp_path):
    w = fakedata.write_image_folder(tmp_path, n=40, size=16, string_labels=True, split_column=True)
    src = load_source("image_folder", root=str(tmp_path), size=8, channels=1)
    assert_well_formed(src, 4, (1, 8, 8))
    assert src.classes == ("age_0", "age_1", "age_2", "age_3")
    is_test = np.arange(40) % 5 == 4
    assert torch.equal(src.test_y, torch.from_numpy(w.train_y[is_test]))
    assert torch.equal(src.train_groups, torch.from_numpy(w.groups[~is_test]))  # "s003" -> 3


def _folder(tmp_path, n=10):
    fakedata.write_image_folder(tmp_path, n=n, subjects=2, num_classes=2)
    return tmp_path


def _edit_csv(path, text):
    path.write_text(text)
    return path


# each case: (break the folder, options, what the one-line message must contain)
FOLDER_MISTAKES = [
    ("no csv", lambda d: os.remove(d / "labels.csv"), {}, ["labels.csv", "not found", "dataset.csv="]),
    ("missing image", lambda d: os.remove(d / "img_0003.png"), {}, ["img_0003.png", "line 5", "not found", "fix the file name"]),
    ("non-image file", lambda d: (d / "img_0002.png").write_text("not an image"), {},
     ["img_0002.png", "line 4", "not an image", "remove its row or replace the file"]),
    ("header only", lambda d: _edit_csv(d / "labels.csv", "file,label,subject\n"), {},
     ["labels.csv", "lists no images", "add one row per image"]),
    ("empty csv", lambda d: _edit_csv(d / "labels.csv", ""), {}, ["labels.csv", "found nothing", "file,label"]),
    ("wrong columns", lambda d: _edit_csv(d / "labels.csv", "path,class\nimg_0000.png,0\n"), {},
     ["labels.csv", "found class,path", "file,label"]),
    ("negative label", lambda d: _edit_csv(d / "labels.csv", "file,label\nimg_0000.png,1\nimg_0001.png,-1\n"), {},
     ["labels.csv line 3", "label -1 is negative", "0..K-1"]),
    ("empty label", lambda d: _edit_csv(d / "labels.csv", "file,label\nimg_0000.png,\n"), {},
     ["labels.csv line 2", "empty label"]),
    ("num_classes below 2", lambda d: None, {"num_classes": 1}, ["dataset.num_classes=1 must be ≥ 2"]),
    ("label ≥ num_classes", lambda d: _edit_csv(d / "labels.csv", "file,label\n" + "".join(
        f"img_{i:04d}.png,{i % 2 * 4}\n" for i in range(10))), {"num_classes": 3},
     ["labels.csv line 3", "label 4 ≥ dataset.num_classes=3", "raise dataset.num_classes"]),
    ("one class", lambda d: _edit_csv(d / "labels.csv", "file,label\n" + "".join(f"img_{i:04d}.png,0\n" for i in range(10))),
     {}, ["labels.csv", "every image has label '0'", "at least 2 classes"]),
    ("too few to split", lambda d: _edit_csv(d / "labels.csv", "file,label\nimg_0000.png,0\nimg_0001.png,1\n"), {},
     ["labels.csv", "cannot split 2 images", "add images or a split column"]),
    ("bad split value", lambda d: _edit_csv(d / "labels.csv", "file,label,split\nimg_0000.png,0,train\nimg_0001.png,1,val\n"),
     {}, ["labels.csv line 3", "split must be train or test", "'val'"]),
    ("all test", lambda d: _edit_csv(d / "labels.csv", "file,label,split\nimg_0000.png,0,test\nimg_0001.png,1,test\n"),
     {}, ["labels.csv", "every image 'test'"]),
    ("not utf-8", lambda d: (d / "labels.csv").write_bytes(b"file,label\n\xff\xfe\x00,1\n"), {}, ["labels.csv", "not a UTF-8 CSV"]),
    ("bad channels", lambda d: None, {"channels": 4}, ["dataset.channels=4 must be 1"]),
    ("bad size", lambda d: None, {"size": 0}, ["dataset.size=0 must be ≥ 1"]),
]


@pytest.mark.parametrize("case,damage,options,expected", FOLDER_MISTAKES, ids=[c[0] for c in FOLDER_MISTAKES])
def test_image_folder_mistakes_are_one_line_config_errors(tmp_path, case, damage, options, expected):
    from unlearnlab.errors import ConfigError

    root = _folder(tmp_path)
    damage(root)
    with pytest.raises(ConfigError) as err:
        load_source("image_folder", root=str(root), **options)
    msg = str(err.value)
    assert "\n" not in msg
    for part in expected:
        assert part in msg, (part, msg)


def test_image_folder_root_that_is_not_a_folder(tmp_path):
    from unlearnlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dataset.root=.*nowhere is not a folder"):
        load_source("image_folder", root=str(tmp_path / "nowhere"))


def test_image_folder_declared_classes_count_absent_ones(tmp_path):
    _folder(tmp_path)  # labels 0 and 1 only
    src = load_source("image_folder", root=str(tmp_path), size=16, num_classes=5)
    assert src.classes == ("0", "1", "2", "3", "4")


# ------------------------------------------------------------------- generated


def test_fake_cifar10_shapes_determinism_and_stats():
    a = load_source("fake_cifar10", n_train=500, n_test=200)
    assert_well_formed(a, 10, (3, 32, 32))
    assert (len(a.train_x), len(a.test_x)) == (500, 200)
    assert torch.equal(torch.bincount(a.train_y), torch.full((10,), 50))
    assert (a.mean, a.std) == (CIFAR_MEAN, CIFAR_STD) and a.classes[0] == "airplane"
    assert int(a.train_x.min()) == 0 and int(a.train_x.max()) == 255  # the whole uint8 range is used
    b = load_source("fake_cifar10", n_train=500, n_test=200)
    c = load_source("fake_cifar10", n_train=500, n_test=200, seed=1)
    for f in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert not torch.equal(a.train_x, c.train_x)
    # the test images do not depend on the train size
    assert torch.equal(load_source("fake_cifar10", n_train=100, n_test=200).test_x, a.test_x)


def test_fake_cifar10_is_learnable_but_not_trivial():
    """A logistic regression on 4x4-pooled pixels: far above chance (0.1), below perfect."""
    from sklearn.linear_model import LogisticRegression

    src = load_source("fake_cifar10", n_train=2000, n_test=1000)
    pooled = lambda x: torch.nn.functional.avg_pool2d(x.float() / 255, 4).flatten(1).numpy()  # noqa: E731
    clf = LogisticRegression(max_iter=500).fit(pooled(src.train_x), src.train_y.numpy())
    acc = clf.score(pooled(src.test_x), src.test_y.numpy())
    assert 0.5 < acc < 0.97, acc


def test_fake_cifar10_size_is_checked():
    from unlearnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset.n_train=3 must be ≥ 10"):
        load_source("fake_cifar10", n_train=3)


# ------------------------------------------------------------------- issue 23, class 6: the data is what the CSV means


def _rows(root, rows):
    (root / "labels.csv").write_text("file,label\n" + "".join(f"{f},{y}\n" for f, y in rows))


def _refused(root, *parts, **options):
    from unlearnlab.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_source("image_folder", root=str(root), size=16, **options)
    msg = str(err.value)
    assert "\n" not in msg and all(p in msg for p in parts), msg
    return msg


@pytest.mark.parametrize("second", ["img_0001.png", "./img_0001.png", "sub/../img_0001.png", "hardlink.png", "copy.png"])
def test_an_image_listed_twice_is_refused_naming_both_lines(tmp_path, second):
    """Duplicate rows put 31 of 48 forget images into retain as well; the same image under two
    labels trained on both. By name, by path, by link and by bytes."""
    import shutil

    root = _folder(tmp_path)
    (root / "sub").mkdir()
    os.link(root / "img_0001.png", root / "hardlink.png")
    shutil.copy(root / "img_0001.png", root / "copy.png")
    rows = [(f"img_{i:04d}.png", i % 2) for i in range(10)] + [(second, 0)]  # line 3 lists img_0001.png (label 1)
    _rows(root, rows)
    _refused(root, "labels.csv line 12", "line 3", "list each image once")


def test_one_number_spelled_two_ways_is_one_class(tmp_path):
    """Labels `1` and `1.0` were two classes."""
    root = _folder(tmp_path)
    _rows(root, [(f"img_{i:04d}.png", ["0", "1.0", "01", "1", "0.0"][i % 5]) for i in range(10)])
    src = load_source("image_folder", root=str(root), size=16)
    assert src.classes == ("0", "1") and set(torch.cat([src.train_y, src.test_y]).tolist()) == {0, 1}
    _rows(root, [(f"img_{i:04d}.png", ["0", "cat"][i % 2]) for i in range(10)])
    _refused(root, "labels.csv line 3", "label 'cat' is a name, but line 2 has the number 0")
    _rows(root, [(f"img_{i:04d}.png", ["0", "1.5"][i % 2]) for i in range(10)])
    _refused(root, "labels.csv line 3", "label 1.5 is not a whole number")
    _rows(root, [(f"img_{i:04d}.png", ["0", "1e9"][i % 2]) for i in range(10)])
    _refused(root, "labels.csv line 3", "label 1e9 is not a class index")


def test_a_16_bit_image_is_scaled_not_binarised(tmp_path):
    """PIL's convert clipped 16-bit PNGs to 0/255."""
    from PIL import Image

    root = _folder(tmp_path)
    ramp = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)  # 0 .. 65535 in 256 steps
    Image.fromarray(ramp).save(root / "img_0000.png")
    assert Image.open(root / "img_0000.png").mode == "I;16"
    src = load_source("image_folder", root=str(root), size=16, channels=1)
    x = torch.cat([src.train_x, src.test_x])[torch.cat([src.train_y, src.test_y]) == 0]
    ramp8 = torch.from_numpy(np.arange(256, dtype=np.uint8).reshape(1, 16, 16))
    assert any(torch.equal(img, ramp8) for img in x)  # every one of the 256 levels, in order


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_file_outside_the_root_is_refused(tmp_path, how):
    root = _folder(tmp_path / "data")
    outside = tmp_path / "secret.png"
    os.replace(root / "img_0004.png", outside)
    name = {"dotdot": "../secret.png", "absolute": str(outside), "symlink": "link.png"}[how]
    if how == "symlink":
        (root / "link.png").symlink_to(outside)
    _rows(root, [(f"img_{i:04d}.png" if i != 4 else name, i % 2) for i in range(10)])
    _refused(root, "line 6 of", "lies outside dataset.root", "list files inside the root")


def test_a_decompression_bomb_names_its_line(tmp_path, monkeypatch):
    from PIL import Image

    root = _folder(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 16×16 images then count as bombs (> 2 × 100 pixels)
    _refused(root, "img_0000.png (line 2 of", "too large to decode safely", "shrink the image or remove its row")
