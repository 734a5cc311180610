"""Unlearning methods: one file per method, each a LightningModule (see base.py)."""
