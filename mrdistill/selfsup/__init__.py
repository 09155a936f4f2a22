"""Self-supervised learning from undersampled k-space only: SSDU splits, re-undersampling masks,
k-space losses and multi-teacher training (REFERENCE.md section 4)."""

from mrdistill.selfsup.losses import (agreement_loss, normalised_l1_l2, reundersampling_loss)
from mrdistill.selfsup.split import reundersample, reundersample_batch, ssdu_split, ssdu_split_batch
from mrdistill.selfsup.teachers import SelfSupervisedObjective, check_selfsup

__all__ = ["SelfSupervisedObjective", "agreement_loss", "check_selfsup", "normalised_l1_l2",
           "reundersample", "reundersample_batch", "reundersampling_loss", "ssdu_split",
           "ssdu_split_batch"]
