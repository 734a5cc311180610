"""task=logits (issue 20 item 2): the starting kit's path — torchvision ResNet-18 state dicts trained
elsewhere on CIFAR-10 with a forget-index file — on CIFAR-10-format files this test writes (nothing is
downloaded): the checkpoints it trains and saves (torch.save and safetensors) become .npz logits that
are the models' own outputs, and task=audit_files audits them. Checkpoints are never unpickled."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import fakedata
import numpy as np
import pytest
import torch
import torchvision
from conftest import inprocess_error, unlearnlab_inprocess
from safetensors.torch import save_file

from unlearnlab.data.sources import CIFAR_MEAN, CIFAR_STD
from unlearnlab.errors import ConfigError
from unlearnlab.logits_task import read_state_dict

FORGET = [0, 3, 7, 11, 20]


def kit_model(seed: int, images: torch.Tensor, labels: torch.Tensor) -> torch.nn.Module:
    """As the kit builds and trains it (torchvision resnet18, num_classes=10; here one SGD step on 8 images)."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    opt.step()
    return model.eval()


def normalised(x: np.ndarray) -> torch.Tensor:
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (torch.from_numpy(x).float() / 255 - mean) / std


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("kit")
    written = fakedata.write_cifar10(tmp_path / "cifar10", n_train=50, n_test=20)
    x, y = normalised(written.train_x), torch.from_numpy(written.train_y)
    retain = [i for i in range(50) if i not in FORGET]
    (tmp_path / "forget.txt").write_text("\n".join(map(str, FORGET)) + "\n")
    models = {}
    for side, suffix, part in (("retrained", ".pth", retain[:8]), ("unlearned", ".safetensors", retain[8:16])):
        (tmp_path / side).mkdir()
        for i in range(2):
            model = models[(side, i)] = kit_model(10 * i + len(side), x[part], y[part])
            path = tmp_path / side / f"model_{i}{suffix}"
            if suffix == ".pth":
                torch.save(model.state_dict(), path)  # the kit's format
            else:
                save_file(model.state_dict(), str(path))
    overrides = ["model=resnet18", "dataset=cifar10", f"dataset.root={tmp_path / 'cifar10'}", "dataset.download=false",
                 "split=index_file", f"split.path={tmp_path / 'forget.txt'}", "logger=none", f"paths.root={tmp_path}"]
    with pytest.MonkeyPatch.context() as mp:  # torchvision's checksum tables expect the files written here
        fakedata.accept_checksums(mp, written)
        yield tmp_path, written, models, overrides


def test_kit_state_dicts_become_their_own_logits_and_are_audited(kit):
    root, written, models, overrides = kit
    for side in ("retrained", "unlearned"):
        unlearnlab_inprocess(root / f"out-{side}", *overrides, "task=logits", f"logits.checkpoints={root / side}",
                             f"logits.out={root / 'logits' / side}")
    labels = np.load(root / "logits" / "retrained" / "labels.npz", allow_pickle=False)
    assert labels["forget_indices"].tolist() == FORGET
    assert labels["forget"].tolist() == written.train_y[FORGET].tolist()
    assert len(labels["retain"]) == 45 and len(labels["test"]) + len(labels["val"]) == 20
    for (side, i), model in models.items():
        npz = np.load(root / "logits" / side / f"model_{i}.npz", allow_pickle=False)
        with torch.no_grad():
            expected = model(normalised(written.train_x[FORGET])).numpy()
        assert npz["forget"].dtype == np.float32 and npz["forget"].shape == (5, 10)
        np.testing.assert_allclose(npz["forget"], expected, rtol=1e-5, atol=1e-5)  # the model's own logits
    out = root / "audit"
    # (the kit MIA's 10-fold split needs more than 5 forget examples: not here)
    unlearnlab_inprocess(out, *overrides, "task=audit_files", "audit=[competition,lower_bound,mia_svc]",
                         f"files.labels={root / 'logits' / 'retrained' / 'labels.npz'}",
                         f"files.reference={root / 'logits' / 'retrained'}", f"+files.methods.kit={root / 'logits' / 'unlearned'}")
    results = json.loads((out / "results.json").read_text())
    row = results["methods"]["kit"]
    assert results["n_models"] == 2 and {"audit/F", "audit/p_value", "audit/mia_efficacy", "retain/acc"} <= set(row)
    assert results["data"]["forget_indices_sha256"] and results["data"]["n_forget"] == 5


class Planted:
    def __reduce__(self):
        return (Path.write_text, (Path("/tmp/unlearnlab-logits-pwned"), "ran"))


def test_a_checkpoint_with_code_is_refused_and_never_run(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": Planted()}, f)
    with pytest.raises(ConfigError, match=r"could not be read as a state dict of tensors .* never pickled code"):
        read_state_dict(path)
    assert not Path("/tmp/unlearnlab-logits-pwned").exists()
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="is not a state dict"):
        read_state_dict(tmp_path / "list.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ConfigError, match="could not be read as a state dict"):
        read_state_dict(tmp_path / "junk.safetensors")


def test_a_checkpoint_of_another_architecture_is_refused_and_nothing_is_written(kit, tmp_path):
    root, _, _, overrides = kit
    from unlearnlab.models.small_cnn import SmallCNN

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in (root / "retrained").iterdir():
        (mixed / f.name).write_bytes(f.read_bytes())
    torch.save(SmallCNN(3, 10, 32).state_dict(), mixed / "model_2.pth")
    err = inprocess_error(tmp_path / "out", *overrides, "task=logits", f"logits.checkpoints={mixed}",
                          f"logits.out={tmp_path / 'npz'}")
    assert "model_2.pth does not fit model=resnet18 on this dataset (missing " in str(err)
    assert not (tmp_path / "npz").exists()  # the two good checkpoints' files were not left behind either
