"""Tiny stand-ins for the measured archives: a pyqmri-shaped HDF5 file (k-space origin at [0, 0],
the layout of pyqmri's VFA_cart_smalltest.h5), readouts of a Cartesian scan written as a genuine
VE Siemens twix file by twixtools' own writer, and source-distribution tar.gz archives holding
them under the pinned paths."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import struct
import tarfile
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
import twixtools

from mrdistill.data.coils import simulate_coil_maps
from mrdistill.data import measured
from mrdistill.data.measured import MeasuredArchive
from mrdistill.data.measured_convert import TwixReadout
from tests.data.format_fixtures import phantom


def coil_images(contrasts: int, coils: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """complex64 (contrasts, coils, h, w): phantom x simulated coil maps, one phantom per contrast."""
    maps = simulate_coil_maps(coils, (h, w)).numpy()
    return (phantom(contrasts, h, w, seed)[:, None] * maps[None]).astype(np.complex64)


def write_pyqmri_h5(path: Path, contrasts: int = 10, coils: int = 3, h: int = 24, w: int = 20) -> np.ndarray:
    """A file laid out like pyqmri's VFA file; returns the coil images it encodes."""
    images = coil_images(contrasts, coils, h, w)
    k = np.fft.fft2(images, norm="ortho")[:, :, None]  # origin at [0, 0], as pyqmri stores it
    maps = simulate_coil_maps(coils, (h, w)).numpy()[:, None]
    with h5py.File(path, "w") as f:
        f["real_dat"] = k.real.astype(np.float32)
        f["imag_dat"] = k.imag.astype(np.float32)
        f["Coils"] = maps.astype(np.complex64)
        f.attrs["fa"] = np.linspace(0.02, 0.33, contrasts)
    return images


# ---------------------------------------------------------------- twix


def twix_readouts(coils: int = 2, lines: int = 16, columns: int = 40, center_line: int = 8,
                  seed: int = 0) -> tuple[list[TwixReadout], np.ndarray]:
    """Readouts (line index, complex (coils, columns)) of a fully sampled 2x oversampled scan of
    a phantom in the middle half of the readout FOV; and the coil images of that FOV, complex64
    (1, coils, columns, lines)."""
    image = np.zeros((columns, lines), np.float32)
    image[columns // 4:3 * columns // 4] = phantom(1, columns // 2, lines, seed)[0]
    maps = simulate_coil_maps(coils, (columns, lines)).numpy()
    images = (image[None] * maps).astype(np.complex64)
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    shift = lines // 2 - center_line
    readouts = [TwixReadout(0, col - shift, k[:, :, col]) for col in range(lines)]
    return readouts, images[None]


def _xprot(params: dict[str, str]) -> str:
    """An XProtocol buffer: `params` maps `<ParamKind."name">` to the value text between braces."""
    body = "".join(f'    <{kind}> \n    {{\n      {value} \n    }}\n' for kind, value in params.items())
    return f'<XProtocol> \n{{\n  <Name> "PhoenixMetaProtocol" \n  <ParamMap.""> \n  {{\n{body}  }}\n}}\n'


def twix_header(columns: int, num_lines: int, oversampling: float, fov_mm: tuple[float, float, float],
                meas_uid: int) -> np.ndarray:
    """The measurement header of a VE twix file, bytes `<S1` (what `twixtools.read_twix` returns
    as `hdr_str`): uint32 header length, uint32 buffer count, then per buffer its name, NUL,
    uint32 length and NUL-terminated text (Config, Dicom and Meas in XProtocol, MeasYaps in
    ASCCONV), padded to 32 bytes as the scanner does."""
    readout, phase, thickness = fov_mm
    yaps = "\n".join(f"{k}\t = \t{v}" for k, v in {
        "sKSpace.lBaseResolution": round(columns / oversampling), "sKSpace.lPhaseEncodingLines": num_lines,
        "sKSpace.lPartitions": 1, "sKSpace.ucDimension": "0x2", "sSliceArray.lSize": 1,
        "sSliceArray.asSlice[0].dThickness": thickness, "sSliceArray.asSlice[0].dPhaseFOV": phase,
        "sSliceArray.asSlice[0].dReadoutFOV": readout}.items())
    buffers = {
        "Config": _xprot({'ParamString."chronSliceIndices"': '"0 -1 -1 -1"',
                          'ParamString."SequenceDescription"': '"gre"', 'ParamLong."MeasUID"': str(meas_uid),
                          'ParamString."tPatientName"': '"xxxxxxxx"'}),
        "Dicom": _xprot({'ParamString."SoftwareVersions"': '"syngo MR E11"'}),
        "Meas": _xprot({'ParamDouble."flReadoutOSFactor"': f"<Precision> 6 \n      {oversampling:.6f}",
                        'ParamString."tPatientPosition"': '"HFS"'}),
        "MeasYaps": f"### ASCCONV BEGIN object=MrProtDataImpl@MrProtocolData ###\n{yaps}\n### ASCCONV END ###\n",
    }
    parts = [name.encode() + b"\0" + struct.pack("<I", len(text) + 1) + text.encode() + b"\0"
             for name, text in buffers.items()]
    size = 8 + sum(len(p) for p in parts)
    size += -size % 32
    raw = struct.pack("<II", size, len(parts)) + b"".join(parts)
    return np.frombuffer(raw.ljust(size, b"\0"), dtype="<S1")


def _twix_mdb(data: np.ndarray, flags: Sequence[str], meas_uid: int) -> twixtools.mdb.Mdb_local:
    """One measurement data block: samples complex64 (coils, columns), the given MDH flags, one
    channel header per coil (twixtools' own setter shares one header object between coils)."""
    mdb = twixtools.mdb.Mdb_local(np.asarray(data, np.complex64))
    mdb.mdh.MeasUID = meas_uid
    mdb.mdh.CenterCol = data.shape[1] // 2
    mdb.mdh.SliceData.Quaternion[:] = (1.0, 0.0, 0.0, 0.0)
    for flag in flags:
        mdb.add_flag(flag)
    mdb.channel_hdr = []
    for c in range(data.shape[0]):
        channel = twixtools.mdh_def.Channel_header()
        channel.TypeAndChannelLength = (32 + 8 * data.shape[1]) << 8 | 2  # bytes of header and samples, type 2
        channel.MeasUID, channel.ChannelId = meas_uid, c
        mdb.channel_hdr.append(channel)
    return mdb


def write_twix_file(path: Path, readouts: Sequence[TwixReadout], num_lines: int, center_line: int,
                    oversampling: float = 2.0, fov_mm: tuple[float, float, float] = (200.0, 200.0, 4.0),
                    noise: np.ndarray | None = None) -> Path:
    """A genuine VE Siemens twix file written by twixtools' own writer: one measurement whose
    header records `num_lines`, the oversampling and the field of view; a noise-adjust scan of
    `noise` complex (coils, columns) if given; one imaging MDB per readout (its line and slice
    counters, `center_line`, data complex64 (coils, columns)); and ACQEND."""
    meas_uid = 7
    shapes = [r.data.shape for r in readouts] + ([] if noise is None else [noise.shape])
    columns = shapes[0][1] if shapes else 0
    mdbs = [] if noise is None else [_twix_mdb(noise, ["NOISEADJSCAN"], meas_uid)]
    for i, r in enumerate(readouts):
        flags = ["ONLINE"] + (["FIRSTSCANINSLICE"] if i == 0 else []) + (
            ["LASTSCANINSLICE", "LASTSCANINMEAS", "LASTSCANINCONCAT", "PHASEFFT"] if i == len(readouts) - 1 else [])
        mdb = _twix_mdb(r.data, flags, meas_uid)
        mdb.mdh.Counter.Lin, mdb.mdh.Counter.Sli, mdb.mdh.CenterLin = r.line, r.slice, center_line
        mdbs.append(mdb)
    end = twixtools.mdb.Mdb_local()
    end.add_flag("ACQEND")
    end.mdh.MeasUID = meas_uid
    scan = {"hdr_str": twix_header(columns, num_lines, oversampling, fov_mm, meas_uid), "mdb": mdbs + [end],
            "hdr": {"Config": {"tPatientName": "xxxxxxxx", "SequenceDescription": "gre", "MeasUID": meas_uid}}}
    twixtools.write_twix([scan], str(path), version_is_ve=True)
    return path


def make_archive(folder: Path, spec: MeasuredArchive, files: dict[str, bytes]) -> Path:
    """`<folder>/<spec.filename>`: a tar.gz with `files` (member path -> bytes) under its top folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.filename
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{spec.package}-{spec.version}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def torch_rss(images: np.ndarray) -> np.ndarray:
    """RSS over axis 1 of complex (S, C, H, W) -> float32 (S, H, W)."""
    return torch.from_numpy(images).abs().pow(2).sum(1).sqrt().numpy()


def install_stand_ins(tmp_path: Path, monkeypatch, readouts: Sequence[TwixReadout] | None = None,
                      noise: np.ndarray | None = None, truncate: int | None = None) -> Path:
    """A cache folder whose measured-archives/ holds tar.gz stand-ins pinned by their own hashes:
    a tiny pyqmri-shaped file (10 contrasts, 3 coils, 24 x 20) and a real twix file of
    `readouts` (default: `twix_readouts` of 2 coils, 16 lines, 40 columns, centre line 8; 2x
    oversampling, 200 x 200 mm, 4 mm) and of the noise-adjust scan `noise`, read by twixtools
    like the real one (cut after `truncate` bytes if given). Returns the cache folder."""
    cache = tmp_path / "cache"
    src = tmp_path / "src"
    src.mkdir()
    write_pyqmri_h5(src / "vfa.h5", contrasts=10, coils=3, h=24, w=20)
    if readouts is None:
        readouts, _ = twix_readouts(coils=2, lines=16, columns=40, center_line=8)
    write_twix_file(src / "gre.dat", readouts, num_lines=16, center_line=8, noise=noise)
    pinned = {}
    for key, spec in measured.ARCHIVES.items():
        data = (src / "vfa.h5").read_bytes() if key == "pyqmri" else (src / "gre.dat").read_bytes()[:truncate]
        path = make_archive(cache / "measured-archives", spec, {spec.member: data})
        pinned[key] = dataclasses.replace(spec, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setattr(measured, "ARCHIVES", pinned)
    return cache
