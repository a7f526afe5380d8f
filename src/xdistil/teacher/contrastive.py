"""SetFit's recipe for a few hundred labels (Tunstall et al., 2022): pairs of labeled texts tune the encoder body so
that texts of one label lie close together, before the ordinary fine-tune puts the head on it."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from xdistil.batching import LengthBucketSampler
from xdistil.config import TeacherConfig
from xdistil.data.corpus import Split
from xdistil.loop import LoopSettings, StageHistory, fit
from xdistil.teacher.inference import pad_teacher, pool
from xdistil.text import Encode, tokenize

Pair = tuple[int, int, float]  # (example, partner, 1.0 for the same label / 0.0 for another)


def sample_pairs(labels: Sequence[int], iterations: int, seed: int) -> list[Pair]:
    """For each pass and each labeled example: one partner with its own label (target 1) and one with another
    label (target 0). A label with a single example gets no positive pair; a one-label set gets no negative."""
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    pairs: list[Pair] = []
    for _ in range(iterations):
        for index, label in enumerate(labels):
            same = by_label[label]
            if len(same) > 1:
                partner = rng.choice(same)
                while partner == index:
                    partner = rng.choice(same)
                pairs.append((index, partner, 1.0))
            others = [other for other in by_label if other != label]
            if others:
                pairs.append((index, rng.choice(by_label[rng.choice(others)]), 0.0))
    return pairs


def embed(body: torch.nn.Module, inputs: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """The pooled last hidden state of the encoder body."""
    hidden = body(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    return pool(hidden, inputs["attention_mask"], pooling)


@torch.inference_mode()
def embed_all(body: torch.nn.Module, token_ids: list[list[int]], pad_id: int, pooling: str, batch_size: int = 64) -> torch.Tensor:
    """Unit-length pooled vectors of every text, in order."""
    body.eval()
    device = next(body.parameters()).device
    rows = []
    for start in range(0, len(token_ids), batch_size):
        rows.append(embed(body, pad_teacher(token_ids[start : start + batch_size], pad_id, device), pooling).float())
    return torch.nn.functional.normalize(torch.cat(rows), dim=1).cpu()


def centroid_eval(
    body: torch.nn.Module, train_ids: list[list[int]], train_labels: list[int], dev_ids: list[list[int]], dev_labels: list[int],
    dev_pairs: list[Pair], pad_id: int, pooling: str,
) -> tuple[float, float]:
    """(the pair loss on dev pairs, dev accuracy of the nearest train-label centroid): how well the body alone
    separates the labels, without a head."""
    train, dev = embed_all(body, train_ids, pad_id, pooling), embed_all(body, dev_ids, pad_id, pooling)
    labels = torch.as_tensor(train_labels)
    names = sorted(set(train_labels))
    centroids = torch.nn.functional.normalize(torch.stack([train[labels == k].mean(0) for k in names]), dim=1)
    predicted = np.asarray(names)[(dev @ centroids.T).argmax(1).numpy()]
    a, b, target = (torch.as_tensor(x) for x in zip(*dev_pairs)) if dev_pairs else (torch.zeros(0, dtype=torch.long),) * 3
    loss = torch.nn.functional.mse_loss((dev[a] * dev[b]).sum(1), target.float()).item() if dev_pairs else 0.0
    return loss, float((predicted == np.asarray(dev_labels)).mean())


def contrastive_tune(
    model: torch.nn.Module, tokenizer, train: Split, dev: Split, config: TeacherConfig, accelerator: Accelerator, seed: int,
    encode: Encode = tokenize,
) -> StageHistory:
    """Tune the classifier's encoder body on `config.pairs` pairs: the cosine of two texts, pooled as the pooled head
    reads them, is pulled to 1 for one label, to 0 for two (SetFit's loss). The head is untouched; early stopping
    on the dev centroid accuracy."""
    settings = config.pairs
    pooling = config.head_pooling
    pad_id = tokenizer.pad_token_id
    body = model.base_model
    train_ids, _ = encode(tokenizer, train.texts, config.max_length)
    dev_ids, _ = encode(tokenizer, dev.texts, config.max_length)
    pairs = sample_pairs(train.labels, settings.iterations, seed)
    dev_pairs = sample_pairs(dev.labels, 1, seed + 1)

    def collate(batch: list[Pair]) -> dict[str, torch.Tensor]:  # flat: the loop moves a batch's tensors one by one
        first, second = (pad_teacher([train_ids[pair[side]] for pair in batch], pad_id) for side in (0, 1))
        return {**{f"a_{k}": v for k, v in first.items()}, **{f"b_{k}": v for k, v in second.items()},
                "target": torch.tensor([t for _, _, t in batch], dtype=torch.float32)}

    def pair_loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        a, b = ({k: batch[f"{side}_{k}"] for k in ("input_ids", "attention_mask")} for side in "ab")
        similarity = torch.nn.functional.cosine_similarity(embed(body, a, pooling), embed(body, b, pooling))
        return torch.nn.functional.mse_loss(similarity.float(), batch["target"])

    lengths = [max(len(train_ids[i]), len(train_ids[j])) for i, j, _ in pairs]
    loader = DataLoader(pairs, batch_sampler=LengthBucketSampler(lengths, settings.batch_size, seed, bucket_batches=4), collate_fn=collate)
    loop = LoopSettings(name="teacher contrastive pairs", epochs=settings.epochs, lr=settings.lr, patience=config.patience, monitor="dev_score",
                        optimizer="adamw", weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio, score_name="centroid accuracy")
    evaluate = lambda: centroid_eval(body, train_ids, train.labels, dev_ids, dev.labels, dev_pairs, pad_id, pooling)  # noqa: E731
    return fit(model, [p for p in body.parameters() if p.requires_grad], pair_loss, loader, evaluate, loop, accelerator)
