"""Schemas of the config groups whose keys the framework reads: dataset, split, recipe, trainer,
logger, paths, and the options of the tasks audit_files, logits, export and import. Each is a dataclass stored in Hydra's ConfigStore as GROUP/NAME (`register`), and
each option file extends one through its defaults list (Hydra's "schema via the defaults list"):

    # conf/dataset/mnist.yaml
    defaults:
      - schema        # dataset/schema: DatasetSchema
      - _self_

So a key an option does not have (`recipe.lrr=0.1`, `logger.cell_run=true`) or a value of the
wrong type (`logger.cell_runs=maybe`) fails while Hydra composes, in the first second, and the
CLI says so in one line (checks.composition_error). `+GROUP.KEY=...` gets past Hydra (it opens
the node); checks.check_schemas refuses it then, except for the trainer, whose extra keys are
bound to lightning.Trainer's signature (checks.check_trainer).

Which options use which schema:
- dataset: `schema` (name, root, download: every torchvision and embedded source),
  `schema_fake_cifar10` (+ n_train, n_test, seed), `schema_image_folder` (+ csv, size,
  channels, num_classes), `schema_source` (+ _target_, options: a plugin's loader): a source's
  options are its loader's keyword arguments; keys that only say where data is (root, download,
  csv) are marked LOCATION and stay out of the cell keys;
- split: `schema_fraction` (random, group, mislabeled), `schema_class`, `schema_index_file`;
- recipe: `schema` (SGD recipes), `schema_exact` (+ solver, tol, max_iter);
- trainer: `schema`; logger: `schema` (none), `schema_csv`, `schema_wandb`; paths: `schema`;
- files, logits, export, import: `schema` (the options of task=audit_files, logits, export,
  import; read by no other task, hashed into no cell key).

One schema per kind rather than one per group with optional keys: a schema field with a default
is present in every composed config, and dataset/split/recipe are hashed into every cell key and
handed to loaders as keyword arguments. With a schema per kind, every option's composed node has
exactly the keys its file has, so the schemas change no cell key.

Types, not ranges: ranges (epochs ≥ 0, batch size ≥ 1, lr finite ≥ 0, lock_timeout > 0, ...)
are checked in one place, checks.py. Recipe epochs and batch_size are typed Any there for that
reason: `recipe.epochs=10.0` is the same setting (and cell) as 10, which an int field would
refuse, and check_hyperparameters refuses 1.5 or `abc` in one line.

Registering is cheap (no torch) and idempotent; the CLI, pipeline.run_composed and the tests'
conftest call `register()` before composing. Code that composes unlearnlab's configs with
Hydra's compose API itself calls it first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING

# -- dataset --------------------------------------------------------------------------------------


# A dataset key that says where data is read from, not what it is, is marked `location`: the cell
# keys leave it out (plan.Planner), since the loaded data's fingerprint covers what was read. So the
# same images in another folder reuse the cells, and edited images do not.
LOCATION = {"location": True}


@dataclass
class DatasetSchema:
    """A data source (data/sources.py `SOURCES`); every key but name is its loader's argument."""

    name: str = MISSING  # the source: a key of data.sources.SOURCES
    root: str = field(default=MISSING, metadata=LOCATION)  # where it is read from (or downloaded to)
    download: bool = field(default=False, metadata=LOCATION)  # whether a missing copy is fetched


@dataclass
class FakeCifar10Schema(DatasetSchema):
    n_train: int = 50_000
    n_test: int = 10_000
    seed: int = 0


@dataclass
class ImageFolderSchema(DatasetSchema):
    csv: str | None = field(default=None, metadata=LOCATION)  # the label file (null: ROOT/labels.csv)
    size: int = 32
    channels: int = 3
    num_classes: int | None = None


@dataclass
class SourceSchema(DatasetSchema):
    """A dataset whose loader a config names (a plugin's dataset source: a function annotated to
    return a data.sources.Source, called as LOADER(root=..., download=..., **options)); `options`
    are bound to the loader's signature at start-up (checks.check_dataset). `name` names the data
    in tables and store keys. A path the loader reads belongs in `root` (a location, not identity)."""

    _target_: str = MISSING
    options: dict[str, Any] = field(default_factory=dict)


# -- split ----------------------------------------------------------------------------------------


@dataclass
class SplitSchema:
    """What every split kind has; the kinds below add the keys that choose the forget set."""

    kinds: ClassVar[tuple[str, ...]] = ()  # the split kinds (data/splits.py) this schema is for
    name: str = MISSING
    kind: str = MISSING
    seed: int = 0
    val_fraction: float = 0.5
    val_seed: int = 42


@dataclass
class FractionSplitSchema(SplitSchema):
    kinds: ClassVar[tuple[str, ...]] = ("random", "group", "mislabeled")
    fraction: float = 0.1


@dataclass
class ClassSplitSchema(SplitSchema):
    kinds: ClassVar[tuple[str, ...]] = ("class",)
    classes: list[int] = field(default_factory=lambda: [0])


@dataclass
class IndexFileSplitSchema(SplitSchema):
    kinds: ClassVar[tuple[str, ...]] = ("index_file",)
    path: str = MISSING


# -- recipe ---------------------------------------------------------------------------------------


@dataclass
class RecipeSchema:
    """How the original and the retrained models are trained (cells.recipe_settings, training.OptimSettings)."""

    epochs: Any = MISSING      # a whole number ≥ 0 (checks.check_hyperparameters; 10.0 = 10)
    batch_size: Any = MISSING  # a whole number ≥ 1 (checks.check_hyperparameters)
    optimizer: str = "sgd"     # training._OPTIMIZERS
    lr: float = MISSING
    momentum: float = 0.0
    weight_decay: float = 0.0
    scheduler: str = "cosine"  # cosine | cosine_epoch | none
    crop_padding: int = 0      # random-crop padding in pixels (0: no crop)
    flip: bool = False         # random horizontal flip


@dataclass
class ExactRecipeSchema(RecipeSchema):
    """recipe=exact: the exact minimiser (certified.fit_model_exact); the SGD keys do nothing."""

    solver: str = "exact"
    tol: float = 1e-10
    max_iter: int = 100


# -- trainer --------------------------------------------------------------------------------------


@dataclass
class TrainerSchema:
    """lightning.Trainer flags every fit of a cell shares: the ones conf/trainer sets and the
    ones most often overridden, each with Lightning's own default (tests/test_schemas.py holds
    them to lightning.Trainer's signature). Any other Trainer argument: `+trainer.NAME=VALUE`,
    bound to lightning.Trainer's signature by checks.check_trainer. Never max_epochs or logger:
    each fit sets them. Fields typed Any take more than one type in Lightning (devices: 1, "auto"
    or [0, 1]; limit_train_batches: 10 batches or 0.25 of them), which OmegaConf cannot express."""

    accelerator: str = "auto"
    strategy: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    precision: Any = None  # checks.check_trainer parses it with Lightning's parser
    deterministic: Any = None  # true | false | warn
    benchmark: bool | None = None
    enable_progress_bar: bool | None = None
    enable_checkpointing: bool | None = None
    enable_model_summary: bool | None = None
    num_sanity_val_steps: int | None = None
    use_distributed_sampler: bool = True
    log_every_n_steps: int | None = None
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str | None = None
    accumulate_grad_batches: int = 1
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    max_steps: int = -1
    detect_anomaly: bool = False
    default_root_dir: str | None = None


# -- logger ---------------------------------------------------------------------------------------


@dataclass
class LoggerSchema:
    """logger=none."""

    kinds: ClassVar[tuple[str, ...]] = ("none",)
    kind: str = MISSING  # none | csv | wandb (tracking.Tracker)


@dataclass
class CsvLoggerSchema(LoggerSchema):
    kinds: ClassVar[tuple[str, ...]] = ("csv",)
    cell_runs: bool = True


@dataclass
class WandbLoggerSchema(LoggerSchema):
    kinds: ClassVar[tuple[str, ...]] = ("wandb",)
    project: str = "unlearnlab"
    entity: str | None = None
    mode: str = "auto"  # auto | online | offline | disabled (WANDB_MODE wins)
    init_timeout: float = 30.0
    cell_runs: bool = False


# -- paths ----------------------------------------------------------------------------------------


@dataclass
class PathsSchema:
    root: str = MISSING
    store: str = MISSING
    data: str = MISSING
    output_dir: str = MISSING
    lock_timeout: float | None = None  # seconds > 0 (checks.check_paths); null: wait as long as it takes


# -- task options: audit_files, logits, export, import ------------------------------------------


@dataclass
class FilesSchema:
    """task=audit_files: logits of models trained elsewhere, one .npz per model (audit_files.py)."""

    labels: str | None = None     # labels.npz: integer labels forget, test (retain, val where given)
    reference: str | None = None  # folder of the reference (retrained) models' .npz files
    methods: dict[str, str] = field(default_factory=dict)  # NAME -> folder (`+files.methods.NAME=DIR`)
    name: str | None = None       # the study name in tables, results.json and W&B (null: files-<reference folder>)


@dataclass
class LogitsSchema:
    """task=logits: checkpoints of models trained elsewhere -> the .npz files task=audit_files reads."""

    checkpoints: str | None = None  # folder of *.safetensors (or *.pt / *.pth state dicts, weights only)
    out: str | None = None          # folder for NAME.npz per checkpoint and labels.npz
    batch_size: int = 1024


@dataclass
class ExportSchema:
    """task=export: a study's cells as one verified bundle (bundle.py)."""

    path: str | None = None  # the bundle file to write (an uncompressed tar)
    kinds: list[str] = field(default_factory=lambda: ["original", "retrain", "unlearn"])
    forget_indices: bool = True  # include the forget set's indices (a split=index_file file)
    wandb: bool = False          # also log the bundle as a W&B artifact (logger=wandb's project)


@dataclass
class ImportSchema:
    """task=import: a bundle's cells into paths.store, each byte and key checked first (bundle.py)."""

    path: str | None = None      # the bundle file
    artifact: str | None = None  # or a W&B artifact ENTITY/PROJECT/NAME:VERSION holding one
    check_data: bool = True      # its cells must be for the data this config loads (dataset, split)
    forget_indices: str | None = None  # write the bundle's forget-index file here (for split=index_file)


# -- the store ------------------------------------------------------------------------------------

# group -> {name in the ConfigStore: schema}
SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"schema": DatasetSchema, "schema_fake_cifar10": FakeCifar10Schema,
                "schema_image_folder": ImageFolderSchema, "schema_source": SourceSchema},
    "split": {"schema_fraction": FractionSplitSchema, "schema_class": ClassSplitSchema,
              "schema_index_file": IndexFileSplitSchema},
    "recipe": {"schema": RecipeSchema, "schema_exact": ExactRecipeSchema},
    "trainer": {"schema": TrainerSchema},
    "logger": {"schema": LoggerSchema, "schema_csv": CsvLoggerSchema, "schema_wandb": WandbLoggerSchema},
    "paths": {"schema": PathsSchema},
    "files": {"schema": FilesSchema},
    "logits": {"schema": LogitsSchema},
    "export": {"schema": ExportSchema},
    "import": {"schema": ImportSchema},
}
OPEN_GROUPS = ("trainer",)  # groups whose extra keys (`+trainer.NAME=...`) are checked elsewhere


def register() -> None:
    """Store every schema as GROUP/NAME in Hydra's ConfigStore (idempotent: storing again
    replaces the entry with the same node)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=group, name=name, node=node)


def is_schema(obj: Any) -> bool:
    return any(obj is s for schemas in SCHEMAS.values() for s in schemas.values())


def schema_name(group: str, schema: type) -> str:
    """The ConfigStore name of SCHEMA in GROUP (what an option file's defaults list names)."""
    return next(name for name, s in SCHEMAS.get(group, {}).items() if s is schema)


def location_keys(node: Any) -> tuple[str, ...]:
    """The keys of a dataset node that say where its data is read from (schema fields marked
    LOCATION). A node without a schema (a plain dict in tests): every dataset schema's."""
    from omegaconf import DictConfig, OmegaConf

    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    chosen = [schema] if is_schema(schema) else list(SCHEMAS["dataset"].values())
    return tuple(dict.fromkeys(f.name for s in chosen for f in dataclasses.fields(s) if f.metadata.get("location")))


def keys(schema: type) -> list[str]:
    """The keys a schema allows, in declaration order (ClassVars such as `kinds` are not keys)."""
    return [f.name for f in dataclasses.fields(schema)]


def options_with(group: str, key: str) -> list[str]:
    """`GROUP=OPTION` for the kinds of option whose schema has KEY (split.classes: split=class)."""
    found = []
    for name, schema in SCHEMAS.get(group, {}).items():
        if key in keys(schema) and name != "schema":
            found += [f"{group}={kind}" for kind in getattr(schema, "kinds", ())] or [f"{group}={name[len('schema_'):]}"]
    return found


def example(group: str, key: str) -> str | None:
    """A value GROUP.KEY may take, as typed on the command line (its schema default), or None."""
    for schema in SCHEMAS.get(group, {}).values():
        for f in dataclasses.fields(schema):
            if f.name != key:
                continue
            value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if value is dataclasses.MISSING or value is None or value == MISSING:
                return None
            if isinstance(value, bool):
                return str(value).lower()
            return str(value).replace(" ", "")
    return None
