"""Export a transformer student as a plain Hugging Face folder (`xdistil export RUN --format transformers`).

The folder is what `transformers.pipeline(...)`, `AutoModelFor...` and optimum load with no custom code: a config with
`model_type` and the label maps, safetensors weights and the student's own tokenizer (the encoder's whole vocabulary).
The student keeps only the embedding rows of the word pieces its training text used; the export writes a full table
in which every piece has the row the student reads for it (the unknown piece's row for pruned ones), so the plain
model sees exactly the student's inputs. Text classification needs a student whose head is the encoder's own pooler
(`student.pooling: pooler`); token classification reads each word's first piece, as the student does. Before the
folder is written as final, the plain model's logits are compared with the student's on random batches and an export
off by more than 1e-4 is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xdistil.atomic import atomic_write_text, staged_folder
from xdistil.errors import XDistilError
from xdistil.progress import log
from xdistil.student.inputs import batch_inputs, length_mask
from xdistil.student.io import DistilledStudent, load_student

TOLERANCE = 1e-4


def _plain_model(student: DistilledStudent) -> torch.nn.Module:
    """The stock transformers model holding the student's weights, its embedding table widened to the full vocabulary."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    model = student.model
    if model.arch != "transformer":
        raise XDistilError(f"export --format transformers: a {model.arch} student ships as ONNX (`xdistil export RUN`)")
    per_word = student.task.per_word
    if not per_word and model.sizes["pooling"] != "pooler":
        raise XDistilError(f"export --format transformers: this student pools with '{model.sizes['pooling']}', which no stock "
                           "transformers classifier does; train it with student.pooling: pooler")
    if model.sizes.get("emb_dim") is not None:
        raise XDistilError("export --format transformers: a student with narrowed embeddings (student.emb_dim) has no stock layout")
    encoder = model.encoder
    config = AutoConfig.for_model(**{**encoder.config.to_dict(), "vocab_size": student.vocab.teacher_vocab_size,
                                     "pad_token_id": int(student.vocab.teacher_ids[student.vocab.pad_id])})
    config.id2label = dict(enumerate(student.label_names))
    config.label2id = {name: i for i, name in config.id2label.items()}
    config.classifier_dropout = model.sizes["dropout"]
    auto = AutoModelForTokenClassification if per_word else AutoModelForSequenceClassification
    plain = auto.from_config(config)
    base = getattr(plain, plain.base_model_prefix)
    state = encoder.state_dict()
    table = _table_name(encoder)
    state[table] = state[table][torch.as_tensor(student.vocab.lookup)]  # every piece -> the row the student reads for it
    missing, unexpected = base.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise XDistilError(f"export --format transformers: the {type(base).__name__} does not take the student's weights "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    classifier = getattr(plain, "classifier", None)
    if not isinstance(classifier, torch.nn.Linear):
        raise XDistilError(f"export --format transformers: a {type(plain).__name__}'s head is not one linear layer like the student's")
    classifier.load_state_dict(model.head.state_dict())
    return plain.eval()


def _table_name(encoder: torch.nn.Module) -> str:
    weight = encoder.get_input_embeddings().weight
    return next(name for name, p in encoder.named_parameters() if p is weight)


def max_difference(student: DistilledStudent, plain: torch.nn.Module, seed: int = 0) -> float:
    """Largest logit difference between the student and the plain model on random ragged batches of the student's
    own pieces (read through the full vocabulary)."""
    rng = np.random.default_rng(seed)
    kept = np.asarray(student.vocab.teacher_ids)
    worst = 0.0
    with torch.inference_mode():
        for batch, length in ((1, 5), (3, 9), (4, 16)):
            rows = [kept[rng.integers(0, len(kept), size=int(rng.integers(2, length + 1)))] for _ in range(batch)]
            inputs = batch_inputs([student.vocab.encode(r) for r in rows], student.vocab.pad_id)
            full = torch.full(inputs["input_ids"].shape, int(kept[student.vocab.pad_id]), dtype=torch.long)
            for i, r in enumerate(rows):
                full[i, : len(r)] = torch.as_tensor(r)
            mask = length_mask(inputs["lengths"], full.size(1)).long()
            ours = student.model(inputs).logits
            theirs = plain(input_ids=full, attention_mask=mask).logits
            if student.task.per_word:  # every piece is its own word here: compare the real positions
                real = mask.bool()
                ours, theirs = ours[real], theirs[real]
            worst = max(worst, float((ours - theirs).abs().max()))
    return worst


def export_transformers(source: str | Path, out: str | Path) -> Path:
    """Write the transformer student in `source` (a student folder, or a run folder holding `student/`) to `out` as a plain
    Hugging Face folder, verified against the student."""
    from transformers import AutoTokenizer

    source = Path(source)
    if (source / "student").is_dir():
        source = source / "student"
    student = load_student(source)
    plain = _plain_model(student)
    difference = max_difference(student, plain)
    if difference > TOLERANCE:
        raise XDistilError(f"{source}: the transformers export differs from the student by {difference:.2e} (> {TOLERANCE}); not exported")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").is_file())):
        raise XDistilError(f"{out}: exists and is not a transformers folder; nothing was deleted - choose a new folder for --out")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    tokenizer.model_max_length = student.max_length  # what the student was trained and is served with
    with staged_folder(out) as tmp:
        plain.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        atomic_write_text(tmp / "README.md", _card(student))
    log(f"export: transformers folder matches the student within {difference:.1e}: {out}")
    return out


def _card(student: DistilledStudent) -> str:
    tag = student.task.hub_tag
    return "\n".join([
        "---", "library_name: transformers", f"pipeline_tag: {tag}", "tags: [xdistil, knowledge-distillation]", "---", "",
        f"A {student.task.noun} distilled by xdistil, as a plain transformers model:",
        "", "```python", "from transformers import pipeline", "", f'pipeline("{tag}", model="THIS_FOLDER")', "```", "",
        f"Labels: {', '.join(student.label_names)}. Texts are cut at {student.max_length} word pieces, as in training.", "",
    ])
