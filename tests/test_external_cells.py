"""A study's cells leave and come back (issue 20 items 2–4): through task=logits + task=audit_files they
give the study's own numbers; as a bundle (task=export / task=import) they make the same study on an
empty store train nothing and print the same table; a damaged, lying or mismatched bundle is refused
in one line with the store unchanged; the forget set travels as an index file that reproduces it."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import wandb_records
from conftest import inprocess_error, unlearnlab_inprocess
from rich.console import Console

from unlearnlab.bundle import MANIFEST, canonical_json, import_bundle, manifest_checksum
from unlearnlab.cells import CellRunner
from unlearnlab.errors import ConfigError
from unlearnlab.store import Store, cell_key, meta_checksum
from unlearnlab.tables import print_results

# debug=tiny (finetune alone, one-epoch recipe; here one epoch of finetune too) with N = 4 and every audit these parts allow, at test size
STUDY = ["debug=tiny", "n_models=4", "methods.finetune.epochs=1", "audit=[competition,lower_bound,mia_kit,mia_svc]",
         "audit.competition.n_permutations=9", "+audit.mia_kit.n_splits=3"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    unlearnlab_inprocess(root / "out", *STUDY, f"paths.root={root}")
    return root, json.loads((root / "out" / "results.json").read_text())


@pytest.fixture(scope="module")
def bundle(study):
    root, _ = study
    unlearnlab_inprocess(root / "export", *STUDY, f"paths.root={root}", "task=export", f"export.path={root / 'cells.tar'}")
    return root / "cells.tar"


def files_of(store: Path) -> dict[str, bytes]:
    """Every file of a store but its lock files (empty; made when a cell is locked)."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.parts[len(store.parts)] != "locks"}


# -- task=logits + task=audit_files ---------------------------------------------------------------
def test_results_and_report_record_the_data_fingerprint_and_the_forget_indices_hash(study):
    root, results = study
    data = results["data"]
    assert len(data["fingerprint"]) == 64 and len(data["forget_indices_sha256"]) == 64
    assert data["n_forget"] == 144 and data["split"] == "random0.1"
    report = (root / "out" / "report.md").read_text()
    assert data["fingerprint"] in report and data["forget_indices_sha256"] in report


def test_a_study_s_own_cells_through_task_logits_and_audit_files_give_the_study_s_numbers(study, tmp_path):
    root, results = study
    for kind, side in (("retrain", "retrain"), ("unlearn", "finetune")):
        ckpts = tmp_path / "ckpt" / side
        ckpts.mkdir(parents=True)
        for entry in (root / "store" / kind).iterdir():
            index = json.loads((entry / "meta.json").read_text())["index"]
            shutil.copy(entry / "model.safetensors", ckpts / f"model{index}.safetensors")
        unlearnlab_inprocess(tmp_path / f"logits-{side}", *STUDY, f"paths.root={root}", "task=logits",
                             f"logits.checkpoints={ckpts}", f"logits.out={tmp_path / 'npz' / side}")
    npz = tmp_path / "npz"
    assert sorted(p.name for p in (npz / "finetune").iterdir()) == ["labels.npz", *(f"model{i}.npz" for i in range(4))]
    out = tmp_path / "audit"
    unlearnlab_inprocess(out, *STUDY, f"paths.root={root}", "task=audit_files", "logger=wandb",
                         f"files.labels={npz / 'retrain' / 'labels.npz'}", f"files.reference={npz / 'retrain'}",
                         f"+files.methods.finetune={npz / 'finetune'}")
    got = json.loads((out / "results.json").read_text())
    own = {k: v for k, v in results["methods"]["finetune"].items() if not k.startswith("cost/")}
    assert got["methods"]["finetune"] == own  # every audit number and accuracy, exactly
    assert got["retrain"] == {k: v for k, v in results["retrain"].items() if not k.startswith("cost/")}
    assert got["pairwise"] == results["pairwise"] and got["n_models"] == 4
    for key in ("fingerprint", "n_forget", "forget_indices_sha256"):
        assert got["data"][key] == results["data"][key]
    # the same W&B audit run a study logs, one per method, and the study run
    runs = {wandb_records.run_info(r)["job_type"]: r for r in wandb_records.run_dirs(out)}
    assert set(runs) == {"audit", "study"}
    assert wandb_records.summary(runs["audit"])["audit/F"] == own["audit/F"]


# -- task=export / task=import --------------------------------------------------------------------
def test_an_exported_bundle_makes_the_same_study_on_an_empty_store_train_nothing(study, bundle, tmp_path,
                                                                                  monkeypatch, capsys):
    root, results = study
    store = tmp_path / "store"
    unlearnlab_inprocess(tmp_path / "import", *STUDY, f"paths.root={root}", "task=import",
                         f"import.path={bundle}", f"paths.store={store}")
    printed = capsys.readouterr().out
    assert "imported 1 original, 4 retrain, 4 unlearn cells" in printed and "finds 9 of its 9 cells" in printed
    assert files_of(store) == files_of(root / "store")

    def no_training(self, cell):
        raise AssertionError(f"{cell.label} was computed")
    monkeypatch.setattr(CellRunner, "_compute", no_training)
    unlearnlab_inprocess(tmp_path / "rerun", *STUDY, f"paths.root={root}", f"paths.store={store}")
    printed = capsys.readouterr().out
    assert json.loads((tmp_path / "rerun" / "results.json").read_text()) == results
    table = Console(width=200, record=True, file=io.StringIO())
    print_results(table, results)
    for line in table.export_text().splitlines():
        assert line in printed  # the same table, line for line


def test_the_retrained_models_alone_serve_another_method(study, tmp_path, capsys):
    """Pay for retraining once: export original + retrained, import them where another method is studied:
    that study finds them (and computes only its unlearned cells: the round trip above shows found cells
    are never recomputed)."""
    root, _ = study
    identity = [o for o in STUDY if not o.startswith("methods.")] + ["method=identity"]
    retrained = tmp_path / "retrained.tar"
    unlearnlab_inprocess(tmp_path / "export", *STUDY, f"paths.root={root}", "task=export",
                         f"export.path={retrained}", "export.kinds=[original,retrain]")
    unlearnlab_inprocess(tmp_path / "import", *identity, f"paths.root={root}", "task=import",
                         f"import.path={retrained}", f"paths.store={tmp_path / 'store'}")
    printed = capsys.readouterr().out
    assert "imported 1 original, 4 retrain cells" in printed
    assert "(digits-random0.1-small_cnn, N = 4, methods identity) finds 5 of its 9 cells" in printed


def test_the_forget_indices_travel_with_the_bundle_and_reproduce_the_split(study, bundle, tmp_path, capsys):
    from omegaconf import OmegaConf

    from unlearnlab.data import load_study_data

    root, results = study
    forget = tmp_path / "forget.txt"
    unlearnlab_inprocess(tmp_path / "import", *STUDY, f"paths.root={root}", "task=import", f"import.path={bundle}",
                         f"paths.store={tmp_path / 'store'}", f"import.forget_indices={forget}")
    assert f"split=index_file split.path={forget} split.seed=0" in capsys.readouterr().out
    split = {"name": "kit", "kind": "index_file", "path": str(forget), "seed": 0, "val_fraction": 0.5, "val_seed": 42}
    data = load_study_data(OmegaConf.create({"name": "digits", "root": "data", "download": False}), OmegaConf.create(split))
    assert data.fingerprint() == results["data"]["fingerprint"]  # the same parts, indices and labels


def test_export_and_import_refuse_what_they_cannot_do_in_one_line(study, bundle, tmp_path):
    root, _ = study
    err = inprocess_error(tmp_path / "a", *STUDY, "n_models=5", f"paths.root={root}", "task=export",
                          f"export.path={tmp_path / 'x.tar'}")
    assert "2 of the 11 cells to export are not in the store" in str(err) and "(retrain#4, finetune#4)" in str(err) and not (tmp_path / "x.tar").exists()
    err = inprocess_error(tmp_path / "b", *STUDY, f"paths.root={root}", "task=export", "export.path=x.tar",
                          "export.kinds=[retrain,model]")
    assert "export.kinds: model is not a kind of cell" in str(err)
    err = inprocess_error(tmp_path / "c", *STUDY, f"paths.root={root}", "task=import")
    assert "task=import needs one of import.path=FILE" in str(err)
    err = inprocess_error(tmp_path / "d", *STUDY, f"paths.root={root}", "task=import", "import.artifact=cells:v0")
    assert "write it as ENTITY/PROJECT/NAME:VERSION" in str(err)
    # a bundle for other data than this config loads (another forget set)
    store = tmp_path / "store"
    err = inprocess_error(tmp_path / "e", *STUDY, "split.fraction=0.2", f"paths.root={root}", "task=import",
                          f"import.path={bundle}", f"paths.store={store}")
    assert "its cells are for other data" in str(err) and "nothing was imported" in str(err)
    assert not store.exists()


def test_an_artifact_cannot_be_fetched_without_a_w_and_b_server_in_one_line(study, tmp_path, monkeypatch):
    """What is testable here without a server: the fetch goes through wandb's API and its refusal is one line."""
    root, _ = study
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    err = inprocess_error(tmp_path / "out", *STUDY, f"paths.root={root}", "task=import",
                          "import.artifact=my-team/unlearnlab/cells-digits:v0", f"paths.store={tmp_path / 'store'}")
    assert "import.artifact=my-team/unlearnlab/cells-digits:v0 could not be fetched" in str(err)
    assert not (tmp_path / "store").exists()


def test_export_wandb_logs_the_bundle_as_an_artifact(study, tmp_path):
    root, _ = study
    out = tmp_path / "out"
    unlearnlab_inprocess(out, *STUDY, "logger=wandb", f"paths.root={root}", "task=export",
                         f"export.path={tmp_path / 'cells.tar'}", "export.kinds=[original]", "export.wandb=true")
    (run,) = wandb_records.run_dirs(out)
    assert wandb_records.run_info(run)["job_type"] == "export"
    assert wandb_records.artifacts(run) == [{"name": "cells-digits-random0.1-small_cnn", "type": "unlearnlab-cells",
                                             "files": ["cells.tar"]}]


# -- damaged, lying and mismatched bundles --------------------------------------------------------
def members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar]


def rebuild(path: Path, items: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in items:
            info = tarfile.TarInfo(info.name) if not isinstance(info, tarfile.TarInfo) else info
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def lie(bundle: Path, out: Path, edit) -> Path:
    """The bundle with EDIT(manifest, metas) applied and every checksum recomputed: only the lie is left."""
    items = members(bundle)
    manifest = json.loads(items[0][1])
    metas = {m.name: json.loads(d) for m, d in items if m.name.endswith("meta.json")}
    renames = edit(manifest, metas) or {}
    for name, meta in metas.items():
        meta["meta_sha256"] = meta_checksum(meta)
    fixed = []
    for m, data in items[1:]:
        if m.name in metas:
            data = json.dumps(metas[m.name]).encode()
        m.name = renames.get(m.name, m.name)
        fixed.append((m, data))
    for e in manifest["entries"]:
        name = f"cells/{e['kind']}/{e['key']}/meta.json"
        meta = next(d for m, d in fixed if m.name == name)
        e["files"]["meta.json"] = {"size": len(meta), "sha256": __import__("hashlib").sha256(meta).hexdigest()}
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    head = items[0][0]
    return rebuild(out, [(head, canonical_json(manifest).encode()), *fixed])


def _rekey(manifest, metas, change_meta_key: bool):
    e = next(e for e in manifest["entries"] if e["kind"] == "retrain")
    old, new = e["key"], "0" * 24
    e["key"] = new
    renames = {f"cells/retrain/{old}/{f}": f"cells/retrain/{new}/{f}"
               for f in ("meta.json", "model.safetensors", "outputs.safetensors")}
    if change_meta_key:
        metas[f"cells/retrain/{old}/meta.json"]["key"] = new
    return renames


def _reseed(manifest, metas):
    e = next(e for e in manifest["entries"] if e["kind"] == "retrain")
    e["spec"]["seed"] += 1
    metas[f"cells/retrain/{e['key']}/meta.json"]["spec"]["seed"] += 1


def _other_data(manifest, metas):
    for e in manifest["entries"]:
        key = e["key"]
        e["spec"]["data"] = "f" * 64
        metas[f"cells/{e['kind']}/{key}/meta.json"]["spec"]["data"] = "f" * 64


def flip(bundle: Path, out: Path, where) -> Path:
    data = bytearray(bundle.read_bytes())
    with tarfile.open(bundle) as tar:
        ms = tar.getmembers()
    pos = where(ms, len(data))
    data[pos] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


def model_file(ms):
    return next(m for m in ms if m.name.endswith("model.safetensors"))


DAMAGE = {
    "a flipped byte in a model file": (lambda b, o: flip(b, o, lambda ms, n: model_file(ms).offset_data + 5000),
                                       "differs from its manifest's sha256"),
    "a flipped byte in a meta.json": (lambda b, o: flip(b, o, lambda ms, n: next(
        m for m in ms if m.name.endswith("meta.json")).offset_data + 40), "differs from its manifest's sha256"),
    "a flipped byte in the manifest": (lambda b, o: flip(b, o, lambda ms, n: ms[0].offset_data + 300), "manifest"),
    "a flipped byte in a tar header": (lambda b, o: flip(b, o, lambda ms, n: model_file(ms).offset + 20), "ends before"),
    "a flipped byte in the padding": (lambda b, o: flip(b, o, lambda ms, n: ms[0].offset_data + ms[0].size + 3),
                                      "the padding after 'manifest.json' holds non-zero bytes"),
    "a flipped byte at the end": (lambda b, o: flip(b, o, lambda ms, n: n - 1), "the end of the archive holds non-zero"),
    "a truncated bundle": (lambda b, o: o.write_bytes(b.read_bytes()[: b.stat().st_size // 2]) and o, "truncated"),
    "not a tar": (lambda b, o: o.write_bytes(b"PK\x03\x04" + b"\0" * 2000) and o, "is not an uncompressed tar"),
    "a manifest that lies about a key": (lambda b, o: lie(b, o, lambda m, x: _rekey(m, x, False)),
                                         "meta.json records key"),
    "a manifest and meta.json that lie about a key": (lambda b, o: lie(b, o, lambda m, x: _rekey(m, x, True)),
                                                      "hashes to"),
    "a spec edited under its key": (lambda b, o: lie(b, o, _reseed), "hashes to"),
    "cells for other data": (lambda b, o: lie(b, o, _other_data), "its cells are for other data"),
    "a symlink member": (lambda b, o: rebuild(o, [*members(b)[:2], (_link("cells/x", tarfile.SYMTYPE), b"")]),
                         "member 'cells/x' is a link"),
    "a member with ..": (lambda b, o: rebuild(o, [*members(b)[:2], (tarfile.TarInfo("cells/../../x"), b"x")]),
                         "points outside the bundle"),
    "an absolute member": (lambda b, o: rebuild(o, [*members(b)[:2], (tarfile.TarInfo("/etc/x"), b"x")]),
                           "points outside the bundle"),
    "a member the manifest does not list": (lambda b, o: rebuild(o, [*members(b), (tarfile.TarInfo("extra.txt"), b"x")]),
                                            "member 'extra.txt' is not a file its manifest lists"),
}


def _link(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, "/etc/passwd"
    return info


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_or_lying_bundle_is_refused_in_one_line_with_the_store_unchanged(study, bundle, tmp_path, case):
    root, results = study
    make, expected = DAMAGE[case]
    bad = make(bundle, tmp_path / "bad.tar")
    store = tmp_path / "store"  # a store with entries of its own (another study's): must stay as it was
    shutil.copytree(root / "store" / "original", store / "original")
    before = files_of(store)
    with pytest.raises(ConfigError) as err:
        import_bundle(bad, Store(store), expected_data=results["data"]["fingerprint"])
    message = str(err.value)
    assert "\n" not in message and expected in message and "nothing was imported" in message, message
    assert files_of(store) == before and sorted(p.name for p in store.iterdir()) == ["original"]
    # and into an empty store: nothing is created
    with pytest.raises(ConfigError):
        import_bundle(bad, Store(tmp_path / "empty"), expected_data=results["data"]["fingerprint"])
    assert not (tmp_path / "empty").exists()


def test_no_single_byte_of_a_bundle_can_change_unnoticed(study, tmp_path):
    """Every byte is accounted for — tar headers (all 512 bytes, the one tar's own checksum skips
    included), contents, padding, the archive's end: flip one anywhere and import refuses."""
    root, _ = study
    small = tmp_path / "original.tar"
    unlearnlab_inprocess(tmp_path / "export", *STUDY, f"paths.root={root}", "task=export", f"export.path={small}",
                         "export.kinds=[original]", "export.forget_indices=false")
    good = small.read_bytes()
    with pytest.raises(ConfigError, match="carries no forget-index file"):
        import_bundle(small, Store(tmp_path / "ok"), want_forget=True)
    assert import_bundle(small, Store(tmp_path / "ok")).placed == {"original": 1}
    with tarfile.open(small) as tar:
        ms = tar.getmembers()
    positions = {len(good) - 1, len(good) - 600, ms[-1].offset_data + ms[-1].size + 1}  # the archive's end
    for m in ms:
        positions |= {m.offset + i for i in (0, 99, 100, 124, 136, 148, 154, 155, 156, 257, 265, 345, 511)}  # header
        positions |= {m.offset_data, m.offset_data + m.size // 2, m.offset_data + m.size - 1}  # content
        if m.size % 512:
            positions.add(m.offset_data + m.size)  # padding
    bad = tmp_path / "bad.tar"
    for pos in sorted(positions):
        data = bytearray(good)
        data[pos] ^= 0x01
        bad.write_bytes(bytes(data))
        with pytest.raises(ConfigError, match="nothing was imported"):
            import_bundle(bad, Store(tmp_path / "s"))
        assert not (tmp_path / "s").exists(), pos


def test_an_entry_already_in_the_store_is_kept(study, bundle, tmp_path):
    root, _ = study
    store = tmp_path / "store"
    first = import_bundle(bundle, Store(store))
    before = files_of(store)
    again = import_bundle(bundle, Store(store))
    assert first.placed == {"original": 1, "retrain": 4, "unlearn": 4} and again.placed == {}
    assert again.present == first.placed and files_of(store) == before
    assert all(cell_key(json.loads((p / "meta.json").read_text())["spec"]) == p.name
               for kind in ("original", "retrain", "unlearn") for p in (store / kind).iterdir())
    assert MANIFEST == "manifest.json"
