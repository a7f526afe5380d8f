"""The model2vec peer: static embeddings distilled from the teacher's base encoder, and model2vec's own
classifier trained on the gold labels alone, and on the gold labels plus the teacher's hard labels over
the transfer set (its trainer takes hard labels only).

It runs in its own virtual environment (model2vec's `distill` extra pins an older transformers than
xdistil's), made by benchmarks/transfer_scale.py, which writes the texts and labels this script reads
and reads back what it writes. Nothing here imports xdistil.

    python benchmarks/model2vec_peer.py --data DATA.json --encoder FOLDER --out FOLDER [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="train/dev/test texts and labels, transfer texts and teacher labels")
    parser.add_argument("--encoder", required=True, help="the sentence-transformers folder to distill the static vectors from")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pca-dims", type=int, default=256)
    args = parser.parse_args()

    import numpy as np
    import torch
    from model2vec import StaticModel
    from model2vec.train import StaticModelForClassification

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    data = json.loads(args.data.read_text(encoding="utf-8"))
    static_folder = args.out / "static"
    started = time.perf_counter()
    if (static_folder / "config.json").is_file():
        static = StaticModel.from_pretrained(str(static_folder))
    else:
        from model2vec.distill import distill

        static = distill(model_name=args.encoder, pca_dims=args.pca_dims)
        static.save_pretrained(str(static_folder))
    distill_seconds = time.perf_counter() - started
    names = data["label_names"]
    figures = {"encoder": args.encoder, "pca_dims": args.pca_dims, "seed": args.seed, "distill_seconds": distill_seconds,
               "vocabulary": int(static.embedding.shape[0]), "width": int(static.embedding.shape[1]), "variants": {}}
    for variant in ("gold", "gold + teacher"):
        texts, labels = list(data["train"]["texts"]), [names[i] for i in data["train"]["labels"]]
        if variant == "gold + teacher":
            texts += data["transfer"]["texts"]
            labels += [names[i] for i in data["transfer"]["teacher_labels"]]
        classifier = StaticModelForClassification.from_static_model(model=static)
        started = time.perf_counter()
        classifier = classifier.fit(texts, labels)
        seconds = time.perf_counter() - started
        pipeline = classifier.to_pipeline()
        folder = args.out / variant.replace(" + ", "_plus_")
        pipeline.save_pretrained(str(folder))
        scored = {}
        for split in ("dev", "test"):
            predicted = [names.index(p) for p in pipeline.predict(data[split]["texts"])]
            scored[split] = predicted
        head = sum(p.numel() for name, p in classifier.named_parameters() if not name.startswith("embeddings"))
        figures["variants"][variant] = {
            "folder": str(folder), "training_texts": len(texts), "training_seconds": seconds,
            "dev_predictions": scored["dev"], "test_predictions": scored["test"],
            "params": int(static.embedding.size + head), "params_without_embeddings": int(head),
        }
    (args.out / "figures.json").write_text(json.dumps(figures), encoding="utf-8")


if __name__ == "__main__":
    main()
