"""The metric formulas against direct NumPy / SciPy computations and closed forms.

FID (incl. the matrix square root's corner cases: singular, rank-deficient, identical, badly
scaled covariances), feature moments, KID, precision / recall on point clouds with known answers,
Inception Score, and metric names.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from training.metrics.frechet import FeatureMoments, frechet_distance, mean_cov, trace_sqrt_product
from training.metrics.inception_score import inception_score
from training.metrics.kid import kernel_inception_distance, mmd2_unbiased, subset_indices
from training.metrics.precision_recall import precision_recall
from training.metrics.specs import MetricSpec, is_result_key, parse_metric, parse_metrics


# ----------------------------------------------------------------------------------------- FID
def scipy_fid(mu1, s1, mu2, s2) -> float:
    """The textbook computation (Heusel et al. eq. 6 with scipy.linalg.sqrtm of the product)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def closed_form_fid(mu1, a, mu2, b, q=None) -> float:
    """FID of covariances Q diag(a) Q^T and Q diag(b) Q^T (they commute): |dmu|^2 + sum (sqrt a - sqrt b)^2."""
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))


def random_orthogonal(d: int, rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


def gaussian_features(n, d, rng, scale=1.0, shift=0.0):
    mix = rng.standard_normal((d, d)) * scale / np.sqrt(d)
    return rng.standard_normal((n, d)) @ mix + shift


@pytest.mark.parametrize("d, n", [(4, 50), (16, 200), (64, 500)])
def test_fid_matches_scipy_on_gaussian_features(d, n):
    rng = np.random.default_rng(d)
    x, y = gaussian_features(n, d, rng), gaussian_features(n, d, rng, scale=1.5, shift=0.3)
    mu1, s1 = np.mean(x, axis=0), np.cov(x, rowvar=False)
    mu2, s2 = np.mean(y, axis=0), np.cov(y, rowvar=False)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(scipy_fid(mu1, s1, mu2, s2), rel=1e-9, abs=1e-9)
    assert ours > 0.1


def test_moments_match_numpy_and_any_chunking():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((301, 7)) * 3 + 5
    mu, sigma = mean_cov(x)
    np.testing.assert_allclose(mu, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)
    moments = FeatureMoments(7)
    for chunk in np.array_split(x, [1, 2, 50, 51, 300]):
        moments.add(torch.from_numpy(chunk))
    mu2, sigma2 = moments.mean_cov()
    np.testing.assert_allclose(mu2, mu, rtol=1e-12)
    np.testing.assert_allclose(sigma2, sigma, rtol=1e-10, atol=1e-12)
    assert np.array_equal(sigma2, sigma2.T)


def test_moments_errors():
    moments = FeatureMoments(3)
    with pytest.raises(ValueError, match="at least 2"):
        moments.mean_cov()
    with pytest.raises(ValueError, match=r"expected \[N, 3\]"):
        moments.add(torch.zeros(4, 5))


def test_fid_of_identical_distributions_is_zero():
    """sqrtm(S @ S) of an ill-conditioned S is where the product route loses digits; ours stays at 0."""
    rng = np.random.default_rng(1)
    x = gaussian_features(100, 32, rng) * np.logspace(-3, 3, 32)  # condition number ~1e12
    mu, s = np.mean(x, axis=0), np.cov(x, rowvar=False)
    ours = frechet_distance(mu, s, mu, s)
    assert 0.0 <= ours <= 1e-9 * np.trace(s)


@pytest.mark.parametrize("n", [5, 20])
def test_singular_covariances_fewer_samples_than_dims(n):
    """N < D: both covariances singular; SciPy's sqrtm of the product is not reliable, the nuclear-norm identity is.

    tr((A B)^{1/2}) = ||A^{1/2} B^{1/2}||_* (sum of singular values), computed here by SVD.
    """
    rng = np.random.default_rng(n)
    d = 48
    x, y = gaussian_features(n, d, rng), gaussian_features(n, d, rng, shift=0.5)
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    assert np.linalg.matrix_rank(s1) < d
    root = lambda s: (lambda w, v: (v * np.sqrt(np.clip(w, 0, None))) @ v.T)(*np.linalg.eigh(s))  # noqa: E731
    nuclear = np.linalg.svd(root(s1) @ root(s2), compute_uv=False).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(nuclear, rel=1e-7)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * nuclear
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("case", ["full-rank", "rank-deficient", "disjoint-supports", "zero", "huge-scale"])
def test_closed_forms_for_commuting_covariances(case):
    rng = np.random.default_rng(7)
    d = 12
    q = random_orthogonal(d, rng)
    a, b = rng.uniform(0.1, 2.0, d), rng.uniform(0.1, 2.0, d)
    if case == "rank-deficient":
        a[:5] = 0.0
    elif case == "disjoint-supports":
        a[:6], b[6:] = 0.0, 0.0
    elif case == "zero":
        a[:] = 0.0
    elif case == "huge-scale":
        a, b = a * 1e6, b * 1e-6
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = closed_form_fid(mu1, a, mu2, b)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8, abs=1e-8 * max(a.max(), b.max()))
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-8, abs=1e-8 * max(a.max(), b.max()))


def test_one_dimensional_gaussians():
    # W2 between N(m1, v1) and N(m2, v2) is (m1 - m2)^2 + (sqrt v1 - sqrt v2)^2.
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_fid_rejects_bad_inputs():
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="sigma2 holds non-finite"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.full((2, 2), np.nan))


# ----------------------------------------------------------------------------------------- KID
def numpy_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, written out with explicit sums over i != j."""
    m, d = x.shape
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    off = ~np.eye(m, dtype=bool)
    return float(kxx[off].sum() / (m * (m - 1)) + kyy[off].sum() / (m * (m - 1)) - 2 * kxy.sum() / m**2)


def test_mmd2_matches_numpy():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 6)), rng.standard_normal((40, 6)) + 0.5
    assert mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(numpy_mmd2(x, y), rel=1e-12)


def test_kid_with_one_full_subset_is_the_unbiased_mmd():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 5)) * 1.3
    kid = kernel_inception_distance(torch.from_numpy(x), torch.from_numpy(y), num_subsets=1, max_subset_size=30)
    assert kid == pytest.approx(numpy_mmd2(x, y), rel=1e-12)


def test_kid_subsets_match_numpy_with_the_same_draws():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((90, 8)).astype(np.float32), (rng.standard_normal((70, 8)) + 0.2).astype(np.float32)
    kid = kernel_inception_distance(torch.from_numpy(x), torch.from_numpy(y), num_subsets=7, max_subset_size=25, seed=11)
    draws = subset_indices(90, 70, 7, 25, seed=11)
    expected = np.mean([numpy_mmd2(x[g.numpy()].astype(np.float64), y[r.numpy()].astype(np.float64)) for g, r in draws])
    assert kid == pytest.approx(expected, rel=1e-10)
    for g, r in draws:  # without replacement
        assert len(set(g.tolist())) == 25 and len(set(r.tolist())) == 25


def test_kid_separates_distributions_and_is_seeded():
    rng = np.random.default_rng(6)
    same = [torch.from_numpy(rng.standard_normal((200, 16))) for _ in range(2)]
    shifted = torch.from_numpy(rng.standard_normal((200, 16)) + 1.0)
    near = kernel_inception_distance(*same, num_subsets=20, max_subset_size=100)
    far = kernel_inception_distance(same[0], shifted, num_subsets=20, max_subset_size=100)
    assert abs(near) < 0.05 * far
    assert kernel_inception_distance(*same, num_subsets=5, max_subset_size=50, seed=3) == \
        kernel_inception_distance(*same, num_subsets=5, max_subset_size=50, seed=3)


def test_kid_rejects_bad_inputs():
    with pytest.raises(ValueError, match="expected"):
        kernel_inception_distance(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="needs >= 2"):
        kernel_inception_distance(torch.zeros(1, 3), torch.zeros(5, 3))


# ------------------------------------------------------------------------------ precision / recall
def numpy_precision_recall(real: np.ndarray, gen: np.ndarray, k: int) -> tuple[float, float]:
    """Brute force: radius = k-th neighbour distance in the own set; inside = within some radius."""
    def coverage(probes, manifold):
        radii = np.sort(cdist(manifold, manifold), axis=1)[:, k]
        return float(np.mean((cdist(probes, manifold) <= radii[None, :]).any(axis=1)))

    return coverage(gen, real), coverage(real, gen)


def clusters(centres: np.ndarray, per: int, spread: float, rng) -> np.ndarray:
    return np.concatenate([c + spread * rng.standard_normal((per, centres.shape[1])) for c in centres])


def test_identical_sets_have_full_precision_and_recall():
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((120, 5)).astype(np.float32))
    assert precision_recall(x, x.clone(), k=3) == (1.0, 1.0)


def test_disjoint_sets_have_zero_precision_and_recall():
    rng = np.random.default_rng(1)
    real = torch.from_numpy(rng.standard_normal((100, 4)))
    gen = torch.from_numpy(rng.standard_normal((80, 4)) + 100.0)
    assert precision_recall(real, gen, k=3) == (0.0, 0.0)


def test_collapsed_generator_has_high_precision_and_low_recall():
    """Reals: 4 far-apart clusters of 50. Fakes: copies of cluster 0 only -> precision 1, recall exactly 1/4."""
    rng = np.random.default_rng(2)
    real = clusters(np.eye(4, 6) * 50.0, per=50, spread=1.0, rng=rng)
    gen = real[:50].copy()
    precision, recall = precision_recall(torch.from_numpy(real), torch.from_numpy(gen), k=3)
    assert precision == 1.0
    assert recall == 0.25


def test_precision_recall_match_brute_force_for_any_block_size():
    rng = np.random.default_rng(3)
    real = clusters(rng.standard_normal((5, 3)) * 4, per=30, spread=1.0, rng=rng)
    gen = clusters(rng.standard_normal((3, 3)) * 4, per=40, spread=1.5, rng=rng)
    expected = numpy_precision_recall(real, gen, k=3)
    assert 0.0 < expected[0] < 1.0 and 0.0 < expected[1] < 1.0
    for block in (7, 64, 10_000):
        got = precision_recall(torch.from_numpy(real), torch.from_numpy(gen), k=3, block=block)
        assert got == pytest.approx(expected, abs=1e-12)


def test_precision_recall_rejects_bad_k():
    with pytest.raises(ValueError, match="k=5 with 5 samples"):
        precision_recall(torch.zeros(5, 2), torch.zeros(6, 2), k=5)


# ----------------------------------------------------------------------------------------- IS
def numpy_inception_score(logits: np.ndarray, splits: int) -> tuple[float, float]:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    scores = []
    for part in np.array_split(p, splits):
        kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_matches_numpy():
    logits = np.random.default_rng(0).standard_normal((200, 12)) * 3
    mean, std = inception_score(torch.from_numpy(logits), num_splits=10)
    ref = numpy_inception_score(logits, 10)
    assert mean == pytest.approx(ref[0], rel=1e-12)
    assert std == pytest.approx(ref[1], rel=1e-9)


def test_inception_score_known_values():
    k = 8
    confident = torch.full((80, k), -1e4, dtype=torch.float64)
    confident[torch.arange(80), torch.arange(80) % k] = 0.0  # each split holds every class equally often
    assert inception_score(confident, num_splits=10) == pytest.approx((k, 0.0))
    assert inception_score(torch.zeros(50, k), num_splits=5) == pytest.approx((1.0, 0.0))


# ----------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("name, kind, n, keys", [
    ("fid50k_full", "fid", 50_000, ("fid50k_full",)),
    ("kid50k_full", "kid", 50_000, ("kid50k_full",)),
    ("pr50k3_full", "pr", 50_000, ("pr50k3_full_precision", "pr50k3_full_recall")),
    ("is50k", "is", 50_000, ("is50k_mean", "is50k_std")),
    ("fid500_full", "fid", 500, ("fid500_full",)),
    ("pr500_5_full", "pr", 500, ("pr500_5_full_precision", "pr500_5_full_recall")),
])
def test_metric_names_round_trip(name, kind, n, keys):
    spec = parse_metric(name)
    assert (spec.kind, spec.num_gen, spec.name, spec.keys) == (kind, n, name, keys)


def test_num_gen_override_renames_and_caps():
    specs = parse_metrics("fid50k_full, pr50k3_full,is50k", num_gen=2000)
    assert [s.name for s in specs] == ["fid2k_full", "pr2k3_full", "is2k"]
    assert parse_metric("kid50k_full", num_gen=64).name == "kid64_full"
    assert (MetricSpec("kid", 10).max_real, MetricSpec("pr", 10).max_real, MetricSpec("fid", 10).max_real) == \
        (1_000_000, 200_000, None)


@pytest.mark.parametrize("text, match", [
    ("fid50k", "did you mean 'fid50k_full'"),
    ("precision", "not a known metric name"),
    ("", "empty"),
    ("fid50k_full,fid50k_full", "list it once"),
    ("pr3k3_full", None),
])
def test_bad_metric_names(text, match):
    if match is None:
        parse_metrics(text)
        return
    with pytest.raises(ValueError, match=match):
        parse_metrics(text)


def test_result_keys_are_recognised():
    for key in ("fid50k_full", "kid2k_full", "pr50k3_full_precision", "pr500_3_full_recall", "is50k_mean", "is1k_std"):
        assert is_result_key(key), key
    for key in ("fid50k_full_mean", "is50k", "pr50k3_full", "img_per_sec", "kimg", "loss_G", "sec"):
        assert not is_result_key(key), key
