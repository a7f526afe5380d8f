"""The `xdistil` command line: the whole job from one config or from flags, or one step at a time."""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from xdistil.errors import XDistilError, on_signal, out_of_space, signals_received

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})

ConfigArg = Annotated[Path, typer.Argument(help="YAML run config (see `xdistil config`)")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="start the run folder afresh instead of resuming")]
TAGGED_SUFFIXES = (".conll", ".conllu", ".bio", ".iob", ".iob2", ".bioes")


def _load(config: Path):
    from xdistil.config import load_config

    return load_config(config)


def _refuse_if_in_use(out: Path | None) -> None:
    """Exit 2 at once when another process runs in the folder: before torch is even imported (the run takes
    the lock itself when it prepares the folder)."""
    from xdistil.folderlock import refuse_if_in_use

    # under a launcher only rank 0 takes the lock (see Run): the other ranks start later and would find it held
    if out is not None and os.environ.get("RANK", "0") in ("", "0"):
        refuse_if_in_use(Path(out).resolve())


def _config_out(config: Path) -> Path | None:
    from xdistil.config import config_out

    return config_out(config) if config.is_file() else None


def _print_summary(metrics: dict) -> None:
    import xdistil.distributed as distributed

    if not distributed.is_main():  # under accelerate launch every process has the metrics; one prints them
        return
    from xdistil.evaluation.report import comparison_table

    typer.echo(comparison_table(metrics))
    speed = f", speed-up at batch 32 {metrics['speedup_batch_32']:.1f}x" if "speedup_batch_32" in metrics else ""
    typer.echo(f"compression {metrics['compression']:.1f}x{speed}")


def _step(config_path: Path, until: str, overwrite: bool, transfer: dict | None = None) -> None:
    from xdistil.pipeline import Run

    from xdistil.config import build_config, config_to_dict

    _refuse_if_in_use(_config_out(config_path))
    config = _load(config_path)
    if transfer:  # command-line overrides of the transfer section (the engine): validated like the file's
        values = config_to_dict(config)
        ray = {**values["transfer"]["ray"], **transfer.get("ray", {})}
        config = build_config({**values, "transfer": {**values["transfer"], **transfer, "ray": ray}}, "command line")
    result = Run(config, overwrite=overwrite).run(until)
    if result:
        _print_summary(result)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="run folder")] = Path("runs/demo"),
    overwrite: Overwrite = False,
) -> None:
    """Run the built-in default: MiniLM teacher, rotten_tomatoes with 1,000 labels, BiLSTM student."""
    _refuse_if_in_use(out)
    from xdistil.pipeline import Run
    from xdistil.presets import demo_config

    _print_summary(Run(demo_config(out), overwrite=overwrite).run())


@app.command()
def run(
    config: Annotated[Optional[Path], typer.Argument(help="YAML run config; flags below override it")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="built-in name (minilm-l6), hub id or local folder")] = None,
    train: Annotated[Optional[Path], typer.Option(help="labeled train file (CSV, TSV, JSONL)")] = None,
    dev: Annotated[Optional[Path], typer.Option(help="labeled dev file; carved from train when absent")] = None,
    test: Annotated[Optional[Path], typer.Option(help="labeled test file; carved from train when absent")] = None,
    transfer: Annotated[Optional[list[Path]], typer.Option(help="unlabeled text file (repeatable)")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="built-in or hub dataset instead of files")] = None,
    task: Annotated[Optional[str], typer.Option(help="classification or tagging (default: tagging for CoNLL train files)")] = None,
    text_column: Annotated[Optional[str], typer.Option(help="text column name")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="label column name")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run folder")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
    student: Annotated[
        Optional[str], typer.Option(help="student family: bilstm (default), pooled (fastest, texts only) or transformer; another family than the config's takes its own schedule")
    ] = None,
    student_layers: Annotated[Optional[int], typer.Option(help="transformer student: how many encoder layers to keep")] = None,
    student_encoder: Annotated[
        Optional[str], typer.Option(help="transformer student: encoder to cut (minilm-l6, 'teacher', a folder or hub id)")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="a first look in minutes: 1 epoch per stage, at most 5 for the teacher and the baseline (the report says so)")
    ] = False,
    epochs: Annotated[Optional[int], typer.Option(help="epochs of every distillation stage (early stopping still applies)", min=1)] = None,
    overwrite: Overwrite = False,
) -> None:
    """Run the whole pipeline from a config file, from flags alone, or both."""
    from xdistil.config import build_config, config_to_dict, with_family

    if config:  # before the config is validated (that imports torch); flags alone are checked below, once `out` is known
        _refuse_if_in_use(out if out is not None else _config_out(config))
    values = config_to_dict(_load(config)) if config else {}
    data = values.setdefault("data", {})
    for key, value in (
        ("train", train), ("dev", dev), ("test", test), ("dataset", dataset),
        ("text_column", text_column), ("label_column", label_column),
    ):
        if value is not None:
            data[key] = str(value)
    if transfer:
        data["transfer"] = [str(p) for p in transfer]
    if teacher is not None:
        values.setdefault("teacher", {})["model"] = teacher
    if task is not None:
        values["task"] = task
    elif train is not None and any(s.lower() in TAGGED_SUFFIXES for s in train.suffixes):
        values["task"] = "tagging"  # a CoNLL file holds tags, never text labels
    if student is not None and student != values.get("student", {}).get("arch", "bilstm"):
        values = with_family(values, student)  # another family: its own settings and schedule, from their defaults
    for key, value in (("layers", student_layers), ("encoder", student_encoder)):
        if value is not None:
            values.setdefault("student", {})[key] = value
    if quick:
        values["quick"] = True
    if out is not None:
        values["out"] = str(out)
    elif not config:  # flags alone: a folder named for the data and settings (--quick, --epochs too), so the same command resumes it
        from xdistil.fingerprint import fingerprint

        stem = Path(str(train)).stem if train else str(dataset).replace("/", "_")
        values["out"] = str(Path("runs") / f"{stem}-{(fingerprint(values) if epochs is None else fingerprint(values, epochs))[:8]}")
    if seed is not None:
        values["seed"] = seed
    if not config and not (train or dataset):
        raise XDistilError("run: give a CONFIG file, or at least --train (or --dataset)")
    if not config:
        _refuse_if_in_use(Path(values["out"]))
    run_config = build_config(values, str(config) if config else "flags")
    if epochs is not None:  # every stage of the schedule, the family's default one included
        run_config.distill.epochs = epochs
        run_config.distill.stages = [stage.model_copy(update={"epochs": epochs}) for stage in run_config.distill.stages]
    from xdistil.pipeline import Run

    _print_summary(Run(run_config, overwrite=overwrite).run())


@app.command()
def finetune(config: ConfigArg, overwrite: Overwrite = False) -> None:
    """Fine-tune the teacher on the labeled train set (step 1)."""
    _step(config, "finetune", overwrite)


@app.command()
def annotate(
    config: ConfigArg,
    overwrite: Overwrite = False,
    engine: Annotated[Optional[str], typer.Option(help="local (this process, or each of accelerate launch's) or ray")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to join ('auto', 'ray://host:10001'); none starts one")] = None,
) -> None:
    """Let the teacher label train, transfer, dev and test text into the run's cache (step 2; resumable)."""
    overrides = {k: v for k, v in {"engine": engine, "ray": {"address": address} if address is not None else None}.items() if v is not None}
    _step(config, "annotate", overwrite, overrides)


@app.command()
def distill(config: ConfigArg, overwrite: Overwrite = False) -> None:
    """Train the student through the stage schedule, and the no-distillation baseline (step 3; resumable)."""
    _step(config, "distill", overwrite)


@app.command()
def evaluate(config: ConfigArg) -> None:
    """Measure teacher and student on test; write metrics.json and report.md (step 4)."""
    _step(config, "evaluate", False)


@app.command()
def sweep(
    config: ConfigArg,
    student: Annotated[Optional[list[str]], typer.Option(
        "--student", help="a student to train, repeatable: arch[:key=value,...], e.g. bilstm:hidden=128 or transformer:layers=3 "
        "(default: bilstm and transformer:layers=3)")] = None,
    batch: Annotated[int, typer.Option(help="the batch size the latency budget and the frontier are read at", min=1)] = 32,
    max_latency_ms: Annotated[Optional[float], typer.Option(help="budget: median CPU ms per batch of --batch texts, from raw text")] = None,
    max_size_mb: Annotated[Optional[float], typer.Option(help="budget: the model file's size on disk")] = None,
) -> None:
    """Several students from one teacher and transfer set, each measured here (quality, latency, size; PyTorch and ONNX
    int8); RUN/sweep/frontier.json and report.md, and with a budget the best student that fits, copied to RUN/best/."""
    from xdistil.sweep import DEFAULT_STUDENTS, StudentSpec, run_sweep, sweep_table

    _refuse_if_in_use(_config_out(config))
    specs = [StudentSpec.parse(s) for s in (student or DEFAULT_STUDENTS)]
    typer.echo(sweep_table(run_sweep(_load(config), specs, batch, max_latency_ms, max_size_mb)))


def _predictor(folder: Path):
    """A student folder (PyTorch) or an exported one (ONNX, run without torch)."""
    from xdistil.export.runtime import ONNX_CONFIG, OnnxStudent

    if (folder / ONNX_CONFIG).is_file():
        return OnnxStudent(folder)
    from xdistil.student.io import load_student

    return load_student(folder)


@app.command()
def export(
    source: Annotated[Path, typer.Argument(help="a run folder or its student/ folder")],
    out: Annotated[Optional[Path], typer.Option(help="folder for the exported student (default: SOURCE/onnx or onnx-int8)")] = None,
    format: Annotated[str, typer.Option("--format", help="onnx, or transformers (a transformer student as a plain Hugging Face folder)")] = "onnx",
    int8: Annotated[bool, typer.Option("--int8", help="dynamic int8 quantisation of the weights (onnx)")] = False,
) -> None:
    """Export a student to ONNX (model.onnx, tokenizer and labels; predicts with onnxruntime alone: `xdistil predict
    FOLDER`, or `xdistil.OnnxStudent(FOLDER)`), or a transformer student to a folder `transformers.pipeline` loads.
    Refused if it would change the outputs."""
    from xdistil.progress import enter_step

    enter_step("export")
    if format not in ("onnx", "transformers"):
        raise XDistilError(f"export: unknown --format '{format}'; expected onnx or transformers")
    run_folder = source.parent if source.name == "student" else source
    if format == "transformers":
        from xdistil.export.hf_folder import export_transformers

        if int8:
            raise XDistilError("export: --int8 is for --format onnx")
        typer.echo(str(export_transformers(source, out or run_folder / "transformers")))
        return
    from xdistil.export.onnx import export_onnx

    target = out or run_folder / ("onnx-int8" if int8 else "onnx")
    typer.echo(str(export_onnx(source, target, int8=int8)))


@app.command()
def predict(
    student: Annotated[Path, typer.Argument(help="a student folder (RUN/student)")],
    texts: Annotated[Optional[list[str]], typer.Argument(help="texts to classify")] = None,
    input: Annotated[Optional[Path], typer.Option("--input", help="file of texts: one per line (.txt), or CSV/TSV/JSONL with a text column")] = None,
    text_column: Annotated[str, typer.Option(help="the text column of a CSV/TSV/JSONL --input")] = "text",
    probabilities: Annotated[bool, typer.Option(help="print JSON lines with probabilities")] = False,
) -> None:
    """Classify texts with a saved student: exactly one output line per input text, in input order (an
    empty input line gets an empty output line, or null label and probabilities with --probabilities).
    A tagging student tags each whitespace-separated word: one `word/TAG ...` line per text."""
    from xdistil.data.readers import MAX_CHARS, clip, file_format, iter_lines, read_unlabeled

    model = _predictor(student)
    items = list(texts or [])
    if input is not None:
        if file_format(input) == "txt":  # every line, blank ones included, so output lines match input lines
            items += [line.strip() for _, line in iter_lines(input)]
        else:
            items += read_unlabeled(input, text_column).texts
    if not items:
        raise XDistilError("predict: no texts given (pass texts or --input FILE)")
    cut = sum(len(t) > MAX_CHARS for t in items)
    items = [clip(t, MAX_CHARS)[0] for t in items]
    blank = [i for i, t in enumerate(items, start=1) if not t]
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (" ..." if len(blank) > 10 else "")
        print(f"note: {len(blank)} empty input text(s) (number {shown}) got an empty output line", file=sys.stderr)
    if cut:
        print(f"note: {cut} text(s) longer than {MAX_CHARS:,} characters were cut to that length", file=sys.stderr)
    present = [t for t in items if t]
    for line in model.task.output_lines(items, iter(model.predict_proba(present)), model.label_names, probabilities):
        typer.echo(line)


@app.command()
def data(
    path: Annotated[Path, typer.Argument(help="a data file to check")],
    kind: Annotated[str, typer.Option(help="auto, labeled, unlabeled or tagged")] = "auto",
    text_column: Annotated[str, typer.Option(help="text column name")] = "text",
    label_column: Annotated[str, typer.Option(help="label column name")] = "label",
) -> None:
    """Check and summarise a data file before a long run: counts, labels or entity types, handling notes."""
    from collections import Counter

    from xdistil.data.readers import file_format, read_labeled, read_unlabeled, unify_labels
    from xdistil.data.tagging import read_tagged

    if kind == "auto":
        suffixes = [s.lower() for s in path.suffixes]
        if any(s in TAGGED_SUFFIXES for s in suffixes):
            kind = "tagged"
        elif file_format(path) == "txt":
            kind = "unlabeled"
        else:
            kind = "labeled"
    if kind == "tagged":
        table = read_tagged(path)
        count = sum(len(s) for s in table.tokens)
        typer.echo(f"{path}: tagged, {len(table.tokens):,} sentences, {count:,} tokens, scheme {table.scheme}")
        typer.echo(f"entity types: {', '.join(table.entity_types()) or '(none)'}")
        langs = Counter(lang for lang in table.langs if lang)
        if langs:
            typer.echo("languages: " + ", ".join(f"{k} {v:,}" for k, v in sorted(langs.items())))
    elif kind == "labeled":
        table = read_labeled(path, text_column, label_column)
        table.notes.extend(unify_labels([table]))
        typer.echo(f"{path}: labeled, {len(table.texts):,} examples")
        typer.echo("labels: " + ", ".join(f"{k} {v:,}" for k, v in sorted(Counter(table.labels).items())))
    elif kind == "unlabeled":
        table = read_unlabeled(path, text_column)
        typer.echo(f"{path}: unlabeled, {len(table.texts):,} texts")
    else:
        raise XDistilError(f"data: unknown kind '{kind}'; expected auto, labeled, unlabeled or tagged")
    for note in table.notes:
        typer.echo(f"note: {note}")


@app.command()
def config(
    demo: Annotated[bool, typer.Option("--demo/--default", help="the demo's config, or the plain defaults")] = True,
) -> None:
    """Print a complete config (every key with its value) to start a run file from."""
    from xdistil.config import RunConfig, config_to_dict
    from xdistil.presets import demo_config

    typer.echo(yaml.safe_dump(config_to_dict(demo_config() if demo else RunConfig()), sort_keys=False), nl=False)


def _version(value: bool) -> None:
    if value:
        from xdistil import __version__

        typer.echo(f"xdistil {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")] = False,
) -> None:
    """Distil a fine-tuned BERT-family teacher into a small, fast student using unlabeled transfer text."""


def _current_step() -> str:
    """The step the command was in (progress.py records it; a command that never imported it had not started one)."""
    progress = sys.modules.get("xdistil.progress")
    return progress.current_step if progress is not None else "starting"


def _interrupted() -> None:
    print(f"interrupted: {_current_step()}; re-run the same command to resume", file=sys.stderr)
    sys.exit(143 if signal.SIGTERM in signals_received() else 130)


def main() -> None:
    """Entry point. Exit codes: 0 done; 1 internal error; 2 bad input, usage or environment - a full disk, a run
    folder in use (one line, no traceback);
    130 Ctrl-C and 143 SIGTERM (the step in progress is named; a re-run resumes)."""
    # a fresh classification head on a teacher is expected; transformers' load reports would only alarm. Set through
    # the environment, read when transformers is first imported: commands that never need it (ONNX predict) never import it
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        # typer turns Ctrl-C into a returned 130 (it may vendor its own click: exceptions are matched by name)
        code = app(standalone_mode=False, prog_name="xdistil")
    except XDistilError as err:
        if signals_received():  # an interrupt some library turned into another error
            _interrupted()
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as err:
        code = getattr(err, "exit_code", None)
        if type(err).__name__ == "Abort" or signals_received():
            _interrupted()
        if isinstance(err, PermissionError) or (isinstance(err, OSError) and err.errno == errno.EROFS):
            where = f"{err.filename}: " if err.filename else ""
            print(f"error: {where}{err.strerror or err} ({_current_step()}); expected a folder this user may write to - choose "
                  "another --out or fix its permissions", file=sys.stderr)
            sys.exit(2)
        if out_of_space(err):  # every writer removes its temporary when its write fails: what is left is whole
            detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            print(f"error: no space left to write ({_current_step()}: {detail}); the failed write's temporary files were removed - "
                  "free some space and re-run the same command to resume", file=sys.stderr)
            sys.exit(2)
        if isinstance(code, int) and callable(getattr(err, "show", None)):  # click's usage errors: the usage line, exit 2
            err.show()
            sys.exit(code)
        if os.environ.get("XDISTIL_DEBUG"):
            raise
        print(f"error: internal error ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
              "set XDISTIL_DEBUG=1 for the traceback", file=sys.stderr)
        sys.exit(1)
    if code == 130:
        _interrupted()
    if code in (None, 0) and "xdistil.distributed" in sys.modules:  # a command that ran torch: leave its process group cleanly
        sys.modules["xdistil.distributed"].finish()
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
