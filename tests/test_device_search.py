"""Search on a CUDA device without faiss-gpu: exact torch matrix product + top-k, checked on the
CPU against FAISS's flat search, and used by `similar --all` through the Retriever."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _synthetic import synthetic_vectors

from embedgenre import ann
from embedgenre.errors import IndexStoreError
from embedgenre.retrieval import open_retriever


@pytest.fixture(scope="module")
def data():
    x = synthetic_vectors(3_050, 48, n_clusters=200, seed=11)
    return x[:3_000].copy(), x[3_000:].copy()


def _faiss_flat(base):
    index, _ = ann.build_faiss_index(base, "flat")
    return index


@pytest.mark.parametrize("memory", [ann.SEARCH_MEMORY, 4 * 256 * 97])  # one step; 97-row blocks
def test_torch_search_matches_faiss_flat(data, memory):
    base, queries = data
    want_scores, want_ids = _faiss_flat(base).search(queries, 10)
    scores, ids = ann.torch_search(base, queries, 10, device="cpu", memory=memory)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_torch_index_through_search_pads_like_faiss_when_k_exceeds_n(data):
    base, queries = data
    small = base[:5]
    want_scores, want_ids = ann.search(_faiss_flat(small), queries, 8)
    scores, ids = ann.search(ann.TorchFlatIndex(small, "cpu"), queries, 8)
    np.testing.assert_array_equal(ids, want_ids)
    assert (ids[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    np.testing.assert_allclose(scores[:, :5], want_scores[:, :5], atol=1e-5)


def test_search_backend_on_the_cpu_is_faiss_and_cuda_without_any_gpu_is_a_clear_error(
    monkeypatch,
):
    assert ann.search_backend("cpu") == "faiss"
    monkeypatch.setattr(ann.gpu, "gpu_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(IndexStoreError, match=r"neither faiss nor torch sees a CUDA GPU"):
        ann.search_backend("cuda")
    with pytest.raises(IndexStoreError, match="Unknown device"):
        ann.search_backend("gpu")


def _cuda_as_torch_on_cpu(monkeypatch):
    """A CUDA device without faiss-gpu, with torch's search run on the CPU in its place."""
    monkeypatch.setattr(ann.gpu, "gpu_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    made = []

    class OnCpu(ann.TorchFlatIndex):
        def __init__(self, vectors, device, memory=ann.SEARCH_MEMORY):
            made.append(device)
            super().__init__(vectors, "cpu", memory=4 * 256 * 7)  # several blocks per query

    monkeypatch.setattr(ann.query, "TorchFlatIndex", OnCpu)
    return made


def test_similar_all_on_cuda_without_faiss_gpu_uses_torch_search(fixture_index_dir, monkeypatch):
    want = open_retriever(fixture_index_dir, thumbnails=False).similar_all(k=6, by="both")
    made = _cuda_as_torch_on_cpu(monkeypatch)
    got = open_retriever(fixture_index_dir, thumbnails=False, device="cuda").similar_all(
        k=6, by="both"
    )
    assert made and set(made) == {"cuda"}
    assert got.to_dict() == want.to_dict()


def test_approximate_index_without_faiss_gpu_stays_with_cpu_faiss(data, monkeypatch):
    base, queries = data
    made = _cuda_as_torch_on_cpu(monkeypatch)
    ivf, _ = ann.build_faiss_index(base, "ivf_sq8", params={"nlist": 16})
    assert ann.device_index(ivf, "cuda") is ivf and not made


def test_ivf_kmeans_stays_on_the_cpu_without_faiss_gpu(data, monkeypatch):
    base, _ = data
    monkeypatch.setattr(ann.gpu, "gpu_available", lambda: False)
    index = ann.empty_ivfpq(base.shape[1], len(base), {"nlist": 8, "nprobe": 4, "m": 8, "nbits": 6})
    assert ann.gpu_kmeans(index, "cuda") is False
    assert ann.gpu_kmeans(index, "cpu") is False
    with pytest.raises(IndexStoreError, match="Unknown device"):
        ann.gpu_kmeans(index, "tpu")
