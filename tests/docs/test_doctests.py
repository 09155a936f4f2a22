"""The runnable examples of the public entry points (build a model, a KD loss, a distillation
objective, `fit`, the accel entries) and of the export page run and give what they show."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["mrdistill.models.registry", "mrdistill.distill.registry", "mrdistill.distill.objective",
           "mrdistill.train.loop", "mrdistill.accel", "mrdistill.data.teacher_data",
           "mrdistill.train.heldout", "mrdistill.data.splits"]
PAGES = ["docs/api/deploy.md"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page: str) -> None:
    result = doctest.testfile(str(ROOT / page), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
