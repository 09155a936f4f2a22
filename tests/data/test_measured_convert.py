"""Conversion of measured k-space layouts to fastMRI's (a pyqmri-shaped HDF5 file, twix-shaped
readouts, and real twix files written by twixtools and read back through `read_twix`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import twixtools

from mrdistill.data.measured_convert import (TwixReadout, check_kspace, estimate_noise_std,
                                             pyqmri_kspace, read_pyqmri, read_twix,
                                             remove_readout_oversampling, twix_kspace)
from mrdistill.errors import MrdistillError
from mrdistill.physics.fft import fft2c, ifft2c
from tests.data.measured_fixtures import torch_rss, twix_readouts, write_pyqmri_h5, write_twix_file


def test_pyqmri_origin_at_corner_becomes_centred_kspace_of_the_same_image(tmp_path):
    images = write_pyqmri_h5(tmp_path / "vfa.h5", contrasts=10, coils=3, h=24, w=20)
    conv, maps = read_pyqmri(tmp_path / "vfa.h5")
    assert conv.kspace.shape == (10, 3, 24, 20) and conv.kspace.dtype == np.complex64
    assert maps.shape == (3, 24, 20) and maps.dtype == np.complex64
    back = ifft2c(torch.from_numpy(conv.kspace)).numpy()
    np.testing.assert_allclose(back, images, atol=1e-5)
    # centred: reading it with the origin at [0, 0] would give another (wrapped) image
    assert not np.allclose(np.fft.ifft2(conv.kspace, norm="ortho"), images, atol=1e-3)
    np.testing.assert_allclose(conv.target, torch_rss(images), atol=1e-5)
    assert conv.fov_mm is None and conv.noise_std.shape == (3,)


def test_pyqmri_wrong_shapes_are_refused():
    with pytest.raises(MrdistillError, match=r"\(contrasts, coils, 1, H, W\)"):
        pyqmri_kspace(np.zeros((2, 3, 4, 5)), np.zeros((2, 3, 4, 5)))


def test_zero_coils_are_refused_with_one_line():
    with pytest.raises(MrdistillError, match="at least one coil") as err:
        pyqmri_kspace(np.zeros((10, 0, 1, 8, 8), np.float32), np.zeros((10, 0, 1, 8, 8), np.float32), "vfa.h5")
    assert "\n" not in str(err.value) and "vfa.h5" in str(err.value)
    with pytest.raises(MrdistillError, match="at least one coil"):
        twix_kspace([TwixReadout(0, 0, np.zeros((0, 8), np.complex64))], 4, 2, 2.0, None)
    with pytest.raises(MrdistillError, match="NaN or Inf"):
        check_kspace(np.full((1, 1, 2, 2), np.nan, np.complex64), "x")


def test_twix_readouts_become_centred_kspace_without_oversampling():
    readouts, images = twix_readouts(coils=2, lines=16, columns=40, center_line=8)
    conv = twix_kspace(readouts, num_lines=16, center_line=8, oversampling=2.0, fov_mm=(200.0, 200.0, 4.0))
    assert conv.kspace.shape == (1, 2, 20, 16)
    # the central half of the readout FOV, where the object is, is kept exactly
    back = ifft2c(torch.from_numpy(conv.kspace)).numpy()
    np.testing.assert_allclose(back, images[:, :, 10:30], atol=1e-5)
    assert conv.fov_mm == (200.0, 200.0, 4.0)


def test_twix_lines_are_placed_by_the_centre_line_and_repeats_averaged():
    readouts, images = twix_readouts(coils=1, lines=8, columns=16, center_line=3)
    doubled = readouts + [TwixReadout(r.slice, r.line, r.data) for r in readouts]
    a = twix_kspace(readouts, 8, 3, 1.0, None).kspace
    b = twix_kspace(doubled, 8, 3, 1.0, None).kspace
    np.testing.assert_allclose(a, b, atol=1e-7)
    np.testing.assert_allclose(ifft2c(torch.from_numpy(a)).numpy(), images, atol=1e-5)
    with pytest.raises(MrdistillError, match="outside the 8 phase encodes"):
        twix_kspace([TwixReadout(0, 20, readouts[0].data)], 8, 3, 1.0, None)


def test_twix_without_image_data_is_one_line():
    with pytest.raises(MrdistillError, match="gre.dat: no image data") as err:
        twix_kspace([], 16, 8, 2.0, None, "gre.dat")
    assert "\n" not in str(err.value)


def test_the_twix_fixture_is_a_file_twixtools_reads_in_full(tmp_path):
    readouts, _ = twix_readouts(coils=2, lines=16, columns=40, center_line=8)
    noise = np.full((2, 40), 0.5 + 0.25j, np.complex64)
    path = write_twix_file(tmp_path / "gre.dat", readouts, num_lines=16, center_line=8, noise=noise)
    # twixtools' defaults: protocol, PMU and slice geometry parsed from the header and the MDHs
    meas = twixtools.read_twix(str(path), verbose=False)[-1]
    assert meas["hdr"]["MeasYaps"]["sKSpace"]["lPhaseEncodingLines"] == 16
    assert meas["hdr"]["Meas"]["flReadoutOSFactor"] == 2.0 and meas["geometry"][0].voxelsize == [10.0, 12.5, 4.0]
    assert [m.is_image_scan() for m in meas["mdb"]] == [False] + [True] * 16
    assert [int(m.cLin) for m in meas["mdb"][1:]] == list(range(16))
    assert [int(c.ChannelId) for c in meas["mdb"][1].channel_hdr] == [0, 1]
    twix = twixtools.map_twix(str(path), verbose=False)[-1]
    image, scan = twix["image"], twix["noise"]
    image.flags["remove_os"] = False
    assert image.non_singleton_dims == ["Lin", "Cha", "Col"]
    np.testing.assert_array_equal(np.squeeze(image[:]), np.stack([r.data for r in readouts]))
    np.testing.assert_array_equal(np.squeeze(scan[:]), noise)


@pytest.mark.parametrize("center_line, oversampling", [(8, 2.0), (4, 2.0), (8, 1.0)])
def test_twix_file_round_trip_through_twixtools(tmp_path, center_line, oversampling):
    # centre line 4 of 16: a partial-Fourier scan, counters 0..11 hold k-space columns 4..15
    readouts, images = twix_readouts(coils=2, lines=16, columns=40, center_line=center_line)
    acquired = [r for r in readouts if r.line >= 0]
    path = write_twix_file(tmp_path / "gre.dat", acquired, num_lines=16, center_line=center_line,
                           oversampling=oversampling, fov_mm=(220.0, 200.0, 3.5))
    conv = read_twix(path)
    full = fft2c(torch.from_numpy(images)).numpy()
    full[..., :len(readouts) - len(acquired)] = 0  # the lines the scan skipped
    expected = remove_readout_oversampling(full, oversampling)
    assert conv.kspace.shape == (1, 2, round(40 / oversampling), 16) and conv.kspace.dtype == np.complex64
    np.testing.assert_allclose(conv.kspace, expected, atol=1e-5)
    # the samples in the file are the readouts, bit for bit
    same = twix_kspace(acquired, 16, center_line, oversampling, (220.0, 200.0, 3.5))
    np.testing.assert_array_equal(conv.kspace, same.kspace)
    assert conv.fov_mm == (220.0, 200.0, 3.5) and conv.noise_std.shape == (2,)
    if center_line == 8 and oversampling == 2.0:  # the object in the middle half of the readout FOV
        np.testing.assert_allclose(ifft2c(torch.from_numpy(conv.kspace)).numpy(), images[:, :, 10:30], atol=1e-5)


@pytest.mark.parametrize("noise", [True, False])
def test_twix_file_without_imaging_scans_is_no_image_data(tmp_path, capsys, noise):
    rng = np.random.default_rng(0)
    scan = (rng.normal(size=(2, 40)) + 1j * rng.normal(size=(2, 40))).astype(np.complex64) if noise else None
    path = write_twix_file(tmp_path / "gre.dat", [], num_lines=16, center_line=8, noise=scan)
    with pytest.raises(MrdistillError, match="gre.dat: no image data") as err:
        read_twix(path)
    assert "\n" not in str(err.value) and capsys.readouterr().out == ""


def test_damaged_twix_file_is_one_clear_line(tmp_path, capsys):
    readouts, _ = twix_readouts(coils=2, lines=16, columns=40, center_line=8)
    path = write_twix_file(tmp_path / "gre.dat", readouts, num_lines=16, center_line=8)
    good = path.read_bytes()
    entry = twixtools.read_twix(str(path), parse_prot=False, parse_data=False, verbose=False)[0]["raidfile_hdr"]
    start, end = int(entry["off_"]), int(entry["off_"] + entry["len_"])
    assert start == 10240 and end <= len(good)  # the raid-file header, then the one measurement
    cut = tmp_path / "cut.dat"
    for size in (end - 100, (start + end) // 2, start + 100):  # in ACQEND, in the readouts, in the header
        cut.write_bytes(good[:size])
        with pytest.raises(MrdistillError, match=rf"cut.dat: truncated twix file \({size} bytes, but its "
                                                 rf"measurement data end at byte {end};") as err:
            read_twix(cut)
        assert "\n" not in str(err.value)
    for junk in (b"twix stand-in", good[:5000]):  # not a twix file; its raid-file header cut
        cut.write_bytes(junk)
        with pytest.raises(MrdistillError, match="cut.dat: not a readable twix file") as err:
            read_twix(cut)
        assert "\n" not in str(err.value)
    assert capsys.readouterr().out == ""


def test_oversampling_removal_crops_the_image_readout():
    rng = np.random.default_rng(0)
    image = (rng.normal(size=(1, 1, 12, 6)) + 1j * rng.normal(size=(1, 1, 12, 6))).astype(np.complex64)
    k = fft2c(torch.from_numpy(image)).numpy()
    out = remove_readout_oversampling(k, 2.0)
    np.testing.assert_allclose(ifft2c(torch.from_numpy(out)).numpy(), image[:, :, 3:9], atol=1e-5)
    assert remove_readout_oversampling(k, 1.0) is k


def test_noise_std_is_estimated_per_coil_from_the_corners():
    rng = np.random.default_rng(1)
    sigma = np.array([0.01, 0.03])
    yy, xx = np.mgrid[-32:32, -32:32]
    blob = np.exp(-(xx**2 + yy**2) / (2 * 8.0**2))  # smooth signal: its k-space is central
    images = np.broadcast_to(blob, (2, 2, 64, 64)).astype(np.complex64)
    k = fft2c(torch.from_numpy(images)).numpy()
    noise = rng.normal(size=(2, 2, 2, 64, 64)) * sigma[None, None, :, None, None]
    k = k + (noise[0] + 1j * noise[1])
    est = estimate_noise_std(k)
    np.testing.assert_allclose(est, sigma, rtol=0.1)
