"""Bad inputs, table-driven, through the command line and the API.

Every row ends in one sentence on one line that names the argument or the file: through
``npgen.cli.main`` with exit status 2 (one line holding ": error: ", no traceback), through the
API with the row's exception type. Every row also runs inside one shared folder of finished
runs, user files, studies and network files, and that whole folder must be byte-identical
afterwards: a rejected command writes nothing and changes nothing.
"""

import hashlib
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from npgen import GAN, MLP, SGM, VAE, Adam, ScoreNetwork, cli, kernels, theory
from npgen.analysis import mixtures, transport
from npgen.data import digit_subset, mnist, two_digit_mixture
from npgen.models import (DigitClassifier, Particles, VectorSGM, WassersteinEmbedding, fit_many,
                          interpolation, training)
from npgen.models.sgm import geometric_noise_levels, langevin_step_size
from npgen.nn import DenseScoreNetwork
from npgen.nn.files import CONFIG_KEY
from npgen.study import cluster, reproduce, runs, sweep
from tiny_study import ONE_RUN_PLAN, register

def tree_digest(root):
    """{relative path: sha256 of the file, or 'dir'} for everything under ``root``."""
    digest = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            digest[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                digest[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return digest


def rewrite_network_file(source, target, meta_change=None, arrays_change=None, text=None):
    """Copy the network file ``source`` to ``target`` with its configuration entry changed."""
    with np.load(source) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays[CONFIG_KEY]))
    meta.update(meta_change or {})
    arrays[CONFIG_KEY] = np.array(json.dumps(meta) if text is None else text)
    arrays.update(arrays_change or {})
    np.savez(target, **arrays)


def rewrite_model_config(source, target, change):
    """Copy the saved model folder ``source`` to ``target``; ``change(meta)`` edits its config.json."""
    shutil.copytree(source, target)
    path = os.path.join(target, "config.json")
    with open(path, encoding="utf-8") as handle:
        meta = json.load(handle)
    change(meta)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(meta, handle)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The shared folder: finished runs, user files, studies, damaged files (see the module doc)."""
    patch = pytest.MonkeyPatch()
    register(patch, ONE_RUN_PLAN)
    patch.setattr(cluster, "CONNECT_TIMEOUT", 2.0)  # a scheduler that does not answer: 2 s, not 30
    w = tmp_path_factory.mktemp("world")
    patch.chdir(w)
    for model in ("gan", "sgm"):
        assert cli.main(["train", model, "--m", "5", "--preset", "tiny", "--out", f"{model}-run"]) == 0
    (w / "mine").mkdir()
    (w / "mine" / "config.json").write_text('{"my": "own settings"}')
    (w / "mine" / "notes.txt").write_text("nothing to do with npgen")
    (w / "file.txt").write_text("a user's file")
    (w / "ro").mkdir()
    (w / "ro" / "kept.txt").write_text("read-only")
    os.chmod(w / "ro", 0o555)
    if os.geteuid() == 0:  # root writes anywhere: let os.access report the folder's mode bits
        real_access = os.access
        patch.setattr(os, "access", lambda path, mode, **kw: (
            False if os.path.abspath(path) == str(w / "ro") and mode & os.W_OK else real_access(path, mode, **kw)))
    (w / "study" / "runs").mkdir(parents=True)
    (w / "study" / "study.json").write_text('{"preset": "tiny"}')
    (w / "study" / "runs" / "kept.txt").write_text("a run")
    (w / "badstudy-list").mkdir()
    (w / "badstudy-list" / "study.json").write_text("[1, 2]")
    (w / "badstudy-bytes").mkdir()
    (w / "badstudy-bytes" / "study.json").write_bytes(b"\xff\xfe\x00{")
    nets = w / "nets"
    nets.mkdir()
    MLP([1, 8, 8, 1], seed=0).save(nets / "mlp.npz")
    np.savez(nets / "foreign.npz", w=np.ones(3))
    rewrite_network_file(nets / "mlp.npz", nets / "huge.npz", {"sizes": [1, 10 ** 6, 10 ** 6, 1]})
    rewrite_network_file(nets / "mlp.npz", nets / "future.npz", {"format": 99})
    rewrite_network_file(nets / "mlp.npz", nets / "damaged.npz", text='{"sizes": [1, 8')
    rewrite_network_file(nets / "mlp.npz", nets / "list.npz", text="[1, 8, 8, 1]")
    rewrite_network_file(nets / "mlp.npz", nets / "kind.npz", {"kind": "Flow"})
    rewrite_network_file(nets / "mlp.npz", nets / "strbool.npz", {"spectral_norm": "false"})
    rewrite_network_file(nets / "mlp.npz", nets / "nan.npz",
                         arrays_change={"0.weight": np.full((8, 1), np.nan, np.float32)})
    ScoreNetwork(seed=0).save(nets / "bare-score.npz")
    models = w / "models"
    rewrite_model_config(w / "gan-run" / "model", models / "gan-future", lambda meta: meta.update(format=99))
    rewrite_model_config(w / "gan-run" / "model", models / "gan-strbool",
                         lambda meta: meta["config"].update(sn_generator="false"))
    rewrite_model_config(w / "sgm-run" / "model", models / "sgm-badstd",
                         lambda meta: meta["standardization"].update(std=-1.0))
    shutil.copytree(w / "gan-run" / "model", models / "gan-damaged")
    (models / "gan-damaged" / "config.json").write_text('{"model": "GAN", "format": 1, "conf')
    yield w
    os.chmod(w / "ro", 0o755)
    patch.undo()


# --------------------------------------------------------------------------- the command line

CLI_ROWS = [
    # options that do not apply to the model are refused, not recorded
    ("sgm-gp", ["train", "sgm", "--m", "5", "--gp", "5"], "--gp"),
    ("sgm-sn", ["train", "sgm", "--m", "5", "--sn-generator"], "--sn-generator"),
    ("sgm-layers", ["train", "sgm", "--m", "5", "--layers", "7"], "--layers"),
    ("sgm-skip", ["train", "sgm", "--m", "5", "--skip", "resnet"], "--skip"),
    ("sgm-kl", ["train", "sgm", "--m", "5", "--kl", "paper"], "--kl"),
    ("gan-kl", ["train", "gan", "--m", "5", "--kl", "paper"], "--kl"),
    ("gan-weighting", ["train", "gan", "--m", "5", "--weighting", "sigma2"], "--weighting"),
    ("gan-denoise", ["train", "gan", "--m", "5", "--denoise"], "--denoise"),
    ("vae-gp", ["train", "vae", "--m", "5", "--gp", "5"], "--gp"),
    ("vae-sn", ["train", "vae", "--m", "5", "--sn-generator"], "--sn-generator"),
    ("vae-denoise", ["train", "vae", "--m", "5", "--denoise"], "--denoise"),
    ("vae-latent", ["train", "vae", "--m", "5", "--latent", "cauchy"], "--latent"),
    ("sgm-latent", ["train", "sgm", "--m", "5", "--latent", "cauchy"], "--latent"),
    ("latent-unknown", ["train", "gan", "--m", "5", "--latent", "laplace"], "--latent"),
    ("particles-latent", ["train", "particles", "--m", "5", "--latent", "cauchy"], "--latent"),
    ("particles-gp", ["train", "particles", "--m", "5", "--gp", "5"], "--gp"),
    ("gan-particles", ["train", "gan", "--m", "5", "--particles", "100"], "--particles"),
    ("vae-divergence", ["train", "vae", "--m", "5", "--divergence", "alpha"], "--divergence"),
    ("particles-count-0", ["train", "particles", "--m", "5", "--particles", "0"], "--particles"),
    ("particles-count-text", ["train", "particles", "--m", "5", "--particles", "many"], "--particles"),
    ("divergence-unknown", ["train", "particles", "--m", "5", "--divergence", "js"], "--divergence"),
    ("particles-into-a-gan-run", ["train", "particles", "--m", "5", "--preset", "tiny", "--out", "gan-run"],
     "already holds an npgen run"),
    # values out of range, not numbers, unknown names
    ("vae-layers-100-into-a-gan-run", ["train", "vae", "--m", "7", "--layers", "100", "--out", "gan-run"],
     "--layers"),
    ("gan-layers-1", ["train", "gan", "--m", "5", "--layers", "1"], "--layers"),
    ("m-negative", ["train", "gan", "--m", "-2"], "m must be"),
    ("m-nan", ["train", "gan", "--m", "nan"], "m must be a finite number in [0, 1000]"),
    ("m-inf", ["train", "gan", "--m", "inf"], "m must be a finite number in [0, 1000]"),
    ("m-text", ["train", "gan", "--m", "x"], "--m"),
    ("m-missing", ["train", "gan"], "--m"),
    ("seed-negative", ["train", "gan", "--m", "5", "--seed", "-1"], "seed"),
    ("seed-fraction", ["train", "gan", "--m", "5", "--seed", "1.5"], "--seed"),
    ("gp-zero", ["train", "gan", "--m", "5", "--gp", "0"], "--gp"),
    ("gp-negative", ["train", "gan", "--m", "5", "--gp", "-5"], "--gp"),
    ("gp-nan", ["train", "gan", "--m", "5", "--gp", "nan"], "--gp"),
    ("model-unknown", ["train", "flow", "--m", "5"], "model"),
    ("preset-unknown", ["train", "gan", "--m", "5", "--preset", "huge"], "--preset"),
    ("skip-unknown", ["train", "gan", "--m", "5", "--skip", "highway"], "--skip"),
    # npgen train never overwrites a run or a user's files
    ("train-into-a-run", ["train", "gan", "--m", "5", "--preset", "tiny", "--out", "gan-run"],
     "already holds an npgen run"),
    ("train-other-seed-into-a-run", ["train", "gan", "--m", "5", "--preset", "tiny", "--seed", "1",
                                     "--out", "gan-run"], "--force"),
    ("train-into-the-current-folder", ["train", "gan", "--m", "5", "--preset", "tiny", "--out", "."],
     "is the current folder"),
    ("train-into-a-parent-folder", ["train", "gan", "--m", "5", "--preset", "tiny", "--out", ".."],
     "is the current folder or holds it"),
    ("train-into-a-user-folder", ["train", "gan", "--m", "5", "--preset", "tiny", "--out", "mine"],
     "holds no npgen run"),
    ("force-into-a-user-folder", ["train", "gan", "--m", "5", "--preset", "tiny", "--out", "mine", "--force"],
     "holds no npgen run"),
    ("out-is-a-file", ["train", "gan", "--m", "5", "--out", "file.txt"], "is an existing file"),
    ("out-under-a-file", ["train", "gan", "--m", "5", "--out", "file.txt/run"], "lies under the file"),
    ("out-read-only", ["train", "gan", "--m", "5", "--out", "ro/run"], "read-only"),
    ("out-empty", ["train", "gan", "--m", "5", "--out", ""], "--out must be a folder path"),
    # training that diverges ends in one sentence and leaves the old run whole
    ("gan-diverges-over-a-run", ["train", "gan", "--m", "5", "--preset", "blowup", "--out", "gan-run", "--force"],
     "GAN training"),
    ("sgm-diverges", ["train", "sgm", "--m", "5", "--preset", "blowup", "--out", "new-sgm-run"], "SGM training"),
    ("vae-diverges", ["train", "vae", "--m", "5", "--preset", "blowup", "--out", "new-vae-run"], "VAE training"),
    # npgen reproduce changes nothing when it rejects its arguments
    ("reproduce-paper-jobs-0", ["reproduce", "--preset", "paper", "--jobs", "0", "--out", "study"], "--jobs"),
    ("reproduce-jobs-negative", ["reproduce", "--jobs", "-3", "--out", "study"], "--jobs"),
    ("reproduce-jobs-text", ["reproduce", "--jobs", "x", "--out", "study"], "--jobs"),
    ("reproduce-only-empty", ["reproduce", "--only", "", "--out", "study"], "--only"),
    ("reproduce-only-commas", ["reproduce", "--only", " , ", "--out", "study"], "--only"),
    ("reproduce-only-unknown", ["reproduce", "--only", "fig9", "--out", "study"], "--only"),
    ("reproduce-other-preset", ["reproduce", "--preset", "paper", "--out", "study"], "tiny preset"),
    ("reproduce-preset-unknown", ["reproduce", "--preset", "huge", "--out", "study"], "--preset"),
    ("reproduce-device-unknown", ["reproduce", "--device", "tpu", "--out", "study"], "--device"),
    ("reproduce-device-cuda-jobs", ["reproduce", "--device", "cuda", "--jobs", "4", "--out", "study"],
     "drop --jobs"),
    ("reproduce-out-file", ["reproduce", "--out", "file.txt"], "is an existing file"),
    ("reproduce-out-under-file", ["reproduce", "--out", "file.txt/study"], "lies under the file"),
    ("reproduce-out-read-only", ["reproduce", "--out", "ro/study"], "read-only"),
    ("reproduce-out-user-folder", ["reproduce", "--preset", "tiny", "--out", "mine"], "no study.json"),
    ("reproduce-study-json-list", ["reproduce", "--preset", "tiny", "--out", "badstudy-list"],
     "badstudy-list/study.json"),
    ("reproduce-study-json-bytes", ["reproduce", "--preset", "tiny", "--out", "badstudy-bytes"],
     "badstudy-bytes/study.json"),
    # Figure 7's data: a folder given with --mnist must serve, and applies to Figure 7 only
    ("reproduce-mnist-missing", ["reproduce", "--preset", "tiny", "--only", "fig7", "--mnist", "nowhere",
                                 "--out", "study"], "does not exist"),
    ("reproduce-mnist-a-file", ["reproduce", "--preset", "tiny", "--only", "fig7", "--mnist", "file.txt",
                                "--out", "study"], "is a file, not a folder"),
    ("reproduce-mnist-without-idx", ["reproduce", "--preset", "tiny", "--only", "fig7", "--mnist", "mine",
                                     "--out", "study"], "--mnist"),
    ("reproduce-mnist-without-fig7", ["reproduce", "--preset", "tiny", "--only", "fig3", "--mnist", "mine",
                                      "--out", "study"], "--mnist applies to Figure 7 only"),
    ("reproduce-fig7-preset-without-settings", ["reproduce", "--preset", "tiny", "--only", "fig7", "--out", "study"],
     "Figure 7 cannot run: the tiny preset has no Figure 7 settings"),
    # npgen lipschitz: every file it cannot use, in one sentence naming the file
    ("lipschitz-missing", ["lipschitz", "missing.npz"], "no such file: missing.npz"),
    ("lipschitz-foreign", ["lipschitz", "nets/foreign.npz"], "foreign.npz is not an npgen network"),
    ("lipschitz-text-file", ["lipschitz", "file.txt"], "file.txt is not a readable .npz"),
    ("lipschitz-folder", ["lipschitz", "gan-run"], "gan-run"),
    ("lipschitz-million-wide", ["lipschitz", "nets/huge.npz"], "at most"),
    ("lipschitz-future-format", ["lipschitz", "nets/future.npz"], "format version 99"),
    ("lipschitz-damaged-text", ["lipschitz", "nets/damaged.npz"], "damaged.npz has a corrupt npgen configuration"),
    ("lipschitz-config-not-object", ["lipschitz", "nets/list.npz"], "list.npz has a corrupt npgen configuration"),
    ("lipschitz-unknown-kind", ["lipschitz", "nets/kind.npz"], "kind 'Flow'"),
    ("lipschitz-string-bool", ["lipschitz", "nets/strbool.npz"], "spectral_norm must be True or False"),
    ("lipschitz-nan-weights", ["lipschitz", "nets/nan.npz"], "NaN or inf"),
    ("lipschitz-sigma-on-mlp", ["lipschitz", "nets/mlp.npz", "--sigma", "0.5"], "--sigma applies to score"),
    ("lipschitz-sigma-zero", ["lipschitz", "sgm-run/model/score.npz", "--sigma", "0"], "--sigma"),
    ("lipschitz-sigma-text", ["lipschitz", "sgm-run/model/score.npz", "--sigma", "a,b"], "--sigma"),
    ("lipschitz-score-without-levels", ["lipschitz", "nets/bare-score.npz"], "give them with --sigma"),
    # the paper's bounds and redrawn figures
    ("bounds-sigma", ["bounds", "--m", "10", "--sigma", "-1"], "sigma"),
    ("bounds-lam", ["bounds", "--m", "10", "--lam", "1.5"], "lam"),
    ("bounds-lip", ["bounds", "--m", "10", "--lip", "-3"], "lip"),
    ("bounds-m-nan", ["bounds", "--m", "nan"], "m must be"),
    ("figure-number", ["figure", "9", "--from", "study"], "figure number must be one of 1, 2, 3, 3b, 4, 5, 6, 7, grid, cauchy, particles, got '9'"),
    ("figure-7-preset-without-settings", ["figure", "7", "--from", "study"],
     "holds a study of the tiny preset, which has no Figure 7 settings"),
    ("figure-name", ["figure", "fig3", "--from", "study"], "got 'fig3'"),
    ("figure-nowhere", ["figure", "3", "--from", "nowhere"], "not a folder written by npgen reproduce"),
    # npgen reproduce --scheduler: options that do not apply, addresses, schedulers that do not answer
    ("reproduce-scheduler-with-jobs", ["reproduce", "--preset", "tiny", "--scheduler", "local", "--jobs", "2",
                                       "--out", "study"], "--jobs sizes this machine's process pool and does not apply"),
    ("reproduce-scheduler-empty", ["reproduce", "--preset", "tiny", "--scheduler", "", "--out", "study"],
     "--scheduler must be 'local' or the address of a running dask scheduler"),
    ("reproduce-scheduler-blank", ["reproduce", "--preset", "tiny", "--scheduler", " ", "--out", "study"],
     "--scheduler must be 'local' or the address of a running dask scheduler"),
    ("reproduce-scheduler-scheme", ["reproduce", "--preset", "tiny", "--scheduler", "http://host:8786",
                                    "--out", "study"], "the schemes dask.distributed knows"),
    ("reproduce-scheduler-port", ["reproduce", "--preset", "tiny", "--scheduler", "tcp://host:port",
                                  "--out", "study"], "got 'tcp://host:port'"),
    ("reproduce-scheduler-no-host", ["reproduce", "--preset", "tiny", "--scheduler", "tcp://:8786",
                                     "--out", "study"], "(no host)"),
    ("reproduce-scheduler-unreachable", ["reproduce", "--preset", "tiny", "--scheduler", "tcp://127.0.0.1:9",
                                         "--out", "study"], "tcp://127.0.0.1:9: no dask scheduler answered within 2 s"),
    ("reproduce-scheduler-bad-out", ["reproduce", "--preset", "tiny", "--scheduler", "local", "--out", "mine"],
     "no study.json"),
]


@pytest.mark.parametrize("argv, fragment", [row[1:] for row in CLI_ROWS], ids=[row[0] for row in CLI_ROWS])
def test_the_cli_refuses_in_one_sentence_and_changes_nothing(world, argv, fragment, capsys, monkeypatch):
    monkeypatch.chdir(world)
    before = tree_digest(world)
    with np.errstate(all="ignore"):
        assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1, err
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in out + err
    assert tree_digest(world) == before


# --------------------------------------------------------------------------- the API


def trained(world, name):
    """The model saved by the world's run of ``name`` ('gan' or 'sgm')."""
    return {"gan": GAN, "sgm": SGM}[name].load(world / f"{name}-run" / "model")


def runaway_fit(losses_at):
    """fit_loop on a stand-in model whose step ``k`` (from 1) returns ``losses_at(k)``."""
    class Network:
        params = np.zeros(3)

    class Stub:
        def __init__(self):
            self.steps = 0

        def networks(self):
            return {"generator": Network(), "discriminator": Network()}

        def step(self, batch):
            self.steps += 1
            return losses_at(self.steps)

    training.fit_loop(Stub(), np.zeros((40, 1)), 10, 4, np.random.default_rng(0), "GAN", quiet=True)


def without_distributed(action):
    """``action()`` as if dask.distributed were not installed."""
    saved = sys.modules.get("distributed")
    sys.modules["distributed"] = None  # import distributed now raises ImportError
    try:
        return action()
    finally:
        if saved is None:
            del sys.modules["distributed"]
        else:
            sys.modules["distributed"] = saved


def adam_state(**change):
    state = Adam(MLP([1, 4, 1])).state_dict()
    state.update(change)
    return state


GOOD = np.linspace(-1, 1, 40, dtype=np.float32)[:, None]

API_ROWS = [
    # beyond the paper: latents, interpolations, particles
    ("gan-latent-unknown", lambda w: GAN(latent="uniform"), ValueError, "latent must be one of"),
    ("interpolate-shapes", lambda w: interpolation.linear(np.ones((3, 2)), np.ones((4, 2)), 0.5), ValueError,
     "same shape"),
    ("interpolate-t-text", lambda w: interpolation.linear(np.ones((3, 2)), np.ones((3, 2)), "half"), ValueError,
     "t must be"),
    ("particles-cfl", lambda w: Particles(lipschitz=5.0, dt=0.1), ValueError, "stability condition"),
    ("particles-huge", lambda w: Particles(n_particles=10 ** 12), ValueError, "n_particles must be"),
    ("particles-load-a-gan", lambda w: Particles.load(w / "gan-run" / "model"), ValueError, "holds a saved GAN"),
    ("particles-save-untrained", lambda w: Particles(n_particles=4).save(w / "new-particles"), RuntimeError,
     "save needs trained particles"),
    ("cauchy-bound-p-range", lambda w: theory.cauchy_mass_between_bound(5, 2, 1.5), ValueError, "p_left must be"),
    # strict bools
    ("mlp-spectral-norm-no", lambda w: MLP([1, 4, 1], spectral_norm="no"), ValueError, "spectral_norm"),
    ("mlp-spectral-norm-1", lambda w: MLP([1, 4, 1], spectral_norm=1), ValueError, "spectral_norm"),
    ("mlp-train-mode-text", lambda w: MLP([1, 4, 1]).train("no"), ValueError, "mode"),
    ("gan-sn-generator-false-text", lambda w: GAN(sn_generator="false"), ValueError, "sn_generator"),
    ("gan-discriminator-first-text", lambda w: GAN(discriminator_first="no"), ValueError, "discriminator_first"),
    ("fit-quiet-text", lambda w: VAE(base_width=4).fit(GOOD, epochs=1, batch_size=10, quiet="no"),
     ValueError, "quiet"),
    ("sample-quiet-text", lambda w: trained(w, "gan").sample(10, quiet="no"), ValueError, "quiet"),
    ("sample-denoise-text", lambda w: trained(w, "sgm").sample(10, denoise="yes", quiet=True), ValueError, "denoise"),
    ("config-sn-generator-text", lambda w: runs.make_config("gan", 5, sn_generator="false"),
     ValueError, "sn_generator (--sn-generator) must be True or False"),
    ("config-denoise-number", lambda w: runs.make_config("sgm", 5, denoise=1), ValueError, "denoise"),
    # networks: sizes, activations, memory
    ("mlp-million-wide", lambda w: MLP([1, 10 ** 6, 10 ** 6, 1]), ValueError, "at most"),
    ("mlp-zero-width", lambda w: MLP([1, 0, 1]), ValueError, "sizes"),
    ("mlp-activation", lambda w: MLP([1, 4, 1], activation="swish"), ValueError, "activation"),
    # Adam and its state
    ("adam-on-a-list", lambda w: Adam([1.0, 2.0]), ValueError, "Adam needs a network"),
    ("config-m-huge", lambda w: runs.make_config("gan", 1e39), ValueError, "m must be a finite number in [0, 1000]"),
    ("config-samples-huge", lambda w: runs.make_config("gan", 2, n_samples=10 ** 12), ValueError, "n_samples"),
    ("config-epochs-huge", lambda w: runs.make_config("vae", 2, epochs=10 ** 12), ValueError, "epochs"),
    ("sample-huge", lambda w: trained(w, "gan").sample(10 ** 12), ValueError, "n must be an integer in [1, 1e+08]"),
    ("adam-eps-zero", lambda w: Adam(MLP([1, 4, 1]), eps=0), ValueError, "eps must be a finite number > 0"),
    # saving never overwrites what is not a saved model of the same kind
    ("sgm-save-into-a-user-folder", lambda w: trained(w, "sgm").save(w / "mine"), ValueError,
     "holds no saved SGM"),
    ("gan-save-onto-a-file", lambda w: trained(w, "gan").save(w / "file.txt"), ValueError, "is an existing file"),
    ("mlp-save-onto-a-folder", lambda w: MLP([1, 4, 1]).save(w / "mine"), ValueError, "is a folder"),
    ("mlp-save-under-a-file", lambda w: MLP([1, 4, 1]).save(w / "file.txt" / "net.npz"), ValueError,
     "cannot write"),
    ("adam-on-none", lambda w: Adam(None), ValueError, "Adam needs a network"),
    ("adam-state-not-a-dict", lambda w: Adam(MLP([1, 4, 1])).load_state_dict([1, 2]), ValueError,
     "optimizer state must be a dict"),
    ("adam-state-missing-t", lambda w: Adam(MLP([1, 4, 1])).load_state_dict(
        {k: v for k, v in adam_state().items() if k != "t"}), ValueError, "'t'"),
    ("adam-state-shape", lambda w: Adam(MLP([1, 4, 1])).load_state_dict(adam_state(m=np.zeros(3))),
     ValueError, "'m' must be a real array of shape"),
    ("adam-state-nan", lambda w: Adam(MLP([1, 4, 1])).load_state_dict(adam_state(m=np.full(13, np.nan))),
     ValueError, "'m' contains NaN"),
    ("adam-state-negative-v", lambda w: Adam(MLP([1, 4, 1])).load_state_dict(adam_state(v=-np.ones(13))),
     ValueError, "'v' must be >= 0"),
    ("adam-state-t-negative", lambda w: Adam(MLP([1, 4, 1])).load_state_dict(adam_state(t=np.array(-1))),
     ValueError, "'t' must be a step count"),
    ("adam-state-t-fraction", lambda w: Adam(MLP([1, 4, 1])).load_state_dict(adam_state(t=np.array(1.5))),
     ValueError, "'t' must be a step count"),
    ("adam-state-text", lambda w: Adam(MLP([1, 4, 1])).load_state_dict(adam_state(v=np.array(["a"] * 13))),
     ValueError, "'v' must be a real array"),
    # batched replicas on the cuda backend
    ("fit-many-particles", lambda w: fit_many([Particles(n_particles=10)], [GOOD], 1, 10), ValueError,
     "fit_many trains the GANs, VAEs and SGMs"),
    ("fit-many-trained-sgm", lambda w: fit_many([trained(w, "sgm")], [GOOD], 1, 10), ValueError,
     "an SGM was already trained"),
    ("fit-many-sgm-weightings", lambda w: fit_many([SGM(), SGM(weighting="sigma2")], [GOOD, GOOD], 1, 10),
     ValueError, "differ: ['weighting']"),
    ("sgm-sample-device", lambda w: trained(w, "sgm").sample(5, device="tpu"), ValueError,
     "device must be one of ['cpu', 'cuda']"),
    ("fit-many-mixed-skips", lambda w: fit_many([VAE(base_width=4, skip="resnet"),
                                                VAE(base_width=4, skip="densenet")], [GOOD, GOOD], 1, 10),
     ValueError, "differ: ['skip']"),
    ("fit-many-cauchy-latent", lambda w: fit_many([GAN(base_width=4, latent="cauchy")], [GOOD], 1, 10),
     ValueError, "draws Gaussian latents on the device"),
    ("fit-many-penalty-and-none", lambda w: fit_many([GAN(base_width=4, gp_lipschitz=1.0), GAN(base_width=4)],
                                                     [GOOD, GOOD], 1, 10), ValueError, "differ: ['gp_lipschitz']"),
    ("fit-many-two-kinds", lambda w: fit_many([GAN(base_width=4), VAE(base_width=4)], [GOOD, GOOD], 1, 10),
     ValueError, "of one kind"),
    ("fit-many-mixed-widths", lambda w: fit_many([GAN(base_width=4), GAN(base_width=8)], [GOOD, GOOD], 1, 10),
     ValueError, "differ: ['base_width']"),
    ("fit-many-one-dataset", lambda w: fit_many([GAN(base_width=4), GAN(base_width=4, seed=1)], [GOOD], 1, 10),
     ValueError, "datasets must be a list of one array per model"),
    ("fit-many-ragged-datasets", lambda w: fit_many([GAN(base_width=4), GAN(base_width=4, seed=1)],
                                                    [GOOD, GOOD[:20]], 1, 10), ValueError, "one number of rows"),
    ("fit-many-empty", lambda w: fit_many([], [], 1, 10), ValueError, "non-empty list of GANs, VAEs or SGMs"),
    ("mlp-backend-cuda", lambda w: MLP([1, 4, 1], backend="cuda"), ValueError, "trains batched replicas"),
    ("replica-backend-unknown", lambda w: kernels.get_replica_backend("tpu"), ValueError, "replica backend"),
    # data that is not real, or beyond float32
    ("gan-complex-data", lambda w: GAN(base_width=4).fit(GOOD + 1j, epochs=1, batch_size=10, quiet=True),
     ValueError, "data must hold real numbers"),
    ("vae-object-data", lambda w: VAE(base_width=4).fit(np.array([[1.0], [None]], dtype=object), epochs=1,
                                                        batch_size=1, quiet=True), ValueError, "real numbers"),
    ("gan-string-data", lambda w: GAN(base_width=4).fit([["1"], ["2"]], epochs=1, batch_size=1, quiet=True),
     ValueError, "real numbers"),
    ("vae-bool-data", lambda w: VAE(base_width=4).fit(np.ones((4, 1), bool), epochs=1, batch_size=1, quiet=True),
     ValueError, "real numbers"),
    ("sgm-complex-data", lambda w: SGM().fit(GOOD + 1j, epochs=1, batch_size=10, quiet=True),
     ValueError, "data must hold real numbers"),
    ("vae-data-beyond-float32", lambda w: VAE(base_width=4).fit(np.full((4, 1), 1e39), epochs=1, batch_size=2,
                                                                quiet=True), ValueError, "range of float32"),
    ("sgm-data-beyond-float32", lambda w: SGM().fit(np.full((4, 1), -1e39), epochs=1, batch_size=2, quiet=True),
     ValueError, "range of float32"),
    ("gan-ragged-data", lambda w: GAN(base_width=4).fit([[1.0], [2.0, 3.0]], epochs=1, batch_size=1, quiet=True),
     ValueError, "data must be a numeric array"),
    ("generate-complex", lambda w: trained(w, "gan").generate(np.ones((3, 1)) * 1j), ValueError, "z must hold real"),
    # sampling
    ("gan-untrained-sample", lambda w: GAN(base_width=4).sample(10), RuntimeError, "trained model"),
    ("vae-untrained-sample", lambda w: VAE(base_width=4).sample(10), RuntimeError, "trained model"),
    ("sgm-untrained-sample", lambda w: SGM().sample(10), RuntimeError, "trained model"),
    ("sgm-step-size-makes-nan", lambda w: trained(w, "sgm").sample(50, seed=0, step_lr=1e12, quiet=True),
     ValueError, "step_lr=1e+12 made the samples NaN or inf"),
    ("sample-seed-negative", lambda w: trained(w, "gan").sample(10, seed=-1), ValueError, "seed"),
    # saved models and network files
    ("gan-load-future-format", lambda w: GAN.load(w / "models" / "gan-future"), ValueError, "format version 99"),
    ("gan-load-string-bool", lambda w: GAN.load(w / "models" / "gan-strbool"), ValueError, "sn_generator"),
    ("gan-load-damaged-text", lambda w: GAN.load(w / "models" / "gan-damaged"), ValueError,
     "gan-damaged/config.json is corrupt"),
    ("sgm-load-negative-std", lambda w: SGM.load(w / "models" / "sgm-badstd"), ValueError,
     "sgm-badstd/config.json is corrupt"),
    ("gan-load-an-sgm", lambda w: GAN.load(w / "sgm-run" / "model"), ValueError, "not a GAN"),
    ("gan-load-a-file", lambda w: GAN.load(w / "file.txt"), ValueError, "file.txt is not a folder"),
    ("mlp-load-score-network", lambda w: MLP.load(w / "sgm-run" / "model" / "score.npz"), ValueError,
     "score.npz holds a network of kind 'ScoreNetwork', not MLP"),
    ("score-load-mlp", lambda w: ScoreNetwork.load(w / "nets" / "mlp.npz"), ValueError, "kind 'MLP'"),
    ("mlp-load-future-format", lambda w: MLP.load(w / "nets" / "future.npz"), ValueError, "format version 99"),
    # run configurations
    ("config-option-of-another-model", lambda w: runs.make_config("gan", 5, denoise=True), ValueError,
     "denoise (--denoise) does not apply to the gan"),
    ("config-unknown-option", lambda w: runs.make_config("gan", 5, colour="red"), ValueError,
     "unknown run option 'colour'"),
    ("config-batch-beyond-data", lambda w: runs.make_config("gan", 5, batch_size=10 ** 6), ValueError,
     "batch_size must be at most n_data"),
    ("config-epochs-zero", lambda w: runs.make_config("vae", 5, epochs=0), ValueError, "epochs"),
    # sweeps on a dask cluster
    ("reproduce-scheduler-without-dask", lambda w: without_distributed(
        lambda: reproduce.reproduce("tiny", out=str(w / "study"), scheduler="local")), ValueError,
     'install it with pip install "npgen[dask]"'),
    ("reproduce-scheduler-and-executor", lambda w: reproduce.reproduce(
        "tiny", out=str(w / "study"), scheduler="local", executor=ThreadPoolExecutor(1)), ValueError,
     "either an executor or --scheduler"),
    ("dask-executor-workers-of-a-remote-cluster", lambda w: cluster.dask_executor(
        "tcp://127.0.0.1:9", n_workers=2).__enter__(), ValueError, "n_workers sizes a local cluster"),
    ("sweep-shared-filesystem-text", lambda w: sweep.run_sweep(
        [{"seed": 0}], len, str(w / "study" / "runs"), shared_filesystem="no"), ValueError,
     "shared_filesystem must be True or False"),
    ("config-lr-text", lambda w: runs.make_config("sgm", 5, lr="fast"), ValueError, "lr"),
    ("fit-on-epoch-not-callable", lambda w: VAE(base_width=4).fit(GOOD, epochs=1, batch_size=10, quiet=True,
                                                                 on_epoch=3), ValueError, "on_epoch"),
    # training that runs away or diverges names the step and the network
    ("runaway-generator-loss", lambda w: runaway_fit(lambda k: {"generator": 0.7 * 10.0 ** k, "discriminator": 0.7}),
     training.TrainingDiverged, "GAN training ran away at step 8: the generator loss is 7e+07"),
    ("runaway-sgm-sized-loss", lambda w: runaway_fit(lambda k: {"loss": 1.0 if k < 3 else 6e27}),
     training.TrainingDiverged, "ran away at step 3"),
    ("nan-loss", lambda w: runaway_fit(lambda k: {"discriminator": 0.5 if k < 4 else float("nan")}),
     training.TrainingDiverged, "diverged at step 4: the discriminator loss"),
    # Gaussian mixtures and the distances between them
    ("mixture-weights-sum", lambda w: mixtures.Mixture([0.5, 0.6], [[0.0], [1.0]], [[[1.0]], [[1.0]]]),
     ValueError, "weights must be non-negative and sum to 1"),
    ("mixture-covariance-shape", lambda w: mixtures.Mixture([1.0], [[0.0, 1.0]], [[[1.0]]]), ValueError,
     "covariances must have shape (K, d, d)"),
    ("mixture-negative-variance", lambda w: mixtures.Mixture([1.0], [[0.0]], [[[-1.0]]]), ValueError,
     "covariances must be positive semi-definite"),
    ("mixture-asymmetric-covariance", lambda w: mixtures.Mixture([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.0, 1.0]]]),
     ValueError, "covariances must be symmetric"),
    ("mixture-nan-mean", lambda w: mixtures.Mixture([1.0], [[np.nan]], [[[1.0]]]), ValueError, "means contains NaN"),
    ("mixture-no-component", lambda w: mixtures.Mixture([], np.zeros((0, 1)), np.zeros((0, 1, 1))), ValueError,
     "weights must be a non-empty"),
    ("mw2-across-dimensions", lambda w: mixtures.mw2(mixtures.target_mixture(1.0), mixtures.target_mixture(1.0, d=2)),
     ValueError, "a and b must live in one dimension"),
    ("mw2-of-an-array", lambda w: mixtures.mw2(mixtures.target_mixture(1.0), np.zeros(3)), ValueError,
     "b must be an npgen.analysis.mixtures.Mixture"),
    ("mgw2-of-a-string", lambda w: mixtures.mgw2("a", mixtures.target_mixture(1.0)), ValueError,
     "a must be an npgen.analysis.mixtures.Mixture"),
    ("fit-mixture-too-few-samples", lambda w: mixtures.fit_mixture(np.zeros(1), 2), ValueError,
     "samples must hold at least n_components=2 rows"),
    ("fit-mixture-inf", lambda w: mixtures.fit_mixture([[1.0, np.inf]], 1), ValueError, "samples contains NaN"),
    ("fit-mixture-no-component", lambda w: mixtures.fit_mixture(np.zeros((4, 1)), 0), ValueError, "n_components"),
    ("target-mixture-negative-m", lambda w: mixtures.target_mixture(-1.0), ValueError, "m must be"),
    # the sampler's gradient and Theorem 1's demand
    ("sgm-lipschitz-text", lambda w: trained(w, "sgm").sample(10, lipschitz="yes", quiet=True), ValueError,
     "lipschitz"),
    ("sgm-trace-without-lipschitz", lambda w: trained(w, "sgm").sample(10, trace=[0], quiet=True), ValueError,
     "trace records the sampler's gradient, so it needs lipschitz=True"),
    ("sgm-trace-beyond-n", lambda w: trained(w, "sgm").sample(10, lipschitz=True, trace=[3, 10], quiet=True),
     ValueError, "trace indices must lie in [0, n - 1] = [0, 9]"),
    ("sgm-trace-fractions", lambda w: trained(w, "sgm").sample(10, lipschitz=True, trace=[0.5], quiet=True),
     ValueError, "trace must be a non-empty 1-D sequence of sample indices"),
    ("theorem1-demand-masses-above-one", lambda w: theory.theorem1_required_lipschitz(5.0, 0.7, 0.5), ValueError,
     "p_left + mass_between must be at most 1"),
    ("theorem1-demand-negative-mass", lambda w: theory.theorem1_required_lipschitz(5.0, 0.5, -0.1), ValueError,
     "mass_between must be a probability in [0, 1]"),
    # networks given layer by layer (the MNIST sizes)
    ("gan-hidden-sizes-text", lambda w: GAN(hidden_sizes="256,512"), ValueError, "hidden_sizes must be a list"),
    ("gan-hidden-sizes-zero", lambda w: GAN(hidden_sizes=[256, 0]), ValueError, "hidden_sizes[1]"),
    ("gan-hidden-sizes-fraction", lambda w: GAN(hidden_sizes=[2.5]), ValueError, "hidden_sizes[0]"),
    ("gan-hidden-sizes-too-deep", lambda w: GAN(hidden_sizes=[4] * 7), ValueError, "1 to 6 positive integers"),
    ("gan-hidden-sizes-and-n-layers", lambda w: GAN(hidden_sizes=[4, 4], n_layers=5), ValueError,
     "n_layers=5 does not match hidden_sizes"),
    ("vae-hidden-sizes-and-base-width", lambda w: VAE(hidden_sizes=[4, 4], base_width=8), ValueError,
     "base_width does not apply when hidden_sizes is given"),
    ("gan-discriminator-sizes-empty", lambda w: GAN(discriminator_hidden_sizes=[]), ValueError,
     "discriminator_hidden_sizes must be a list"),
    ("vae-encoder-sizes-negative", lambda w: VAE(encoder_hidden_sizes=[-3]), ValueError, "encoder_hidden_sizes[0]"),
    # the d-dimensional score network and its SGM
    ("dense-score-sigmas-increasing", lambda w: DenseScoreNetwork(4, [0.1, 1.0]), ValueError, "strictly decreasing"),
    ("dense-score-sigmas-empty", lambda w: DenseScoreNetwork(4, []), ValueError, "sigmas must be a non-empty"),
    ("dense-score-three-hidden", lambda w: DenseScoreNetwork(4, [1.0], hidden_sizes=(4, 4, 4)), ValueError,
     "hidden_sizes must be two positive integers"),
    ("dense-score-data-scale-zero", lambda w: DenseScoreNetwork(4, [1.0], data_scale=0.0), ValueError,
     "data_scale must be a finite number > 0"),
    ("dense-score-data-mean-nan", lambda w: DenseScoreNetwork(4, [1.0], data_mean=float("nan")), ValueError,
     "data_mean must be a finite number"),
    ("vector-sgm-data-scale-text", lambda w: VectorSGM(4, [1.0], data_scale="1"), ValueError, "data_scale"),
    ("dense-score-activation", lambda w: DenseScoreNetwork(4, [1.0], activation="elu"), ValueError, "activation"),
    ("dense-score-huge", lambda w: DenseScoreNetwork(784, [1.0], hidden_sizes=(10 ** 6, 10 ** 6)), ValueError,
     "at most"),
    ("dense-score-level-out-of-range", lambda w: DenseScoreNetwork(3, [1.0, 0.5]).forward(
        np.zeros((2, 3), np.float32), 2), ValueError, "levels must be an integer or 2 integers in [0, 1]"),
    ("dense-score-level-float", lambda w: DenseScoreNetwork(3, [1.0, 0.5]).forward(
        np.zeros((2, 3), np.float32), [0.5, 1.0]), ValueError, "levels must be"),
    ("dense-score-x-width", lambda w: DenseScoreNetwork(3, [1.0]).forward(np.zeros((2, 4), np.float32), 0),
     ValueError, "x must have shape (n, 3)"),
    ("dense-score-backward-first", lambda w: DenseScoreNetwork(3, [1.0]).backward(np.zeros((2, 3), np.float32)),
     RuntimeError, "backward needs a preceding forward"),
    ("dense-score-load-mlp", lambda w: DenseScoreNetwork.load(w / "nets" / "mlp.npz"), ValueError, "kind 'MLP'"),
    ("vector-sgm-untrained-sample", lambda w: VectorSGM(3, [1.0, 0.1]).sample(5), RuntimeError, "trained model"),
    ("vector-sgm-step-size-zero", lambda w: VectorSGM(3, [1.0, 0.1], step_size=0.0), ValueError,
     "step_size must be a finite number > 0"),
    ("vector-sgm-steps-zero", lambda w: VectorSGM(3, [1.0, 0.1], n_steps_per_level=0), ValueError,
     "n_steps_per_level"),
    ("vector-sgm-data-width", lambda w: VectorSGM(3, [1.0, 0.1]).fit(np.zeros((8, 2)), epochs=1, batch_size=4,
                                                                     quiet=True), ValueError, "data must have shape (n, 3)"),
    ("vector-sgm-nan-data", lambda w: VectorSGM(3, [1.0, 0.1]).fit(np.full((8, 3), np.nan), epochs=1, batch_size=4,
                                                                   quiet=True), ValueError, "NaN"),
    ("vector-sgm-load-an-sgm", lambda w: VectorSGM.load(w / "sgm-run" / "model"), ValueError, "not a VectorSGM"),
    ("noise-levels-min-above-max", lambda w: geometric_noise_levels(1.0, 5.0), ValueError, "sigma_min"),
    ("noise-levels-one", lambda w: geometric_noise_levels(1.0, 0.1, 1), ValueError, "n_levels"),
    ("step-size-zero-steps", lambda w: langevin_step_size([1.0, 0.1], 0), ValueError, "n_steps_per_level"),
    # MNIST folders and data sets
    ("mnist-folder-is-a-file", lambda w: mnist(w / "file.txt"), ValueError, "is a file, not a folder"),
    ("mnist-folder-missing", lambda w: mnist(w / "nowhere"), ValueError, "does not exist"),
    ("mnist-folder-without-the-files", lambda w: mnist(w / "mine", name="--mnist"), ValueError,
     "--mnist"),
    ("mnist-mixture-pixels-0-255", lambda w: two_digit_mixture(np.full((2, 784), 255.0), [3, 7]), ValueError,
     "[0, 1]"),
    ("mnist-subset-digit-11", lambda w: digit_subset(np.zeros((2, 784)), [3, 7], digits=(11,)), ValueError,
     "digits"),
    # the digit classifier, the Wasserstein embedding and the OT pair cache
    ("classifier-untrained-predict", lambda w: DigitClassifier(hidden=(4,)).predict(np.zeros((2, 784))),
     RuntimeError, "call fit first"),
    ("classifier-labels-10", lambda w: DigitClassifier(hidden=(4,)).fit(np.zeros((2, 784)), [3, 10]),
     ValueError, "labels must be digits 0 to 9"),
    ("classifier-save-into-a-user-folder", lambda w: DigitClassifier(hidden=(4,)).save(w / "mine"), ValueError,
     "holds no saved DigitClassifier"),
    ("classifier-load-a-gan", lambda w: DigitClassifier.load(w / "gan-run" / "model"), ValueError,
     "holds a saved GAN, not a DigitClassifier"),
    ("embedding-load-a-file", lambda w: WassersteinEmbedding.load(w / "file.txt"), ValueError,
     "file.txt is not a folder"),
    ("embedding-untrained-encode", lambda w: WassersteinEmbedding(encoder_hidden=(4,)).encode(np.ones((2, 784))),
     RuntimeError, "call fit first"),
    ("pairs-cache-a-text-file", lambda w: transport.pair_costs(np.ones((3, 784)), 2, cache=w / "file.txt",
                                                                quiet=True), ValueError, "file.txt is not a readable .npz"),
    ("pairs-cache-a-network-file", lambda w: transport.pair_costs(np.ones((3, 784)), 2, cache=w / "nets" / "mlp.npz",
                                                                   quiet=True), ValueError, "is not an npgen pair cache"),
    ("pairs-cache-a-folder", lambda w: transport.pair_costs(np.ones((3, 784)), 2, cache=w / "mine", quiet=True),
     ValueError, "is a folder"),
    ("pairs-negative-pixels", lambda w: transport.pair_costs(-np.ones((3, 784)), 2, quiet=True), ValueError,
     "pixel values >= 0"),
]


@pytest.mark.parametrize("action, error, fragment", [row[1:] for row in API_ROWS], ids=[row[0] for row in API_ROWS])
def test_the_api_refuses_in_one_sentence_and_changes_nothing(world, action, error, fragment):
    before = tree_digest(world)
    with pytest.raises(error) as caught, np.errstate(all="ignore"):
        action(world)
    message = str(caught.value)
    assert fragment in message and len(message.splitlines()) == 1, message
    assert tree_digest(world) == before


def test_the_table_holds_at_least_80_bad_inputs():
    assert len(CLI_ROWS) + len(API_ROWS) >= 80


# --------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("out, extra", [("gan-run", ["--force", "--seed", "1"]), ("fresh-run", [])],
                         ids=["over-a-finished-run", "into-a-new-folder"])
def test_ctrl_c_during_training_leaves_nothing_half_written(world, out, extra, monkeypatch, capsys):
    monkeypatch.chdir(world)
    before = tree_digest(world)
    original = GAN._checked_step  # the step fit takes on its checked minibatches

    def interrupted(self, batch):
        if self.generator_optimizer.t >= 2:
            raise KeyboardInterrupt
        return original(self, batch)
    monkeypatch.setattr(GAN, "_checked_step", interrupted)
    assert cli.main(["train", "gan", "--m", "5", "--preset", "tiny", "--out", out, *extra]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert tree_digest(world) == before          # the old run intact, no temporary folder left
