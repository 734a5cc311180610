"""The store: content keys, atomic entries, checksums, and state_dicts that never unpickle."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

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


# -- keys: normalised values (issue 15, class 1) ------------------------------------------------------
def test_the_same_number_spelled_differently_is_one_key():
    base = {"kind": "unlearn", "method": {"lr": 0.5, "epochs": 1, "alpha": 1e-3}, "seed": 3}
    for spelled in (
        {"lr": "0.5", "epochs": 1, "alpha": 1e-3},
        {"lr": 0.5, "epochs": 1.0, "alpha": "1e-3"},
        {"lr": "0.50", "epochs": "1", "alpha": "0.001"},
    ):
        assert cell_key({**base, "method": spelled}) == cell_key(base)
    assert cell_key({**base, "seed": "3"}) == cell_key(base)


def test_different_values_stay_different_keys():
    base = {"kind": "unlearn", "method": {"lr": 0.5, "flip": False, "name": "finetune"}}
    others = [
        {"lr": 0.51, "flip": False, "name": "finetune"},
        {"lr": 0.5, "flip": "false", "name": "finetune"},  # 'false' is truthy in Python: not False
        {"lr": 0.5, "flip": 0, "name": "finetune"},  # a bool is not a number
        {"lr": 0.5, "flip": False, "name": "finetune2"},
    ]
    keys = {cell_key({**base, "method": m}) for m in others} | {cell_key(base)}
    assert len(keys) == 5


def test_normalise_never_rounds_two_strings_into_one_value():
    from unlearnlab.store import normalise

    assert normalise(["0.1", "1e-3", "10", "007", "+4.0", ".5", -0.0, 2.0, True, None]) == [
        0.1, 0.001, 10, 7, 4, 0.5, 0, 2, True, None]
    # strings a float cannot hold exactly stay strings: no two of them can collide
    for s in ("1e999", "12345678901234567890e3", "1e-100000000", "nan", "inf", "0x10", "1_000", "3.0.1", "abc"):
        assert normalise(s) == s
    assert normalise("123456789012345678901234") == "123456789012345678901234"  # beyond 2**53: kept exact


def test_file_digest_is_the_content_not_the_path(tmp_path):
    from unlearnlab.store import file_digest

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("3\n5\n")
    b.write_text("3\n5\n")
    assert file_digest(a) == file_digest(b) == hashlib.sha256(b"3\n5\n").hexdigest()
    a.write_text("3\n6\n")  # edited in place: same path, other content
    assert file_digest(a) != file_digest(b)


# -- every stored byte checked (issue 15, class 2) -------------------------------------------------
def test_an_edited_metric_is_detected(tmp_path):
    store = Store(tmp_path)
    entry = save(store)
    meta = json.loads((entry.path / "meta.json").read_text())
    meta["metrics"]["test/acc"] = 0.99  # hand-edited: the file checksums still match
    (entry.path / "meta.json").write_text(json.dumps(meta, indent=1))
    with pytest.raises(CorruptEntryError, match=r"meta\.json checksum differs"):
        store.load("retrain", "k1")
    assert store.fetch("retrain", "k1") is None


def test_meta_reformatted_but_unchanged_still_loads(tmp_path):
    store = Store(tmp_path)
    entry = save(store)
    meta = json.loads((entry.path / "meta.json").read_text())
    (entry.path / "meta.json").write_text(json.dumps(dict(reversed(list(meta.items())))))  # other order, no indent
    assert store.load("retrain", "k1").meta["metrics"]["test/acc"] == 0.5


def test_an_entry_is_used_only_under_the_key_it_records(tmp_path):
    import shutil

    store = Store(tmp_path)
    entry = save(store, key="k1")
    shutil.copytree(entry.path, tmp_path / "retrain" / "k2")  # a whole, intact entry under another key
    assert store.has("retrain", "k2")
    with pytest.raises(CorruptEntryError, match="meta.json records key k1, the entry is fetched as k2"):
        store.load("retrain", "k2")
    assert store.fetch("retrain", "k2") is None


def test_the_recorded_spec_must_hash_to_the_key(tmp_path):
    store = Store(tmp_path)
    spec = {"kind": "retrain", "seed": 1}
    key = cell_key(spec)
    entry = store.save("retrain", key, {"spec": spec, "metrics": {}}, {"w": torch.ones(2)}, {"forget": torch.ones(2)})
    assert entry.meta["spec"] == spec
    with pytest.raises(ValueError, match="the spec hashes to"):
        store.save("retrain", "0" * 24, {"spec": spec}, {"w": torch.ones(2)}, {"forget": torch.ones(2)})
    # a forger who edits the spec and recomputes meta.json's own checksum is still caught by the key
    from unlearnlab.store import meta_checksum

    meta = json.loads((entry.path / "meta.json").read_text())
    meta["spec"]["seed"] = 2
    meta["meta_sha256"] = meta_checksum(meta)
    (entry.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptEntryError, match=f"hashes to {cell_key({'kind': 'retrain', 'seed': 2})}, not {key}"):
        store.load("retrain", key)


def test_bytes_are_checked_as_they_are_read(tmp_path):
    store = Store(tmp_path)
    entry = store.load("retrain", save(store).path.name)
    f = entry.path / "outputs.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01
    f.write_bytes(bytes(data))  # changed between load() and reading the outputs
    with pytest.raises(CorruptEntryError, match="changed after its entry was loaded"):
        entry.outputs()


# -- where the store is ----------------------------------------------------------------------------
def test_store_path_empty_or_a_file_is_refused(tmp_path):
    from unlearnlab.errors import ConfigError

    for empty in ("", "  ", None):
        with pytest.raises(ConfigError, match="paths.store is empty, so the store would land in the current folder"):
            Store(empty)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match=f"paths.store={f} is a file, not a folder"):
        Store(f)
    assert not (tmp_path / "missing").exists() and Store(tmp_path / "missing").root == tmp_path / "missing"


# -- waiting on a lock (issue 15, class 6) -----------------------------------------------------------
HOLDER = """
import sys, time
from unlearnlab.store import Store
with Store(sys.argv[1]).lock("retrain", "k1"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_waiting_on_a_stopped_holder_says_what_and_how_long_then_times_out(tmp_path, caplog):
    import logging
    import signal
    import subprocess
    import sys
    import time

    from unlearnlab.store import LockTimeoutError

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGSTOP)  # Ctrl-Z: alive, holding the lock, doing nothing
        store = Store(tmp_path, lock_timeout=2.5, report_every=1.0)
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="unlearnlab.store"):
            with pytest.raises(LockTimeoutError) as err:
                with store.lock("retrain", "k1"):
                    pass
        waited = time.monotonic() - start
        assert 2.5 <= waited < 10
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) >= 3, lines  # after ~1 s, then every second
        assert all(re.match(rf"waiting \d+ s for retrain cell k1: its lock .*retrain-k1\.lock is held by pid {holder.pid} "
                            rf"on .* since \d\d:\d\d:\d\d — that process is stopped: resume it \(kill -CONT {holder.pid}\) "
                            rf"or end it", ln) for ln in lines), lines
        assert [int(re.search(r"waiting (\d+) s", ln).group(1)) for ln in lines] == sorted(
            int(re.search(r"waiting (\d+) s", ln).group(1)) for ln in lines)
        assert str(err.value).startswith("gave up after ") and f"pid {holder.pid}" in str(err.value)
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait()
    with Store(tmp_path, lock_timeout=5).lock("retrain", "k1"):  # the holder died: free at once
        assert (tmp_path / "locks" / "retrain-k1.owner").read_text().split()[1] == str(os.getpid())
    assert not (tmp_path / "locks" / "retrain-k1.owner").exists()


# -- issue 23, class 7: a damaged store never blocks --------------------------------------------------
KEY = "0123456789abcdef01234567"  # a name cell_key can produce


def test_an_entry_folder_without_meta_json_is_moved_aside_and_recomputed(tmp_path):
    """What an interrupted cp/rsync leaves: every study recomputed the cell and died on rename
    (ENOTEMPTY), and task=verify said a rerun would fix it."""
    from unlearnlab.verify import scan

    store = Store(tmp_path)
    partial = tmp_path / "retrain" / KEY
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half a copy")
    found = scan(store)
    assert [b["key"] for b in found.broken] == [KEY] and "meta.json missing" in found.broken[0]["problem"]
    assert store.fetch("retrain", KEY) is None and partial.is_dir()  # without repair: reported, left alone
    with pytest.warns(UserWarning, match=r"is incomplete \(meta.json missing.*moved it to .*quarantine"):
        assert store.fetch("retrain", KEY, repair=True) is None
    assert save(store, KEY).meta["files"] and scan(store).broken == []
    # and if one appears between the fetch and the rename (another copy still running), the save moves it aside too
    shutil.rmtree(partial)
    partial.mkdir()
    (partial / "outputs.safetensors").write_bytes(b"x")
    with pytest.warns(UserWarning, match="was incomplete"):
        assert torch.equal(save(store, KEY, value=3.0).state_dict()["w"], torch.full((3, 2), 3.0))
    assert len(list((tmp_path / "quarantine" / "retrain").iterdir())) == 2


def test_quarantine_works_when_the_kind_folder_is_on_another_file_system(tmp_path):
    """A rename cannot cross file systems (EXDEV): the broken entry goes to KIND/.quarantine."""
    from unlearnlab.verify import scan

    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or os.stat(elsewhere).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the test's temp folder")
    kind_dir = Path(tempfile.mkdtemp(dir=elsewhere, prefix="unlearnlab-test-"))
    try:
        (tmp_path / "retrain").symlink_to(kind_dir)
        store = Store(tmp_path)
        entry = save(store)
        (entry.path / "outputs.safetensors").write_bytes(b"damaged")
        with pytest.warns(UserWarning, match=r"moved it to .*retrain/\.quarantine/k1-"):
            assert store.fetch("retrain", "k1", repair=True) is None
        assert save(store).meta and [k for _, k, _ in store.entries()] == ["k1"]
        found = scan(store)
        assert found.checked == 1 and found.broken == [] and found.strays == []
    finally:
        shutil.rmtree(kind_dir)


@pytest.mark.parametrize("what", ["dev-zero", "fifo"])
def test_a_meta_json_that_is_not_a_regular_file_is_reported_not_read(tmp_path, what):
    """meta.json linked to /dev/zero made task=verify read forever."""
    from unlearnlab.verify import scan

    store = Store(tmp_path)
    entry = save(store)
    meta = entry.path / "meta.json"
    meta.unlink()
    if what == "dev-zero":
        meta.symlink_to("/dev/zero")
    else:
        os.mkfifo(meta)
    found = scan(store)
    assert [b["key"] for b in found.broken] == ["k1"], found
    assert re.search(r"meta.json is (a symbolic link|not a regular file)", found.broken[0]["problem"])
    with pytest.raises(CorruptEntryError):
        store.load("retrain", "k1")


def test_stray_files_and_folders_are_not_broken_entries(tmp_path, capsys, monkeypatch):
    from omegaconf import OmegaConf

    from unlearnlab.verify import verify_task

    monkeypatch.setenv("COLUMNS", "200")
    store = Store(tmp_path)
    save(store)
    (tmp_path / "notes").mkdir()
    (tmp_path / "README").write_text("my store")
    (tmp_path / "retrain" / "backup").mkdir()
    (tmp_path / "retrain" / "list.txt").write_text("x")
    assert verify_task(OmegaConf.create({"paths": {"store": str(tmp_path)}})) == 0
    out = capsys.readouterr().out
    assert "1 ok, 0 broken" in out
    for stray in ("notes", "README", "retrain/backup", "retrain/list.txt"):
        assert f"not part of the store (never read, left alone): {tmp_path / stray}" in out
