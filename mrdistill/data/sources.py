"""The embedded corpus: real MR images that ship inside PyPI packages, in one table.

No package ships raw k-space here; these magnitude images are turned into k-space by `simulate`.
Every source names the package (and the pip distribution that installs it), the file inside it,
what the image is, its contrast, size and licence: docs/data.md lists them. Files are read with the
readers `mrdistill prepare` uses (`volumes.read_volume`: NIfTI, NPY, DICOM).

`SOURCES` are the volumes training may draw from (`data.sources`); `HELDOUT` names the images kept
out of every training recipe for testing models beyond the template (`benchmarks/heldout_real.py`,
docs/data.md "Held-out real images"): images that fill their field of view, other anatomy, other
contrasts and scanners.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from dataclasses import dataclass

import numpy as np

from mrdistill.data.volumes import find_inputs, read_volume
from mrdistill.errors import MrdistillError, check_choice


@dataclass(frozen=True)
class EmbeddedSource:
    package: str  # the importable package whose files hold the image
    path: str  # the file, relative to the package folder
    slice_axis: int  # NIfTI array axis along which 2-D slices are taken (other formats: slices first)
    description: str
    contrast: str = ""
    licence: str = ""
    distribution: str = ""  # the pip name, when it differs from `package`
    extra: str = "demo"  # the mrdistill extra that installs it

    def install_hint(self) -> str:
        return f"pip install 'mrdistill[{self.extra}]'"

    def installed(self) -> bool:
        """Whether the package holding the image is importable (its file is checked on loading)."""
        return importlib.util.find_spec(self.package) is not None


SOURCES: dict[str, EmbeddedSource] = {
    "mni": EmbeddedSource(
        "nilearn", "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", 2,
        "ICBM152 2009a T1w template, 197x233x189 at 1 mm (axial slices)",
        "T1w (average of 152 brains)", "nilearn BSD-3-Clause; template (c) McConnell Brain Imaging "
        "Centre, free use with its copyright notice"),
    "dipy_s0": EmbeddedSource(
        "dipy", "data/files/S0_10slices.nii.gz", 2,
        "single-subject b0 (T2w EPI), 128x128x10", "T2w (b=0 EPI)", "dipy BSD-3-Clause"),
    "nibabel_epi": EmbeddedSource(
        "nibabel", "tests/data/example4d.nii.gz", 2,
        "single-subject brain EPI, 128x96x24 (first time point)", "T2*w (fMRI EPI)", "nibabel MIT"),
    "dipy_aniso": EmbeddedSource(
        "dipy", "data/files/aniso_vox.nii.gz", 2,
        "single-subject axial b0, 58x58x24 at 4x4x5 mm (dipy's reslicing example)", "T2w (b=0 EPI)",
        "dipy BSD-3-Clause"),
    "dipy_piesno": EmbeddedSource(
        "dipy", "data/files/test_piesno.nii.gz", 2,
        "single-subject axial diffusion-weighted EPI, 96x96x14, brain filling the field of view "
        "(dipy's noise-estimation example)", "diffusion-weighted EPI", "dipy BSD-3-Clause"),
    "nibabel_anat": EmbeddedSource(
        "nibabel", "tests/data/anatomical.nii", 2,
        "single-subject T1w brain, 33x41x25 at 2 mm, filling the field of view", "T1w",
        "nibabel MIT"),
    # ---- held out (HELDOUT): never in a recorded training recipe
    "abdomen_t1_gre": EmbeddedSource(
        "pydicom", "data/test_files/examples_overlay.dcm", 2,
        "axial abdomen (liver, kidneys), Siemens 1.5 T 3-D spoiled GRE, fat-saturated VIBE "
        "(TE 2.8 ms, TR 5.5 ms), 300x484 at 0.72 mm, filling the field of view left to right",
        "T1w GRE, fat-saturated", "pydicom MIT (pydicom's test files)"),
    "small_t2_se": EmbeddedSource(
        "pydicom", "data/test_files/MR_small.dcm", 2,
        "Toshiba spin echo (TE 240 ms, TR 4000 ms), 64x64 at 0.31 mm, anatomy filling the field "
        "of view", "heavily T2w SE", "pydicom MIT (pydicom's test files)"),
    "brain_t1_coronal": EmbeddedSource(
        "dipy", "data/files/t1_coronal_slice.npy", 2,
        "one coronal slice of a single subject's T1w brain, 256x256", "T1w (coronal)",
        "dipy BSD-3-Clause"),
    "shoulder_t1_se": EmbeddedSource(
        "data_store", "data/MR2_UNCR.dcm", 2,
        "shoulder, Philips 1.5 T spin echo (TE 27 ms, TR 350 ms), 1024x1024 at 0.2 mm, filling "
        "the field of view", "T1w SE", "pydicom-data MIT (pydicom's larger test files)",
        distribution="pydicom-data", extra="heldout"),
    "head_t1_3t": EmbeddedSource(
        "data_store", "data/emri_small.dcm", 2,
        "head, 3 T, 10 frames of 64x64, anatomy filling the field of view", "T1w",
        "pydicom-data MIT (pydicom's larger test files)", distribution="pydicom-data",
        extra="heldout"),
}

HELDOUT: tuple[str, ...] = ("abdomen_t1_gre", "small_t2_se", "brain_t1_coronal", "shoulder_t1_se",
                            "head_t1_3t")

# The template plus real single-subject volumes of other contrasts, several filling their field of
# view: what the demo trains on. Trained on the template alone, the demo's models lost to
# zero-filled on 3 of the 5 held-out images; trained on these, no teacher or distilled student
# does, over three seeds (docs/demo.md).
BROAD: tuple[str, ...] = ("mni", "dipy_s0", "nibabel_epi", "dipy_aniso", "dipy_piesno", "nibabel_anat")


def load_source(name: str) -> np.ndarray:
    """Load embedded volume `name` as float32 (S, H, W) slices, unnormalised.

    Raises `MrdistillError` if the name is unknown or the package/file is not installed.
    """
    check_choice("embedded source", name, list(SOURCES))
    src = SOURCES[name]
    try:
        ref = importlib.resources.files(src.package).joinpath(src.path)
        with importlib.resources.as_file(ref) as file:
            if not file.is_file():
                raise FileNotFoundError(file)
            volume = read_volume(find_inputs(file)[0], src.slice_axis)
    except ModuleNotFoundError:
        raise MrdistillError(
            f"embedded source {name!r} needs the {src.distribution or src.package} package, which "
            f"is not installed: {src.install_hint()} (or use your own data: data.dataset)") from None
    except FileNotFoundError as exc:
        raise MrdistillError(
            f"embedded source {name!r} needs {src.distribution or src.package} with {src.path} "
            f"installed ({exc})") from None
    return np.ascontiguousarray(volume.data)
