"""Typed run configuration: one YAML file describes a whole run and is saved beside its outputs.

Unknown keys and wrong types are refused with a one-line error, and nothing in a config can
execute code: it is plain data validated by pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_serializer, field_validator, model_validator

from xdistil.errors import XDistilError
from xdistil.atomic import atomic_write_text
from xdistil.student.settings import StudentSettings
from xdistil.tasks.description import describe


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the labeled and unlabeled text comes from and how it is split."""

    dataset: str | None = Field(None, description="built-in name (rotten_tomatoes) or a datasets hub name")
    train: Path | None = None
    dev: Path | None = None
    test: Path | None = None
    transfer: list[Path] = Field(default_factory=list, description="unlabeled text files")
    text_column: str = "text"
    label_column: str = "label"
    group_column: str | None = Field(None, description="rows sharing this value never straddle two splits")
    split_seed: int = 13
    dev_size: float = Field(0.1, gt=0, description="carved from train when no dev file; <1 is a fraction")
    test_size: float = Field(0.2, gt=0, description="carved from train when no test file; <1 is a fraction")
    train_size: int | None = Field(None, gt=0, description="keep this many labeled train examples")
    surplus_to_transfer: bool = Field(True, description="labeled rows beyond train_size join the transfer set unlabeled")
    split_transfer_sentences: bool = Field(False, description="split long transfer paragraphs into sentences")
    pretokenizer: Literal["whitespace", "punctuation"] = Field(
        "whitespace", description="tagging: how unlabeled transfer lines become words (punctuation also splits it off words)"
    )
    max_chars: int = Field(100_000, ge=100, description="texts longer than this many characters are cut (counted) before tokenizing")
    transfer_overlap: Literal["drop", "keep", "error"] = Field(
        "drop", description="transfer texts that are also dev/test texts (after Unicode and whitespace normalisation): "
        "drop them (counted), keep them, or stop with an error"
    )
    transfer_duplicates: Literal["keep", "drop"] = Field(
        "keep", description="transfer texts that repeat a train text or an earlier transfer text (after Unicode and whitespace "
        "normalisation): keep them (each copy is labeled), or drop them (counted) so that every text is labeled once"
    )
    tokens_column: str = Field("tokens", description="tagging, hub datasets: the column of word lists")
    tags_column: str = Field("ner_tags", description="tagging, hub datasets: the column of tags")


class EnsembleMember(_Strict):
    """One more teacher beside teacher.model: another encoder, or the same one fine-tuned with another seed."""

    model: str | None = Field(None, description="a built-in name, hub id or folder; default teacher.model")
    seed: int | None = Field(None, description="its fine-tuning seed; default the run's seed plus its position (1, 2, ...)")
    weight: float = Field(1.0, ge=0, description="its share of the combination (teacher.model's is 1)")


# teacher settings that only change what annotation extracts: not part of the fine-tuned teacher's identity
ANNOTATION_ONLY = ("layer", "pooling", "source", "labels", "function", "outputs", "version", "retries", "ensemble", "combine")


class PairSettings(_Strict):
    """The contrastive phase of `teacher.recipe: setfit`: pairs of labeled texts pull texts of one label together."""

    iterations: int = Field(5, ge=1, description="pairs per labeled text and pass: one with its own label, one with another")
    epochs: int = Field(1, ge=1)
    lr: float = Field(2e-5, gt=0)
    batch_size: int = Field(16, ge=1)


class TeacherConfig(_Strict):
    """The large model: a built-in name, a hub id or a local folder."""

    model: str = "minilm-l6"
    finetune: bool = True
    epochs: int = Field(5, ge=1)
    lr: float = Field(5e-5, gt=0)
    head_lr: float | None = Field(None, gt=0, description="learning rate of the new task head; default the same as lr")
    batch_size: int = Field(32, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    patience: int = Field(2, ge=1)
    max_length: int = Field(128, ge=8)
    recipe: Literal["finetune", "setfit"] = Field(
        "finetune", description="finetune: the encoder and a new head on the labels; setfit: contrastive pairs tune the encoder "
                                "first (teacher.pairs), then the same fine-tune - for a few hundred labels")
    pairs: PairSettings = Field(default_factory=PairSettings, description="the setfit recipe's contrastive phase")
    head: Literal["auto", "model", "pooled"] = Field(
        "auto", description="model: the transformers class's own head (BERT's reads the first token); pooled: a linear head on "
                            "the mean of the last layer (first with pooling: first); auto: pooled for setfit, else model")
    layer: int | None = Field(None, description="hidden layer for the representation loss; default the middle one")
    pooling: Literal["auto", "first", "mean"] = Field(
        "auto", description="first token, mean over tokens, or auto: a sentence encoder's own pooling, else first"
    )
    # labels from outside the process (`transfer/labelers.py`): the model above is then only the reference encoder (the
    # student's tokenizer and embedding table, the size and speed figures compare with it) and is not fine-tuned
    source: Literal["model", "file", "function"] = Field(
        "model", description="who labels: the fine-tuned model, a file of labels (teacher.labels), or a function (teacher.function)")
    labels: Path | None = Field(None, description="source file: JSONL/CSV/TSV of text plus label, probs or logits, for every text "
                                                  "to label (train, transfer, dev, test)")
    function: str | None = Field(None, description="source function: 'module:attribute', a function of a list of texts "
                                                   "returning one row per text (see teacher.outputs)")
    outputs: Literal["probs", "logits", "labels"] = Field("probs", description="what the function gives per text")
    version: str = Field("1", description="the function's version, part of the cache's fingerprint: change it to label afresh")
    retries: int = Field(3, ge=0, description="further calls of the function after a failed one (waits double from 1 s)")
    # an ensemble (teacher/ensemble.py): more teachers, each fine-tuned and cached as its own step; the transfer set holds the
    # combination of their outputs (with teacher.model's representations), and metrics.json each one's test figures
    ensemble: list[EnsembleMember] = Field(default_factory=list, description="more teachers beside teacher.model")
    combine: Literal["probs", "logits"] = Field("probs", description="an ensemble's targets: the weighted mean of probabilities or of logits")

    @model_validator(mode="after")
    def _source_settings(self) -> TeacherConfig:
        """Each source has what it needs, and no other source's settings."""
        if self.source == "file" and self.labels is None:
            raise ValueError("teacher.source is file: give teacher.labels, the file of labels")
        if self.source == "function" and (self.function is None or ":" not in self.function):
            raise ValueError("teacher.source is function: give teacher.function as 'module:attribute'")
        if self.recipe == "setfit" and (self.external or not self.finetune):
            raise ValueError(f"teacher.recipe setfit fine-tunes the model; teacher.source is {self.source} and teacher.finetune "
                             f"{str(self.finetune).lower()} (use source: model, finetune: true)")
        if self.head == "pooled" and (self.external or not self.finetune):
            raise ValueError("teacher.head pooled is a new head to fine-tune; it needs teacher.source: model and teacher.finetune: true")
        if self.ensemble and self.source != "model":
            raise ValueError(f"teacher.ensemble combines fine-tuned models; teacher.source is {self.source}")
        for key, source in (("labels", "file"), ("function", "function")):
            if getattr(self, key) is not None and self.source != source:
                raise ValueError(f"teacher.{key} is set but teacher.source is {self.source}; set teacher.source: {source}")
        return self

    def training_settings(self) -> dict:
        """What the fine-tuned weights depend on (the teacher step's fingerprint): the default recipe's settings as they
        were before recipes were named, so its saved teachers are still found."""
        skip = set(ANNOTATION_ONLY) | ({"recipe", "pairs"} if self.recipe == "finetune" else set())
        settings = self.model_dump(mode="json", exclude=skip | {"head"})
        return settings if self.head_kind == "model" else {**settings, "head": self.head_kind}

    @property
    def head_kind(self) -> str:
        """The head the teacher trains: `head`, with auto resolved by the recipe."""
        return self.head if self.head != "auto" else ("pooled" if self.recipe == "setfit" else "model")

    @property
    def head_pooling(self) -> str:
        """How a pooled head (and the setfit recipe's pairs) pool the last layer."""
        return "first" if self.pooling == "first" else "mean"

    @property
    def external(self) -> bool:
        """Labels come from outside the process: the model is not fine-tuned and gives no representations."""
        return self.source != "model"


class AugmentConfig(_Strict):
    """Tang et al. (2019) style transfer-set augmentation; the teacher labels the new text."""

    factor: int = Field(0, ge=0, le=20, description="augmented copies per transfer text (up to 20); 0 turns it off")
    p_mask: float = Field(0.1, ge=0, le=1)
    p_swap: float = Field(0.1, ge=0, le=1, description="replace a word (by a corpus word or a neighbour: `replace`)")
    p_ngram: float = Field(0.25, ge=0, le=1, description="chance to keep only a random n-gram")
    max_ngram: int = Field(5, ge=1)
    replace: Literal["corpus", "neighbours"] = Field(
        "corpus", description="a replaced word: drawn by frequency from the corpus, or one of its nearest neighbours (by the "
        "teacher's input embeddings, or by `vectors`)"
    )
    neighbours: int = Field(10, ge=1, description="how many nearest words a neighbour replacement draws from")
    vectors: Path | None = Field(None, description="word vectors in GloVe's text format (word v1 v2 ...) for neighbour replacement")


class RayConfig(_Strict):
    """Annotation on a Ray cluster: one teacher actor per worker, each labelling whole cache chunks."""

    address: str | None = Field(None, description="cluster to join ('auto', 'ray://host:10001'); none starts a local one")
    workers: int = Field(2, ge=1, description="teacher actors (Ray Data concurrency)")
    num_cpus: float = Field(1, gt=0, description="CPUs per actor (also its torch threads)")
    num_gpus: float = Field(0, ge=0, description="GPUs per actor")
    window: int = Field(64, ge=1, description="chunks handed to Ray at a time (bounds the driver's memory)")


class TransferConfig(_Strict):
    """How the teacher labels the transfer set and how the cache is stored."""

    chunk_size: int = Field(2048, ge=1)
    batch_size: int = Field(64, ge=1)
    dtype: Literal["float16", "float32"] = "float16"
    teacher_precision: Literal["auto", "fp32", "int8", "bf16"] = Field(
        "auto", description="the teacher's arithmetic while it annotates: int8 (dynamic quantisation, CPU) or bf16 trade a little "
        "fidelity for speed; auto: int8 on a CPU once augmentation more than doubles the transfer set, else fp32"
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    budget: int | float | None = Field(
        None, description="label only this many transfer texts (a count, or a fraction of them when written with a point: 0.25); "
        "none: all"
    )
    budget_strategy: Literal["random", "diverse", "uncertain"] = Field(
        "random", description="which texts a budget labels: a seeded random draw; coverage of the teacher's embedding space (k-means); "
        "or uncertain: half by coverage, then the texts a static student fitted to those labels is least sure of"
    )
    engine: Literal["local", "ray"] = Field(
        "local", description="who annotates: this process (or each of `accelerate launch`'s), or a Ray cluster (pip install 'xdistil[ray]')"
    )
    ray: RayConfig = Field(default_factory=RayConfig)

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: int | float | None) -> int | float | None:
        if isinstance(value, float) and not 0 < value <= 1:
            raise ValueError(f"a fractional budget is between 0 and 1 (got {value}); a count is a whole number")
        if isinstance(value, int) and value < 0:
            raise ValueError(f"a budget counts texts: 0 or more (got {value})")
        return value

    def precision(self, on_gpu: bool) -> str:
        """The teacher's arithmetic while annotating, `auto` resolved."""
        if self.teacher_precision != "auto":
            return self.teacher_precision
        return "int8" if self.augment.factor > 1 and not on_gpu else "fp32"


def _student_settings(values: Any) -> StudentSettings:
    """The `student` section validated by its family's own settings class (chosen by `arch`)."""
    from xdistil.student.registry import DEFAULT_ARCH, family  # the families import torch: only when a config is built

    if isinstance(values, StudentSettings):
        return values
    if not isinstance(values, dict):
        raise ValueError("expected a mapping with 'arch' and the family's settings")
    return family(values.get("arch", DEFAULT_ARCH)).settings_class.model_validate(values)


class StageConfig(_Strict):
    """One distillation stage as data: which losses (each with its weight and its own settings), on which data,
    which layer groups train."""

    name: str
    losses: dict[str, Any] = Field(description="loss name -> weight, or -> {weight: ..., and the loss's own settings}")
    data: Literal["transfer", "labeled"] = "transfer"
    train: list[str] | Literal["all"] = Field("all", description="layer groups that train (names from the student family)")
    unfreeze: Literal["none", "gradual"] = "none"
    epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    monitor: Literal["dev_loss", "dev_score"] | None = None

    @model_validator(mode="after")
    def _check(self) -> StageConfig:
        from xdistil.distill.losses import loss_settings  # the registry: torch only when a config is built

        if not self.losses:
            raise ValueError("a stage needs at least one loss")
        for name, value in list(self.losses.items()):
            try:
                self.losses[name] = loss_settings(name, value)  # each loss validates its own settings
            except ValidationError as err:
                problem = err.errors()[0]
                where = ".".join(str(p) for p in problem["loc"])
                raise ValueError(f"loss {name!r}: {where + ': ' if where else ''}{problem['msg']}") from None
        return self

    @field_serializer("losses")
    def _dump_losses(self, losses: dict[str, Any]) -> dict[str, Any]:
        """A loss at its default settings is written as its bare weight (today's spelling)."""
        def dumped(value: Any) -> Any:
            if not hasattr(value, "own"):
                return value
            return value.weight if value.own() == type(value)().own() else value.model_dump(mode="json")

        return {name: dumped(value) for name, value in losses.items()}

    def weights(self) -> dict[str, float]:
        """Each loss's weight in the stage's sum."""
        return {name: float(getattr(value, "weight", value)) for name, value in self.losses.items()}


def paper_schedule() -> list[StageConfig]:
    """The published order: representation, then soft logits and gold labels with gradual unfreezing."""
    return [
        StageConfig(name="representation", losses={"representation": 1.0}, data="transfer", monitor="dev_loss", epochs=6),
        StageConfig(name="soft", losses={"soft": 1.0}, data="transfer", train=["output"], unfreeze="gradual", epochs=6),
        StageConfig(name="gold", losses={"gold": 1.0}, data="labeled", train=["output"], unfreeze="gradual", epochs=4),
    ]


class DistillConfig(_Strict):
    """Optimisation settings shared by every stage (a stage may override epochs and lr)."""

    stages: list[StageConfig] = Field(default_factory=paper_schedule)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-3, gt=0)
    epochs: int = Field(6, ge=1)
    patience: int = Field(3, ge=1)
    restart_epochs: int = Field(0, ge=0, description="cosine warm-restart period in epochs; 0 = one cosine cycle")
    grad_clip: float = Field(5.0, gt=0)
    monitor: Literal["dev_loss", "dev_score"] = Field("dev_score", description="dev_score: accuracy, or entity F1 for tagging")
    seed: int | None = Field(None, description="seed of the student's initialisation and batch order; default the run's seed")
    transfer_limit: int | None = Field(
        None, ge=0, description="use only the first N unlabeled transfer texts of the cache (0: the labeled texts alone)"
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_loss_settings(cls, values: Any) -> Any:
        """Today's spelling (`distill.temperature: 2`, `distill.soft_loss: kl`, ...) still reads: each such key
        becomes that loss's own setting in every stage that uses the loss (unless the stage sets it itself)."""
        if not isinstance(values, dict):
            return values
        from xdistil.distill.losses import LEGACY_KEYS

        legacy = {key: values[key] for key in LEGACY_KEYS if key in values}
        if not legacy:
            return values
        values = {k: v for k, v in values.items() if k not in legacy}
        stages = values.get("stages")
        stages = [s.model_dump() for s in paper_schedule()] if stages is None else stages
        updated = []
        for stage in stages:
            stage = stage.model_dump() if isinstance(stage, BaseModel) else stage  # a copy is made below, where one is changed
            if isinstance(stage, dict) and isinstance(stage.get("losses"), dict):
                losses = {}
                for name, entry in stage["losses"].items():
                    entry = entry.model_dump() if isinstance(entry, BaseModel) else entry
                    own = {setting: legacy[key] for key, (loss, setting) in LEGACY_KEYS.items() if key in legacy and loss == name}
                    if own:
                        entry = {**own, **({"weight": entry} if not isinstance(entry, dict) else entry)}
                    losses[name] = entry
                stage = {**stage, "losses": losses}
            updated.append(stage)
        return {**values, "stages": updated}

    @model_validator(mode="after")
    def _one_setting_per_loss(self) -> DistillConfig:
        """A loss is one object across the schedule (a learned projection carries from stage to stage), so every
        stage that uses it must give it the same settings (weights may differ)."""
        from xdistil.distill.losses import loss_settings

        first: dict[str, tuple[str, dict]] = {}
        for stage in self.stages:
            for name, settings in stage.losses.items():
                own = loss_settings(name, settings).own()
                seen = first.setdefault(name, (stage.name, own))
                if seen[1] != own:
                    raise ValueError(f"loss {name!r} has other settings in stage {stage.name!r} ({own}) than in stage {seen[0]!r} "
                                     f"({seen[1]}); a loss is one object across the schedule - give it the same settings in every stage")
        return self

    def loss_settings(self) -> dict[str, Any]:
        """Each loss the schedule uses, with its settings (the same in every stage)."""
        from xdistil.distill.losses import loss_settings

        return {name: loss_settings(name, value) for stage in self.stages for name, value in stage.losses.items()}


class EvaluationConfig(_Strict):
    """What evaluation measures beyond accuracy."""

    baseline: bool = True
    baseline_epochs: int = Field(30, ge=1, description="epochs for the no-distillation baseline on the gold labels")
    latency_batch_sizes: list[int] = Field(default_factory=lambda: [1, 32], description="empty: no latency measurement")
    latency_repeats: int = Field(20, ge=1)
    threads: int | None = Field(None, ge=1, description="CPU threads for the latency measurement; default the run's")


QUICK = {"teacher_epochs": 5, "stage_epochs": 1, "baseline_epochs": 5, "latency_repeats": 5}  # what `quick: true` caps


class RunConfig(_Strict):
    """A whole run: data -> teacher -> transfer set -> student -> evaluation -> export."""

    task: str = Field("classification", description="what the run learns: classification, tagging, or a registered task")
    seed: int = 42
    out: Path = Path("runs/demo")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    tracking: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="experiment trackers (accelerate's) that get the config, every epoch's losses and dev "
        "scores and the test figures when the run finishes; pip install 'xdistil[tracking]' for tensorboard and mlflow"
    )
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads for the whole run; default the CPUs the process may use (affinity and cgroup quota)"
    )
    quick: bool = Field(
        False, description="a first look in minutes (`xdistil run --quick`): caps each stage at 1 epoch, the teacher at 5, the baseline "
        "at 5 and the latency repeats at 5; the report says it is a quick run"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    student: SerializeAsAny[StudentSettings] = Field(default_factory=lambda: _student_settings({}))
    distill: DistillConfig = Field(default_factory=DistillConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    _student = field_validator("student", mode="before")(_student_settings)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        return describe(value).name

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, values: Any) -> Any:
        """`distill` settings a config leaves out take the student family's defaults (a pre-trained
        transformer trains at a far smaller learning rate than a BiLSTM)."""
        from xdistil.student.registry import DEFAULT_ARCH, family

        if not isinstance(values, dict) or isinstance(values.get("distill"), DistillConfig):
            return values
        student = values.get("student")
        if isinstance(student, StudentSettings):
            arch = student.arch
        elif isinstance(student, dict) or student is None:
            arch = (student or {}).get("arch", DEFAULT_ARCH)
        else:
            return values  # not a mapping: the student field says so
        try:
            defaults = family(arch).settings_class.distill_defaults()
        except ValueError:
            return values  # an unknown arch: the student field says so
        if defaults:
            values = {**values, "distill": {**defaults, **(values.get("distill") or {})}}
        return values

    @model_validator(mode="after")
    def _quick(self) -> RunConfig:
        """`quick` caps the epochs (caps, so a saved quick config re-validates to itself)."""
        if self.quick:
            self.teacher.epochs = min(self.teacher.epochs, QUICK["teacher_epochs"])
            self.distill.epochs = min(self.distill.epochs, QUICK["stage_epochs"])
            self.distill.stages = [s.model_copy(update={"epochs": min(s.epochs or self.distill.epochs, QUICK["stage_epochs"])})
                                   for s in self.distill.stages]
            self.evaluation.baseline_epochs = min(self.evaluation.baseline_epochs, QUICK["baseline_epochs"])
            self.evaluation.latency_repeats = min(self.evaluation.latency_repeats, QUICK["latency_repeats"])
        return self

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        task = describe(self.task)
        if not task.augmentable and self.transfer.augment.factor:
            raise ValueError(f"transfer.augment is for classification; set transfer.augment.factor: 0 for {task.name}")
        if not task.pooled and any("layers" in stage.losses for stage in self.distill.stages):
            raise ValueError("the 'layers' loss matches pooled text vectors: it is for classification")
        if task.per_word and self.student.texts_only:
            raise ValueError(f"student.arch {self.student.arch} classifies whole texts; for {task.name} use bilstm or transformer")
        if task.per_word and self.teacher.recipe == "setfit":
            raise ValueError(f"teacher.recipe setfit pairs whole labeled texts; for {task.name} use teacher.recipe: finetune")
        if task.per_word and self.teacher.head == "pooled":
            raise ValueError(f"teacher.head pooled labels whole texts; for {task.name} use teacher.head: model")
        if task.per_word and self.transfer.budget is not None and self.transfer.budget_strategy == "uncertain":
            raise ValueError(f"transfer.budget_strategy uncertain weighs one label per text; for {task.name} use random or diverse")
        if self.teacher.external:
            self._check_external_labels(task)
        groups = self.student.layer_groups()
        for number, stage in enumerate(self.distill.stages):
            for group in stage.train if isinstance(stage.train, list) else ():
                if group not in groups:
                    raise ValueError(
                        f"distill.stages[{number}] ('{stage.name}'): unknown layer group {group!r} for a {self.student.arch} "
                        f"student; expected one of {', '.join(groups)}"
                    )
        return self

    def _check_external_labels(self, task) -> None:
        """Labels from a file or a function are one row of logits per text: no per-word tasks, no loss that
        needs the teacher's representations or its hidden states."""
        from xdistil.distill.losses import missing_targets

        source = f"teacher.source {self.teacher.source}"
        if task.per_word:
            raise ValueError(f"{source} labels whole texts; {task.name} needs the model teacher (teacher.source: model)")
        for number, stage in enumerate(self.distill.stages):
            for name in stage.losses:
                lacking = missing_targets(name, frozenset({"logits"}))
                if lacking:
                    raise ValueError(f"distill.stages[{number}] ('{stage.name}'): the '{name}' loss needs {lacking}, which "
                                     f"{source} does not give; give distill.stages without it (e.g. soft, then gold)")


def _one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:  # a check across sections says where itself
        return f"{source}: {message}"
    field = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{field}'"
    got = first.get("input")
    got_text = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    return f"{source}: field '{field}': {message}{got_text}"


def build_config(values: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a plain dict into a RunConfig, turning the first problem into a one-line error."""
    check_shape(values, source)
    try:
        return RunConfig.model_validate(values)
    except ValidationError as err:
        raise XDistilError(_one_line(err, source)) from None


def absolute_paths(config: RunConfig, base: Path) -> RunConfig:
    """The config with its file paths made absolute against `base` (the config file's folder, or the
    working directory for flags): data files and `out` always; a teacher or student encoder only when
    such a folder exists there (otherwise it is a built-in name or a hub id)."""
    base = base.resolve()

    def where(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    def maybe(name: str) -> str:
        local = Path(name).expanduser()
        return str(where(local)) if not local.is_absolute() and where(local).exists() else name

    data = config.data.model_copy(update={
        "train": where(config.data.train) if config.data.train else None,
        "dev": where(config.data.dev) if config.data.dev else None,
        "test": where(config.data.test) if config.data.test else None,
        "transfer": [where(p) for p in config.data.transfer],
    })
    teacher = {"model": maybe(config.teacher.model), "labels": where(config.teacher.labels) if config.teacher.labels else None}
    update: dict[str, Any] = {"data": data, "out": where(config.out), "teacher": config.teacher.model_copy(update=teacher)}
    if config.transfer.augment.vectors:
        augment = config.transfer.augment.model_copy(update={"vectors": where(config.transfer.augment.vectors)})
        update["transfer"] = config.transfer.model_copy(update={"augment": augment})
    encoder = getattr(config.student, "encoder", None)
    if isinstance(encoder, str):
        update["student"] = config.student.model_copy(update={"encoder": maybe(encoder)})
    return config.model_copy(update=update)


# a run config is a few dozen keys a few levels deep; far past these it is a mistake or an attack
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_NODES = 100_000


def check_shape(values: Any, source: str) -> None:
    """Refuse a config nested deeper than MAX_CONFIG_DEPTH or holding more than MAX_CONFIG_NODES values
    (YAML aliases repeat one node many times without growing the file), walked without recursion."""
    stack, nodes = [(values, 1)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if depth > MAX_CONFIG_DEPTH:
            raise XDistilError(f"{source}: nested more than {MAX_CONFIG_DEPTH} levels deep; expected a run config (a few levels)")
        if nodes > MAX_CONFIG_NODES:
            raise XDistilError(f"{source}: more than {MAX_CONFIG_NODES:,} values (counting repeated YAML aliases); expected a run config")
        children = list(value.keys()) + list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file's top-level mapping, refused in one line when it is too large, not YAML, hostile
    (nested or aliased beyond a config's shape) or not a mapping."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise XDistilError(f"{path}: {size:,} bytes; expected a run config of at most {MAX_CONFIG_BYTES:,} bytes")
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except RecursionError:
        raise XDistilError(f"{path}: nested too deeply to read; expected a run config (a few levels)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise XDistilError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except OSError as err:
        raise XDistilError(f"{path}: cannot read ({err.strerror or err})") from None
    if not isinstance(values, dict):
        raise XDistilError(f"{path}: expected a mapping of sections at the top level")
    check_shape(values, str(path))
    return values


def _with_out(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """A config without `out` runs in a folder of its own beside the config file, never another run's."""
    return values if "out" in values else {**values, "out": str(Path("runs") / path.stem)}


def config_out(path: str | Path) -> Path | None:
    """The run folder a config file names (absolute), read without validating the rest; None where it cannot say."""
    path = Path(path)
    try:
        out = Path(str(_with_out(read_yaml_mapping(path), path)["out"]))
    except XDistilError:
        return None
    return out if out.is_absolute() else path.parent.resolve() / out


# the `distill` keys a student family may set for itself (`StudentSettings.distill_defaults`); switching family drops them
FAMILY_DISTILL_KEYS = ("stages", "lr", "batch_size")


def with_family(values: dict[str, Any], arch: str, **settings: Any) -> dict[str, Any]:
    """Config values for another student family: its own settings (defaults, or `settings`), and the `distill`
    keys families set dropped, so validation fills them from the family's defaults (`RunConfig._family_defaults`,
    the one place they are resolved)."""
    distill = {k: v for k, v in (values.get("distill") or {}).items() if k not in FAMILY_DISTILL_KEYS}
    return {**values, "student": {"arch": arch, **settings}, "distill": distill}


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML config file; relative paths in it are relative to the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise XDistilError(f"{path}: config file not found")
    return absolute_paths(build_config(_with_out(read_yaml_mapping(path), path), str(path)), path.parent)


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """A plain, YAML-safe dict (paths as strings) of the fully resolved config."""
    return config.model_dump(mode="json")


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the fully resolved config so that re-running it reproduces the run."""
    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(config), sort_keys=False))
