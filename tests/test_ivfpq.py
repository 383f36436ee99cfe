"""Large FAISS indexes: the kind chosen from size and memory budget, IVF-PQ recall against exact
search on seeded clustered vectors, and inverted lists merged on disk equal to one in-memory build.
"""

from __future__ import annotations

import os
import shutil

import faiss
import numpy as np
import pytest
from _catalogs import copy_fixture
from _fakes import Factory
from _synthetic import synthetic_vectors
from typer.testing import CliRunner

from embedgenre import ann
from embedgenre.catalog import read_catalog
from embedgenre.cli.app import app
from embedgenre.errors import IndexStoreError
from embedgenre.indexing import build_index
from embedgenre.store import GenreIndex
from embedgenre.store.vectors import read_row_set, read_rows


@pytest.fixture(scope="module")
def clustered():
    """12,000 base and 200 query vectors (64-d) from one seeded clustered distribution."""
    x = synthetic_vectors(12_200, 64, n_clusters=300, seed=3)
    return x[:12_000], x[12_000:]


@pytest.fixture(scope="module")
def trained(clustered):
    """The kind chosen for the clustered base set, and an empty IVF-PQ index trained on it."""
    base, _ = clustered
    kind = ann.choose_kind(len(base), 64, kind="ivf_pq")
    return kind, ann.train_ivfpq(base, ann.parse_kind(kind)[1], seed=5)


def test_the_kind_follows_size_and_memory_budget():
    assert ann.choose_kind(10_000, 512) == "flat"
    assert ann.choose_kind(1_000_000, 512).startswith("ivf_sq8:nlist=2048")
    # 10M x 512: ivf_sq8 would take 5.2 GB of the 4 GB budget, so IVF-PQ with 64-byte codes
    kind, p = ann.parse_kind(ann.choose_kind(10_000_000, 512, ann.parse_memory("4GB")))
    assert kind == "ivf_pq" and (p["m"], p["nbits"], p["opq"], p["nlist"]) == (64, 8, 0, 4096)
    assert ann.index_bytes(kind, 10_000_000, 512, p) < 0.8 * 4e9
    # a tighter budget gets smaller codes, still within it
    kind, p = ann.parse_kind(ann.choose_kind(10_000_000, 512, ann.parse_memory("512MB")))
    assert p["m"] <= 32 and p["opq"] == 1  # 16+ dimensions a sub-vector: rotated first
    assert ann.index_bytes(kind, 10_000_000, 512, p) <= 0.8 * 512e6
    # asked for by name below the threshold, with a parameter kept
    assert ann.choose_kind(100_000, 512, kind="ivf_pq:m=32").startswith("ivf_pq:nlist=256")
    assert "m=32" in ann.choose_kind(100_000, 512, kind="ivf_pq:m=32")
    with pytest.raises(IndexStoreError, match="needs about .* GB but the index memory is 0.1 GB"):
        ann.choose_kind(1_000_000_000, 512, ann.parse_memory("100MB"))


@pytest.mark.parametrize(
    "text, expected", [("4GB", 4 * 10**9), ("512MiB", 512 * 2**20), ("1.5g", 15 * 10**8)]
)
def test_memory_sizes_are_read(text, expected):
    assert ann.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "4 parsecs", "-1GB", "10MB"])
def test_bad_memory_sizes_say_how_to_write_them(text):
    with pytest.raises(IndexStoreError, match="index memory") as e:
        ann.parse_memory(text)
    assert e.value.param == "index_memory" and "--" not in str(e.value)


def test_ivfpq_recall_at_the_chosen_parameters(clustered, trained, tmp_path):
    base, queries = clustered
    kind, empty = trained
    _, params = ann.parse_kind(kind)
    assert (params["m"], params["opq"], params["nlist"]) == (8, 0, 128)
    ann.build_ivfpq_on_disk(
        base, tmp_path / "faiss.index", params, rows_per_shard=6_000, trained=empty
    )
    index = ann.load_faiss_index(tmp_path / "faiss.index")
    assert ann.describe_faiss(index)["kind_string"] == kind
    _, truth = ann.exact_top_k(base, queries, 10, step=7_000)
    _, found = index.search(queries, 100)
    raw = ann.recall_at_k(found[:, :10], truth)
    # what similar/search return: candidates re-scored with the exact vectors
    rescored = np.take_along_axis(
        found, np.argsort(-(base[found] @ queries[:, :, None])[..., 0]), 1
    )
    exact = ann.recall_at_k(rescored[:, :10], truth)
    assert raw >= 0.55, raw  # 8-byte codes of 64-d vectors
    assert exact >= 0.95, exact
    ann.set_search_params(index, nprobe=1)  # fewer cells searched: lower recall
    assert ann.recall_at_k(index.search(queries, 10)[1], truth) < raw


def test_exact_top_k_streams_the_same_answer_as_one_product(clustered):
    base, queries = clustered
    scores, ids = ann.exact_top_k(base, queries[:20], 5, step=3_333)
    full = queries[:20] @ base.T
    np.testing.assert_array_equal(ids, np.argsort(-full, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(scores, np.sort(full, axis=1)[:, ::-1][:, :5], rtol=1e-6)


def test_rows_of_a_mapped_file_are_read_without_keeping_it_mapped(clustered, tmp_path):
    base, _ = clustered
    np.save(tmp_path / "v.npy", base[:1000])
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    for start, stop in ((0, 10), (990, 1000), (500, 2000), (1000, 1000)):
        got = read_rows(mapped, start, stop)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert not isinstance(got, np.memmap) and np.array_equal(got, base[start : min(stop, 1000)])
    # a view of the map (its own offset is the parent's) and a float16 array are sliced instead
    assert np.array_equal(read_rows(mapped[100:], 5, 9), base[105:109])
    half = base[:50].astype(np.float16)
    assert np.array_equal(read_rows(half, 3, 7), half[3:7].astype(np.float32))


def test_a_sample_of_rows_of_a_mapped_file_is_read_row_by_row(clustered, tmp_path):
    base, _ = clustered
    np.save(tmp_path / "v.npy", base[:1000])
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    rows = np.array([0, 1, 7, 500, 999])
    got = read_row_set(mapped, rows)
    assert not isinstance(got, np.memmap) and got.dtype == np.float32
    assert np.array_equal(got, base[rows])
    assert np.array_equal(read_row_set(base, rows), base[rows])  # in memory: indexed
    assert read_row_set(mapped, np.array([], dtype=np.int64)).shape == (0, base.shape[1])
    with pytest.raises(OSError, match="short read at row 1000"):
        read_row_set(np.lib.format.open_memmap(tmp_path / "v.npy", mode="r"), np.array([1000]))


def test_shards_merged_on_disk_answer_like_one_in_memory_build(clustered, trained, tmp_path):
    base, queries = clustered
    kind, empty = trained
    params = ann.parse_kind(kind)[1]
    in_memory = faiss.clone_index(empty)
    in_memory.add(base)
    path = tmp_path / "a" / "faiss.index"
    path.parent.mkdir()
    ann.build_ivfpq_on_disk(base, path, params, rows_per_shard=4_500, trained=empty)
    assert not list(path.parent.glob(".shards-*"))
    moved = tmp_path / "b"
    shutil.copytree(path.parent, moved)  # the inverted lists are found beside the index
    shutil.rmtree(path.parent)
    on_disk = ann.load_faiss_index(moved / "faiss.index")
    assert isinstance(
        faiss.downcast_InvertedLists(faiss.extract_index_ivf(on_disk).invlists),
        faiss.OnDiskInvertedLists,
    )
    assert on_disk.ntotal == in_memory.ntotal == len(base)
    d_mem, i_mem = in_memory.search(queries, 10)
    d_disk, i_disk = on_disk.search(queries, 10)
    np.testing.assert_array_equal(i_disk, i_mem)
    np.testing.assert_allclose(d_disk, d_mem, rtol=1e-5)


def test_an_index_asked_for_ivf_pq_records_it_and_answers_from_disk(tmp_path, fixture_dir):
    root = tmp_path / "cat"
    copy_fixture(fixture_dir, root, n=40)
    out = tmp_path / "idx"
    kind = "ivf_pq:nlist=2,m=4,nbits=4,opq=0"
    build_index(
        read_catalog(root),
        out,
        ["fake:a"],
        ["fake:t"],
        encoder_factory=Factory({"fake:a": 16}),
        faiss_kind=kind,
        index_memory="1GB",
    )
    idx = GenreIndex.open(out)
    s = idx.get_set("poster")
    recorded = idx.manifest.set_by_key(s.key).faiss
    assert recorded["kind"] == "ivf_pq:nlist=2,nprobe=2,m=4,nbits=4,opq=0"
    assert recorded["memory"] == 10**9 and recorded["ivfdata_bytes"] > 0
    assert (s.directory / "faiss.ivfdata").stat().st_size == recorded["ivfdata_bytes"]
    index = s.faiss_index
    assert isinstance(
        faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists),
        faiss.OnDiskInvertedLists,
    )
    scores, rows = s.search(s.vectors[:5], k=3)
    assert list(rows[:, 0]) == list(s.rows[:5])
    # damaged (a new, empty file: the one the open index maps is never truncated under it,
    # which would be a bus error): rebuilt from the vectors
    (s.directory / "damaged").write_bytes(b"")
    os.replace(s.directory / "damaged", s.directory / "faiss.ivfdata")
    again = GenreIndex.open(out).get_set("poster")
    assert not isinstance(
        faiss.extract_index_ivf(again.faiss_index).invlists, faiss.OnDiskInvertedLists
    )
    assert list(again.search(s.vectors[:5], k=1)[1][:, 0]) == list(s.rows[:5])


def test_a_bad_kind_is_refused_before_anything_is_encoded(tmp_path, fixture_dir):
    root = tmp_path / "cat"
    copy_fixture(fixture_dir, root, n=4)
    factory = Factory()
    with pytest.raises(IndexStoreError, match="unknown FAISS index kind 'ivf_opq'"):
        build_index(
            read_catalog(root),
            tmp_path / "idx",
            ["fake:a"],
            ["fake:t"],
            encoder_factory=factory,
            faiss_kind="ivf_opq",
        )
    assert factory.made == {} and not (tmp_path / "idx" / "manifest.json").exists()


def test_cli_refuses_a_bad_memory_size_with_the_fix(tmp_path, fixture_dir):
    result = CliRunner().invoke(
        app, ["index", str(fixture_dir), "--out", str(tmp_path / "x"), "--index-memory", "lots"]
    )
    assert result.exit_code == 1
    assert "write it like 4GB" in result.output
    assert not (tmp_path / "x").exists()


def test_inverted_lists_are_refused_before_faiss_maps_them_on_a_full_disk(
    clustered, trained, tmp_path, monkeypatch
):
    """FAISS fills faiss.ivfdata through a memory map (a bus error on a full disk): the space
    it needs is checked first, and the estimate is the file's real size."""
    from embedgenre.errors import WriteError
    from embedgenre.store import atomic

    base, _ = clustered
    kind, empty = trained
    params = ann.parse_kind(kind)[1]
    path = tmp_path / "a" / "faiss.index"
    path.parent.mkdir()
    ann.build_ivfpq_on_disk(base, path, params, rows_per_shard=6_000, trained=empty)
    needed = len(base) * (empty.code_size + 8)
    assert (path.parent / "faiss.ivfdata").stat().st_size == needed

    monkeypatch.setattr(atomic, "free_bytes", lambda directory: needed - 1)
    full = tmp_path / "full" / "faiss.index"
    full.parent.mkdir()
    with pytest.raises(WriteError, match=r"disk is full \(faiss.ivfdata needs .* in .*full"):
        ann.build_ivfpq_on_disk(base, full, params, rows_per_shard=6_000, trained=empty)
    assert list(full.parent.iterdir()) == []  # no shard folder, no half-made lists
