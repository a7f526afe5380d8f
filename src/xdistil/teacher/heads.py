"""A teacher head on the pooled last layer (`teacher.head: pooled`): what a sentence encoder was trained to give, and
where SetFit puts its classifier. The transformers classes put theirs on the first token (BERT: through a dense
"pooler"), whose vector in a sentence encoder is nearly the same for every text - with a few hundred labels such a
head can stay on one class."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xdistil.teacher.inference import pool

HEAD_FILE = "pooled_head.safetensors"


class PooledHeadClassifier(nn.Module):
    """A transformers classifier whose logits are `head(dropout(pool(last layer)))`; its own first-token head and
    pooler are dropped. Called like the transformers model (logits, hidden states, a loss given labels), saved as
    its folder plus `pooled_head.safetensors`."""

    def __init__(self, model: nn.Module, pooling: str = "mean", head: nn.Linear | None = None) -> None:
        super().__init__()
        base = model.base_model
        for name, child in list(model.named_children()):  # the unused first-token head: not counted, not saved
            if child is not base and any(True for _ in child.parameters()):
                setattr(model, name, nn.Identity())
        if getattr(base, "pooler", None) is not None:
            base.pooler = None
        self.model, self.pooling = model, pooling
        self.dropout = nn.Dropout(getattr(model.config, "hidden_dropout_prob", 0.1))
        self.head = head or nn.Linear(model.config.hidden_size, model.config.num_labels)

    @property
    def config(self):
        return self.model.config

    @property
    def base_model(self) -> nn.Module:
        return self.model.base_model

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, **_: object) -> SimpleNamespace:
        out = self.base_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
        logits = self.head(self.dropout(pool(out.last_hidden_state, attention_mask, self.pooling)))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SimpleNamespace(logits=logits, loss=loss, hidden_states=out.hidden_states if output_hidden_states else None)

    def save_pretrained(self, folder: str) -> None:
        self.model.save_pretrained(folder)
        save_file({"weight": self.head.weight.detach().contiguous(), "bias": self.head.bias.detach().contiguous()},
                  str(Path(folder) / HEAD_FILE), metadata={"pooling": self.pooling})


def load_teacher_model(folder: str | Path, auto_class) -> nn.Module:
    """A saved teacher folder as a model: the transformers class, wrapped when the folder holds a pooled head (built
    from its config and given its saved weights, which hold no first-token head)."""
    from safetensors import safe_open
    from transformers import AutoConfig

    folder = Path(folder)
    head_file = folder / HEAD_FILE
    if not head_file.is_file():
        return auto_class.from_pretrained(str(folder))
    with safe_open(str(head_file), "pt") as handle:
        pooling = handle.metadata()["pooling"]
    state = load_file(str(head_file))
    head = nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
    head.load_state_dict(state)
    model = PooledHeadClassifier(auto_class.from_config(AutoConfig.from_pretrained(str(folder))), pooling, head)
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("model*.safetensors")):  # one file, or the shards of a large model
        weights.update(load_file(str(shard)))
    model.model.load_state_dict(weights)
    return model
