"""load_image: every kind of bad poster gives a PosterError naming the file; odd modes become RGB.

Bad files are made in tmp_path (no images are committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedgenre.encoders import iter_image_batches
from embedgenre.encoders.base import ImageTransform
from embedgenre.errors import PosterError
from embedgenre.images import load_image


def _jpeg(path: Path, size=(60, 90), color=(200, 30, 30)) -> Path:
    Image.new("RGB", size, color).save(path, "JPEG", quality=90)
    return path


def test_fixture_poster_loads_as_rgb(fixture_dir):
    path = sorted((fixture_dir / "posters").glob("*.jpg"))[0]
    img = load_image(path)
    assert img.mode == "RGB"
    assert min(img.size) > 100
    assert np.asarray(img).std() > 1.0  # real pixels, not a blank canvas


def test_missing_file(tmp_path):
    with pytest.raises(PosterError, match=r"nope\.jpg: file not found"):
        load_image(tmp_path / "nope.jpg")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(PosterError, match=r"empty\.jpg: file is empty \(0 bytes\)"):
        load_image(p)


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "page.jpg"
    p.write_text("<html><body>404 not found</body></html>")
    with pytest.raises(PosterError, match=r"page\.jpg: not an image"):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    full = _jpeg(tmp_path / "full.jpg", size=(200, 300))
    data = full.read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(PosterError, match=r"cut\.jpg: truncated or corrupt"):
        load_image(p)


def test_corrupt_jpeg_body(tmp_path):
    data = bytearray(_jpeg(tmp_path / "ok.jpg", size=(200, 300)).read_bytes())
    p = tmp_path / "garbled.jpg"
    p.write_bytes(bytes(data[:20]) + b"\x00" * 40 + b"\xff\xd9")
    with pytest.raises(PosterError, match=r"garbled\.jpg"):
        load_image(p)


# 100x100 = 10,000 pixels: over a 9,999 limit Pillow warns, over twice a 3,000 limit it errors.
@pytest.mark.parametrize("limit", [9_999, 3_000])
def test_decompression_bomb(tmp_path, monkeypatch, limit):
    p = _jpeg(tmp_path / "huge.jpg", size=(100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(PosterError, match=r"huge\.jpg: too many pixels.*decompression bomb"):
        load_image(p)


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "I;16"])
def test_odd_modes_become_rgb(tmp_path, mode):
    src = Image.new("RGB", (40, 60), (10, 120, 240))
    img = src.convert(mode) if mode != "I;16" else Image.new("I;16", (40, 60), 3000)
    p = tmp_path / f"odd_{mode.replace(';', '')}.{'tif' if mode in ('CMYK', 'I;16') else 'png'}"
    img.save(p)
    out = load_image(p)
    assert out.mode == "RGB" and out.size == (40, 60)


def test_rgba_composited_on_white(tmp_path):
    img = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red
    img.paste((0, 0, 255, 255), (0, 0, 10, 20))  # opaque blue left half
    p = tmp_path / "alpha.png"
    img.save(p)
    arr = np.asarray(load_image(p))
    assert tuple(arr[5, 2]) == (0, 0, 255)
    assert tuple(arr[5, 15]) == (255, 255, 255)


def test_palette_transparency_composited_on_white(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 5, 10))
    p = tmp_path / "pal.png"
    img.save(p, transparency=0)
    arr = np.asarray(load_image(p))
    assert tuple(arr[0, 0]) == (255, 0, 0) and tuple(arr[0, 9]) == (255, 255, 255)


def test_draft_decodes_large_jpeg_smaller_but_not_below_target(tmp_path):
    p = _jpeg(tmp_path / "big.jpg", size=(1000, 1500))
    assert load_image(p).size == (1000, 1500)
    small = load_image(p, draft_size=(224, 224))
    assert small.mode == "RGB"
    assert 224 <= min(small.size) < 1000


def test_iter_image_batches_order_and_failures(tmp_path, fixture_dir):
    good = sorted((fixture_dir / "posters").glob("*.jpg"))[:5]
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    items = [good[0], bad, good[1], good[2], tmp_path / "missing.jpg", good[3], good[4]]
    t = ImageTransform(size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    seen_rows, seen_fail, shapes = [], [], []
    for batch, rows, failures in iter_image_batches(items, t, batch_size=2, workers=2):
        assert batch.dtype == np.float32 and batch.shape[1:] == (3, 32, 32)
        assert len(batch) == len(rows)
        shapes.append(len(rows))
        seen_rows += rows
        seen_fail += [i for i, _ in failures]
        for _, err in failures:
            assert isinstance(err, PosterError)
    assert seen_rows == [0, 2, 3, 5, 6]
    assert sorted(seen_fail) == [1, 4]
    assert max(shapes) == 2
    # each row's pixels are those of the image at that position
    ref = t(load_image(good[2]))
    again = next(b for b, r, _ in iter_image_batches([good[2]], t, batch_size=4))
    assert np.allclose(again[0], ref)


def test_squash_transform_keeps_the_whole_poster():
    """A tall output sees the top and bottom bands of a poster; a centre crop loses both."""
    img = Image.new("RGB", (224, 331), (128, 128, 128))
    img.paste((255, 0, 0), (0, 0, 224, 40))  # title band
    img.paste((0, 0, 255), (0, 291, 224, 331))  # credits band
    whole = ImageTransform(
        size=224, height=320, mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode="squash"
    )
    x = whole(img)
    assert x.shape == (3, 320, 224) and x.flags.c_contiguous
    assert whole.draft_size == (224, 320)
    assert np.allclose(x[:, 5, 100], [1.0, -1.0, -1.0], atol=0.02)  # red at the top
    assert np.allclose(x[:, 315, 100], [-1.0, -1.0, 1.0], atol=0.02)  # blue at the bottom
    centre = ImageTransform(size=224, mean=(0.5,) * 3, std=(0.5,) * 3)
    y = centre(img)
    assert y.shape == (3, 224, 224) and np.abs(y[0] - y[2]).max() < 0.02  # grey only
    assert "height" not in centre.to_dict() and whole.to_dict()["height"] == 320
    with pytest.raises(ValueError, match="squash"):
        ImageTransform(size=224, height=320, mean=(0.5,) * 3, std=(0.5,) * 3)


def test_transform_ranges_and_shape():
    img = Image.new("RGB", (182, 268), (255, 0, 128))
    t = ImageTransform(size=224, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.875)
    x = t(img)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.allclose(x[0], 1.0, atol=1e-4) and np.allclose(x[1], -1.0, atol=1e-4)


def test_transform_normalises_each_channel_with_its_own_mean_and_std():
    """The fast per-band normalisation against the plain formula (x / 255 - mean) / std."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    t = ImageTransform(size=30, height=40, resize_mode="squash", mean=(0.1, 0.5, 0.9),
                       std=(0.2, 0.3, 0.4))  # fmt: skip
    want = ((pixels / 255.0 - np.array(t.mean)) / np.array(t.std)).transpose(2, 0, 1)
    np.testing.assert_allclose(t(Image.fromarray(pixels)), want, atol=1e-5)
