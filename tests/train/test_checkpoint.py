"""`train.checkpoint`: a file that cannot be loaded is refused in words (empty, not a checkpoint,
truncated, a refused pickle with torch's reason), never with torch's advice to load unsafely."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import pytest
import torch

from mrdistill.errors import MrdistillError
from mrdistill.models import build_model
from mrdistill.train.checkpoint import load_checkpoint, model_payload, save_checkpoint, weights_only_refusal

KW = {"cascades": 1, "convs": 2, "channels": 4}


class _Code:
    def __reduce__(self):
        return (os.system, ("true",))


def _refused(path) -> str:
    with pytest.raises(MrdistillError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert text.startswith(f"cannot read checkpoint {path}: ") and "weights_only" not in text
    assert "\n" not in text and len(text) < 400
    return text.split(": ", 1)[1]


def test_each_unreadable_file_is_described_in_words(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, model_payload(build_model("dccnn", seed=0, **KW), "dccnn", KW))
    raw = good.read_bytes()
    (tmp_path / "text.pt").write_text("epoch,loss\n1,0.5\n")
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 3])
    (tmp_path / "empty.pt").write_bytes(b"")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # torch.save's layout with code in its pickle
        z.writestr("archive/data.pkl", pickle.dumps({"x": _Code()}, protocol=2))
        z.writestr("archive/version", "3\n")
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    assert _refused(tmp_path / "text.pt") == "not a PyTorch checkpoint (the file starts with text 'epoch,loss 1,0.5')"
    assert _refused(tmp_path / "cut.pt").startswith("the file is truncated or damaged")
    assert _refused(tmp_path / "empty.pt") == "the file is empty"
    assert "(unsupported GLOBAL posix.system)" in _refused(tmp_path / "evil.pt")
    assert load_checkpoint(good)["model_name"] == "dccnn"


def test_the_refusal_reason_is_found_in_torchs_message():
    text = ("Weights only load failed. In PyTorch 2.6, we changed ... Re-running `torch.load` with "
            "`weights_only` set to `False` will likely succeed, but it can result in arbitrary code "
            "execution. Do it only if you got the file from a trusted source.\n\n\nTrying to load "
            "unsupported GLOBAL posix.system whose module posix is blocked.\n\nCheck the documentation "
            "of torch.load to learn more")
    assert weights_only_refusal(text) == "unsupported GLOBAL posix.system"
    older = "Weights only load failed. ... WeightsUnpickler error: Unsupported operand 149\n\nCheck the documentation"
    assert weights_only_refusal(older) == "Unsupported operand 149"
    assert weights_only_refusal("PytorchStreamReader failed") is None
    with pytest.raises(Exception) as info:
        torch.load(io.BytesIO(pickle.dumps(_Code(), protocol=2)), weights_only=True)
    assert weights_only_refusal(str(info.value)) == "unsupported GLOBAL posix.system"
