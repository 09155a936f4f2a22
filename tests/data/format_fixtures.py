"""Tiny files in the REAL formats, for the data, predict and prepare tests.

fastMRI HDF5 (keys, attributes and an ismrmrd header as fastMRI writes them, single- and
multi-coil, train-style with targets or test-style with a stored mask), NIfTI, a DICOM series and
a PNG folder. Every generator is seeded and small (16-48 px).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import h5py
import numpy as np
import torch

from mrdistill.data.coils import rss, simulate_coil_maps
from mrdistill.data.crop import center_crop
from mrdistill.data.fastmri_io import ismrmrd_header_xml
from mrdistill.physics.fft import fft2c, ifft2c
from mrdistill.physics.masks import make_mask


def phantom(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """float32 (n, h, w) in [0, 1]: a bright ellipse with smaller inner ellipses, varying by slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    out = np.zeros((n, h, w), dtype=np.float32)
    for s in range(n):
        img = 0.6 * ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 < 1)
        for _ in range(3):
            cx, cy, r = rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(0.1, 0.3)
            img = img + rng.uniform(0.1, 0.4) * ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)
        out[s] = img
    return out / out.max()


def write_fastmri_volume(path: Path, *, slices: int = 3, coils: int = 0, height: int = 32,
                         width: int = 24, recon: tuple[int, int] = (16, 16),
                         padding: tuple[int, int] | None = None, test_acceleration: float | None = None,
                         seed: int = 0, scale: float = 1e-4, both_targets: bool = False) -> Path:
    """A fastMRI-layout file: kspace complex64 (S, H, W) or (S, C, H, W), the challenge's target
    (centre crop `recon` of |image| or RSS) unless test-style, ismrmrd header, attributes.

    padding: acquired phase-encode columns [left, right); the others are zero in k-space and the
    header's encoding limits say so. test_acceleration: write a test file (undersampled k-space, a
    stored 1-D mask, attribute `acceleration`, no target). `scale` mimics fastMRI's tiny values.
    """
    images = torch.from_numpy(phantom(slices, height, width, seed)).to(torch.complex64) * scale
    phase = torch.polar(torch.ones(height, width), torch.linspace(0, 1.5, width).expand(height, width))
    images = images * phase
    if coils:
        kspace = fft2c(simulate_coil_maps(coils, (height, width))[None] * images[:, None])
    else:
        kspace = fft2c(images)
    left, right = padding or (0, width)
    kspace[..., :left] = 0
    kspace[..., right:] = 0
    full = ifft2c(kspace)
    magnitude = rss(full, dim=1) if coils else full.abs()
    target = center_crop(magnitude, recon).numpy().astype(np.float32)
    header = ismrmrd_header_xml((height, width), recon, pe_center=width // 2 - left, pe_maximum=right - left - 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if test_acceleration:
            mask = make_mask("random", (height, width), test_acceleration, seed=seed)[0, 0].numpy() > 0
            f.create_dataset("kspace", data=(kspace * torch.from_numpy(mask.astype(np.float32))).numpy())
            f.create_dataset("mask", data=mask)
            f.attrs["acceleration"] = int(test_acceleration)
        else:
            f.create_dataset("kspace", data=kspace.numpy().astype(np.complex64))
            key = "reconstruction_rss" if coils else "reconstruction_esc"
            f.create_dataset(key, data=target)
            if both_targets and not coils:  # fastMRI single-coil files also carry an RSS target
                f.create_dataset("reconstruction_rss", data=target * 1.01)
            f.attrs["max"] = float(target.max())
            f.attrs["norm"] = float(np.linalg.norm(target))
        f.create_dataset("ismrmrd_header", data=header)
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["patient_id"] = f"patient{seed}"
    return path


def write_fastmri_folder(folder: Path, n: int, **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_fastmri_volume(folder / f"file{1000 + i}.h5", seed=i, **kwargs)
    return folder


def write_nifti(path: Path, shape: tuple[int, int, int] = (24, 20, 6), seed: int = 0) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.moveaxis(phantom(shape[2], shape[0], shape[1], seed), 0, -1) * 1000
    affine = np.diag([0.9, 0.9, 2.0, 1.0])
    affine[:3, 3] = [-10, -12, 5]
    nib.save(nib.Nifti1Image(data.astype(np.int16), affine), str(path))
    return path


def write_dicom_series(folder: Path, n: int = 5, size: tuple[int, int] = (20, 24), seed: int = 0,
                       odd_size_file: int | None = None) -> Path:
    """n CT-style MR slices with positions along z, written in shuffled file order; one file of
    another size when `odd_size_file` is an index."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    vol = (phantom(n, *size, seed=seed) * 3000).astype(np.uint16)
    series = generate_uid()
    order = np.random.default_rng(seed).permutation(n)
    for k, s in enumerate(order):
        pixels = vol[s]
        if odd_size_file is not None and k == odd_size_file:
            pixels = np.zeros((size[0] + 2, size[1]), dtype=np.uint16) + 5
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.StudyDate = "MR", "Test^Phantom", datetime.date.today().strftime("%Y%m%d")
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series, generate_uid()
        ds.InstanceNumber = int(s) + 1
        ds.ImagePositionPatient = [0.0, 0.0, 3.0 * float(s)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.7], 3.0
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, 0.0
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
    return folder


def write_png_folder(folder: Path, n: int = 4, size: tuple[int, int] = (24, 20), seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    vol = (phantom(n, *size, seed=seed) * 255).astype(np.uint8)
    for s in range(n):
        Image.fromarray(vol[s]).save(folder / f"img{s + 1}.png")  # img1..img4: natural order matters at 10+
    return folder
