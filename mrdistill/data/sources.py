"""The embedded real corpus: MRI volumes that ship inside installed PyPI packages.

No package ships raw k-space; these magnitude images are turned into k-space by `simulate`. All the
package paths live here, in one table.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass

import numpy as np

from mrdistill.errors import MrdistillError, check_choice


@dataclass(frozen=True)
class EmbeddedSource:
    package: str
    path: str
    slice_axis: int  # axis of the stored array along which 2-D slices are taken
    description: str


SOURCES: dict[str, EmbeddedSource] = {
    "mni": EmbeddedSource(
        "nilearn", "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", 2,
        "ICBM152 2009a T1w template, 197x233x189 at 1 mm (axial slices)"),
    "dipy_s0": EmbeddedSource(
        "dipy", "data/files/S0_10slices.nii.gz", 2,
        "single-subject b0 (T2w EPI), 128x128x10"),
    "nibabel_epi": EmbeddedSource(
        "nibabel", "tests/data/example4d.nii.gz", 2,
        "single-subject brain EPI, 128x96x24 (first time point)"),
}


def load_source(name: str) -> np.ndarray:
    """Load embedded volume `name` as float32 (S, H, W) slices, unnormalised.

    Raises `MrdistillError` if the name is unknown or the package/file is not installed.
    """
    check_choice("embedded source", name, list(SOURCES))
    src = SOURCES[name]
    try:
        import nibabel as nib

        ref = importlib.resources.files(src.package).joinpath(src.path)
        with importlib.resources.as_file(ref) as file:
            if not file.is_file():
                raise FileNotFoundError(file)
            data = np.asarray(nib.load(str(file)).dataobj, dtype=np.float32)
    except ModuleNotFoundError:
        raise MrdistillError(
            f"embedded source {name!r} needs the {src.package} package, which is not installed: "
            f"pip install 'mrdistill[demo]' (or use your own data: data.dataset)") from None
    except FileNotFoundError as exc:
        raise MrdistillError(
            f"embedded source {name!r} needs {src.package} with {src.path} installed ({exc})"
        ) from None
    while data.ndim > 3:  # drop trailing time/volume axes: keep the first
        data = data[..., 0]
    return np.ascontiguousarray(np.moveaxis(data, src.slice_axis, 0))
