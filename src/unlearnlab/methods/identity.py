"""Control: the original model, unchanged — the worst case every method should beat.
No source; no training."""

from __future__ import annotations

from typing import ClassVar

from unlearnlab.methods.base import UnlearningMethod


class Identity(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset()
    trains: ClassVar[bool] = False

    def __init__(self, model, data, **hparams) -> None:
        super().__init__(model, data, **{**hparams, "epochs": 0})

    def run(self, make_trainer) -> None:
        """Nothing to do: no step, no Trainer."""
