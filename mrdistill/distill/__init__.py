"""Knowledge-distillation losses and objectives; importing this package registers every KD loss."""

from mrdistill.distill import attention, imitation  # noqa: F401  (registers the losses)
from mrdistill.distill import hetero  # noqa: F401  (registers "hetero_feature")
from mrdistill.distill import correlation, fsp, hint, pkt, relational, similarity  # noqa: F401
from mrdistill.distill.objective import DistillObjective
from mrdistill.distill.registry import build_kd, list_kd, register_kd

__all__ = ["DistillObjective", "build_kd", "list_kd", "register_kd"]
