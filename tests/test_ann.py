"""FAISS index kinds against exact flat search on seeded synthetic vectors."""

from __future__ import annotations

import numpy as np
import pytest
from _synthetic import synthetic_vectors

from embedgenre import ann
from embedgenre.errors import IndexStoreError


@pytest.fixture(scope="module")
def data():
    x = synthetic_vectors(20_200, 64, n_clusters=500, seed=3)
    return x[:20_000].copy(), x[20_000:].copy()


def recall_at_10(index, base, queries) -> float:
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    _, got = ann.search(index, queries, 10)
    return float(np.mean([len(set(e) & set(g)) / 10 for e, g in zip(exact, got)]))


def test_synthetic_vectors_are_seeded_unit_rows():
    a = synthetic_vectors(300, 32, n_clusters=10, seed=1)
    assert a.dtype == np.float32 and a.shape == (300, 32)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, synthetic_vectors(300, 32, n_clusters=10, seed=1))
    assert not np.array_equal(a, synthetic_vectors(300, 32, n_clusters=10, seed=2))


def test_flat_matches_numpy_and_pads_missing_with_minus_one(data):
    base, queries = data
    index, kind = ann.build_faiss_index(base[:50], "flat")
    assert kind == "flat"
    scores, ids = ann.search(index, queries[:5], 60)
    exact = queries[:5] @ base[:50].T
    np.testing.assert_array_equal(ids[:, :50], np.argsort(-exact, axis=1))
    np.testing.assert_allclose(scores[:, :50], -np.sort(-exact, axis=1), atol=1e-5)
    assert (ids[:, 50:] == -1).all() and np.isneginf(scores[:, 50:]).all()


@pytest.mark.parametrize("n_queries", [1, 5, ann.SMALL_BATCH])
@pytest.mark.parametrize("k", [1, 10, 20_000, 20_050])
def test_small_batches_on_a_flat_index_answer_as_faiss_does(data, n_queries, k):
    base, queries = data
    index, _ = ann.build_faiss_index(base, "flat")
    scores, ids = ann.search(index, queries[:n_queries], k)
    want_s, want_i = index.search(queries[:n_queries], k)  # FAISS's own scan
    assert ids.shape == (n_queries, k) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids < 0, want_i < 0)
    found = ids >= 0
    # the same scores in the same order; ids may differ only where scores tie to rounding
    np.testing.assert_allclose(scores[found], want_s[found], atol=1e-5)
    exact = np.take_along_axis(queries[:n_queries] @ base.T, np.where(found, ids, 0), axis=1)
    np.testing.assert_allclose(scores[found], exact[found], atol=1e-5)
    assert (np.sort(ids, axis=1) == np.sort(want_i, axis=1)).mean() > 0.999
    assert all(len(set(r[r >= 0])) == found[i].sum() for i, r in enumerate(ids))
    assert np.isneginf(scores[~found]).all()


@pytest.mark.parametrize(
    "kind, params, min_recall",
    [("ivf_sq8", {"nlist": 128, "nprobe": 16}, 0.95), ("hnsw_sq8", {"ef_search": 96}, 0.9)],
)
def test_approximate_recall_against_flat(data, kind, params, min_recall):
    base, queries = data
    index, kind_string = ann.build_faiss_index(base, kind, params=params)
    assert kind_string.startswith(kind + ":")
    assert recall_at_10(index, base, queries) >= min_recall


def test_more_probes_find_more(data):
    base, queries = data
    index, _ = ann.build_faiss_index(base, "ivf_sq8", params={"nlist": 256, "nprobe": 1})
    low = recall_at_10(index, base, queries)
    ann.set_search_params(index, nprobe=32)
    assert ann.describe_faiss(index)["params"]["nprobe"] == 32
    assert recall_at_10(index, base, queries) > low


def test_auto_chooses_by_size(data):
    base, _ = data
    _, small = ann.build_faiss_index(base[:2000], "auto", flat_max_rows=5000)
    _, large = ann.build_faiss_index(base, "auto", flat_max_rows=5000)
    assert small == "flat"
    kind, params = ann.parse_kind(large)
    assert kind == "ivf_sq8" and params["nlist"] == 256 and params["nprobe"] >= 16
    assert ann.auto_kind(49_999) == "flat" and ann.auto_kind(50_000) == "ivf_sq8"


def test_kind_string_rebuilds_and_save_load_keeps_params(data, tmp_path):
    base, queries = data
    index, kind = ann.build_faiss_index(base, "ivf_sq8", params={"nlist": 64, "nprobe": 7})
    assert kind == "ivf_sq8:nlist=64,nprobe=7"
    again, kind2 = ann.build_faiss_index(base, kind)
    assert kind2 == kind
    ann.save_faiss_index(index, tmp_path / "f.index")
    loaded = ann.load_faiss_index(tmp_path / "f.index")
    info = ann.describe_faiss(loaded)
    assert info["kind_string"] == kind and info["ntotal"] == len(base) and info["dim"] == 64
    np.testing.assert_array_equal(
        ann.search(loaded, queries, 10)[1], ann.search(index, queries, 10)[1]
    )
    # 8-bit codes: about a quarter of the float32 vectors
    assert info["bytes"] < 0.35 * base.nbytes


def test_hnsw_params_recorded(data):
    base, _ = data
    index, kind = ann.build_faiss_index(base[:3000], "hnsw_sq8", params={"M": 16, "ef_search": 50})
    assert ann.parse_kind(kind) == ("hnsw_sq8", {"M": 16, "ef_construction": 40, "ef_search": 50})
    ann.set_search_params(index, ef_search=77)
    assert ann.describe_faiss(index)["params"]["ef_search"] == 77


def test_bad_requests_name_the_problem(data, tmp_path):
    base, queries = data
    with pytest.raises(IndexStoreError, match="Unknown FAISS index kind 'annoy'"):
        ann.build_faiss_index(base, "annoy")
    with pytest.raises(
        IndexStoreError, match=r"Unknown parameter\(s\) \['nprobe'\] for index kind 'flat'"
    ):
        ann.build_faiss_index(base, "flat", params={"nprobe": 3})
    with pytest.raises(IndexStoreError, match="not NAME=INTEGER"):
        ann.build_faiss_index(base, "ivf_sq8:nlist=many")
    with pytest.raises(IndexStoreError, match="Unknown device 'tpu'"):
        ann.build_faiss_index(base, device="tpu")
    index, _ = ann.build_faiss_index(base[:100], "flat")
    with pytest.raises(IndexStoreError, match="dimension 32 but the index holds 64-d"):
        ann.search(index, queries[:, :32], 5)
    with pytest.raises(IndexStoreError, match="nprobe must be a positive integer"):
        ann.set_search_params(index, nprobe=0)
    with pytest.raises(IndexStoreError, match="is missing; rebuild it"):
        ann.load_faiss_index(tmp_path / "nope.index")
    (tmp_path / "junk.index").write_bytes(b"not a faiss index")
    with pytest.raises(IndexStoreError, match="cannot be read"):
        ann.load_faiss_index(tmp_path / "junk.index")


@pytest.mark.skipif(ann.gpu_available(), reason="faiss-gpu with a GPU is present")
def test_cuda_without_faiss_gpu_is_a_clear_error(data):
    base, _ = data
    with pytest.raises(IndexStoreError, match=r"no GPU support.*embedgenre\[gpu\].*cpu device"):
        ann.build_faiss_index(base[:100], device="cuda")
    index, _ = ann.build_faiss_index(base[:100])
    with pytest.raises(IndexStoreError, match="no GPU support"):
        ann.to_device(index, "cuda:0")


@pytest.mark.skipif(not ann.gpu_available(), reason="needs faiss-gpu and an NVIDIA GPU")
def test_gpu_search_matches_cpu(data, tmp_path):
    base, queries = data
    cpu, _ = ann.build_faiss_index(base, "flat")
    gpu, _ = ann.build_faiss_index(base, "flat", device="cuda")
    np.testing.assert_array_equal(ann.search(gpu, queries, 10)[1], ann.search(cpu, queries, 10)[1])
    ann.save_faiss_index(gpu, tmp_path / "g.index")
    assert ann.load_faiss_index(tmp_path / "g.index").ntotal == len(base)
