"""npgen.analysis.mixtures: MW2 against closed forms and POT's own function, MGW2's invariance
to isometries and across dimensions, and fitting (bad inputs: tests/test_bad_inputs.py)."""

import numpy as np
import ot
import pytest
from scipy import linalg

from npgen.analysis.mixtures import (Mixture, component_w2_squared, fit_mixture, mgw2, mw2,
                                     target_mixture)
from npgen.data import two_gaussians


def rotation(angle):
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def random_mixture(rng, k, d):
    factors = rng.standard_normal((k, d, d))
    weights = rng.random(k) + 0.2
    return Mixture(weights / weights.sum(), rng.standard_normal((k, d)) * 3,
                   factors @ factors.transpose(0, 2, 1) + 0.1 * np.eye(d))


def moved(mixture, matrix, shift):
    """The image of ``mixture`` under x -> matrix x + shift (matrix (d', d))."""
    return Mixture(mixture.weights, mixture.means @ matrix.T + shift,
                   matrix @ mixture.covariances @ matrix.T)


def gaussian(mean, covariance):
    return Mixture([1.0], [mean], [covariance])


def test_mw2_of_single_gaussians_is_their_w2_squared():
    # 1-D: W2^2 = (m - n)^2 + (s - t)^2.
    assert mw2(gaussian([1.0], [[4.0]]), gaussian([-2.0], [[0.25]])) == pytest.approx(
        3.0 ** 2 + (2.0 - 0.5) ** 2, rel=1e-12)
    # 2-D, covariances that do not commute: |m - n|^2 + tr S + tr T - 2 tr (S^1/2 T S^1/2)^1/2.
    S = np.array([[2.0, 0.3], [0.3, 0.5]])
    T = rotation(0.7) @ np.diag([3.0, 0.2]) @ rotation(0.7).T
    root = linalg.sqrtm(S).real
    expected = 1.0 ** 2 + 2.0 ** 2 + np.trace(S + T) - 2 * np.trace(linalg.sqrtm(root @ T @ root).real)
    assert mw2(gaussian([0.0, 1.0], S), gaussian([1.0, -1.0], T)) == pytest.approx(expected, rel=1e-10)


def test_mw2_is_pots_gmm_ot_loss_and_vanishes_on_identical_mixtures():
    rng = np.random.default_rng(1)
    a, b = random_mixture(rng, 3, 2), random_mixture(rng, 4, 2)
    expected = ot.gmm.gmm_ot_loss(a.means, b.means, a.covariances, b.covariances, a.weights,
                                  b.weights)
    assert mw2(a, b) == pytest.approx(float(expected), rel=1e-10)
    np.testing.assert_allclose(component_w2_squared(a, b), ot.gmm.dist_bures_squared(
        a.means, b.means, a.covariances, b.covariances), rtol=1e-10, atol=1e-10)
    assert mw2(a, b) > 1
    assert mw2(a, a) == pytest.approx(0, abs=1e-9)
    assert mw2(target_mixture(3.0), target_mixture(3.0)) == pytest.approx(0, abs=1e-12)


def test_mw2_of_the_target_against_a_shifted_one():
    # Two equal-weight pairs of N(-+m, 1) against N(-+m', 1): each component moves by |m - m'|.
    assert mw2(target_mixture(3.0), target_mixture(2.0)) == pytest.approx(1.0, rel=1e-12)


def test_mgw2_is_invariant_to_rotation_and_translation_and_mw2_is_not():
    rng = np.random.default_rng(2)
    a = random_mixture(rng, 3, 2)
    b = moved(a, rotation(1.1), np.array([5.0, -2.0]))
    assert mw2(a, b) > 1
    assert mgw2(a, b) == pytest.approx(0, abs=1e-8)
    other = random_mixture(rng, 3, 2)
    assert mgw2(a, other) > 1  # and it does tell different mixtures apart


def test_mgw2_compares_a_mixture_with_its_embedding_in_a_larger_space():
    line = Mixture([0.2, 0.5, 0.3], [[-2.0], [0.0], [3.0]], [[[0.5]], [[1.0]], [[0.2]]])
    embedding = rotation(0.4)[:, :1]  # an isometry of R into R^2
    plane = moved(line, embedding, np.array([1.0, 2.0]))
    assert plane.dimension == 2 and np.linalg.eigvalsh(plane.covariances).min() < 1e-12
    assert mgw2(line, plane) == pytest.approx(0, abs=1e-8)
    assert mgw2(plane, line) == pytest.approx(0, abs=1e-8)
    stretched = moved(line, 2 * embedding, np.zeros(2))
    assert mgw2(line, stretched) > 1


def test_fit_mixture_recovers_the_target():
    samples = two_gaussians(4.0, n=20000, seed=3)
    fitted = fit_mixture(samples, 2, seed=0)
    order = np.argsort(fitted.means[:, 0])
    np.testing.assert_allclose(fitted.means[order, 0], [-4, 4], atol=0.05)
    np.testing.assert_allclose(fitted.covariances[order, 0, 0], [1, 1], atol=0.05)
    np.testing.assert_allclose(fitted.weights, [0.5, 0.5], atol=0.02)
    # MW2 is a mode-coverage number: the mass the fit puts in excess on one mode crosses the
    # 2m = 8 between the modes, at cost 64 per unit, which outweighs the in-mode errors.
    excess = abs(fitted.weights[0] - 0.5)
    assert mw2(fitted, target_mixture(4.0)) == pytest.approx(64 * excess, abs=1e-3)
    again = fit_mixture(samples.ravel(), 2, seed=0)
    np.testing.assert_array_equal(again.means, fitted.means)
