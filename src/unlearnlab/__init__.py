"""unlearnlab: Hydra-configured machine-unlearning studies, audited by the NeurIPS 2023 ε."""

__version__ = "0.1.0"
