"""xdistil: distil big pre-trained language models into small, fast students with unlabeled transfer data."""

from xdistil.config import RunConfig, load_config
from xdistil.errors import XDistilError

__version__ = "0.1.0"
__all__ = ["OnnxStudent", "RunConfig", "XDistilError", "distill", "load_config", "load_student", "__version__"]


def __getattr__(name: str):
    if name == "OnnxStudent":  # torch-free: onnxruntime, tokenizers and numpy
        from xdistil.export.runtime import OnnxStudent

        return OnnxStudent
    raise AttributeError(name)


def load_student(path):
    """Load a saved student folder; the result has `predict(texts)` and `predict_proba(texts)`."""
    from xdistil.student.io import load_student as _load

    return _load(path)


def distill(config: RunConfig | str, overwrite: bool = False) -> dict:
    """Run the whole pipeline for a config (object or YAML path) and return its metrics."""
    from xdistil.pipeline import Run

    if not isinstance(config, RunConfig):
        config = load_config(config)
    return Run(config, overwrite=overwrite).run()
