"""The tensor input pipeline (the GPU path), run on CPU: routing of each file to the batched
JPEG decoder or to Pillow, preprocessing against open_clip's own transform on real posters,
order kept, unreadable posters reported one by one, and the index built through it.

Odd files are made in tmp_path; real posters come from the shared fixture."""

from __future__ import annotations

import copy
import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny_clip import TINY_CONFIG
from PIL import Image

from embedgenre.encoders.base import ImageTransform
from embedgenre.encoders.clip import build_model, image_transform
from embedgenre.encoders.pipeline import (
    TensorPipeline,
    TensorTransform,
    batch_for_memory,
    iter_tensor_batches,
    jpeg_header,
    thumbnails,
)
from embedgenre.errors import PosterError
from embedgenre.images import load_image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _poster(rng, size=(60, 90)) -> Image.Image:
    coarse = rng.integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


@pytest.fixture(scope="module")
def clip224():
    """A small random CLIP with a 224-px ViT input (the real preprocessing size) and its
    transform, as open_clip builds it from an open_clip config."""
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["model_cfg"]["vision_cfg"].update(image_size=224, patch_size=32, width=64, head_width=32)
    torch.manual_seed(0)
    model, _ = build_model("Tiny224", cfg, None)
    return model, image_transform(model, cfg)


def _real_posters(fixture_dir: Path, tmp_path: Path, n: int = 24) -> list[Path]:
    """Fixture posters as they are, plus the same re-encoded larger (a downscale path)."""
    paths = sorted((fixture_dir / "posters").glob("*.jpg"))[:n]
    bigger = []
    for p in paths[:8]:
        with Image.open(p) as img:
            big = img.convert("RGB").resize((500, 750), Image.Resampling.BICUBIC)
        bigger.append(_save(big, tmp_path / f"big-{p.name}", quality=90))
    return paths + bigger


def test_jpeg_headers_route_what_the_device_decoder_takes(tmp_path):
    rng = np.random.default_rng(0)
    img = _poster(rng)
    out = {}
    for name, kw in {
        "baseline": {"format": "JPEG"},
        "progressive": {"format": "JPEG", "progressive": True},
        "grey": {"format": "JPEG"},
    }.items():
        buf = io.BytesIO()
        (img.convert("L") if name == "grey" else img).save(buf, **kw)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    img.convert("CMYK").save(buf, format="JPEG")
    out["cmyk"] = buf.getvalue()
    buf = io.BytesIO()
    img.save(buf, format="PNG")

    base = jpeg_header(out["baseline"])
    assert (base.width, base.height, base.components, base.sof) == (60, 90, 3, 0xC0)
    assert base.device_decodable
    assert jpeg_header(out["grey"]).device_decodable
    assert jpeg_header(out["progressive"]).sof == 0xC2
    assert not jpeg_header(out["progressive"]).device_decodable
    assert jpeg_header(out["cmyk"]).components == 4
    assert not jpeg_header(out["cmyk"]).device_decodable
    assert jpeg_header(buf.getvalue()) is None  # PNG
    assert jpeg_header(out["baseline"][:40]) is None  # cut before its frame header
    assert jpeg_header(b"\xff\xd8\xff\xda\x00\x02") is None  # scan before any frame


def test_tensor_preprocessing_matches_open_clip_on_real_posters(fixture_dir, tmp_path, clip224):
    """Pixels decoded in batches and resized as tensors give the embeddings of open_clip's own
    PIL transform (Resize, CenterCrop, ToTensor, Normalize): cosine >= 0.999 on every poster."""
    import open_clip

    model, transform = clip224
    paths = _real_posters(fixture_dir, tmp_path)
    reference = open_clip.image_transform(
        transform.size, is_train=False, mean=transform.mean, std=transform.std,
        interpolation=transform.interpolation, resize_mode=transform.resize_mode,
    )  # fmt: skip
    expected = torch.stack([reference(Image.open(p).convert("RGB")) for p in paths])
    pipe = TensorPipeline(transform, "cpu", decode_on_device=True)
    batches = list(iter_tensor_batches(paths, pipe, batch_size=10, workers=2))
    assert [r for b in batches for r in b.rows] == list(range(len(paths)))
    pixels = torch.cat([b.pixels for b in batches])
    assert pixels.shape == expected.shape
    assert float((pixels - expected).abs().mean()) < 0.02  # normalised units (std ~ 1)
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(
            model.encode_image(pixels), model.encode_image(expected)
        )
    assert float(cos.min()) >= 0.999, cos


def test_tensor_transform_equals_the_pillow_transform_on_model_sized_input():
    """An image already at the model's size is only cropped: both transforms give the same
    numbers (to float rounding)."""
    rng = np.random.default_rng(1)
    img = _poster(rng, (224, 300))
    t = ImageTransform(224, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    want = t(img)
    got = TensorTransform(t)([torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)])
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-5)


def test_order_kept_and_each_unreadable_poster_reported_alone(tmp_path):
    rng = np.random.default_rng(2)
    good = _save(_poster(rng), tmp_path / "good.jpg", quality=90)
    png = _save(_poster(rng), tmp_path / "poster.png")
    cmyk = _save(_poster(rng).convert("CMYK"), tmp_path / "cmyk.jpg")
    progressive = _save(_poster(rng), tmp_path / "prog.jpg", quality=90, progressive=True)
    data = bytearray(good.read_bytes())
    for i in range(len(data) // 2, len(data) - 2, 7):  # a valid header over a broken scan
        data[i] = 0x00 if i % 2 else 0xFF
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(bytes(data))
    text = tmp_path / "page.jpg"
    text.write_text("<html>not a poster</html>")
    paths = [good, png, broken, cmyk, tmp_path / "missing.jpg", progressive, text, good]
    t = ImageTransform(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    pipe = TensorPipeline(t, "cpu", decode_on_device=True, thumbnails=True)

    batches = list(iter_tensor_batches(paths, pipe, batch_size=3, workers=2))

    rows = [r for b in batches for r in b.rows]
    failed = {i: e for b in batches for i, e in b.failures}
    assert rows == [0, 1, 3, 5, 7]
    assert sorted(rows + list(failed)) == list(range(len(paths)))
    assert all(isinstance(e, PosterError) for e in failed.values())
    assert "broken.jpg" in str(failed[2]) and "corrupt" in str(failed[2])
    assert "missing.jpg: file not found" in str(failed[4])
    assert "page.jpg: not an image" in str(failed[6])
    pixels = torch.cat([b.pixels for b in batches])
    # each row is what the Pillow path makes of the same file (the PNG and CMYK via Pillow,
    # the JPEGs through the batched decoder: libjpeg-turbo either way)
    for k, i in enumerate(rows):
        want = t(load_image(paths[i], draft_size=t.draft_size))
        np.testing.assert_allclose(pixels[k].numpy(), want, atol=0.08)
    thumbs = [th for b in batches for th in b.thumbs]
    assert len(thumbs) == len(rows)
    assert all(Image.open(io.BytesIO(th)).format == "JPEG" for th in thumbs)


def test_thumbnails_on_tensors_keep_the_aspect_ratio_and_never_upscale():
    big = torch.randint(0, 256, (3, 600, 400), dtype=torch.uint8)
    small = torch.randint(0, 256, (3, 90, 60), dtype=torch.uint8)
    sizes = [Image.open(io.BytesIO(b)).size for b in thumbnails([big, small])]
    assert sizes == [(120, 180), (60, 90)]


def test_batch_size_from_memory():
    gib = 2**30
    assert batch_for_memory(80 * gib, 40 * 2**20) == 1024
    assert batch_for_memory(4 * gib, 40 * 2**20) == 32  # never below the floor
    assert batch_for_memory(16 * gib, 40 * 2**20) == 128  # 8 GiB / 40 MiB = 204


def test_index_through_the_tensor_pipeline_matches_the_pillow_path(fixture_dir, tmp_path):
    """`index` with posters decoded, resized and thumbnailed as tensors stores the vectors the
    Pillow path stores (cosine >= 0.999), the same skipped posters and a thumbnail per row."""
    from _tiny_clip import imported_tiny_clip

    from embedgenre.catalog import read_catalog
    from embedgenre.engines import LocalEngine
    from embedgenre.indexing import build_index
    from embedgenre.store.reader import GenreIndex

    name, _ = imported_tiny_clip(tmp_path / "ckpt")
    with open(fixture_dir / "movies.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:24]
    root = tmp_path / "cat"
    (root / "posters").mkdir(parents=True)
    for r in rows:
        (root / r["poster"]).symlink_to(fixture_dir / r["poster"])
    (root / rows[3]["poster"]).unlink()
    (root / rows[3]["poster"]).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with open(root / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = {}
    for kind in ("pil", "tensor"):
        summary = build_index(
            read_catalog(root), tmp_path / kind, image_encoders=[name], text_encoders=[],
            backend="torch", batch_size=8, engine=LocalEngine(input_pipeline=kind),
        )  # fmt: skip
        assert [s.id for s in summary.skipped] == [rows[3]["imdb_id"]]
        out[kind] = GenreIndex.open(tmp_path / kind)
    a_set, b_set = (next(s for s in out[k].sets if s.modality == "poster") for k in out)
    a, b = (np.asarray(s.vectors, np.float32) for s in (a_set, b_set))
    assert a.shape == b.shape == (23, 32)
    assert list(a_set.ids) == list(b_set.ids)
    assert float(np.min(np.sum(a * b, axis=1))) >= 0.999
    for i in range(len(b_set.ids)):
        assert Image.open(io.BytesIO(b_set.thumbnail(i))).size[1] <= 180
