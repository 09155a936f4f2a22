"""Every registered KD loss documents itself: the paper, the formula and a YAML snippet that is a
valid stage config building that very loss."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml

from mrdistill.config import StageConfig
from mrdistill.config.parse import from_dict
from mrdistill.distill import build_kd, list_kd
from mrdistill.distill.registry import kd_class


@pytest.mark.parametrize("name", list_kd())
def test_kd_docstring_gives_paper_formula_and_a_working_yaml_snippet(name: str) -> None:
    doc = kd_class(name).__doc__ or ""
    assert re.search(r"^\s*Paper: \S.+\d{4}", doc, flags=re.M | re.S), f"{name}: no 'Paper: ... year'"
    assert re.search(r"^\s*Formula: \S", doc, flags=re.M), f"{name}: no 'Formula:'"
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    assert len(blocks) == 1, f"{name}: one ```yaml snippet expected"
    stage = from_dict(StageConfig, yaml.safe_load(textwrap.dedent(blocks[0])), "stage")
    assert [term.name for term in stage.kd] == [name]
    build_kd(name, **stage.kd[0].kwargs)
