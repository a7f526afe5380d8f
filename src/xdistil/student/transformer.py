"""Pre-trained transformer students: a few layers of a pre-trained encoder with a task head.

Built from the built-in all-MiniLM-L6-v2, the fine-tuned teacher itself (`encoder: teacher`) or
any Hugging Face encoder, keeping `layers` of its layers (a count taken evenly spaced, top layer
included, as TinyBERT maps layers; or explicit 0-based indices, as DistilBERT initialises) and
only the embedding rows of the word pieces the train + transfer text uses (the pruned vocabulary
over the encoder's own tokenizer), optionally narrowed to `emb_dim` columns (a PCA of the encoder's
table and a linear map back to its width). Per text, the head reads the mean (or first) token vector
of the last layer; per word, each word's first piece.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn
from transformers import AutoConfig, AutoModel

from xdistil.errors import XDistilError
from xdistil.student.base import Student, StudentContext, StudentOutput
from xdistil.student.embeddings import FactorizedEmbedding
from xdistil.student.inputs import length_mask
from xdistil.teacher.inference import pool
from xdistil.student.registry import register
from xdistil.student.settings import StudentSettings


# the default schedule of transformer students, as data (see the README for how it was chosen)
TRANSFORMER_SCHEDULE = (
    {"name": "soft", "losses": {"soft": 1.0}, "data": "transfer", "epochs": 4},
    {"name": "gold", "losses": {"gold": 1.0}, "data": "labeled", "epochs": 4, "lr": 3e-5},
)


class TransformerSettings(StudentSettings):
    """Which encoder, which of its layers, and the head's pooling."""

    arch: Literal["transformer"] = "transformer"
    encoder: str = Field("minilm-l6", description="built-in name, 'teacher' (the fine-tuned teacher), a folder or a hub id")
    layers: int | list[int] = Field(3, description="how many layers to keep (evenly spaced, top included) or their 0-based indices")
    pooling: Literal["mean", "first", "pooler"] = Field(
        "mean", description="per text: the mean or the first token vector of the last layer, or the encoder's own pooler (its "
        "dense + tanh on the first token: what `xdistil export --format transformers` needs to give a stock transformers classifier)")
    dropout: float = Field(0.1, ge=0, lt=1)
    emb_dim: int | None = Field(
        None, ge=1, description="narrower word-piece embeddings: a PCA of the encoder's to this width and a linear map back; default its width"
    )

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int) and value < 1:
            raise ValueError("keep at least one layer")
        if isinstance(value, list) and (not value or value != sorted(set(value)) or value[0] < 0):
            raise ValueError("layer indices must be distinct, ascending and >= 0")
        return value

    def layer_groups(self) -> tuple[str, ...]:
        count = self.layers if isinstance(self.layers, int) else len(self.layers)
        return ("output", *(f"layer_{i}" for i in reversed(range(count))), "embedding")

    @classmethod
    def distill_defaults(cls) -> dict:
        """Pre-trained weights want small steps: soft logits on the transfer set, then the gold labels."""
        return {"lr": 1e-4, "batch_size": 32, "stages": [dict(stage) for stage in TRANSFORMER_SCHEDULE]}


def kept_layers(layers: int | list[int], available: int) -> list[int]:
    """0-based indices of the encoder layers a student keeps: `layers` evenly spaced ones ending at
    the top layer, or the given indices (checked against `available`)."""
    if isinstance(layers, list):
        if layers[-1] >= available:
            raise XDistilError(f"student.layers: layer {layers[-1]} does not exist; the encoder has layers 0-{available - 1}")
        return list(layers)
    if layers > available:
        raise XDistilError(f"student.layers: {layers} layers asked for; the encoder has {available}")
    return [round((i + 1) * available / layers) - 1 for i in range(layers)]


def _layer_list(encoder: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise XDistilError(f"student.encoder: a {type(encoder).__name__} keeps no `encoder.layer` list; use a BERT-like encoder")
    return layers


def _encoder_from_config(config, pooler: bool = False) -> nn.Module:
    try:
        return AutoModel.from_config(config, add_pooling_layer=pooler)
    except TypeError:  # an encoder class without a pooler option
        return AutoModel.from_config(config)


@register
class TransformerStudent(Student):
    """A cut pre-trained encoder with a linear head on pooled (per text) or first-piece (per word) vectors."""

    arch = "transformer"
    settings_class = TransformerSettings

    def __init__(
        self, encoder_config: dict, num_labels: int, tagging: bool, pooling: str = "mean", dropout: float = 0.1, emb_dim: int | None = None,
    ):
        super().__init__()
        self.sizes = {"encoder_config": encoder_config, "num_labels": num_labels, "tagging": tagging, "pooling": pooling, "dropout": dropout}
        if emb_dim is not None:  # saved only when set, so students saved before the option load as they were
            self.sizes["emb_dim"] = emb_dim
        config = AutoConfig.for_model(**encoder_config)
        keeps_pooler = pooling == "pooler" and not tagging  # per word, the head reads each word's first piece
        self.encoder = _encoder_from_config(config, pooler=keeps_pooler)
        if emb_dim is not None:
            self.encoder.set_input_embeddings(FactorizedEmbedding(config.vocab_size, emb_dim, config.hidden_size, config.pad_token_id))
        if keeps_pooler and getattr(self.encoder, "pooler", None) is None:
            raise XDistilError(f"student.pooling: pooler, but a {type(self.encoder).__name__} has no pooler; use mean or first")
        if getattr(self.encoder, "pooler", None) is not None and not keeps_pooler:
            self.encoder.pooler = None  # the head pools itself; an unused pooler would sit in no layer group
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(config.hidden_size, num_labels)

    @classmethod
    def tokenizer_source(cls, settings: TransformerSettings, teacher: str) -> str:
        return teacher if settings.encoder == "teacher" else settings.encoder

    @classmethod
    def preflight(cls, settings: TransformerSettings, teacher_config) -> None:
        """The kept layers exist in the encoder (read from its config, not its weights)."""
        from xdistil.teacher.models import resolve_teacher

        if settings.encoder == "teacher":
            source = teacher_config
        else:
            try:
                source = AutoConfig.from_pretrained(resolve_teacher(settings.encoder))
            except OSError as err:
                raise XDistilError(f"student.encoder '{settings.encoder}': could not read its config ({str(err).splitlines()[0]})") from None
        kept_layers(settings.layers, source.num_hidden_layers)

    @classmethod
    def build(cls, settings: TransformerSettings, context: StudentContext) -> TransformerStudent:
        from xdistil.teacher.models import resolve_teacher

        if settings.encoder == "teacher":
            source = copy.deepcopy(context.teacher.base_model).cpu()
        else:
            source = AutoModel.from_pretrained(resolve_teacher(settings.encoder))
        keep = kept_layers(settings.layers, len(_layer_list(source)))
        config = copy.deepcopy(source.config)
        config.num_hidden_layers, config.vocab_size, config.pad_token_id = len(keep), len(context.vocab), context.vocab.pad_id
        encoder_config = {k: v for k, v in config.to_dict().items() if k not in ("architectures", "_name_or_path", "id2label", "label2id")}
        model = cls(encoder_config, context.num_labels, context.per_word, settings.pooling, settings.dropout, settings.emb_dim)
        weights = {}
        rows = torch.as_tensor(context.vocab.teacher_ids)
        table = next(name for name, p in source.named_parameters() if p is source.get_input_embeddings().weight)
        for name, tensor in source.state_dict().items():
            parts = name.split(".")
            if name.startswith("encoder.layer."):
                index = int(parts[2])
                if index not in keep:
                    continue
                name = ".".join(["encoder", "layer", str(keep.index(index)), *parts[3:]])
            elif name == table:
                tensor = tensor[rows]  # the pruned vocabulary's rows, in its order
                if settings.emb_dim is not None:
                    model.encoder.get_input_embeddings().init_from(tensor)
                    continue
            weights[name] = tensor
        missing, unexpected = model.encoder.load_state_dict(weights, strict=False)
        unexpected = [k for k in unexpected if not k.startswith("pooler.")]  # a pooler the student does not keep
        if settings.emb_dim is not None:  # set from the table's PCA above
            missing = [k for k in missing if not k.startswith(table.rsplit(".", 1)[0] + ".")]
        if missing or unexpected:
            raise XDistilError(f"student.encoder: weights do not fit the cut encoder (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model

    @classmethod
    def from_config(cls, config: dict) -> TransformerStudent:
        return cls(**config)

    def config(self) -> dict:
        return copy.deepcopy(self.sizes)

    @property
    def per_word(self) -> bool:
        return self.sizes["tagging"]

    @property
    def representation_dim(self) -> int:
        return self.encoder.config.hidden_size

    @property
    def hidden_layers(self) -> int:
        return self.encoder.config.num_hidden_layers

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        layers = _layer_list(self.encoder)
        pooler = getattr(self.encoder, "pooler", None)  # the head's own pooling, when it is the encoder's
        groups: dict[str, list[nn.Parameter]] = {"output": [*self.head.parameters(), *(pooler.parameters() if pooler is not None else ())]}
        for index in reversed(range(len(layers))):
            groups[f"layer_{index}"] = list(layers[index].parameters())
        grouped = {id(p) for params in groups.values() for p in params}
        groups["embedding"] = [p for p in self.parameters() if id(p) not in grouped]
        return groups

    def embedding_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.get_input_embeddings().parameters())

    def forward(self, batch: dict[str, torch.Tensor]) -> StudentOutput:
        input_ids, lengths = batch["input_ids"], batch["lengths"].to(batch["input_ids"].device)
        mask = length_mask(lengths, input_ids.size(1)).long()
        if input_ids.size(1) > self.encoder.config.max_position_embeddings:
            raise XDistilError(
                f"a text of {input_ids.size(1)} word pieces is longer than the transformer student's "
                f"{self.encoder.config.max_position_embeddings} positions"
            )
        out = self.encoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        hidden = out.last_hidden_state
        if self.per_word:
            if "word_index" in batch:
                hidden = hidden.gather(1, batch["word_index"][:, :, None].expand(-1, -1, hidden.size(-1)))
            representation = hidden
        elif self.sizes["pooling"] == "pooler":
            representation = out.pooler_output
        else:
            representation = pool(hidden, mask, self.sizes["pooling"])
        logits = self.head(self.dropout(representation))
        return StudentOutput(logits, representation, out.hidden_states)
