r"""Lipschitz-regularized generative particles (Gu, Birmpa, Pantazis, Rey-Bellet & Katsoulakis, 2022).

N particles y_1..y_N, started from N(0, s^2 I), are transported towards the data x_1..x_M
along the gradient flow of a Lipschitz-regularized f-divergence D_f^L(P || Q) between the
particles' law P and the data's law Q:

    D_f^L(P || Q) = sup_{phi : Lip(phi) <= L}  E_P[phi] - inf_nu { nu + E_Q[f*(phi - nu)] }.

* The discriminator phi = L D is L times an MLP D whose layers are all spectrally normalized
  (leaky ReLU 0.2, which is 1-Lipschitz), so Lip(phi) <= L up to the power iteration's
  estimate of each sigma (the study reports phi's exact constant). Between two particle steps,
  D takes ``discriminator_steps`` Adam steps on minibatches of particles and data, minimizing
  the dual loss of the kernels ``kl_dual_loss`` (KL, Donsker-Varadhan form: nu is optimal in
  closed form) or ``alpha_dual_loss`` (alpha-divergence, alpha > 1, at the optimal shift nu*,
  found by bisection on mean_j f*'(phi(x_j) - nu) = 1).
* The particles follow dy/dt = -grad phi(y), the characteristics of the transport equation
  d_t rho = div(rho grad phi*) of the flow (for the KL a Lipschitz-regularized Fokker-Planck
  equation, for alpha a porous-medium one). The explicit Euler step
      y_i <- y_i - dt grad phi(y_i)                          (kernel ``particle_step``)
  moves a particle by at most L dt, since |grad phi| <= L: the Lipschitz bound is a speed
  limit, and L dt <= h, with h the resolution of the scheme, is its Courant-Friedrichs-Lewy
  condition. npgen takes h = ``resolution`` (0.1 data units by default: a tenth of the modes'
  standard deviation in the bimodal task) and dt = h / L unless ``dt`` is given; a dt with
  L dt > h is refused.
* Convergence is tracked by the particles' kinetic energy, the regularized Fisher information
  I = mean_i |grad phi(y_i)|^2, recorded at every step with the dual estimate of D_f^L.

``sample(n)`` returns n of the trained particles (all of them for n = N); ``save``/``load``
keep the discriminator and the particles. One ``numpy.random.Generator`` seeded with ``seed``
drives the initial particles, the discriminator's initialization and the minibatches.
"""

import os

import numpy as np

from ..nn.adam import Adam
from ..nn.mlp import MLP
from ..util.checks import (as_real_array, check_betas, check_bool, check_choice, check_matrix,
                           check_number, check_seed, dtype_of)
from ..util.progress import progress_bar
from ..util.threads import one_blas_thread
from .saved import load_model, load_saved_arrays, save_model
from .training import MAX_SAMPLES, TrainingDiverged

DIVERGENCES = ("kl", "alpha")
#: Rows of particles whose discriminator gradient is computed at once (one workspace).
GRADIENT_CHUNK = 4096
#: Bisection steps for the alpha-divergence's optimal shift nu* (the bracket halves each time).
SHIFT_BISECTIONS = 60
#: The most particles a model may hold (like a sample, refused before allocation).
MAX_PARTICLES = MAX_SAMPLES


def optimal_shift(phi_q, alpha):
    """nu* with mean_j f*'(phi_q_j - nu*) = 1 for the alpha-divergence, f*'(y) = ((alpha - 1) y_+)^(1/(alpha - 1)).

    The mean decreases in nu from >= 1 at nu = min phi - 1/(alpha - 1) to 0 at nu = max phi;
    bisection on that bracket."""
    q = np.asarray(phi_q, np.float64).ravel()
    low, high = q.min() - 1.0 / (alpha - 1.0), q.max()
    for _ in range(SHIFT_BISECTIONS):
        mid = 0.5 * (low + high)
        slope = ((alpha - 1.0) * np.maximum(q - mid, 0.0)) ** (1.0 / (alpha - 1.0))
        low, high = (mid, high) if slope.mean() > 1.0 else (low, mid)
    return 0.5 * (low + high)


class Particles:
    """Lipschitz-regularized generative particles (see the module doc).

    Parameters
    ----------
    n_particles : int
        N, the number of particles.
    data_dim : int
        Dimension d of the data and the particles.
    divergence : str
        'kl' or 'alpha'.
    alpha : float
        The alpha of the alpha-divergence, > 1 (ignored for the KL).
    lipschitz : float
        L, the discriminator's Lipschitz bound (the particles' speed limit).
    resolution : float
        h of the stability condition L dt <= h (data units).
    dt : float or None
        Time step; None means h / L.
    width, n_layers : int
        The discriminator D is [d, width x (n_layers - 1), 1], spectrally normalized.
    discriminator_steps : int
        Adam steps of D between two particle steps.
    batch_size : int
        Rows of particles and of data in each discriminator step (at most N and M).
    lr, betas : float, (float, float)
        Adam settings of D.
    init_scale : float
        s: the particles start from N(0, s^2 I).
    dtype, seed, backend
        As for the other models.
    """

    def __init__(self, n_particles=1000, data_dim=1, divergence="kl", alpha=2.0, lipschitz=1.0,
                 resolution=0.1, dt=None, width=64, n_layers=4, discriminator_steps=5,
                 batch_size=1000, lr=1e-3, betas=(0.5, 0.999), init_scale=1.0, dtype="float32",
                 seed=0, backend=None):
        self.n_particles = check_number("n_particles", n_particles, low=1, high=MAX_PARTICLES, integer=True)
        self.data_dim = check_number("data_dim", data_dim, low=1, integer=True)
        self.divergence = check_choice("divergence", divergence, DIVERGENCES)
        self.alpha = check_number("alpha", alpha, low=1, low_open=True, high=100)
        self.lipschitz = check_number("lipschitz", lipschitz, low=0, low_open=True)
        self.resolution = check_number("resolution", resolution, low=0, low_open=True)
        self.dt = self.resolution / self.lipschitz if dt is None else check_number("dt", dt, low=0, low_open=True)
        if self.lipschitz * self.dt > self.resolution * (1 + 1e-12):
            raise ValueError(f"dt = {self.dt:g} breaks the stability condition lipschitz * dt <= resolution"
                             f" ({self.lipschitz:g} * {self.dt:g} > {self.resolution:g}); take dt <="
                             f" {self.resolution / self.lipschitz:g}")
        self.width = check_number("width", width, low=1, integer=True)
        self.n_layers = check_number("n_layers", n_layers, low=2, high=8, integer=True)
        self.discriminator_steps = check_number("discriminator_steps", discriminator_steps, low=1,
                                                integer=True)
        self.batch_size = check_number("batch_size", batch_size, low=1, integer=True)
        self.lr = check_number("lr", lr, low=0, low_open=True)
        self.betas = check_betas(betas)
        self.init_scale = check_number("init_scale", init_scale, low=0, low_open=True)
        self.dtype = dtype_of(dtype)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        self.discriminator = MLP([self.data_dim] + [self.width] * (self.n_layers - 1) + [1],
                                 activation="leaky_relu", slope=0.2, spectral_norm=True, dtype=self.dtype,
                                 seed=int(self.rng.integers(2 ** 32)), backend=backend)
        self.backend = self.discriminator.backend
        self.optimizer = Adam(self.discriminator, lr=self.lr, betas=self.betas)
        self.particles = None
        self.trained = False

    def config(self):
        """The constructor arguments (without the backend), as a JSON-able dict."""
        return {"n_particles": self.n_particles, "data_dim": self.data_dim, "divergence": self.divergence,
                "alpha": self.alpha, "lipschitz": self.lipschitz, "resolution": self.resolution,
                "dt": self.dt, "width": self.width, "n_layers": self.n_layers,
                "discriminator_steps": self.discriminator_steps, "batch_size": self.batch_size,
                "lr": self.lr, "betas": list(self.betas), "init_scale": self.init_scale,
                "dtype": self.dtype.name, "seed": self.seed}

    def networks(self):
        return {"discriminator": self.discriminator}

    def _as_array(self, name, values):
        values = as_real_array(name, values, self.dtype, f"(n, {self.data_dim})")
        return check_matrix(name, values, self.data_dim, self.dtype)

    # ----------------------------------------------------------------- the discriminator

    def discriminator_gradient(self, particles, data):
        """Dual loss -D of the divergence on rows of particles and data (as one batch through D,
        one power iteration); writes dLoss/dtheta into discriminator.grads. Returns the loss."""
        n = len(particles)
        both = np.concatenate([particles, data])
        phi = self.discriminator._forward(both) * self.dtype.type(self.lipschitz)
        grad_phi = np.empty_like(phi)
        if self.divergence == "kl":
            loss = self.backend.kl_dual_loss(phi[:n], phi[n:], grad_phi[:n], grad_phi[n:])
        else:
            nu = optimal_shift(phi[n:], self.alpha)
            loss = self.backend.alpha_dual_loss(phi[:n], phi[n:], nu, self.alpha, grad_phi[:n],
                                                grad_phi[n:], np.empty(1, self.dtype))
        grad_phi *= self.dtype.type(self.lipschitz)
        self.discriminator.zero_grad()
        self.discriminator._backward(grad_phi, need_grad_in=False)
        return loss

    @one_blas_thread
    def velocity(self, y):
        """grad phi(y) = L grad D(y) for rows y (n, d), D in evaluation mode, in chunks."""
        y = self._as_array("y", y)
        net = self.discriminator
        out = np.empty_like(y)
        was_training = net.training
        net.eval()
        try:
            for start in range(0, len(y), GRADIENT_CHUNK):
                rows = y[start:start + GRADIENT_CHUNK]
                net._forward(rows)
                ones = np.full((len(rows), 1), self.lipschitz, self.dtype)
                out[start:start + len(rows)] = net._backward(ones, need_grad_in=True, param_grads=False)
        finally:
            net.train(was_training)
        return out

    # ----------------------------------------------------------------- training

    @one_blas_thread
    def fit(self, data, n_steps=400, quiet=False, on_step=None):
        """Transport the particles towards ``data`` (M, d) for ``n_steps`` particle steps.

        Returns the history: per step the dual divergence estimate of the last discriminator
        step (``divergence``) and the kinetic energy mean_i |grad phi(y_i)|^2 (``kinetic_energy``).
        ``on_step(step, history)``, if given, is called after each step. Raises
        :class:`npgen.models.training.TrainingDiverged` if the loss, D's parameters or the
        particles stop being finite.
        """
        data = self._as_array("data", data)
        n_steps = check_number("n_steps", n_steps, low=1, high=10 ** 7, integer=True)
        quiet = check_bool("quiet", quiet)
        rng = self.rng
        y = (rng.standard_normal((self.n_particles, self.data_dim)) * self.init_scale).astype(self.dtype)
        history = {"divergence": [], "kinetic_energy": []}
        n_p, n_q = min(self.batch_size, len(y)), min(self.batch_size, len(data))
        progress = progress_bar(n_steps, label="Particles", unit="step", quiet=quiet)
        try:
            for step in range(1, n_steps + 1):
                for _ in range(self.discriminator_steps):
                    loss = self.discriminator_gradient(y[rng.choice(len(y), n_p, replace=False)],
                                                       data[rng.choice(len(data), n_q, replace=False)])
                    self.optimizer.step()
                kinetic = self.backend.particle_step(y, self.velocity(y), self.dt)
                if not (np.isfinite(loss) and np.isfinite(kinetic) and np.isfinite(self.discriminator.params).all()
                        and np.isfinite(y).all()):
                    raise TrainingDiverged(f"Particles training diverged at step {step}: the dual loss is {loss},"
                                           f" the kinetic energy {kinetic}")
                history["divergence"].append(-loss)
                history["kinetic_energy"].append(kinetic)
                progress.update()
                if on_step is not None:
                    on_step(step, history)
        finally:
            progress.close()
        self.particles = y
        self.trained = True
        return history

    def sample(self, n, seed=None, quiet=True):
        """n of the trained particles, drawn without replacement with ``default_rng(seed)``:
        (n, d), n <= N. Raises RuntimeError if the model is untrained."""
        if not self.trained:
            raise RuntimeError("sample needs trained particles: call fit first (or load a saved model)")
        n = check_number("n", n, low=1, high=self.n_particles, integer=True)
        if seed is not None:
            seed = check_seed(seed)
        check_bool("quiet", quiet)
        return self.particles[np.sort(np.random.default_rng(seed).choice(self.n_particles, n, replace=False))]

    # ----------------------------------------------------------------- persistence

    def save(self, path_dir):
        """Write discriminator.npz, particles.npy and config.json (last) into ``path_dir``."""
        if not self.trained:
            raise RuntimeError("save needs trained particles: call fit first")
        save_model(self, path_dir, {"particles": self.particles})

    @classmethod
    def load(cls, path_dir, backend=None):
        """Read a model written by :meth:`save`."""
        model = load_model(cls, path_dir, backend)
        particles = load_saved_arrays(path_dir, ("particles",))["particles"]
        path = os.path.join(os.fspath(path_dir), "particles.npy")
        if particles.shape != (model.n_particles, model.data_dim) or particles.dtype != model.dtype \
                or not np.isfinite(particles).all():
            raise ValueError(f"{path} must hold finite {model.dtype.name} particles of shape"
                             f" {(model.n_particles, model.data_dim)}, got {particles.dtype.name} {particles.shape}")
        model.particles = particles
        model.trained = True
        return model
