"""Datasets, splits, normalisation, user files and augmentations."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import flowstudy.data
from flowstudy.config import DigitsConfig, EmbeddingsConfig, SphereConfig, Toy2DConfig
from flowstudy.data import build_data, fingerprint
from flowstudy.data.augment import gaussian_noise, mixup
from flowstudy.data.files import DataError, load_vectors
from flowstudy.data.normalize import Normalizer
from flowstudy.data.toy2d import TOY2D, toy2d
from flowstudy.errors import ConfigError, UserError

from .helpers import compose_config


def test_splits_are_fixed_by_the_data_seed_and_normalised_on_train() -> None:
    cfg = Toy2DConfig(name="moons", size=420, n_val=50, n_test=70)
    a, b = build_data(cfg), build_data(cfg)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert a.train.shape == (300, 2) and a.val.shape == (50, 2) and a.test.shape == (70, 2)
    everything = torch.cat([a.train, a.val, a.test])
    assert torch.unique(everything, dim=0).shape[0] == 420  # disjoint
    other = Toy2DConfig(name="moons", size=420, n_val=50, n_test=70, seed=1)
    assert not torch.equal(build_data(other).train, a.train)
    z = a.normalizer.encode(a.train)
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.normalizer.decode(z), a.train, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_each_2d_dataset_is_seeded_and_distinct(name: str) -> None:
    data = build_data(Toy2DConfig(name=name, size=2200, n_val=100, n_test=100))
    assert data.train.shape == (2000, 2) and torch.isfinite(data.train).all()
    again = build_data(Toy2DConfig(name=name, size=2200, n_val=100, n_test=100))
    assert torch.equal(data.train, again.train)
    moons = build_data(Toy2DConfig(name="moons", size=2200, n_val=100, n_test=100))
    assert name == "moons" or not torch.allclose(data.train.mean(0), moons.train.mean(0),
                                                 atol=1e-3)


def test_scurve_is_scikit_learns_s_curve_seen_along_its_flat_axis() -> None:
    # make_s_curve: (sin t, 2u, sign(t)(cos t - 1)), t ~ U(-3pi/2, 3pi/2); kept: (x, z) x 1.5.
    points = toy2d("scurve", 4000, 0.0, torch.Generator().manual_seed(0)) / 1.5
    x, z = points.unbind(1)
    torch.testing.assert_close(x.square() + (1 - z.abs()).square(), torch.ones(4000))
    assert z.min() > -2 - 1e-6 and z.max() < 2 + 1e-6 and (z < -1).any() and (z > 1).any()


def test_n_train_takes_nested_seeded_subsets() -> None:
    small = build_data(Toy2DConfig(name="moons", size=2200, n_train=100, n_val=100, n_test=100))
    large = build_data(Toy2DConfig(name="moons", size=2200, n_train=500, n_val=100, n_test=100))
    full = build_data(Toy2DConfig(name="moons", size=2200, n_val=100, n_test=100))
    assert small.train.shape[0] == 100 and large.train.shape[0] == 500
    assert torch.equal(large.train[:100], small.train)
    assert torch.equal(small.test, full.test)  # val and test do not depend on n_train
    with pytest.raises(ConfigError, match=r"dataset\.n_train=201 is not allowed: at most 200"):
        build_data(Toy2DConfig(name="moons", size=2200, n_train=201, n_val=1000, n_test=1000))


def test_a_2d_source_is_sampled_in_normalised_coordinates() -> None:
    data = build_data(Toy2DConfig(name="moons", size=2200, source="8gaussians"))
    x0 = data.source.sample(4000, 2, torch.Generator().manual_seed(0))
    assert x0.shape == (4000, 2)
    assert x0.mean(0).abs().max() < 0.1 and (x0.std(0) - 1).abs().max() < 0.1
    radii = data.source.normalizer.decode(x0).norm(dim=1)
    assert (radii - 2).abs().median() < 0.2  # eight blobs on the radius-2 circle


def test_digits_are_real_offline_images() -> None:
    data = build_data(DigitsConfig(name="digits", normalize="global"))
    assert data.dim == 64
    assert (data.train.shape[0], data.val.shape[0], data.test.shape[0]) == (1397, 200, 200)
    assert data.train.min() == 0 and data.train.max() == 16
    z = data.normalizer.encode(data.train)
    assert abs(z.mean().item()) < 1e-4 and abs(z.std().item() - 1) < 1e-3


def test_sphere_points_lie_on_the_unit_sphere() -> None:
    data = build_data(SphereConfig(name="sphere", size=3000, dim=128, n_val=100, n_test=100))
    assert data.train.shape == (2800, 128)
    torch.testing.assert_close(data.train.norm(dim=1), torch.ones(2800))


def test_robust_normalisation_ignores_outliers() -> None:
    x = torch.randn(10_000, 2, generator=torch.Generator().manual_seed(0))
    x[:50] = 1e6
    robust = Normalizer.fit(x, "robust")
    assert robust.shift.abs().max() < 0.05 and (robust.scale - 1).abs().max() < 0.05
    assert Normalizer.fit(x, "standard").scale.min() > 1000
    constant = Normalizer.fit(torch.ones(10, 3))
    assert torch.equal(constant.scale, torch.ones(3))


def _write(path: Path, array: np.ndarray) -> Path:
    if path.suffix == ".npy":
        np.save(path, array)
    else:
        torch.save(torch.from_numpy(array), path)
    return path


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_embedding_files_get_a_stored_split_reused_by_later_runs(tmp_path: Path,
                                                                  suffix: str) -> None:
    rows = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    path = _write(tmp_path / f"vectors{suffix}", rows)
    cfg = EmbeddingsConfig(name="embeddings", path=str(path), n_val=50, n_test=50,
                           normalize="robust")
    data = build_data(cfg, tmp_path / "study")
    assert data.name == "vectors" and data.dim == 16 and data.train.shape[0] == 400
    split_file = tmp_path / "study" / "datasets" / "vectors" / "split-seed0-val50-test50.json"
    split = json.loads(split_file.read_text())
    assert split["rows"] == 500 and len(split["test"]) == 50
    torch.testing.assert_close(data.test, torch.from_numpy(rows[split["test"]]))
    split["test"], split["train"] = split["train"][:50], split["test"] + split["train"][50:]
    split_file.write_text(json.dumps(split))  # a stored split wins over a fresh one
    torch.testing.assert_close(build_data(cfg, tmp_path / "study").test,
                               torch.from_numpy(rows[split["test"]]))
    _write(path, rows[:400])
    with pytest.raises(DataError, match=r"its content changed since .*split-seed0-val50-test50"
                                        r"\.json was made \(sha256 [0-9a-f]{12} -> [0-9a-f]{12}\)"):
        build_data(cfg, tmp_path / "study")
    # A split stored before fingerprints is adopted by the file, if its row count fits.
    del split["sha256"]
    split_file.write_text(json.dumps(split))
    with pytest.raises(DataError, match="has 400 rows but its stored split"):
        build_data(cfg, tmp_path / "study")
    _write(path, rows)
    build_data(cfg, tmp_path / "study")
    assert json.loads(split_file.read_text())["sha256"] == fingerprint.file_sha256(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        (np.zeros((0, 4), np.float32), "is empty"),
        (np.zeros((10,), np.float32), "has shape (10,), expected [N, D]"),
        (np.array([["a", "b"]] * 10), "values are not numeric"),
        (np.array([[1.0, np.nan]] + [[0.0, 1.0]] * 9), "1 rows hold NaN or Inf (first: row 0)"),
        (np.array([[0.0, 1.0]] * 9 + [[np.inf, 0.0]]), "1 rows hold NaN or Inf (first: row 9)"),
        (b"garbage", "not a readable .npy file"),
        (np.zeros((10, 3), np.float32), "its 10 rows are all zero (zero variance in every "
                                        "dimension); there is no distribution to learn"),
        (np.array([[1.0, 2.0]] * 10), "its 10 rows are all the same vector (zero variance"),
    ],
)
def test_bad_embedding_files_are_explained(tmp_path: Path, content: object,
                                           expected: str) -> None:
    path = tmp_path / "vectors.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    cfg = EmbeddingsConfig(name="embeddings", path=str(path), n_val=1, n_test=1)
    with pytest.raises(DataError) as info:
        build_data(cfg, tmp_path / "study")
    assert str(info.value).startswith(f"dataset.path={path}: ") and expected in str(info.value)
    assert not (tmp_path / "study").exists()


def test_augmentations_are_seeded_and_stay_in_range() -> None:
    x = torch.randn(256, 3, generator=torch.Generator().manual_seed(0))
    noisy = gaussian_noise(0.1)(x, torch.Generator().manual_seed(1))
    assert 0.08 < (noisy - x).std() < 0.12
    mixed = mixup(0.2)(x, torch.Generator().manual_seed(1))
    again = mixup(0.2)(x, torch.Generator().manual_seed(1))
    assert torch.equal(mixed, again) and not torch.equal(mixed, x)
    # Convex combinations of two rows stay inside the data's bounding box.
    assert (mixed >= x.min(0).values - 1e-6).all() and (mixed <= x.max(0).values + 1e-6).all()


# A stored split or hash cache that parses but holds the wrong thing.
@pytest.mark.parametrize(("part", "value", "expected"), [
    ("test", [0, 1, 999], "test holds row 999, outside the file's 40 rows (0 to 39)"),
    ("val", [-1], "val holds row -1, outside the file's 40 rows (0 to 39)"),
    ("train", "abc", "train is 'abc', expected a list of row indices"),
])
def test_a_stored_split_with_bad_indices_is_one_line(tmp_path: Path, part: str, value: object,
                                                      expected: str) -> None:
    path = _write(tmp_path / "rows.npy", np.random.default_rng(0).normal(size=(40, 3)))
    cfg = EmbeddingsConfig(name="embeddings", path=str(path), n_val=8, n_test=8)
    build_data(cfg, tmp_path / "study")
    (split_file,) = (tmp_path / "study" / "datasets" / "rows").glob("split-*.json")
    split = json.loads(split_file.read_text())
    split[part] = value
    split_file.write_text(json.dumps(split))
    with pytest.raises(DataError) as info:
        build_data(cfg, tmp_path / "study")
    assert str(info.value) == f"{split_file}: not a split file ({expected}); move it away to " \
                              f"re-split"


@pytest.mark.parametrize(("held_out", "other"), [("test", "train"), ("val", "train"),
                                                   ("test", "val")])
def test_a_stored_split_whose_held_out_rows_are_trained_on_is_refused(
        tmp_path: Path, held_out: str, other: str) -> None:
    path = _write(tmp_path / "rows.npy", np.random.default_rng(0).normal(size=(40, 3)))
    cfg = EmbeddingsConfig(name="embeddings", path=str(path), n_val=8, n_test=8)
    build_data(cfg, tmp_path / "study")
    (split_file,) = (tmp_path / "study" / "datasets" / "rows").glob("split-*.json")
    split = json.loads(split_file.read_text())
    split[held_out] = split[other]  # a tampered split: its held-out rows are the other's
    split_file.write_text(json.dumps(split))
    with pytest.raises(DataError) as info:
        build_data(cfg, tmp_path / "study")
    first = min(split[other])
    assert str(info.value) == (f"{split_file}: not a split file ({held_out} shares "
                               f"{len(split[other])} rows with {other} (first: row {first}); "
                               f"the splits must be disjoint); move it away to re-split")


@pytest.mark.parametrize("cache", ["[]", '{"x": 1}', "null"])
def test_a_hash_cache_of_another_shape_costs_only_a_rehash(tmp_path: Path, cache: str) -> None:
    path = _write(tmp_path / "rows.npy", np.ones((10, 2), np.float32))
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "sha256.json").write_text(cache.replace("x", str(path.resolve())))
    fingerprint._memo.clear()
    digest = fingerprint.file_sha256(path, tmp_path / "datasets")
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert isinstance(json.loads((tmp_path / "datasets" / "sha256.json").read_text()), dict)


# A tensor saved from a graph is read as values only.
def test_a_tensor_saved_with_requires_grad_is_detached(tmp_path: Path) -> None:
    from flowstudy.data.files import load_vectors

    torch.save(torch.randn(20, 3, requires_grad=True) * 2, tmp_path / "graph.pt")
    torch.save(torch.randn(20, 3).requires_grad_(), tmp_path / "leaf.pt")
    for name in ("graph.pt", "leaf.pt"):
        data = load_vectors(str(tmp_path / name))
        assert not data.requires_grad and data.grad_fn is None


def _data_error(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content, allow_pickle=True)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(UserError) as info:
        load_vectors(str(path))
    return str(info.value).removeprefix(f"dataset.path={path}: ")


def test_data_files_that_cannot_be_trained_on_are_one_line(tmp_path: Path) -> None:
    assert _data_error(tmp_path, "big.npy", np.array([[1e300, 0.0], [0.0, 1.0]])) == \
        "1 rows hold values too large for float32 (|x| > 3.4e38; first: row 0)"
    (tmp_path / "loop.pt").symlink_to(tmp_path / "loop.pt")
    assert _data_error(tmp_path, "loop.pt", None) == "is a symbolic link loop"
    (tmp_path / "dangling.pt").symlink_to(tmp_path / "nowhere.pt")
    assert _data_error(tmp_path, "dangling.pt", None) == "no such file"
    (tmp_path / "dir.pt").mkdir()
    assert _data_error(tmp_path, "dir.pt", None) == \
        "is a directory; give the .pt or .npy file inside it"
    (tmp_path / "vectors.csv").write_text("1,2\n3,4\n")
    assert _data_error(tmp_path, "vectors.csv", None) == \
        "unsupported file type '.csv'; use .pt or .npy"
    assert _data_error(tmp_path, "dict.pt", {"embeddings": torch.zeros(3, 2)}) == \
        ("holds a dict with keys embeddings, expected one tensor [N, D] (save the tensor "
         "itself: torch.save(tensor, path))")
    assert _data_error(tmp_path, "object.npy", np.array([[1, "a"]], dtype=object)).startswith(
        "not a readable .npy file (Object arrays cannot be loaded when allow_pickle=False")
    assert _data_error(tmp_path, "nan.npy", np.array([[0.0, 1.0], [np.nan, 1.0]])) == \
        "1 rows hold NaN or Inf (first: row 1)"


def test_sparse_float16_and_integer_files_load_as_dense_float32(tmp_path: Path) -> None:
    dense = torch.tensor([[0.0, 1.5], [2.0, 0.0], [0.0, 0.0]])
    torch.save(dense.to_sparse(), tmp_path / "sparse.pt")
    np.save(tmp_path / "half.npy", dense.numpy().astype(np.float16))
    np.save(tmp_path / "int.npy", np.array([[1, 2], [3, 4]], dtype=np.int64))
    assert torch.equal(load_vectors(str(tmp_path / "sparse.pt")), dense)
    assert torch.equal(load_vectors(str(tmp_path / "half.npy")), dense)
    assert load_vectors(str(tmp_path / "int.npy")).dtype == torch.float32


def _embeddings(tmp_path: Path, rows: int, dim: int, *overrides: str):
    path = tmp_path / "vectors.npy"
    np.save(path, np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32))
    return compose_config(["dataset=embeddings", f"dataset.path={path}", *overrides]).dataset


def test_too_few_training_rows_are_refused_before_training(tmp_path: Path) -> None:
    cfg = _embeddings(tmp_path, 11, 2, "dataset.n_val=4", "dataset.n_test=4")
    with pytest.raises(ConfigError) as info:
        build_data(cfg, tmp_path / "study")
    assert str(info.value) == ("dataset.n_val=4 is not allowed: a split leaving at least 4 "
                               "training points (here 3); evaluation's k-NN precision/recall "
                               "needs them")


@pytest.mark.parametrize("rows", [3, 5])
def test_a_file_too_small_for_any_split_says_so_not_to_set_sizes(tmp_path: Path,
                                                                  rows: int) -> None:
    """Issue 21 item 11: no split sizes, auto or explicit, can make 3 (or 5) rows work."""
    cfg = _embeddings(tmp_path, rows, 2)
    with pytest.raises(DataError) as info:
        build_data(cfg, tmp_path / "study")
    assert str(info.value) == (f"dataset.path={cfg.path}: {rows} rows are too few to train and "
                               f"evaluate on; a dataset needs at least 6 rows (a validation "
                               f"and a test point, and 4 to train on)")
    assert not (tmp_path / "study").exists()  # refused before a split is written


def test_six_rows_are_the_smallest_file_that_splits(tmp_path: Path) -> None:
    data = build_data(_embeddings(tmp_path, 6, 2), tmp_path / "study")
    assert (data.train.shape[0], data.val.shape[0], data.test.shape[0]) == (4, 1, 1)


def test_vectors_too_wide_to_evaluate_are_refused_before_training(tmp_path: Path) -> None:
    cfg = _embeddings(tmp_path, 12, 50_000, "dataset.n_val=4", "dataset.n_test=4")
    with pytest.raises(UserError) as info:
        build_data(cfg, tmp_path / "study")
    assert str(info.value) == (f"dataset.path={cfg.path}: 50000-d vectors; evaluation handles at "
                               f"most 8192 dims (the Frechet distance needs D x D float64 "
                               f"matrices: 19 GiB each here)")


def test_a_damaged_split_file_is_named(tmp_path: Path) -> None:
    cfg = _embeddings(tmp_path, 40, 2, "dataset.n_val=8", "dataset.n_test=8")
    build_data(cfg, tmp_path / "study")
    split = next((tmp_path / "study" / "datasets").rglob("split-*.json"))
    split.write_text('{"rows": 40, "train": [1, 2')
    with pytest.raises(UserError) as info:
        build_data(cfg, tmp_path / "study")
    assert str(info.value).startswith(f"{split}: not a readable split file (")
    assert str(info.value).endswith("); move it away to re-split")
    split.write_text('{"rows": 40}')
    with pytest.raises(UserError, match=r"not a split file \(needs rows, train, val and test\)"):
        build_data(cfg, tmp_path / "study")


BUILTIN = Path(flowstudy.data.__file__).parent / "builtin"


NPY = BUILTIN / "minilm_stdlib.npy"
# The two bundled corpora (stdlib docstrings; third-party ML library docstrings) and their sizes.
BUNDLED = [(NPY, 8000), (BUILTIN / "minilm_sitepackages.npy", 4000)]


@pytest.mark.parametrize(("npy", "rows"), BUNDLED, ids=["stdlib", "sitepackages"])
def test_file_matches_its_record_and_loads_as_unit_vectors(npy: Path, rows: int) -> None:
    record = json.loads(npy.with_suffix(".json").read_text())
    assert hashlib.sha256(npy.read_bytes()).hexdigest() == record["sha256"]
    stored = np.load(npy, mmap_mode="r")
    assert stored.dtype == np.float16 and str(stored.dtype) == record["dtype"]
    x = load_vectors(str(npy))
    assert x.dtype == torch.float32  # the loader widens float16 for training
    assert x.shape == (record["N"], record["D"]) == (rows, 384)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(len(x)), atol=2e-3, rtol=0)
    assert torch.unique(x, dim=0).shape[0] == len(x)  # distinct sentences, distinct rows


@pytest.mark.parametrize(("npy", "rows"), BUNDLED, ids=["stdlib", "sitepackages"])
def test_rows_are_real_embeddings_of_their_sentences(npy: Path, rows: int) -> None:
    record = json.loads(npy.with_suffix(".json").read_text())
    text = npy.with_name(record["text"])
    assert hashlib.sha256(text.read_bytes()).hexdigest() == record["text_sha256"]
    lines = text.read_text().splitlines()
    assert len(lines) == record["N"] == rows and all(line.count("\t") == 1 for line in lines)
    # Sentence embeddings cluster: a sentence's nearest neighbour is far closer than a random
    # pair, which random unit vectors in 384-d (cosine ~ 0 +- 0.05) would never show.
    x = load_vectors(str(npy))
    cos = x[:500] @ x.T
    cos[torch.arange(500), torch.arange(500)] = -1
    assert cos.max(dim=1).values.median() > 0.5
    assert abs(cos.mean().item()) < 0.2
