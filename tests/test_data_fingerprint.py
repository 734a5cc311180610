"""StudyData.fingerprint(): the identity of the data a cell reads is its content, never its location
(issue #15, class 1): edit a forget-index file or a labels CSV in place, or point dataset.root at
other images, and the fingerprint changes; the same bytes anywhere give the same fingerprint."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

sys.path.insert(0, os.path.dirname(__file__))
import fakedata  # noqa: E402

from unlearnlab.data import StudyData, load_study_data  # noqa: E402

DIGITS = {"name": "digits", "root": "data", "download": False}
RANDOM = {"name": "r", "kind": "random", "fraction": 0.1, "seed": 0, "val_fraction": 0.5, "val_seed": 42}


def fingerprint(dataset: dict, **split) -> str:
    return load_study_data(OmegaConf.create(dataset), OmegaConf.create({**RANDOM, **split})).fingerprint()


def test_same_data_same_fingerprint_across_processes():
    here = fingerprint(DIGITS)
    code = (
        "from omegaconf import OmegaConf; from unlearnlab.data import load_study_data; "
        f"print(load_study_data(OmegaConf.create({DIGITS!r}), OmegaConf.create({RANDOM!r})).fingerprint())"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert there.stdout.strip() == here
    assert len(here) == 64 and int(here, 16) >= 0  # sha256, hex


def test_split_seed_kind_and_labels_change_it():
    base = fingerprint(DIGITS)
    assert fingerprint(DIGITS, seed=1) != base  # other forget indices
    assert fingerprint(DIGITS, val_seed=1) != base  # other val/test halves
    assert fingerprint(DIGITS, kind="mislabeled") != base  # same forget set, other given labels


def test_editing_the_forget_index_file_in_place_changes_it(tmp_path):
    f = tmp_path / "forget.txt"
    f.write_text("1\n2\n3\n")
    before = fingerprint(DIGITS, kind="index_file", path=str(f))
    assert fingerprint(DIGITS, kind="index_file", path=str(f)) == before
    f.write_text("1\n2\n4\n")  # same path, one index changed
    assert fingerprint(DIGITS, kind="index_file", path=str(f)) != before


def _change_label(csv_path, row: int, num_classes: int) -> None:
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    rows[row + 1][1] = str((int(rows[row + 1][1]) + 1) % num_classes)
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_image_folder_labels_csv_and_root_are_covered(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    fakedata.write_image_folder(a, n=40, subjects=8, num_classes=4, size=16)
    shutil.copytree(a, b)  # the same bytes elsewhere
    fakedata.write_image_folder(c, n=40, subjects=8, num_classes=4, size=16, seed=1)  # other pixels, same labels
    folder = lambda root: {"name": "image_folder", "root": str(root), "download": False, "size": 16}  # noqa: E731
    fa = fingerprint(folder(a))
    assert fingerprint(folder(b)) == fa  # a location is not identity
    assert fingerprint(folder(c)) != fa  # dataset.root pointed at other images
    _change_label(a / "labels.csv", row=5, num_classes=4)
    assert fingerprint(folder(a)) != fa  # the labels CSV edited in place


def test_recomputed_equal_and_custom_parts_change_it(digits_data):
    fp = digits_data.fingerprint()
    assert StudyData(digits_data.source, digits_data.split).fingerprint() == fp
    parts = dict(digits_data.parts)
    x, y = parts["forget"]
    parts["forget"] = (x[:10], y[:10])
    assert StudyData(digits_data.source, digits_data.split, parts=parts).fingerprint() != fp


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device to move the data to")
def test_fingerprint_on_the_device_equals_the_host_one(digits_data):
    fp = digits_data.fingerprint()
    moved = digits_data.to("cuda")
    moved._fingerprint = None  # recompute from the device tensors
    assert moved.fingerprint() == fp
