"""Knowledge-distillation losses and objectives; importing this package registers every KD loss."""

from mrdistill.distill import attention, imitation  # noqa: F401  (registers the losses)
from mrdistill.distill.objective import DistillObjective
from mrdistill.distill.registry import build_kd, list_kd, register_kd

__all__ = ["DistillObjective", "build_kd", "list_kd", "register_kd"]
