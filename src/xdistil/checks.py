"""Checks of a run config against the teacher's and the student encoder's configs, made before the
run folder is touched or any data is read: a config that cannot run fails in one line, at once."""

from __future__ import annotations

from xdistil.config import RunConfig
from xdistil.errors import XDistilError
from xdistil.student.registry import family
from xdistil.teacher.models import resolve_teacher


def check_before_running(config: RunConfig) -> None:
    """The teacher exists and its config reads; layer indices (teacher.layer, and any a loss's settings name, e.g. the
    layers loss's layer_map) exist in it; the student family's own settings fit (e.g. kept layers); a label file
    exists, a labeling function imports."""
    import accelerate.utils as accelerate_utils
    from transformers import AutoConfig

    source = resolve_teacher(config.teacher.model)
    try:
        teacher_config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise XDistilError(f"teacher '{config.teacher.model}': could not load a model (its config: {str(err).splitlines()[0]})") from None
    layers = getattr(teacher_config, "num_hidden_layers", None)
    if layers is not None:
        if config.teacher.layer is not None and not 0 <= config.teacher.layer <= layers:
            raise XDistilError(f"teacher.layer: {config.teacher.layer} is out of range; the teacher's hidden states are 0-{layers}")
        for settings in config.distill.loss_settings().values():
            try:
                settings.check_teacher(layers)
            except ValueError as err:
                raise XDistilError(f"distill.stages: {err}") from None
    family(config.student.arch).preflight(config.student, teacher_config)
    for tracker in config.tracking:
        if not getattr(accelerate_utils, f"is_{tracker}_available")():
            raise XDistilError(f"tracking: {tracker} is not installed (pip install {'wandb' if tracker == 'wandb' else repr('xdistil[tracking]')})")
    if config.teacher.source == "file" and not config.teacher.labels.is_file():
        raise XDistilError(f"teacher.labels: {config.teacher.labels}: label file not found")
    if config.teacher.source == "function":
        from xdistil.transfer.labelers import import_function

        import_function(config.teacher.function)
