"""What the GAN and the VAE share (npgen.models.push_forward): seeded runs, persistence, and the
errors a user sees when fitting. Each test runs on both models."""

import numpy as np
import pytest

from npgen import GAN, VAE

#: Each model with options that exercise its optional parts, and the files its save writes.
MODELS = {
    "gan": (GAN, {"sn_generator": True, "gp_lipschitz": 2.0}, ["discriminator.npz", "generator.npz"]),
    "vae": (VAE, {"kl": "paper", "skip": "densenet"}, ["decoder.npz", "encoder.npz"]),
}


def data(n, seed):
    return (1.0 + np.random.default_rng(seed).standard_normal((n, 1))).astype(np.float32)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_same_run_and_different_seed_different_run(name):
    model_type, _, _ = MODELS[name]
    batch = data(400, seed=5)

    def trained(seed):
        model = model_type(base_width=8, lr=1e-3, seed=seed)
        model.fit(batch, epochs=2, batch_size=100, quiet=True)
        return np.concatenate([net.params for net in model.networks().values()])

    first, again, other = trained(7), trained(7), trained(8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip_reproduces_samples(tmp_path, name):
    model_type, options, files = MODELS[name]
    model = model_type(base_width=8, lr=1e-3, seed=3, **options)
    model.fit(data(300, seed=7), epochs=2, batch_size=100, quiet=True)
    model.save(tmp_path / name)
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["config.json"] + files
    loaded = model_type.load(tmp_path / name)
    assert loaded.config() == model.config()
    np.testing.assert_array_equal(loaded.sample(3000, seed=4), model.sample(3000, seed=4))
    for net_name, net in model.networks().items():
        np.testing.assert_array_equal(loaded.networks()[net_name].params, net.params, err_msg=net_name)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("bad, message", [
    (np.array([[0.0], [np.nan], [1.0], [2.0]]), "NaN or inf"),
    (np.array([[0.0], [np.inf], [1.0], [2.0]]), "NaN or inf"),
    (np.zeros((4, 2)), r"shape \(n, 1\)"),
    (np.zeros((2, 2, 1)), r"shape \(n, 1\)"),
    (np.zeros(4), r"shape \(n, 1\)"),
    ("text", "real numbers"),
])
def test_fit_rejects_bad_data(name, bad, message):
    with pytest.raises(ValueError, match=message):
        MODELS[name][0](base_width=4).fit(bad, epochs=1, batch_size=2, quiet=True)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fit_rejects_a_batch_larger_than_the_data(name):
    with pytest.raises(ValueError, match="batch_size"):
        MODELS[name][0](base_width=4).fit(np.zeros((10, 1)), epochs=1, batch_size=11, quiet=True)
