"""Lipschitz-regularized generative particles: their kernels in every backend against numpy_ref
and finite differences, the model's gradients, the stability condition, fit/sample/save/load."""

import numpy as np
import pytest

from finite_differences import assert_matches_fd, central_difference
from npgen.data import two_gaussians
from npgen.kernels import get_backend, numpy_ref
from npgen.models import Particles
from npgen.models.particles import optimal_shift

BACKENDS = ["numpy", "cpu"]
ALPHAS = [1.5, 2.0, 3.0]


def phis(dtype=np.float64, seed=0, n=7, m=9):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1)).astype(dtype), (1.5 * rng.standard_normal((m, 1))).astype(dtype)


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_dual_loss_matches_numpy_ref(name, dtype):
    phi_p, phi_q = phis(dtype)
    phi_q[0] = 80.0  # exp(80) overflows float32: the kernel shifts by the maximum
    loss, gp, gq = numpy_ref.kl_dual_loss(phi_p, phi_q)
    grad_p, grad_q = np.empty_like(phi_p), np.empty_like(phi_q)
    got = get_backend(name).kl_dual_loss(phi_p, phi_q, grad_p, grad_q)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert got == pytest.approx(loss, rel=rtol)
    np.testing.assert_allclose(grad_p, gp, rtol=rtol)
    np.testing.assert_allclose(grad_q, gq, rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", ALPHAS)
def test_alpha_dual_loss_matches_numpy_ref(name, dtype, alpha):
    phi_p, phi_q = phis(dtype, seed=1)
    loss, gp, gq, gnu = numpy_ref.alpha_dual_loss(phi_p, phi_q, 0.2, alpha)
    grad_p, grad_q, grad_nu = np.empty_like(phi_p), np.empty_like(phi_q), np.empty(1, dtype)
    got = get_backend(name).alpha_dual_loss(phi_p, phi_q, 0.2, alpha, grad_p, grad_q, grad_nu)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert got == pytest.approx(loss, rel=rtol)
    np.testing.assert_allclose(grad_p, gp, rtol=rtol)
    np.testing.assert_allclose(grad_q, gq, rtol=rtol, atol=1e-7 if dtype == np.float32 else 1e-15)
    assert grad_nu[0] == pytest.approx(gnu, rel=rtol, abs=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_particle_step_matches_numpy_ref(name, dtype):
    rng = np.random.default_rng(2)
    y, v = rng.standard_normal((11, 3)).astype(dtype), rng.standard_normal((11, 3)).astype(dtype)
    y_ref, kinetic_ref = numpy_ref.particle_step(y, v, 0.1)
    got = get_backend(name).particle_step(y, v, 0.1)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    assert got == pytest.approx(kinetic_ref, rel=rtol)
    np.testing.assert_allclose(y, y_ref, rtol=rtol, atol=rtol)


def test_kl_dual_loss_gradients_match_finite_differences():
    phi_p, phi_q = phis()
    loss, gp, gq = numpy_ref.kl_dual_loss(phi_p, phi_q)
    assert_matches_fd(gp.ravel(), central_difference(lambda: numpy_ref.kl_dual_loss(phi_p, phi_q)[0], phi_p))
    assert_matches_fd(gq.ravel(), central_difference(lambda: numpy_ref.kl_dual_loss(phi_p, phi_q)[0], phi_q))
    # the Donsker-Varadhan value, written out
    assert -loss == pytest.approx(phi_p.mean() - np.log(np.mean(np.exp(phi_q))), rel=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_alpha_dual_loss_gradients_match_finite_differences(alpha):
    phi_p, phi_q = phis(seed=3)
    nu = np.array([0.1])

    def loss():
        return numpy_ref.alpha_dual_loss(phi_p, phi_q, float(nu[0]), alpha)[0]
    _, gp, gq, gnu = numpy_ref.alpha_dual_loss(phi_p, phi_q, 0.1, alpha)
    assert_matches_fd(gp.ravel(), central_difference(loss, phi_p))
    assert_matches_fd(gq.ravel(), central_difference(loss, phi_q))
    assert_matches_fd(np.array([gnu]), central_difference(loss, nu))


@pytest.mark.parametrize("alpha", ALPHAS)
def test_alpha_conjugate_is_the_legendre_transform(alpha):
    x = np.linspace(0, 20, 200001)
    f = (x ** alpha - 1) / (alpha * (alpha - 1))
    for y in (-1.0, 0.0, 0.3, 1.7):
        conj, slope = numpy_ref.alpha_conjugate(np.array(y), alpha)
        assert conj == pytest.approx(np.max(x * y - f), abs=1e-6)
        assert slope == pytest.approx(x[np.argmax(x * y - f)], abs=1e-3)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_optimal_shift_minimizes_the_alpha_loss(alpha):
    phi_p, phi_q = phis(seed=4)
    nu = optimal_shift(phi_q, alpha)
    loss, _, _, grad_nu = numpy_ref.alpha_dual_loss(phi_p, phi_q, nu, alpha)
    assert abs(grad_nu) < 1e-9
    for step in (1e-3, -1e-3, 0.5, -0.5):
        assert numpy_ref.alpha_dual_loss(phi_p, phi_q, nu + step, alpha)[0] >= loss


def test_particle_step_kinetic_energy_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    y, v = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    fd = central_difference(lambda: numpy_ref.particle_step(y, v, 0.25)[1], v)
    assert_matches_fd(2 * v.ravel() / len(v), fd)
    fd_y = central_difference(lambda: numpy_ref.particle_step(y, v, 0.25)[0][1, 0], v)
    expected = np.zeros(v.size)
    expected[2] = -0.25   # d y_new[1, 0] / d v[1, 0] = -dt
    assert_matches_fd(expected, fd_y)


# --------------------------------------------------------------------------- the model


def small_model(**options):
    options = {"n_particles": 40, "width": 8, "n_layers": 3, "batch_size": 30, "dtype": "float64", **options}
    return Particles(**options)


@pytest.mark.parametrize("divergence", ["kl", "alpha"])
def test_discriminator_gradient_matches_finite_differences(divergence):
    model = small_model(divergence=divergence, lipschitz=2.0)
    rng = np.random.default_rng(6)
    y, x = rng.standard_normal((20, 1)), 3 + rng.standard_normal((25, 1))
    net = model.discriminator
    net.eval()  # no power iteration: the loss is a fixed function of the parameters
    model.discriminator_gradient(y, x)
    grads = net.grads.copy()
    picks = rng.choice(net.params.size, 12, replace=False)
    fd = central_difference(lambda: model.discriminator_gradient(y, x), net.params, picks)
    assert_matches_fd(grads[picks], fd)


def test_velocity_is_lipschitz_times_the_gradient_of_the_network():
    model = small_model(lipschitz=3.0)
    y = np.linspace(-2, 2, 9).reshape(-1, 1)
    net = model.discriminator
    net.eval()
    rows = [y[i:i + 1] for i in range(len(y))]
    fd = [central_difference(lambda row=row: 3.0 * float(net.forward(row)[0, 0]), row) for row in rows]
    assert_matches_fd(model.velocity(y).ravel(), np.concatenate(fd))


def test_stability_condition_is_enforced():
    assert Particles(lipschitz=4.0, resolution=0.2).dt == pytest.approx(0.05)
    with pytest.raises(ValueError, match="stability condition lipschitz \\* dt <= resolution"):
        Particles(lipschitz=2.0, dt=0.1, resolution=0.1)


def test_particles_reach_both_modes_and_their_kinetic_energy_decays():
    data = two_gaussians(4.0, n=400, seed=0)
    model = Particles(n_particles=300, width=32, n_layers=3, batch_size=300, seed=0)
    history = model.fit(data, n_steps=200, quiet=True)
    x = model.sample(300).ravel()
    assert min(np.mean(x < -2), np.mean(x > 2)) > 0.35
    assert np.mean(np.abs(x) <= 2) < 0.1
    energy = np.array(history["kinetic_energy"])
    assert energy.max() > 0.05 and energy[-1] < 0.05 * energy.max()
    step = np.abs(np.diff(np.asarray(history["kinetic_energy"])))
    assert len(energy) == 200 and np.isfinite(step).all()


def test_fit_sample_save_load(tmp_path):
    data = two_gaussians(2.0, n=200, seed=1)
    model = small_model(seed=3)
    with pytest.raises(RuntimeError, match="sample needs trained particles"):
        model.sample(5)
    model.fit(data, n_steps=3, quiet=True)
    model.save(tmp_path / "p")
    loaded = Particles.load(tmp_path / "p")
    assert loaded.config() == model.config()
    np.testing.assert_array_equal(loaded.particles, model.particles)
    np.testing.assert_array_equal(loaded.discriminator.params, model.discriminator.params)
    np.testing.assert_array_equal(loaded.sample(10, seed=4), model.sample(10, seed=4))
    np.testing.assert_array_equal(np.sort(model.sample(40, seed=1), axis=0), np.sort(model.particles, axis=0))
    with pytest.raises(ValueError, match="n must be an integer in \\[1, 40\\]"):
        model.sample(41)
    np.save(tmp_path / "p" / "particles.npy", np.zeros((3, 1)))
    with pytest.raises(ValueError, match="particles.npy must hold finite float64 particles of shape \\(40, 1\\)"):
        Particles.load(tmp_path / "p")


def test_same_seed_same_particles():
    data = two_gaussians(3.0, n=100, seed=2)
    a, b = small_model(seed=7), small_model(seed=7)
    a.fit(data, n_steps=3, quiet=True)
    b.fit(data, n_steps=3, quiet=True)
    np.testing.assert_array_equal(a.particles, b.particles)


@pytest.mark.parametrize("options, message", [
    ({"divergence": "js"}, "divergence must be one of"),
    ({"alpha": 1.0}, "alpha must be"),
    ({"lipschitz": 0}, "lipschitz must be"),
    ({"n_particles": 0}, "n_particles must be"),
    ({"dt": -1.0}, "dt must be"),
    ({"dtype": "int8"}, "dtype must be"),
])
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        Particles(**options)


def test_bad_data():
    model = small_model()
    with pytest.raises(ValueError, match="data contains NaN"):
        model.fit(np.full((10, 1), np.nan), n_steps=1, quiet=True)
    with pytest.raises(ValueError, match="data must have shape"):
        model.fit(np.zeros((10, 2)), n_steps=1, quiet=True)
    with pytest.raises(ValueError, match="n_steps must be"):
        model.fit(np.zeros((10, 1)), n_steps=0, quiet=True)
