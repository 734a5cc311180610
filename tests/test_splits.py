"""Forget sets: sizes, determinism, and one-line errors for bad input."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from unlearnlab.data.sources import load_source
from unlearnlab.data.splits import make_split
from unlearnlab.errors import ConfigError


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


def split_cfg(**kw):
    base = {"name": "s", "kind": "random", "fraction": 0.1, "seed": 0, "val_fraction": 0.5, "val_seed": 42}
    return OmegaConf.create({**base, **kw})


def test_random_split_partitions_train_and_test(digits):
    s = make_split(digits, split_cfg())
    n, m = len(digits.train_y), len(digits.test_y)
    assert len(s.forget) == round(0.1 * n)
    assert torch.equal(torch.sort(torch.cat([s.forget, s.retain])).values, torch.arange(n))
    assert torch.equal(torch.sort(torch.cat([s.val, s.test])).values, torch.arange(m))
    assert len(s.val) == round(0.5 * m)
    assert len(s.retain_sample) == min(len(s.retain), len(s.test))
    assert set(s.retain_sample.tolist()) <= set(s.retain.tolist())


def test_split_is_a_pure_function_of_its_seed(digits):
    a, b = make_split(digits, split_cfg(seed=3)), make_split(digits, split_cfg(seed=3))
    c = make_split(digits, split_cfg(seed=4))
    assert torch.equal(a.forget, b.forget) and torch.equal(a.test, b.test)
    assert not torch.equal(a.forget, c.forget)


def test_class_split_forgets_exactly_that_class(digits):
    s = make_split(digits, split_cfg(kind="class", classes=[3]))
    assert (digits.train_y[s.forget] == 3).all()
    assert len(s.forget) == int((digits.train_y == 3).sum())
    assert (digits.train_y[s.retain] != 3).all()


def test_index_file_split(digits, tmp_path):
    f = tmp_path / "forget.txt"
    f.write_text("5\n2\n9\n")
    s = make_split(digits, split_cfg(kind="index_file", path=str(f)))
    assert s.forget.tolist() == [2, 5, 9]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("1\nfoo\n", "must hold integers"),
        ("1\n99999\n", "outside 0.."),
        ("1\n2\n2\n", "repeats indices [2]"),
    ],
)
def test_bad_index_file_names_the_fix(digits, tmp_path, content, message):
    f = tmp_path / "forget.txt"
    if content is not None:
        f.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        make_split(digits, split_cfg(kind="index_file", path=str(f)))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_fraction_outside_open_unit_interval_is_refused(digits, fraction):
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\)"):
        make_split(digits, split_cfg(fraction=fraction))


def test_unknown_class_is_refused(digits):
    with pytest.raises(ConfigError, match="has classes 0..9"):
        make_split(digits, split_cfg(kind="class", classes=[12]))


def test_group_split_forgets_whole_subjects(tmp_path):
    from fakedata import write_image_folder

    write_image_folder(tmp_path, n=60, subjects=12)
    src = load_source("image_folder", root=str(tmp_path))
    s = make_split(src, split_cfg(kind="group", fraction=0.2))
    groups = src.train_groups.numpy()
    forgotten = set(groups[s.forget.numpy()])
    assert forgotten and not forgotten & set(groups[s.retain.numpy()])
    assert len(s.forget) >= 0.2 * len(groups)


def test_group_split_needs_subject_ids(digits):
    with pytest.raises(ConfigError, match="needs subject ids"):
        make_split(digits, split_cfg(kind="group", fraction=0.1))
