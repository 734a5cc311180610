"""The store: content keys, atomic entries, checksums, and state_dicts that never unpickle."""

from __future__ import annotations

import json

import pytest
import torch

from unlearnlab.store import CorruptEntryError, Store, cell_key


def test_key_depends_on_content_not_order():
    a = cell_key({"kind": "retrain", "seed": 1, "train": {"lr": 0.1, "epochs": 3}})
    b = cell_key({"train": {"epochs": 3, "lr": 0.1}, "seed": 1, "kind": "retrain"})
    c = cell_key({"kind": "retrain", "seed": 2, "train": {"lr": 0.1, "epochs": 3}})
    assert a == b != c and len(a) == 24


def save(store, key="k1", value=1.0):
    sd = {"w": torch.full((3, 2), value), "n": torch.tensor(7)}
    return store.save("retrain", key, {"metrics": {"test/acc": 0.5}}, sd, {"forget": torch.ones(4, 10)})


def test_save_then_load_roundtrip(tmp_path):
    store = Store(tmp_path)
    entry = save(store)
    assert store.has("retrain", "k1")
    assert torch.equal(entry.state_dict()["w"], torch.full((3, 2), 1.0))
    assert entry.outputs()["forget"].shape == (4, 10)
    assert entry.meta["metrics"]["test/acc"] == 0.5
    assert [k for _, k, _ in store.entries()] == ["k1"]
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "retrain").iterdir())


def test_second_writer_of_the_same_cell_keeps_the_first_result(tmp_path):
    store = Store(tmp_path)
    save(store, value=1.0)
    again = save(store, value=2.0)  # a racing job that finished later
    assert torch.equal(again.state_dict()["w"], torch.full((3, 2), 1.0))
    assert len(list((tmp_path / "retrain").iterdir())) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_file_is_detected_not_used(tmp_path, damage):
    store = Store(tmp_path)
    entry = save(store)
    f = entry.path / "outputs.safetensors"
    data = bytearray(f.read_bytes())
    if damage == "truncate":
        f.write_bytes(data[: len(data) // 2])
    else:
        data[-1] ^= 0xFF
        f.write_bytes(bytes(data))
    with pytest.raises(CorruptEntryError, match="outputs.safetensors"):
        store.load("retrain", "k1")


def test_meta_records_size_and_checksum(tmp_path):
    entry = save(Store(tmp_path))
    meta = json.loads((entry.path / "meta.json").read_text())
    for name in ("model.safetensors", "outputs.safetensors"):
        assert meta["files"][name]["size"] == (entry.path / name).stat().st_size
        assert len(meta["files"][name]["sha256"]) == 64
