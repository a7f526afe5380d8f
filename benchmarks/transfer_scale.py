"""A strong teacher, a transfer set grown by augmentation, a student sized to it, and the peers beside it.

On the classification benchmark's data and teacher (all-mpnet-base-v2, or MiniLM with --quick; the base folder
of benchmarks/classification.py is reused), this measures:

1. the BiLSTM's first embedding table, chosen on dev: today's PCA of the teacher's input table against each word
   piece's output vector from the fine-tuned teacher or the pre-trained encoder, with and without SIF weighting;
   for the student trained on the gold labels alone, then distilled;
2. the transfer set grown N-fold by augmentation (neighbour replacement by the teacher's own embeddings, masking,
   n-gram sampling), annotated by the int8 teacher, and the distilled student along the transfer-size curve;
3. the peers: model2vec (static vectors distilled from the same base encoder, its own classifier on the gold
   labels, and on the gold labels plus the teacher's hard labels), run in its own virtual environment;
4. accuracy, parameters, size on disk and latency at batch 1 and 32 from raw text (tokenisation included) for the
   teacher, every student (PyTorch and ONNX int8) and every peer, all timed in this one process.

Every run keeps its folder under benchmarks/cache/transfer_scale/<mode>/, so a stopped benchmark resumes.

    python benchmarks/transfer_scale.py [--quick] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import venv
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.classification import DEFAULT, base_of, stages_for  # noqa: E402
from benchmarks.common import (  # noqa: E402
    RESULTS, Job, epoch_seconds, final_dev, link_shared, quiet_transformers, run_jobs, run_row, transformer_student, write_json,
)

# (embedding_init, embedding_sif): the first is today's default
EMBEDDINGS = [("teacher_pca", None), ("teacher_output", None), ("base_output", None), ("teacher_output", 1e-3), ("base_output", 1e-3)]
# the curve over the augmented set trains with the soft loss alone, `curve_epochs` epochs (on 2 CPU cores the default
# schedule's 40 epochs over 165k texts would take hours; at 15k real texts soft-only was within 0.1 point of it, 78.4 vs 78.5)
MODES = {
    "full": {"classification": "full", "factor": 10, "curve": [45_000], "curve_epochs": 3, "stage_epochs": None, "chosen_seeds": [1, 2, 3],
             "shapes": ["hidden 256", "2 layers"], "batch_sizes": [1, 32], "repeats": 10, "workers": 2,
             # the 3-layer transformer student (all-MiniLM-L6-v2 cut to 3 layers) on the first 45k transfer texts, one soft epoch
             # (as many updates as classification.py's 3 epochs over the 15k real texts), then its gold stage
             "transformer": {"layers": 3, "limit": 45_000, "soft_epochs": 1},
             # the pooled student (mean and/or max of its word-piece vectors): variants of POOLED on dev at the largest set,
             # then 3 seeds of the chosen one
             "pooled": {"variants": ["emb_dim 128", "emb_dim 192", "emb_dim 128, dropout 0.3", "emb_dim 128, mean, dropout 0.3"],
                        "epochs": 6}},
    "quick": {"classification": "quick", "factor": 2, "curve": [], "curve_epochs": 1, "stage_epochs": 1, "chosen_seeds": [1],
              "shapes": ["hidden 256"], "batch_sizes": [1, 32], "repeats": 5, "workers": 2, "transformer": None,
              "pooled": {"variants": ["emb_dim 128"], "epochs": 1}},
}
# the BiLSTM's shape, searched on dev at the largest transfer set: today's (emb_dim 128, hidden 128, one layer) against a
# wider and a deeper one, each within the 26x parameter bound (all-mpnet-base-v2: 109.5M / 26 = 4.2M; hidden 256 is
# ~3.4M, 2 layers ~3.1M; both at once would be ~5.0M, over it)
TODAY = "today"
SHAPES = {TODAY: {}, "hidden 256": {"hidden": 256}, "2 layers": {"layers": 2}}
# the pooled student's variants (its defaults: emb_dim 128, mean_max, dropout 0.1); at 17k word pieces emb_dim 192 is ~3.6M
# parameters, within the 26x bound
POOLED = {"emb_dim 128": {"emb_dim": 128}, "emb_dim 192": {"emb_dim": 192}, "emb_dim 128, dropout 0.3": {"emb_dim": 128, "dropout": 0.3},
          "emb_dim 128, mean, dropout 0.3": {"emb_dim": 128, "pooling": "mean", "dropout": 0.3}}
MIN_COMPRESSION = 26.0
M2V_REQUIREMENTS = ["torch==2.13.0", "model2vec[distill,train]==0.10.0"]


def variant_name(init: str, sif: float | None) -> str:
    return init + (f" + sif {sif:g}" if sif else "")


@dataclass(frozen=True)
class StudentRun:
    """One BiLSTM run: what it measures (`kind`: gold-only or distilled), its embeddings, seed and transfer texts."""

    kind: str
    init: str
    sif: float | None
    seed: int
    values: dict
    source: Path
    out: Path
    transfer_texts: int | None = None  # the first N transfer texts (None: all of the source's)
    shape: str = TODAY  # a key of SHAPES

    @property
    def name(self) -> str:
        return variant_name(self.init, self.sif)

    def job(self) -> Job:
        return Job("row", self.values, str(self.out), str(self.source))


def student_values(values: dict, kind: str, init: str, sif: float | None, seed: int, stage_epochs: int | None,
                   limit: int | None = None, shape: str = TODAY) -> dict:
    """A run's values: `kind` is gold only, default (the paper schedule) or soft only (`stage_epochs` epochs); `shape` a
    key of SHAPES."""
    out = json.loads(json.dumps(values))
    out["threads"] = 1  # each run is one of two one-thread worker processes: two threads each would oversubscribe the 2 cores
    out["student"].update(embedding_init=init, embedding_sif=sif, **SHAPES[shape])
    if kind == "soft only":
        stages = [{"name": "soft", "losses": {"soft": 1.0}, "epochs": stage_epochs}]
    else:
        stages = stages_for("gold only" if kind == "gold only" else DEFAULT, stage_epochs)
    out["distill"].update(stages=stages, seed=seed, transfer_limit=limit)
    return out


@dataclass
class Plan:
    name: str
    mode: dict
    work: Path
    base: Path
    values: dict
    augmented_values: dict
    search: list[StudentRun] = field(default_factory=list)

    @property
    def augmented(self) -> Path:
        return self.work / "augmented"

    def largest(self, chosen: tuple[str, float | None], shape: str, seed: int) -> StudentRun:
        """The chosen embeddings with one shape and seed on the whole augmented set, soft-only (`curve_epochs`)."""
        values = student_values(self.augmented_values, "soft only", *chosen, seed, self.mode["curve_epochs"], shape=shape)
        folder = self.work / "augmented-all" / (f"seed{seed}" if shape == TODAY else f"{shape.replace(' ', '_')}-seed{seed}")
        return StudentRun("soft only", *chosen, seed, values, self.augmented, folder, shape=shape)

    def distilled(self, chosen: tuple[str, float | None]) -> list[StudentRun]:
        """The distilled runs once the gold-only search has chosen, soft-only (`curve_epochs`): the chosen embeddings on the
        whole augmented set in every shape (seed 1; the longest runs first), then today's and the chosen embeddings on the
        real transfer set, then the chosen ones along the curve."""
        mode = self.mode
        runs = [self.largest(chosen, shape, 1) for shape in mode["shapes"]] + [self.largest(chosen, TODAY, 1)]
        for variant in dict.fromkeys([EMBEDDINGS[0], chosen]):
            values = student_values(self.values, "soft only", *variant, 1, mode["curve_epochs"])
            runs.append(StudentRun("soft only", *variant, 1, values, self.base, self.work / "real-soft" / variant_name(*variant).replace(" ", "_")))
        for limit in mode["curve"]:
            values = student_values(self.augmented_values, "soft only", *chosen, 1, mode["curve_epochs"], limit)
            runs.append(StudentRun("soft only", *chosen, 1, values, self.augmented, self.work / "curve" / f"transfer-{limit}", limit))
        return runs

    def transformer(self) -> StudentRun | None:
        """The transformer student on the augmented set (its own tokenizer: a student token cache is made once)."""
        point = self.mode["transformer"]
        if point is None:
            return None
        values = transformer_student(self.augmented_values, point["layers"], point["soft_epochs"], limit=point["limit"])
        name = f"transformer {point['layers']}L"
        return StudentRun(name, "minilm-l6", None, 1, values, self.augmented, self.work / "transformer" / f"{point['layers']}L-{point['limit']}",
                          point["limit"], shape=name)

    def pooled(self, chosen: tuple[str, float | None], variant: str, seed: int) -> StudentRun:
        """The pooled student (`variant`, a key of POOLED) on the whole augmented set with the chosen embeddings, soft-only
        (`pooled.epochs`)."""
        point = self.mode["pooled"]
        values = student_values(self.augmented_values, "soft only", *chosen, seed, point["epochs"])
        # the BiLSTM rows' distill settings kept (batch size, learning rate): the family sets no defaults of its own
        values["student"] = {"arch": "pooled", "min_count": values["student"]["min_count"], **POOLED[variant],
                             "embedding_init": chosen[0], "embedding_sif": chosen[1]}
        folder = self.work / "pooled" / f"{pooled_folder(POOLED[variant])}-seed{seed}"
        return StudentRun("soft only", *chosen, seed, values, self.augmented, folder, shape=f"pooled, {variant}")

    def seeds(self, chosen: tuple[str, float | None], shape: str) -> list[StudentRun]:
        """The chosen point's further seeds (its first is among `distilled`)."""
        return [self.largest(chosen, shape, seed) for seed in self.mode["chosen_seeds"][1:]]


def pooled_folder(settings: dict) -> str:
    """A pooled variant's folder name: emb128, emb128-mean-dropout0.3, ..."""
    return f"emb{settings['emb_dim']}" + "".join(f"-{key}{value}" if key == "dropout" else f"-{value}"
                                                for key, value in settings.items() if key != "emb_dim")


def make_plan(quick: bool, workers: int | None) -> Plan:
    name = "quick" if quick else "full"
    mode = {**MODES[name], **({"workers": workers} if workers else {})}
    base, values = base_of(mode["classification"])
    augmented = json.loads(json.dumps(values))
    augmented["transfer"]["augment"].update(factor=mode["factor"], replace="neighbours")
    work = HERE / "cache" / "transfer_scale" / name
    plan = Plan(name, mode, work, base, values, augmented)
    for init, sif in EMBEDDINGS:
        run_values = student_values(values, "gold only", init, sif, 1, None)
        plan.search.append(StudentRun("gold only", init, sif, 1, run_values, base, work / "gold" / variant_name(init, sif).replace(" ", "_")))
    return plan


# ---- execute ----
def m2v_python(work: Path) -> Path:
    """model2vec's own virtual environment (its distill extra pins an older transformers), made once."""
    folder = work.parent / "model2vec-venv"
    python = folder / "bin" / "python"
    if not python.is_file():
        venv.create(folder, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *M2V_REQUIREMENTS], check=True)
    return python


def model2vec_peer(base, values: dict, work: Path, seed: int) -> dict:
    """Static vectors from the teacher's base encoder and model2vec's classifier, trained in model2vec's environment."""
    from xdistil.teacher.models import resolve_teacher

    out = work / "model2vec"
    if not (out / "figures.json").is_file():
        corpus = base.data.corpus
        hard = base.annotation.caches["transfer"].load().logits.argmax(1)[len(corpus.train):]
        data = {"label_names": corpus.label_names,
                **{s: {"texts": list(getattr(corpus, s).texts), "labels": list(getattr(corpus, s).labels)} for s in ("train", "dev", "test")},
                "transfer": {"texts": list(corpus.transfer), "teacher_labels": hard.tolist()}}
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "data.json", data, indent=0)
        subprocess.run([str(m2v_python(work)), str(HERE / "model2vec_peer.py"), "--data", str(out / "data.json"),
                        "--encoder", resolve_teacher(values["teacher"]["model"]), "--out", str(out), "--seed", str(seed)], check=True)
    return json.loads((out / "figures.json").read_text())


class TeacherFromText:
    """The fine-tuned teacher as a predictor from raw text (its tokenizer included), as users would call it."""

    def __init__(self, model, tokenizer, max_length: int):
        self.model, self.tokenizer, self.max_length = model.to("cpu").eval(), tokenizer, max_length

    def predict_proba(self, texts, batch_size: int = 32):
        import numpy as np
        import torch

        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt")
            with torch.inference_mode():
                out.append(torch.softmax(self.model(**batch).logits, -1).numpy())
        return np.concatenate(out)


class PipelineFromText:
    """A model2vec classifier pipeline as a predictor from raw text."""

    def __init__(self, folder: str):
        from model2vec.inference import StaticModelPipeline

        self.pipeline = StaticModelPipeline.from_pretrained(folder)

    def predict_proba(self, texts, batch_size: int = 32):
        return self.pipeline.predict_proba(list(texts))


@dataclass
class Measured:
    search: list[dict] = field(default_factory=list)
    chosen: tuple[str, float | None] = EMBEDDINGS[0]
    distilled: list[dict] = field(default_factory=list)
    shape: str = TODAY  # the BiLSTM shape chosen on dev at the largest transfer set
    transformer: list[dict] = field(default_factory=list)  # the transformer student's point (classification.py has it at 15k)
    pooled: list[dict] = field(default_factory=list)  # the pooled student's variants (seed 1), then the chosen one's other seeds
    pooled_shape: str | None = None
    augmentation: dict = field(default_factory=dict)
    peers: dict = field(default_factory=dict)
    systems: list[dict] = field(default_factory=list)  # accuracy, size and latency from raw text, all timed here


def figures(run: StudentRun, metrics: dict) -> dict:
    return {"kind": run.kind, "embeddings": run.name, "init": run.init, "sif": run.sif, "shape": run.shape, "seed": run.seed,
            "transfer_texts": metrics["data"]["transfer"] + metrics["data"].get("transfer_generated", 0) if run.transfer_texts is None
            else run.transfer_texts, "dev_accuracy": final_dev(metrics), "test_accuracy": metrics["student"]["accuracy"],
            "params": metrics["student"]["params"], "teacher_params": metrics["teacher"]["params"],
            "training_seconds": epoch_seconds(metrics, "student"), "folder": None}


def texts_per_second(cache) -> float:
    """A cache's annotation pace: chunk size over the median interval between consecutive chunk files, so a stopped and
    resumed annotation is timed by its steady pace, not by the pause."""
    import statistics

    stamps = sorted(cache.chunk_path(i).stat().st_mtime for i in range(cache.num_chunks()))
    return cache.manifest["chunk_size"] / statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


def annotate_augmented(plan: Plan, base) -> dict:
    """The augmented transfer set annotated (or found done) in this process alone: its counts and its cost, and the pace of
    the base run's fp32 annotation of the real texts beside it."""
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    # the same teacher; its own dev and test caches, labeled at the augmented set's precision (int8 here, fp32 in the base)
    link_shared(plan.base, plan.augmented, ("teacher",))
    made = Run(build_config({**plan.augmented_values, "out": str(plan.augmented)}, "augmented")).execute("annotate")
    cache = made.annotation.caches["transfer"]
    pace = texts_per_second(cache)
    real = base.annotation.caches["transfer"]
    return {"factor": plan.mode["factor"], "replace": "neighbours", **made.transfer.sizes(), "texts": len(cache),
            "precision": cache.manifest.get("precision", "fp32"), "texts_per_s": pace, "seconds": len(cache) / pace,
            "threads": 2, "real_precision": real.manifest.get("precision", "fp32"), "real_texts_per_s": texts_per_second(real)}


def annotation_minutes(result: dict, texts: int) -> float:
    """What labeling a point's transfer texts cost: the real set alone at the base run's pace, more at the augmented set's."""
    a = result["augmentation"]
    return texts / (a["real_texts_per_s"] if texts <= a["real"] else a["texts_per_s"]) / 60


def execute(plan: Plan, base, with_peers: bool) -> Measured:
    from xdistil.progress import log

    measured, mode = Measured(), plan.mode
    run_jobs([r.job() for r in plan.search], [], mode["workers"])
    for run in plan.search:
        metrics, _ = run_row(run.values, run.source, run.out)
        measured.search.append({**figures(run, metrics), "folder": str(run.out)})
        log(f"gold only, {run.name}: dev {100 * measured.search[-1]['dev_accuracy']:.1f}%")
    best = max(measured.search, key=lambda r: r["dev_accuracy"])
    measured.chosen = (best["init"], best["sif"])
    log(f"chosen on dev: {best['embeddings']}")
    measured.augmentation = annotate_augmented(plan, base)
    distilled = plan.distilled(measured.chosen)
    run_jobs([r.job() for r in distilled], [], mode["workers"])
    measured.distilled = [distilled_row(run) for run in distilled]
    measured.shape = chosen_shape(measured.distilled)
    log(f"shape chosen on dev at the largest transfer set: {measured.shape}")
    seeds = plan.seeds(measured.chosen, measured.shape)
    run_jobs([r.job() for r in seeds], [], mode["workers"])
    measured.distilled += [distilled_row(run) for run in seeds]
    if mode.get("pooled"):
        widths = [plan.pooled(measured.chosen, variant, 1) for variant in mode["pooled"]["variants"]]
        run_jobs([r.job() for r in widths], [], mode["workers"])
        measured.pooled = [distilled_row(run) for run in widths]
        fit = [r for r in measured.pooled if r["teacher_params"] / r["params"] >= MIN_COMPRESSION]
        measured.pooled_shape = max(fit, key=lambda r: r["dev_accuracy"])["shape"]
        log(f"pooled variant chosen on dev: {measured.pooled_shape}")
        variant = measured.pooled_shape.removeprefix("pooled, ")
        more = [plan.pooled(measured.chosen, variant, seed) for seed in mode["chosen_seeds"][1:]]
        run_jobs([r.job() for r in more], [], mode["workers"])
        measured.pooled += [distilled_row(run) for run in more]
    transformer = plan.transformer()
    if transformer is not None:  # alone, with every core (the 3-layer encoder pays for two threads)
        measured.transformer = [distilled_row(transformer)]
    if with_peers:
        measured.peers = model2vec_peer(base, plan.values, plan.work, 1)
    return measured


def distilled_row(run: StudentRun) -> dict:
    """A distilled run's figures (run here when no worker ran it)."""
    from xdistil.progress import log

    metrics, _ = run_row(run.values, run.source, run.out)
    row = {**figures(run, metrics), "folder": str(run.out)}
    log(f"distilled, {run.name}, {run.shape}, seed {run.seed}, {row['transfer_texts']:,} transfer texts: dev {100 * row['dev_accuracy']:.1f}%")
    return row


def chosen_shape(distilled: list[dict]) -> str:
    """The shape with the best dev accuracy at the largest transfer set (first seed), among those within the 26x bound."""
    largest = max(r["transfer_texts"] for r in distilled)
    fit = [r for r in distilled if r["transfer_texts"] == largest and r["seed"] == 1 and r["teacher_params"] / r["params"] >= MIN_COMPRESSION]
    return max(fit, key=lambda r: r["dev_accuracy"])["shape"]


def chosen_point(result: dict) -> list[dict]:
    """The rows of the chosen point: chosen embeddings and shape on the whole augmented set, every seed."""
    largest = max(r["transfer_texts"] for r in result["distilled"])
    return [r for r in result["distilled"] if r["transfer_texts"] == largest and r["shape"] == result["chosen_shape"]
            and r["embeddings"] == result["chosen_embeddings"]]


def system_name(row: dict) -> str:
    shape = "" if row.get("shape", TODAY) == TODAY else f", {row['shape']}"
    return f"BiLSTM distilled ({row['kind']}){shape}, {row['embeddings']}, {row['transfer_texts']:,} transfer texts"


def pooled_system(row: dict) -> str:
    return f"{row['shape'].capitalize()} distilled ({row['kind']}), {row['embeddings']}, {row['transfer_texts']:,} transfer texts"


def measure_systems(plan: Plan, base, measured: Measured) -> list[dict]:
    """Accuracy, size on disk and latency from raw text of the teacher, the students (PyTorch and ONNX int8) and the peers,
    every one timed in this process on the same test texts."""
    import numpy as np

    from xdistil.export.onnx import export_onnx
    from xdistil.export.runtime import ONNX_CONFIG, OnnxStudent
    from xdistil.student.io import load_student
    from xdistil.sweep import measure

    import torch

    from xdistil.cpus import cpu_budget

    torch.set_num_threads(cpu_budget().threads)  # the runs loaded here set one thread each: time with every core, nothing else running
    corpus, mode = base.data.corpus, plan.mode
    texts, gold = list(corpus.test.texts), np.asarray(corpus.test.labels)

    def score(probabilities) -> float:
        return float((np.asarray(probabilities).argmax(1) == gold).mean())

    def timed(predictor, name: str, fmt: str, folder: Path, params: int) -> dict:
        row = asdict(measure(predictor, name, fmt, folder, texts, score, mode["batch_sizes"], mode["repeats"]))
        return {"system": name, "format": fmt, "accuracy": row["quality"], "size_mb": row["size_mb"], "params": params,
                "latency_ms": row["latency_ms"]}

    teacher = TeacherFromText(base.teacher.model, base.tokenizer, plan.values["teacher"]["max_length"])
    systems = [timed(teacher, "teacher", "pytorch", plan.base / "teacher", sum(p.numel() for p in base.teacher.model.parameters()))]
    picks = {"BiLSTM, gold only, " + r["embeddings"]: r for r in measured.search if (r["init"], r["sif"]) in (EMBEDDINGS[0], measured.chosen)}
    largest = max(r["transfer_texts"] for r in measured.distilled)
    real = min(r["transfer_texts"] for r in measured.distilled)
    picks.update({system_name(r): r for r in measured.distilled
                  if r["seed"] == 1 and (r["transfer_texts"] == real or (r["transfer_texts"] == largest and (r["init"], r["sif"]) == measured.chosen))})
    picks.update({f"{r['kind']} distilled, {r['transfer_texts']:,} transfer texts": r for r in measured.transformer})
    picks.update({pooled_system(r): r for r in measured.pooled if r["seed"] == 1 and r["shape"] == measured.pooled_shape})
    for name, row in picks.items():
        student = Path(row["folder"]) / "student"
        systems.append(timed(load_student(student), name, "pytorch", student, row["params"]))
        onnx = Path(row["folder"]) / "onnx-int8"
        if not (onnx / ONNX_CONFIG).is_file():
            export_onnx(student, onnx, int8=True)
        systems.append(timed(OnnxStudent(onnx), name, "onnx-int8", onnx, row["params"]))
    for variant, peer in measured.peers.get("variants", {}).items():
        systems.append(timed(PipelineFromText(peer["folder"]), f"model2vec, {variant} labels", "model2vec", Path(peer["folder"]),
                             peer["params"]))
    teacher_ms = systems[0]["latency_ms"]
    for row in systems:
        row["speedup"] = {k: teacher_ms[k] / v for k, v in row["latency_ms"].items()}
        row["compression"] = systems[0]["params"] / row["params"]
    return systems


def peer_rows(measured: Measured, base) -> list[dict]:
    import numpy as np

    corpus = base.data.corpus
    rows = []
    for variant, peer in measured.peers.get("variants", {}).items():
        dev = float((np.asarray(peer["dev_predictions"]) == np.asarray(corpus.dev.labels)).mean())
        test = float((np.asarray(peer["test_predictions"]) == np.asarray(corpus.test.labels)).mean())
        rows.append({"peer": f"model2vec, {variant} labels", "dev_accuracy": dev, "test_accuracy": test, "params": peer["params"],
                     "training_texts": peer["training_texts"], "training_seconds": peer["training_seconds"]})
    return rows


def goals(result: dict) -> list[dict]:
    """The issue's bars, each met or missed by a measured margin."""
    import statistics

    out = []
    point = chosen_point(result)
    system = next((s for s in result["systems"] if s["system"] == system_name(point[0]) and s["format"] == "pytorch"), None)
    if system is not None:
        mean = 100 * statistics.mean(r["test_accuracy"] for r in point)
        fits = system["compression"] >= MIN_COMPRESSION and system["speedup"]["batch_32"] >= 50
        out.append({"goal": "best student with >= 26x fewer parameters and >= 50x faster at batch 32 reaches >= 82.0% (mean of 3 seeds)",
                    "measured": f"{system['system']}: {mean:.1f}% (mean of {len(point)} seed(s); {system['compression']:.1f}x fewer "
                                f"parameters, {system['speedup']['batch_32']:.0f}x faster at batch 32)",
                    "by": mean - 82.0, "met": len(point) >= 3 and fits and mean >= 82.0})
    gold_rows = {r["embeddings"]: r for r in result["embedding_search"]}
    peers = {p["peer"]: p for p in result["peers"]}
    chosen_gold = gold_rows[result["chosen_embeddings"]]
    if "model2vec, gold labels" in peers:
        diff = 100 * (chosen_gold["test_accuracy"] - peers["model2vec, gold labels"]["test_accuracy"])
        out.append({"goal": "BiLSTM on gold labels alone (chosen embeddings) at or above model2vec's gold-only classifier",
                    "measured": f"{diff:+.1f} points", "by": diff, "met": diff >= 0})
        best_student = max(r["test_accuracy"] for r in result["distilled"])
        diff = 100 * (best_student - max(p["test_accuracy"] for p in result["peers"]))
        out.append({"goal": "the distilled BiLSTM above every model2vec row", "measured": f"{diff:+.1f} points", "by": diff, "met": diff > 0})
        out.append(frontier_goal(result))
    return out


def frontier_goal(result: dict) -> dict:
    """Our students on the frontier against each peer: at the peer's batch-32 latency or faster, one of ours is more
    accurate (the frontier holds above both peers where they run, not only at our slowest, most accurate point)."""
    on = set(result["frontier"])
    ours = [s for s in result["systems"] if s["system"] != "teacher" and s["format"] != "model2vec" and f"{s['system']} ({s['format']})" in on]
    peers = [s for s in result["systems"] if s["format"] == "model2vec"]
    best = max(ours, key=lambda s: s["accuracy"])
    margins, parts = [], []
    for peer in peers:
        budget = peer["latency_ms"]["batch_32"]
        fast = [s for s in ours if s["latency_ms"]["batch_32"] <= budget]
        if not fast:
            margins.append(float("-inf"))
            parts.append(f"no student of ours at or under {peer['system']}'s {budget:.1f} ms")
            continue
        pick = max(fast, key=lambda s: s["accuracy"])
        margins.append(100 * (pick["accuracy"] - peer["accuracy"]))
        parts.append(f"at or under {peer['system']}'s {budget:.2f} ms: {pick['system']} ({pick['format']}, "
                     f"{pick['latency_ms']['batch_32']:.2f} ms) {margins[-1]:+.2f} points")
    by = min(margins)
    return {"goal": "our students keep their place on the frontier above both peers at equal or better latency (batch 32)",
            "measured": "; ".join(parts) + f". Most accurate on the frontier: {best['system']} ({best['format']}), "
                                           f"{100 * (best['accuracy'] - max(p['accuracy'] for p in peers)):+.1f} points over the better peer "
                                           f"at {best['latency_ms']['batch_32']:.1f} ms",
            "by": by if by != float("-inf") else None, "met": bool(margins) and by > 0}


def markdown(result: dict) -> str:
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [f"# Transfer-set scale, student embeddings and peers ({result['mode']})", "",
             f"`{result['command']}` - teacher {result['teacher']}, the classification benchmark's split (1,000 labels, "
             f"{result['data']['test']:,} test snippets); choices on dev, figures on test.", "",
             "## Embeddings (BiLSTM on the gold labels alone; chosen on dev)", "", "| embeddings | dev (%) | test (%) |", "|---|---:|---:|"]
    lines += [f"| {r['embeddings']} | {pct(r['dev_accuracy'])} | {pct(r['test_accuracy'])} |" for r in result["embedding_search"]]
    a = result["augmentation"]
    lines += ["", f"Chosen: **{result['chosen_embeddings']}**.", "", "## Augmented transfer set", "",
              f"Factor {a['factor']} ({a['replace']} replacement): {a['real']:,} real and {a['generated']:,} generated texts, annotated "
              f"by the {a['precision'].split(':')[0]} teacher in {a['seconds'] / 60:.1f} min ({a['texts_per_s']:.1f} texts/s, 2 threads).", "",
              f"The real texts alone were labeled by the base run's {a['real_precision'].split(':')[0]} teacher at {a['real_texts_per_s']:.1f} "
              "texts/s. Annotation (min) below: what labeling each point's transfer texts cost at those paces.", "",
              "## Distilled BiLSTM", "", "| schedule | embeddings | shape | seed | transfer texts | annotation (min) | parameters | dev (%) | test (%) | "
              "training (s, one thread) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['kind']} | {r['embeddings']} | {r.get('shape', TODAY)} | {r['seed']} | {r['transfer_texts']:,} | "
              f"{annotation_minutes(result, r['transfer_texts']):.1f} | {r['params']:,} | "
              f"{pct(r['dev_accuracy'])} | {pct(r['test_accuracy'])} | {r['training_seconds']:.0f} |" for r in result["distilled"]]
    if "chosen_shape" in result:
        point = [r["test_accuracy"] for r in chosen_point(result)]
        lines += ["", f"Shape chosen on dev at the largest transfer set ({result['shape_bound'].split(',')[0]}): **{result['chosen_shape']}** "
                      f"(today: emb_dim 128, hidden 128, one layer). Its test accuracy over {len(point)} seed(s): "
                      f"{', '.join(pct(a) for a in point)}; mean **{pct(sum(point) / len(point))}**."]
    if result.get("pooled"):
        lines += ["", "## Pooled student (mean + max of its word-piece vectors; soft only, whole augmented set)", "",
                  "| variant | seed | parameters | dev (%) | test (%) | training (s, one thread) |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['shape']} | {r['seed']} | {r['params']:,} | {pct(r['dev_accuracy'])} | {pct(r['test_accuracy'])} | "
                  f"{r['training_seconds']:.0f} |" for r in result["pooled"]]
        point = [r["test_accuracy"] for r in result["pooled"] if r["shape"] == result["pooled_shape"]]
        lines += ["", f"Variant chosen on dev: **{result['pooled_shape']}**; test over {len(point)} seed(s): "
                      f"{', '.join(pct(a) for a in point)}; mean **{pct(sum(point) / len(point))}**."]
    for r in result.get("transformer", []):
        lines += ["", f"Transformer student ({r['kind']}, all-MiniLM-L6-v2 cut to its layers; one soft epoch over the first "
                      f"{r['transfer_texts']:,} transfer texts, then its gold stage; seed {r['seed']}): dev {pct(r['dev_accuracy'])}%, "
                      f"test **{pct(r['test_accuracy'])}%**, {r['params']:,} parameters, {r['training_seconds']:.0f} s."]
    if result["peers"]:
        lines += ["", "## Peers (model2vec, in its own virtual environment)", "", "| peer | dev (%) | test (%) | parameters | training texts |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {p['peer']} | {pct(p['dev_accuracy'])} | {pct(p['test_accuracy'])} | {p['params']:,} | {p['training_texts']:,} |"
                  for p in result["peers"]]
    sizes = result["batch_sizes"]
    lines += ["", "## Every system from raw text, timed in this process", "",
              "| system | format | test accuracy (%) | parameters | compression | size (MB) | "
              + " | ".join(f"batch {b} (ms)" for b in sizes) + " | speed-up at 32 |", "|---|---|---:|---:|---:|---:|" + "---:|" * len(sizes) + "---:|"]
    lines += [f"| {s['system']} | {s['format']} | {pct(s['accuracy'])} | {s['params']:,} | {s['compression']:.1f}x | {s['size_mb']:.1f} | "
              + " | ".join(f"{s['latency_ms'][f'batch_{b}']:.2f}" for b in sizes) + f" | {s['speedup']['batch_32']:.1f}x |" for s in result["systems"]]
    lines += ["", f"Frontier (no other system both more accurate and faster at batch 32): {', '.join(result['frontier'])}.", "", "## Goals", ""]
    lines += [f"- {g['goal']}: {g['measured']} - **{'met' if g['met'] else 'missed'}**" for g in result["goals"]]
    return "\n".join(lines + [""])


def plot_curve(result: dict, path: Path) -> None:
    """Test accuracy against the transfer-set size: classification.py's default-schedule curve over the real texts, this
    benchmark's soft-only points with the chosen embeddings (today's shape; the chosen shape's seeds as a spread), the
    peers, the teacher and the 82% goal."""
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    earlier = RESULTS / "classification.json"
    if result["mode"] == "full" and earlier.is_file():
        curve = json.loads(earlier.read_text())["transfer_size_curve"]
        ax.plot([max(p["transfer_texts"], 300) for p in curve], [100 * p["accuracy"] for p in curve], "s--", color="grey",
                label="default schedule, real texts (classification.py; 0 plotted at 300)")
    ours = sorted((r for r in result["distilled"] if r["embeddings"] == result["chosen_embeddings"] and r.get("shape", TODAY) == TODAY
                   and r["seed"] == 1), key=lambda r: r["transfer_texts"])
    ax.plot([r["transfer_texts"] for r in ours], [100 * r["test_accuracy"] for r in ours], "o-", label=f"soft only, {result['chosen_embeddings']}")
    point = chosen_point(result)
    if point:
        values = [100 * r["test_accuracy"] for r in point]
        ax.errorbar([point[0]["transfer_texts"]], [statistics.mean(values)], yerr=[statistics.pstdev(values)], fmt="D", color="C3", capsize=4,
                    label=f"chosen point ({result.get('chosen_shape', TODAY)}), mean of {len(point)} seed(s)")
    for peer, style in zip(result["peers"], (":", "-.")):
        ax.axhline(100 * peer["test_accuracy"], linestyle=style, color="C2", label=peer["peer"])
    teacher = next(s for s in result["systems"] if s["system"] == "teacher")
    ax.axhline(100 * teacher["accuracy"], color="black", label="teacher")
    pooled = [100 * r["test_accuracy"] for r in result.get("pooled", []) if r["shape"] == result.get("pooled_shape")]
    if pooled:
        ax.errorbar([max(r["transfer_texts"] for r in result["pooled"])], [statistics.mean(pooled)], yerr=[statistics.pstdev(pooled)], fmt="v",
                    color="C1", capsize=4, label=f"{result['pooled_shape']}, mean of {len(pooled)} seed(s)")
    for r in result.get("transformer", []):
        ax.plot([r["transfer_texts"]], [100 * r["test_accuracy"]], "^", color="C4", markersize=9, label=f"{r['kind']} student")
    ax.axhline(82.0, color="C3", linestyle="--", linewidth=0.8, label="goal: 82%")
    ax.set_xscale("log")
    ax.set_xlabel("transfer texts (real, then augmented)")
    ax.set_ylabel("student test accuracy (%)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(plan: Plan, base, measured: Measured, command: str, started: float) -> dict:
    from xdistil.sweep import Row as SweepRow, frontier

    systems = measure_systems(plan, base, measured)
    points = [SweepRow(f"{s['system']} ({s['format']})", s["format"], s["accuracy"], s["size_mb"], s["latency_ms"], "") for s in systems]
    result = {
        "mode": plan.name, "command": command, "teacher": plan.values["teacher"]["model"].rsplit("/", 1)[-1],
        "data": base.data.corpus.sizes(), "embedding_search": measured.search, "chosen_embeddings": variant_name(*measured.chosen),
        "augmentation": measured.augmentation, "distilled": measured.distilled, "chosen_shape": measured.shape,
        "transformer": measured.transformer, "pooled": measured.pooled, "pooled_shape": measured.pooled_shape,
        "shape_bound": f"shapes within {MIN_COMPRESSION:g}x fewer parameters than the teacher, chosen on dev at the largest transfer set",
        "peers": peer_rows(measured, base),
        "peer_environment": f"model2vec ran in its own virtual environment ({', '.join(M2V_REQUIREMENTS)}); its classifier was loaded "
                            "and timed here with model2vec's inference pipeline",
        "seeds_at_chosen_point": len(plan.mode["chosen_seeds"]), "batch_sizes": plan.mode["batch_sizes"], "systems": systems,
        "timing": f"every system timed in this process, {__import__('torch').get_num_threads()} threads, after all training; "
                  "training seconds are one thread's, two runs side by side",
        "frontier": [r.student for r in frontier(points, "batch_32")],
    }
    result["goals"] = goals(result)
    result["seconds_total"] = round(time.perf_counter() - started, 1)
    suffix = "" if plan.name == "full" else "_quick"
    write_json(RESULTS / f"transfer_scale{suffix}.json", result)
    table = markdown(result)
    (RESULTS / f"transfer_scale{suffix}.md").write_text(table, encoding="utf-8")
    plot_curve(result, RESULTS / f"transfer_scale{suffix}.png")
    print(table)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MiniLM teacher, a 2x augmented set, one epoch per stage")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--no-peers", action="store_true", help="leave model2vec out (it builds its own virtual environment)")
    parser.add_argument("--no-transformer", action="store_true", help="leave the transformer student's point out")
    args = parser.parse_args()
    quiet_transformers()
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    started = time.perf_counter()
    plan = make_plan(args.quick, args.workers)
    if args.no_transformer:
        plan.mode["transformer"] = None
    base = Run(build_config(plan.values, "base")).execute(until="annotate")
    measured = execute(plan, base, not args.no_peers)
    report(plan, base, measured, "python benchmarks/transfer_scale.py" + (" --quick" if args.quick else ""), started)


if __name__ == "__main__":
    main()
