"""Data configs: which slices, how they are undersampled, how files are read and prepared."""

from __future__ import annotations

from dataclasses import dataclass

from mrdistill.physics.mask_kinds import MASK_KINDS
from mrdistill.config.checks import (ACCELERATION, BATCH, COILS, Check, FRACTION, LINES, MAX_SIDE, NAME,
                                      NON_NEGATIVE, OPEN_FRACTION, SEED, SIDE, SLICES, WORKERS, checked,
                                      each, integer, number, one_of)

# The mask samplers of `physics.masks.make_mask` (named here so the config and the command line
# parser need no torch).
SPLIT_FRACTIONS = each(FRACTION, length=3)
SLICE_AXIS = one_of(0, 1, 2)


def value_range(check: Check) -> Check:
    """A [low, high] pair, low <= high, each passing `check` (a range a value is drawn from)."""
    pair = each(check, length=2)
    return Check(f"[low, high] with low <= high, {pair.expected[len('a list of 2 items, '):]}",
                 lambda v: pair.ok(v) and v[0] <= v[1])


@dataclass
class AugmentConfig:
    """Training-slice augmentation that matches acquisition (`data.augment`, `data/augment.py`).

    Applied to the ground-truth image of every training slice (labelled and undersampled-only),
    before the k-space is simulated, so masks and data consistency stay exact; drawn afresh every
    epoch from a generator seeded by the run seed, the slice and the epoch. Validation and test
    slices are never augmented. Off by default so recorded tables stay reproducible. Ranges are
    [low, high]; a value is drawn uniformly from each.
    """

    enabled: bool = False
    flip: bool = True  # random left-right and up-down flips (each with probability 1/2)
    rot90: bool = True  # a random multiple of 90 degrees
    # Field-of-view scale: > 1 zooms in on a random window (the anatomy fills, even overfills, the
    # field of view), < 1 shrinks the image into a larger, zero-padded field of view.
    fov_scale: list[float] = checked(factory=lambda: [1.0, 1.0], check=value_range(number(ge=0.25, le=4)))
    intensity: list[float] = checked(factory=lambda: [1.0, 1.0], check=value_range(number(gt=0, le=100)))  # global scale
    # Contrast curve x -> x**gamma on the [0, 1]-normalised image (gamma < 1 lifts dark tissue).
    gamma: list[float] = checked(factory=lambda: [1.0, 1.0], check=value_range(number(ge=0.1, le=10)))
    # A fresh smooth random phase map per slice and epoch (`data.mode: complex` only; in the
    # real-image mode the network sees the real part, which a phase would corrupt).
    phase: bool = False
    # Complex Gaussian k-space noise, std per real/imaginary component relative to an image max
    # of 1 (the orthonormal FFT gives the image the same std); added on top of `data.noise_std`.
    noise_std: list[float] = checked(factory=lambda: [0.0, 0.0], check=value_range(number(ge=0, le=1)))


@dataclass
class MaskConfig:
    """Undersampling pattern (see `physics.masks.make_mask`)."""

    kind: str = checked("kdmri", one_of(*MASK_KINDS))
    acceleration: float = checked(4.0, ACCELERATION)
    center_fraction: float | None = checked(None, OPEN_FRACTION)
    center_lines: int | None = checked(None, LINES)
    path: str | None = None
    # Draw a new training mask for every slice and epoch (validation/test masks stay fixed per volume).
    fresh_train_masks: bool = False


@dataclass
class SuperResConfig:
    """Super-resolution data (`data.superres`): the slice is the high-res target and a
    low-res copy, `scale` times smaller per axis, the input."""

    scale: int = checked(2, integer(ge=2, le=16))
    # "kspace": magnitude of the inverse FFT of the central k-space block (the MRI way);
    # "area": image-domain area averaging over scale x scale pixels.
    downsample: str = checked("kspace", one_of("kspace", "area"))


@dataclass
class FastMRIConfig:
    """fastMRI HDF5 folders (`data.dataset: fastmri`) and how their slices become samples; also
    used by `data.dataset: prepared`. See docs/data.md."""

    challenge: str = checked("singlecoil", one_of("singlecoil", "multicoil"))  # "singlecoil" (reconstruction_esc) or "multicoil" (reconstruction_rss)
    train: str = "{challenge}_train"  # folders, relative to data.path unless absolute
    val: str = "{challenge}_val"
    test: str | None = None  # None: the val folder's volumes are split in two, val and test
    volume_fraction: float = checked(1.0, number(gt=0, le=1))  # use this fraction of each folder's volumes (evenly spaced)
    coil_mode: str = checked("combine", one_of("combine", "multi"))  # multi-coil: "combine" (one virtual coil) or "multi" (coils + smaps)
    normalize: bool = True  # divide k-space and targets by the volume max (outputs are scaled back)
    skip_bad: bool = False  # leave out unreadable files instead of stopping
    cache_dir: str | None = None  # metadata cache (None: ~/.cache/mrdistill; "" switches it off)
    # Seconds one file's metadata may take to read (in a worker process); a file over it is
    # unreadable (a damaged HDF5 file can keep the HDF5 library busy for minutes).
    metadata_time_limit: float = checked(30.0, number(gt=0))


@dataclass
class MeasuredConfig:
    """How `data.dataset: measured` splits the measured k-space of `prepare --from measured`:
    pyqmri's 10 flip angles (its "slices", one contrast each) by index, so whole contrasts are
    held out; twix_gre (one phantom slice) goes to test. See docs/data.md, "Measured k-space"."""

    val: list[int] = checked(factory=lambda: [4], check=each(integer(ge=0, le=9)))
    test: list[int] = checked(factory=lambda: [0, 9], check=each(integer(ge=0, le=9)))
    phantom: bool = True  # add the twix phantom slice to the test split


@dataclass
class PrepareConfig:
    """How `mrdistill prepare` turns image volumes into a k-space slice data set (all of it is
    recorded in the data set's prepare.json)."""

    mode: str = checked("real", one_of("real", "complex"))  # "real" (k-space of the real image) or "complex" (smooth synthetic phase)
    coils: int = checked(1, COILS)  # > 1: simulated coil maps, multi-coil k-space and RSS targets (mode complex)
    noise_std: float = checked(0.0, NON_NEGATIVE)  # complex Gaussian k-space noise std per component (image max 1)
    size: int | None = checked(None, SIDE)  # square in-plane size (zero-pad to square, then resize); None: native
    split_by: str = checked("slab", one_of("slab", "volume"))  # "slab" (contiguous slabs of every volume) or "volume" (whole volumes)
    slab: int = checked(8, SLICES)  # slices per slab with split_by "slab"
    split_fractions: list[float] = checked(factory=lambda: [0.7, 0.15, 0.15], check=SPLIT_FRACTIONS)
    min_foreground: float = checked(0.15, FRACTION)  # drop slices whose foreground fraction is below this
    slice_axis: int = checked(2, SLICE_AXIS)  # NIfTI array axis along which slices are taken
    seed: int = checked(0, SEED)  # seeds the synthetic phase and noise (with the volume name and slice)


@dataclass
class PredictConfig:
    """How `mrdistill predict` undersamples fully sampled inputs and reads them. Files with a
    stored mask (fastMRI test files) are used as acquired; others get `mask`, seeded per volume.
    `None` means "as the checkpoint's model was trained" (its recorded `data` config)."""

    mask: MaskConfig | None = None
    # For checkpoints that record no data config (written before 2026-12): fastMRI's sampler.
    fallback_mask: MaskConfig = checked(factory=lambda: MaskConfig(kind="random"))
    coil_mode: str | None = checked(None, one_of("combine", "multi"))  # multi-coil fastMRI input: as `FastMRIConfig.coil_mode`
    normalize: bool | None = None  # as `FastMRIConfig.normalize` (outputs are scaled back)
    slice_axis: int = checked(2, SLICE_AXIS)  # NIfTI array axis along which slices are taken
    batch_size: int = checked(8, BATCH)
    device: str = "cpu"
    # On CPU, DC-CNN checkpoints run on the fast inference path (`optimise_for_inference`): the same
    # images up to float32 rounding (~1e-6 relative), 4-6x faster than eager at 256^2
    # (benchmarks/results/inference.md).
    fast: bool = True
    # Write the zero-filled input (the magnitude of the inverse FFT of the masked k-space, with the
    # very masks and scaling the model would get) instead of the model's reconstruction: the
    # baseline to score next to the model's predictions.
    zero_filled: bool = False


@dataclass
class DataConfig:
    """Which images, how they become k-space, and how they are split."""

    sources: list[str] = checked(factory=lambda: ["mni"], check=each(NAME, min_length=1))
    image_size: int = checked(128, integer(ge=8, le=MAX_SIDE))
    mode: str = checked("real", one_of("real", "complex"))  # "real" (1-channel real image, KD-MRI) or "complex" (synthetic phase, 2 channels)
    # > 1: simulated receive coils (mode complex): multi-coil k-space (C, H, W), RSS targets.
    coils: int = checked(1, COILS)
    noise_std: float = checked(0.0, NON_NEGATIVE)  # complex Gaussian noise std in k-space, relative to an image max of 1
    min_foreground: float = checked(0.15, FRACTION)  # drop slices whose foreground fraction is below this
    slab: int = checked(8, SLICES)  # slices per slab when splitting a volume into train/val/test slabs
    split_fractions: list[float] = checked(factory=lambda: [0.7, 0.15, 0.15], check=SPLIT_FRACTIONS)
    max_train_slices: int | None = checked(None, SLICES)
    max_eval_slices: int | None = checked(None, SLICES)
    # Semi-supervised setting: only this many training slices (evenly spaced) keep their fully
    # sampled target; the other training slices are undersampled-only (target None). Supervised
    # runs use the labelled ones; a distilled student also learns from the rest through the teacher.
    labeled_train_slices: int | None = checked(None, SLICES)
    mask: MaskConfig = checked(factory=MaskConfig)
    augment: AugmentConfig = checked(factory=AugmentConfig)  # training-slice augmentation (off by default)
    # Where slices come from: "embedded" (the corpus of `sources`), "fastmri" (HDF5 folders under
    # `path`, see `fastmri`), "prepared" (a folder written by `mrdistill prepare`) or "measured"
    # (real raw k-space from `prepare --from measured`; `path` defaults to mrdistill's cache).
    dataset: str = checked("embedded", one_of("embedded", "fastmri", "prepared", "measured"))
    path: str | None = None
    fastmri: FastMRIConfig = checked(factory=FastMRIConfig)
    measured: MeasuredConfig = checked(factory=MeasuredConfig)
    # Coil sensitivities of multi-coil files: "ratio" (calibration region / its RSS, no
    # dependency) or "espirit" (sigpy's ESPIRiT, ~20 s per 13-coil 224^2 slice on one core;
    # kept per slice once computed). See data/coils.py.
    coil_maps: str = checked("ratio", one_of("ratio", "espirit"))
    superres: SuperResConfig | None = None  # super-resolution instead of reconstruction when set
    # Training-batch loading processes (0: in the training process). Results do not depend on it:
    # every sample is seeded by itself, and workers are seeded from the run seed.
    num_workers: int = checked(0, WORKERS)
    persistent_workers: bool = True  # keep the workers alive between epochs (num_workers > 0)
    pin_memory: bool = True  # page-locked batches when training on CUDA (ignored elsewhere)
