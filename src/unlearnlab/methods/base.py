"""The method contract: an unlearning method is a LightningModule run by a Trainer.

It receives the original model (a copy it may change), the data parts it declares in
`reads`, and its hyperparameters from conf/method/NAME.yaml. Test data is never handed over
(the competition forbade it); a part a method did not declare cannot be read.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from typing import Callable, ClassVar, Iterable, Iterator

import lightning as L
import torch
from torch import nn

from unlearnlab.data import StudyData
from unlearnlab.data.loader import Augment, DeviceBatches, normalise
from unlearnlab.errors import ConfigError
from unlearnlab.training import EpochMetrics, OptimSettings

METHOD_PARTS = frozenset({"forget", "retain", "val"})

MakeTrainer = Callable[..., L.Trainer]


class DataAccessError(PermissionError):
    """A method read a data part it did not declare."""


class MethodData:
    """The parts a method may read; anything else raises."""

    def __init__(self, data: StudyData, allowed: frozenset[str], seed: int, method: str) -> None:
        self._data, self.allowed, self.seed, self._method = data, allowed, seed, method

    def _check(self, part: str) -> None:
        if part not in self.allowed:
            raise DataAccessError(
                f"method {self._method!r} read {part!r} but declares reads={sorted(self.allowed)}; "
                f"add {part!r} to its `reads` (allowed: {sorted(METHOD_PARTS)})"
            )

    def batches(self, part: str, batch_size: int, shuffle: bool = True, augment: Augment = Augment(),
                seed_offset: int = 0) -> DeviceBatches:
        self._check(part)
        return self._data.batches(part, batch_size, shuffle, self.seed + seed_offset, augment)

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole part, normalised: for methods that need every example at once."""
        self._check(part)
        x, y = self._data.parts[part]
        return normalise(x, self._data.mean, self._data.std), y

    def size(self, part: str) -> int:
        self._check(part)
        return len(self._data.parts[part][1])

    @property
    def num_classes(self) -> int:
        return self._data.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one example: a shape, not data, so always readable."""
        return tuple(self._data.input_shape)

    @property
    def pixel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalisation mean and std (1, C, 1, 1): statistics, not data, so always readable."""
        return self._data.mean, self._data.std


class UnlearningMethod(EpochMetrics):
    """Base of every method. Subclasses set `reads`, and define training_step and
    train_dataloader; multi-phase methods override `run` with a documented sequence of fits.

    One teacher policy: a method that compares against a fixed network declares it with
    `add_teacher(name, model)` — a frozen copy (no gradients) held outside the module tree, so
    it is never trained, never saved with the model, never counted by Lightning's eval-mode
    check; every fit moves it to the device and keeps it in eval mode, and puts `self.model`
    in train mode (EpochMetrics.on_fit_start)."""

    reads: ClassVar[frozenset[str]] = frozenset({"retain"})
    # The model kinds the method applies to (None: any); checks.check_applies refuses others at start-up.
    model_kinds: ClassVar[frozenset[str] | None] = None
    # False for a method that changes the weights without any Trainer fit (identity; closed-form
    # methods such as ssd or fisher, which compute on the data in `run`).
    trains: ClassVar[bool] = True
    # In every cell key of the method (plan.bound_arguments): raise it when what the method computes
    # changes, so stored cells of the old code are not reused.
    code_version: ClassVar[int] = 1

    def __init__(
        self,
        model: nn.Module,
        data: MethodData,
        epochs: int = 1,
        batch_size: int = 128,
        optimizer: str = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        scheduler: str = "cosine",
        crop_padding: int = 0,
        flip: bool = False,
    ) -> None:
        super().__init__()
        self.model, self.data = model, data
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.optim = OptimSettings(optimizer, float(lr), float(momentum), float(weight_decay), scheduler)
        self.augment = Augment(int(crop_padding), bool(flip))
        self.phase = "unlearn"
        self._teachers: dict[str, nn.Module] = {}  # a plain dict: outside the module tree
        self.untimed_seconds = 0.0

    @contextmanager
    def untimed(self) -> Iterator[None]:
        """Work inside `run` that produces the model being unlearned (e.g. newton's refit of its
        own original) rather than unlearning it: the cell's cost/seconds leaves it out, so that
        cost/rte compares unlearning with retraining only."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.untimed_seconds += time.perf_counter() - start

    def add_teacher(self, name: str, model: nn.Module) -> nn.Module:
        """Declare a frozen teacher: a copy of `model` in eval mode without gradients; returns it."""
        teacher = copy.deepcopy(model).eval()
        teacher.requires_grad_(False)
        self._teachers[name] = teacher
        return teacher

    def teacher(self, name: str = "teacher") -> nn.Module:
        return self._teachers[name]

    def with_teacher(self, x: torch.Tensor, name: str = "teacher") -> tuple[torch.Tensor, torch.Tensor]:
        """The model's output on `x` and the frozen teacher's, the latter without a graph: the
        pair a distillation step compares."""
        out = self.model(x)
        with torch.no_grad():
            return out, self.teacher(name)(x)

    @property
    def teachers(self) -> dict[str, nn.Module]:
        """The declared frozen teachers, by name."""
        return dict(self._teachers)

    def frozen_modules(self) -> Iterable[nn.Module]:
        return self._teachers.values()

    @classmethod
    def check_reads(cls) -> None:
        extra = set(cls.reads) - METHOD_PARTS
        if extra:
            raise ConfigError(
                f"method {cls.__name__} declares reads={sorted(cls.reads)}; methods may read only "
                f"{sorted(METHOD_PARTS)} (test data is never available to a method)"
            )

    def forward(self, x):
        return self.model(x)

    def run(self, make_trainer: MakeTrainer) -> None:
        """One fit of `epochs` epochs; zero epochs means no training at all."""
        if self.epochs > 0:
            make_trainer(max_epochs=self.epochs, phase=self.phase).fit(self)

    def cell_metrics(self) -> dict[str, float]:
        """Scalars the method reports about its own run (e.g. a certificate's ε), stored with the cell."""
        return {}

    def configure_optimizers(self):
        return self.optim.build_for(self.model.parameters(), self.trainer)
