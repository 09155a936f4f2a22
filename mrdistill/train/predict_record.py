"""predict.json: which outputs of a `predict` run are complete, so a killed run can continue.

Every output is written atomically (it exists complete or not at all), and after each one
predict.json is rewritten (atomically) with `"finished": false` and the outputs complete so far;
the final version, `"finished": true` with the skipped inputs, is the last file the run writes.
Running the same predict again (same checkpoint file, options and inputs) into a folder whose
predict.json is unfinished continues: complete outputs are kept and skipped, the rest is done.

Format "mrdistill.predict/1": {format, finished, checkpoint, checkpoint_stamp [size, mtime_ns],
options, inputs, torch, mask_source, notes, written [output paths], outputs [{output, input}],
skipped [{path, problem}]}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrdistill.atomic import atomic_write_text

RECORD = "predict.json"
RECORD_FORMAT = "mrdistill.predict/1"
_RUN_KEYS = ("checkpoint", "checkpoint_stamp", "options", "inputs", "torch")


def run_identity(checkpoint: str | Path, options: dict[str, Any], inputs: list[str],
                 torch_version: str) -> dict[str, Any]:
    """What must be equal for a re-run to continue an unfinished one (JSON-normalised)."""
    stat = Path(checkpoint).stat()
    doc = {"checkpoint": str(checkpoint), "checkpoint_stamp": [stat.st_size, stat.st_mtime_ns],
           "options": options, "inputs": inputs, "torch": torch_version}
    return json.loads(json.dumps(doc))


@dataclass
class PredictRecord:
    """The record of one predict run in `out` (see the module docstring)."""

    out: Path
    identity: dict[str, Any]
    outputs: dict[str, str] = field(default_factory=dict)  # output (relative to out) -> input
    details: dict[str, Any] = field(default_factory=dict)  # more to record (not compared on resume)

    def is_complete(self, output: Path) -> bool:
        """Whether `output` was completed by this run (or the run it continues) and still exists."""
        return self._key(output) in self.outputs and output.exists()

    def begin(self) -> None:
        """The first predict.json (no outputs yet): a run killed at once can still be continued."""
        self._write(finished=False, skipped=[])

    def mark_complete(self, output: Path, source: str | Path) -> None:
        self.outputs[self._key(output)] = str(source)
        self._write(finished=False, skipped=[])

    def finish(self, skipped: list[tuple[str, str]]) -> None:
        """The final predict.json: the last file the run writes."""
        self._write(finished=True, skipped=[{"path": p, "problem": m} for p, m in skipped])

    def _key(self, output: Path) -> str:
        return output.relative_to(self.out).as_posix()

    def _write(self, finished: bool, skipped: list[dict[str, str]]) -> None:
        doc = {"format": RECORD_FORMAT, "finished": finished, **self.identity, **self.details,
               "written": [str(self.out / k) for k in self.outputs],
               "outputs": [{"output": k, "input": v} for k, v in self.outputs.items()],
               "skipped": skipped}
        atomic_write_text(self.out / RECORD, json.dumps(doc, indent=2) + "\n")


def unfinished_record(out: Path, identity: dict[str, Any]) -> PredictRecord | None:
    """The record of an unfinished run of the same predict in `out`, to continue; None when
    there is none (no predict.json, a finished one, another checkpoint/options/inputs, or an
    unreadable one)."""
    try:
        doc = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT or doc.get("finished") is not False
            or any(doc.get(k) != identity[k] for k in _RUN_KEYS)):
        return None
    entries = doc.get("outputs")
    if not isinstance(entries, list):
        return None
    outputs = {e["output"]: e["input"] for e in entries
               if isinstance(e, dict) and isinstance(e.get("output"), str) and isinstance(e.get("input"), str)}
    return PredictRecord(out, identity, outputs)
