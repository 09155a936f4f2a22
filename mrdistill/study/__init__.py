"""`mrdistill study`: a grid of KD methods x (ordinary, student-friendly) teachers x accelerations,
reproducing the shape of SFT-KD-Recon's result table. See docs/study.md."""

from mrdistill.study.config import PRESETS, StudyConfig, StudyMethod, load_study_config
from mrdistill.study.runner import StudyResult, run_study

__all__ = ["PRESETS", "StudyConfig", "StudyMethod", "StudyResult", "load_study_config", "run_study"]
