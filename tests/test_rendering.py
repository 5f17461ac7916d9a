"""Server-side rendering (viewer.rendering) against the known pixel values of real files.

Expected values come from the files themselves (read by pydicom's reference native decoder), from the values
pydicom's own test suite documents for its test files (tests/pixels/pixels_reference.py), or from the PS3.3
formulas written out here independently of the implementation.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file
from pydicom.uid import ImplicitVRLittleEndian

import viewer.pixels
from viewer.rendering import Image, ImageCache, RenderError, Spacing, Window, open_image, render, roi_stats

# SC_rgb*.dcm: (row, colour) at column 50, frame 1 (pydicom tests/pixels/pixels_reference.py)
SC_RGB_ROWS = [
    (5, (255, 0, 0)),
    (15, (255, 128, 128)),
    (25, (0, 255, 0)),
    (35, (128, 255, 128)),
    (45, (0, 0, 255)),
    (55, (128, 128, 255)),
    (65, (0, 0, 0)),
    (75, (64, 64, 64)),
    (85, (192, 192, 192)),
    (95, (255, 255, 255)),
]
# MR_small.dcm in every encoding: (row, column slice, stored values) (same source)
MR_SMALL_KNOWN = [
    (0, slice(31, 34), (422, 319, 361)),
    (31, slice(0, 3), (366, 363, 322)),
    (-1, slice(-3, None), (1369, 1129, 862)),
]


def pydicom_file(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    return path


def dataset(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(pydicom_file(name), force=True)


def shown(image: Image, index: int = 0, **options: object) -> np.ndarray:
    """What the browser would show: the rendered PNG decoded by Pillow."""
    return np.asarray(PILImage.open(io.BytesIO(render(image, index, fmt="png", **options))))


def as_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR, written out from the standard (ymin 0, ymax 255)."""
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
    y = np.where(x <= center - 0.5 - (width - 1) / 2, 0, y)
    return np.where(x > center - 0.5 + (width - 1) / 2, 255, y)


def ellipse_mask(shape: tuple[int, int], cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Pixels whose centre (c + 0.5, r + 0.5) lies in the ellipse."""
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ((columns + 0.5 - cx) / rx) ** 2 + ((rows + 0.5 - cy) / ry) ** 2 <= 1


def close(actual: np.ndarray, expected: np.ndarray, tolerance: float) -> bool:
    return bool(np.abs(actual.astype(np.float64) - expected).max() <= tolerance)


# --- decoding and the modality LUT ----------------------------------------------------------------------------


def test_ct_values_are_hounsfield_units_from_the_rescale_attributes() -> None:
    ds = dataset("CT_small.dcm")
    image = open_image(pydicom_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert (image.rows, image.columns, image.frames, image.modality) == (128, 128, 1, "CT")
    assert np.array_equal(image.stored_frame(0), ds.pixel_array)
    assert image.modality_values(0).dtype == np.float32
    assert np.array_equal(image.modality_values(0), hu)


@pytest.mark.parametrize(
    "name", ["MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"]
)
def test_lossless_encodings_decode_to_the_same_stored_values(name: str) -> None:
    frame = open_image(pydicom_file(name)).stored_frame(0)
    for row, columns, values in MR_SMALL_KNOWN:
        assert tuple(frame[row, columns]) == values
    assert np.array_equal(frame, dataset("MR_small.dcm").pixel_array)


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """The frame indexes pydicom is asked to decode from now on, in order."""
    decoded: list[int | None] = []
    real = viewer.pixels.pixel_array

    def spy(ds: pydicom.Dataset, **kwargs: object) -> np.ndarray:
        decoded.append(kwargs.get("index"))  # type: ignore[arg-type]
        return real(ds, **kwargs)

    monkeypatch.setattr(viewer.pixels, "pixel_array", spy)
    return decoded


def test_open_image_from_bytes_equals_from_path() -> None:
    path = pydicom_file("MR_small.dcm")
    assert np.array_equal(open_image(Path(path).read_bytes()).stored_frame(0), open_image(path).stored_frame(0))


def test_a_multiframe_image_decodes_only_the_frame_asked_for_and_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = count_decodes(monkeypatch)
    image = open_image(pydicom_file("emri_small.dcm"))
    assert image.frames == 10
    frame = image.stored_frame(4)
    image.stored_frame(4)
    render(image, 4)
    assert decoded == [4]
    assert tuple(frame[0, 31:34]) == (67, 82, 44)  # frame 5 of emri_small (pydicom's pixel reference)
    assert tuple(frame[-1, -3:]) == (225, 380, 355)


@pytest.mark.parametrize("index", [10, -1])
def test_a_frame_index_out_of_range_is_refused(index: int) -> None:
    with pytest.raises(RenderError, match=rf"frame index {index} is out of range: the image has 10 frame"):
        render(open_image(pydicom_file("emri_small.dcm")), index)


def test_the_modality_lut_sequence_maps_stored_values() -> None:
    ds = dataset("mlut_18.dcm")
    item = ds.ModalityLUTSequence[0]
    entries, first, _ = item.LUTDescriptor
    lut = np.asarray(item.LUTData)
    expected = lut[np.clip(ds.pixel_array.astype(np.int64) - first, 0, entries - 1)]
    assert np.array_equal(open_image(pydicom_file("mlut_18.dcm")).modality_values(0), expected)


# --- VOI: windows, functions, LUTs ------------------------------------------------------------------------------


def test_a_window_renders_per_the_linear_formula_and_a_higher_center_darkens() -> None:
    image = open_image(pydicom_file("CT_small.dcm"))
    hu = image.modality_values(0).astype(np.float64)
    soft = shown(image, window=Window(40, 400))
    assert close(soft, linear_window(hu, 40, 400), 1)
    darker = shown(image, window=Window(140, 400))
    assert (darker <= soft).all() and (darker < soft).any()


@pytest.mark.parametrize("function", ["SIGMOID", "LINEAR_EXACT"])
def test_the_voi_lut_function_of_the_image_is_applied(function: str) -> None:
    ds = dataset("CT_small.dcm")
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40, 400, function
    image = open_image(as_bytes(ds))
    x = image.modality_values(0).astype(np.float64)
    if function == "SIGMOID":  # PS3.3 C.11.2.1.3.1
        expected = 255 / (1 + np.exp(-4 * (x - 40) / 400))
    else:  # PS3.3 C.11.2.1.3.2
        expected = np.clip(((x - 40) / 400 + 0.5) * 255, 0, 255)
    assert close(shown(image), expected, 1)
    assert image.default_window(0) == Window(40, 400)


def test_the_voi_lut_sequence_is_used_when_no_window_is_asked_for() -> None:
    ds = dataset("vlut_04.dcm")
    item = ds.VOILUTSequence[0]
    entries, first, bits = item.LUTDescriptor
    lut = np.asarray(item.LUTData, dtype=np.float64)
    expected = lut[np.clip(ds.pixel_array.astype(np.int64) - first, 0, entries - 1)] * 255 / (2**bits - 1)
    image = open_image(pydicom_file("vlut_04.dcm"))
    assert close(shown(image), expected, 1)
    assert close(shown(image, window=Window(100, 50)), linear_window(ds.pixel_array.astype(np.float64), 100, 50), 1)


def test_the_default_window_comes_from_window_center_and_width() -> None:
    ds = dataset("MR_small.dcm")
    window = open_image(pydicom_file("MR_small.dcm")).default_window(0)
    assert window == Window(float(ds.WindowCenter), float(ds.WindowWidth))


def test_without_a_window_the_default_spans_the_pixel_range_and_shows_contrast() -> None:
    image = open_image(pydicom_file("CT_small.dcm"))
    assert "WindowCenter" not in image.dataset
    hu = image.modality_values(0)
    window = image.default_window(0)
    assert hu.min() <= window.center - window.width / 2 < window.center + window.width / 2 <= hu.max()
    pixels = shown(image)
    assert pixels.min() <= 5 and pixels.max() >= 250
    assert np.unique(pixels).size > 100


def test_monochrome1_is_dark_where_stored_values_are_high_and_invert_flips_it() -> None:
    ds = dataset("6154")  # CR, MONOCHROME1, Rescale Slope 0.684, Window 1600/2800
    image = open_image(pydicom_file("6154"))
    assert image.photometric == "MONOCHROME1"
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.get("RescaleIntercept", 0))
    expected = 255 - linear_window(values, float(ds.WindowCenter), float(ds.WindowWidth))
    pixels = shown(image)
    assert close(pixels, expected, 1)
    order = np.argsort(ds.pixel_array, axis=None, kind="stable")
    assert (np.diff(pixels.ravel()[order].astype(int)) <= 0).all()
    assert pixels.ravel()[order[-1]] < pixels.ravel()[order[0]]
    assert np.array_equal(shown(image, invert=True), 255 - pixels)


def test_invert_flips_a_grayscale_image() -> None:
    image = open_image(pydicom_file("CT_small.dcm"))
    assert np.array_equal(shown(image, invert=True), 255 - shown(image))


# --- colour ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        ("SC_rgb.dcm", 0),
        ("SC_rgb_rle.dcm", 0),
        ("SC_rgb_jpeg_gdcm.dcm", 0),  # JPEG lossless
        ("SC_rgb_16bit.dcm", 0),  # 16 bits per sample shown as 8
        ("SC_rgb_32bit.dcm", 0),
        ("SC_ybr_full_uncompressed.dcm", 5),  # 8-bit YBR_FULL round trip: pydicom documents (0, 255, 5) for green
        ("SC_ybr_full_422_uncompressed.dcm", 5),
        ("SC_rgb_jpeg_dcmtk.dcm", 8),  # YBR_FULL, JPEG baseline: lossy
    ],
)
def test_colour_images_show_their_known_colours(name: str, tolerance: int) -> None:
    pixels = shown(open_image(pydicom_file(name)))
    assert pixels.shape == (100, 100, 3)
    for row, colour in SC_RGB_ROWS:
        assert close(pixels[row, 50], np.array(colour), tolerance), (row, pixels[row, 50], colour)


def test_the_second_frame_of_a_two_frame_rgb_image_is_the_inverse() -> None:
    image = open_image(pydicom_file("SC_rgb_2frame.dcm"))
    first, second = shown(image, 0), shown(image, 1)
    assert tuple(first[5, 50]) == (255, 0, 0)
    assert tuple(second[5, 50]) == (0, 255, 255)
    assert tuple(second[75, 50]) == (191, 191, 191)


def test_palette_colour_goes_through_its_lookup_tables() -> None:
    ds = dataset("OT-PAL-8-face.dcm")
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian  # it has no File Meta; pydicom's README says so
    stored = ds.pixel_array.astype(np.int64)
    expected = []
    for colour in ("Red", "Green", "Blue"):
        entries, first, bits = getattr(ds, f"{colour}PaletteColorLookupTableDescriptor")
        lut = np.frombuffer(getattr(ds, f"{colour}PaletteColorLookupTableData"), dtype="<u2").astype(np.float64)
        expected.append(lut[np.clip(stored - first, 0, (entries or 65536) - 1)] * 255 / (2**bits - 1))
    image = open_image(pydicom_file("OT-PAL-8-face.dcm"))
    assert image.photometric == "PALETTE COLOR"
    assert close(shown(image), np.stack(expected, axis=-1), 1)


def test_colour_images_have_no_modality_values() -> None:
    with pytest.raises(RenderError, match="grayscale images only, not RGB"):
        open_image(pydicom_file("SC_rgb.dcm")).modality_values(0)


# --- output: size, format, quality -------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "pillow_format"), [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")])
def test_each_format_is_what_it_says(fmt: str, pillow_format: str) -> None:
    picture = PILImage.open(io.BytesIO(render(open_image(pydicom_file("CT_small.dcm")), size=64, fmt=fmt)))
    assert (picture.format, picture.size) == (pillow_format, (64, 64))


def test_size_bounds_the_longest_side_keeps_the_aspect_ratio_and_never_enlarges() -> None:
    image = open_image(pydicom_file("OT-PAL-8-face.dcm"))  # 640 x 480
    assert PILImage.open(io.BytesIO(render(image, size=100))).size == (100, 75)
    assert PILImage.open(io.BytesIO(render(image, size=5000))).size == (640, 480)


def test_lower_quality_gives_smaller_jpegs() -> None:
    image = open_image(pydicom_file("CT_small.dcm"))
    assert len(render(image, quality=20)) < len(render(image, quality=85)) < len(render(image, quality=100))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fmt": "gif"}, "format 'gif' is not supported"),
        ({"quality": 0}, "quality must be an integer from 1 to 100"),
        ({"quality": 101}, "quality must be an integer from 1 to 100"),
        ({"size": 0}, "size must be a positive integer"),
    ],
)
def test_bad_render_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(open_image(pydicom_file("CT_small.dcm")), **options)  # type: ignore[arg-type]


def test_a_window_needs_a_positive_width() -> None:
    with pytest.raises(RenderError, match="positive width"):
        Window(40, 0)


# --- ROI and spacing ---------------------------------------------------------------------------------------------


def test_roi_figures_are_those_of_the_hounsfield_units_inside_the_ellipse() -> None:
    ds = dataset("CT_small.dcm")
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    inside = hu[ellipse_mask(hu.shape, 64.3, 70.8, 10.5, 6.2)]
    stats = roi_stats(open_image(pydicom_file("CT_small.dcm")), 0, 64.3, 70.8, 10.5, 6.2)
    assert stats.pixels == inside.size > 150
    assert stats.mean == pytest.approx(inside.mean())
    assert stats.sd == pytest.approx(inside.std())
    assert (stats.minimum, stats.maximum) == (inside.min(), inside.max())
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    assert stats.area_mm2 == pytest.approx(inside.size * row_mm * col_mm)
    assert (stats.area_source, stats.unit) == ("PixelSpacing", "HU")


def test_roi_on_mr_has_no_unit_and_an_roi_off_the_image_is_refused() -> None:
    image = open_image(pydicom_file("MR_small.dcm"))
    assert roi_stats(image, 0, 32, 32, 5, 5).unit == ""
    with pytest.raises(RenderError, match="contains no pixel"):
        roi_stats(image, 0, 500, 500, 5, 5)
    with pytest.raises(RenderError, match="positive radii"):
        roi_stats(image, 0, 32, 32, 0, 5)
    with pytest.raises(RenderError, match="finite centre"):
        roi_stats(image, 0, float("nan"), 32, 5, 5)


def test_a_cr_with_only_imager_pixel_spacing_says_so() -> None:
    ds = dataset("6154")
    assert "PixelSpacing" not in ds
    image = open_image(pydicom_file("6154"))
    row_mm, col_mm = (float(v) for v in ds.ImagerPixelSpacing)
    assert image.pixel_spacing() == Spacing(row_mm, col_mm, "ImagerPixelSpacing")
    stats = roi_stats(image, 0, 8, 8, 3, 3)
    assert stats.area_source == "ImagerPixelSpacing"
    assert stats.area_mm2 == pytest.approx(stats.pixels * row_mm * col_mm)


def test_an_image_without_spacing_has_no_area() -> None:
    image = open_image(pydicom_file("emri_small.dcm"))
    assert image.pixel_spacing() is None
    assert roi_stats(image, 0, 32, 32, 4, 4).area_mm2 is None


# --- errors ------------------------------------------------------------------------------------------------------


def test_an_instance_without_pixel_data_is_refused() -> None:
    with pytest.raises(RenderError, match="no pixel data"):
        open_image(pydicom_file("rtplan.dcm"))


def test_bytes_that_are_not_dicom_are_refused() -> None:
    with pytest.raises(RenderError):
        open_image(b"this is not a DICOM file")


def test_an_unsupported_photometric_interpretation_is_named() -> None:
    ds = dataset("CT_small.dcm")
    ds.PhotometricInterpretation = "HSV"
    with pytest.raises(RenderError, match="photometric interpretation 'HSV' is not supported"):
        open_image(as_bytes(ds))


# --- the cache ---------------------------------------------------------------------------------------------------


def test_the_cache_decodes_once_for_many_concurrent_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = count_decodes(monkeypatch)
    cache = ImageCache(64 * 2**20)
    path = pydicom_file("CT_small.dcm")

    def scroll(center: int) -> bytes:
        return render(cache.get("sha256-ct-small", path), window=Window(center, 400))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(scroll, [40, 40, 90] * 8))
    assert decoded == [0]
    assert results[0] == results[1] != results[2]
    assert cache.get("sha256-ct-small", path) is cache.get("sha256-ct-small", path)


def test_the_cache_stays_within_its_budget() -> None:
    mr = Path(pydicom_file("MR_small.dcm"))
    cache = ImageCache(max_bytes=3 * mr.stat().st_size)
    first = cache.get("a", mr)
    first.stored_frame(0)
    for key in "bcdef":
        cache.get(key, mr).stored_frame(0)
    assert cache.nbytes <= cache.max_bytes
    assert cache.get("a", mr) is not first


# --- real files from ../shared/data ------------------------------------------------------------------------------


def test_ct_jpeg_ls_lossless_decodes_to_the_uncompressed_values(data: Path) -> None:
    plain = open_image(data / "ct/CT1_UNC_NEMA_WG04_explicitLE.dcm")
    packed = open_image(data / "compressed/dicomParser_CT1_UNC.fragmented_bot_jpeg_ls.80.dcm")
    assert np.array_equal(plain.stored_frame(0), packed.stored_frame(0))
    assert np.array_equal(
        plain.stored_frame(0), pydicom.dcmread(data / "ct/CT1_UNC_NEMA_WG04_explicitLE.dcm").pixel_array
    )


def test_lung_is_black_in_a_soft_tissue_window_and_grey_in_a_lung_window(data: Path) -> None:
    image = open_image(data / "ct/CT1_UNC_NEMA_WG04_explicitLE.dcm")
    hu = image.modality_values(0)
    lung = (hu > -900) & (hu < -700)
    assert lung.sum() > 1000
    assert (shown(image, window=Window(40, 400))[lung] == 0).all()
    in_lung_window = shown(image, window=Window(-600, 1500))[lung]
    assert (in_lung_window > 30).all() and (in_lung_window < 140).all()


def test_ct_jpeg_2000_lossless_uses_its_own_window(data: Path) -> None:
    path = data / "compressed/cs3d_CT2_J2KR_NEMA.dcm"
    ds = pydicom.dcmread(path)
    image = open_image(path)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    assert image.default_window(0) == Window(center, width)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert close(shown(image), linear_window(hu, center, width), 1)


def test_cr_jpeg_2000_lossless_decodes_to_the_uncompressed_values(data: Path) -> None:
    plain = open_image(data / "xray/RG1_UNCR_CR_1955x1841.dcm")
    packed = open_image(data / "compressed/pydicom_data_RG1_J2KR.dcm")
    assert (plain.rows, plain.columns, plain.photometric) == (1955, 1841, "MONOCHROME1")
    assert np.array_equal(plain.stored_frame(0), packed.stored_frame(0))


def test_a_large_cr_keeps_its_aspect_ratio_and_is_dark_where_stored_values_are_high(data: Path) -> None:
    image = open_image(data / "xray/RG1_UNCR_CR_1955x1841.dcm")
    picture = PILImage.open(io.BytesIO(render(image, size=1024)))
    assert picture.size == (round(1841 * 1024 / 1955), 1024)
    stored, pixels = image.stored_frame(0), shown(image)
    high, low = stored > np.percentile(stored, 90), stored < np.percentile(stored, 10)
    assert pixels[high].mean() + 100 < pixels[low].mean()
    assert image.pixel_spacing() is None  # its Pixel Spacing is 0\0, which is no spacing


def test_a_dx_with_both_spacings_prefers_pixel_spacing_and_is_never_enlarged(data: Path) -> None:
    path = data / "xray/dx_image_highdicom_Fujifilm.dcm"
    ds = pydicom.dcmread(path)
    image = open_image(path)
    assert image.pixel_spacing() == Spacing(float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]), "PixelSpacing")
    assert PILImage.open(io.BytesIO(render(image, size=1024))).size == (ds.Columns, ds.Rows)
    assert PILImage.open(io.BytesIO(render(image, size=100))).size == (100, round(100 * ds.Rows / ds.Columns))


def test_truncated_pixel_data_gives_a_precise_render_error(data: Path) -> None:
    image = open_image(data / "edge/pydicom_MR_truncated.dcm")
    with pytest.raises(RenderError) as caught:
        render(image)
    assert type(caught.value) is RenderError
    assert "pixel data of frame 0 (Explicit VR Little Endian) cannot be decoded" in str(caught.value)
    assert "less than expected" in str(caught.value)


def test_big_endian_and_rle_multiframe_decode_to_the_known_values(data: Path) -> None:
    big_endian = open_image(data / "compressed/pydicom_MR_small_bigendian.dcm").stored_frame(0)
    for row, columns, values in MR_SMALL_KNOWN:
        assert tuple(big_endian[row, columns]) == values
    rle = open_image(data / "compressed/pydicom_data_emri_small_RLE.dcm")
    plain = open_image(pydicom_file("emri_small.dcm"))
    assert all(np.array_equal(rle.stored_frame(i), plain.stored_frame(i)) for i in range(plain.frames))


def test_an_enhanced_ct_reads_its_functional_groups(data: Path) -> None:
    path = data / "ct/eCT_CT0012_enhanced_2frame.dcm"
    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    voi, transform = shared.FrameVOILUTSequence[0], shared.PixelValueTransformationSequence[0]
    image = open_image(path)
    assert image.frames == 2
    assert image.default_window(1) == Window(float(voi.WindowCenter), float(voi.WindowWidth))
    expected = ds.pixel_array[1] * float(transform.RescaleSlope) + float(transform.RescaleIntercept)
    assert np.array_equal(image.modality_values(1), expected)
    spacing = shared.PixelMeasuresSequence[0].PixelSpacing
    assert image.pixel_spacing() == Spacing(float(spacing[0]), float(spacing[1]), "PixelSpacing")


def test_the_second_frame_of_an_rle_two_frame_rgb_image_is_the_inverse(data: Path) -> None:
    second = shown(open_image(data / "compressed/pydicom_SC_rgb_rle_2frame.dcm"), 1)
    for row, colour in SC_RGB_ROWS:
        assert close(second[row, 50], 255 - np.array(colour), 1)
