"""What npgen does with folders and files when the inputs are good: ``npgen train`` replaces a
run whole with --force, a reproduction reuses only runs of the same code and says so, every
network file npgen writes is read back by ``npgen lipschitz`` and the shared loader, and the
three models report comparable per-sample losses."""

import json
import os
import re

import numpy as np
import pytest

from npgen import SGM, ScoreNetwork, cli
from npgen.nn import load_network
from npgen.study import plans, reproduce, runs
from tiny_study import ONE_RUN_PLAN, register


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    register(monkeypatch, ONE_RUN_PLAN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def train(*argv):
    assert cli.main(["train", *argv, "--preset", "tiny"]) == 0


def test_force_replaces_a_run_whole(tiny):
    train("gan", "--m", "5", "--out", "run")
    (tiny / "run" / "left-over.txt").write_text("from the old run")
    train("vae", "--m", "5", "--seed", "1", "--out", "run", "--force")
    assert json.loads((tiny / "run" / "config.json").read_text())["model"] == "vae"
    assert not (tiny / "run" / "left-over.txt").exists()
    assert sorted(os.listdir(tiny / "run" / "model")) == ["config.json", "decoder.npz", "encoder.npz"]
    assert [p for p in os.listdir(tiny) if p.startswith(".tmp-")] == []


def test_train_writes_into_an_empty_folder_and_records_only_its_options(tiny):
    (tiny / "empty").mkdir()
    train("sgm", "--m", "5", "--out", "empty", "--weighting", "sigma2")
    config = json.loads((tiny / "empty" / "config.json").read_text())
    assert config["weighting"] == "sigma2" and config["denoise"] is False
    assert not {"n_layers", "skip", "kl", "sn_generator", "gp_lipschitz"} & set(config)
    assert config["code"] == runs.code_fingerprint()


def _edited(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


#: Edits of kernels/numpy_ref.py that change only its prose: the module's docstring, a
#: function's docstring, a comment on a line of its own and a comment after code.
PROSE_EDITS = [("written to be read.", "written to be read, and fixed."),
               ("sigmoid(z) = 1 / (1 + exp(-z)), through", "sigmoid(z) = 1 / (1 + e^-z), via"),
               ("\ndef _sigmoid(z):", "\n# the logistic function\ndef _sigmoid(z):"),
               ("e / (1 + e)).astype(z.dtype, copy=False)",
                "e / (1 + e)).astype(z.dtype, copy=False)  # no overflow")]
#: Edits of its code: a constant and an operator.
CODE_EDITS = [("SPECTRAL_NORM_EPS = 1e-12", "SPECTRAL_NORM_EPS = 1e-10"),
              ("1 / (1 + e), e / (1 + e)", "1 / (1 - e), e / (1 + e)")]


@pytest.fixture
def math_copies(tmp_path, monkeypatch):
    """A package ``fake_math`` holding copies of kernels/numpy_ref.py and kernels/cuda.py, the
    fingerprint's only modules (cuda.py for cuda runs alone); returns a function that
    rewrites one of the copies and the fingerprint after it."""
    from npgen.study import fingerprint

    kernels_dir = os.path.dirname(fingerprint.module_files("npgen.kernels")["npgen.kernels"])
    package = tmp_path / "fake_math"
    package.mkdir()
    (package / "__init__.py").write_text("")
    sources = {}
    for name in ("numpy_ref", "cuda"):
        with open(os.path.join(kernels_dir, f"{name}.py"), encoding="utf-8") as handle:
            sources[name] = handle.read()
        (package / f"{name}.py").write_text(sources[name], encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fingerprint, "MATH_MODULES", ("fake_math",))
    monkeypatch.setattr(fingerprint, "DEVICE_MODULES", {"cuda": ("fake_math.cuda",)})

    def fingerprint_after(name, edits, device="cpu"):
        text = sources[name]
        for old, new in edits:
            text = _edited(text, old, new)
        (package / f"{name}.py").write_text(text, encoding="utf-8")
        return fingerprint.code_fingerprint.__wrapped__(device)

    return fingerprint_after


def test_prose_edits_keep_the_fingerprint(math_copies):
    before = math_copies("numpy_ref", [])
    assert before.startswith(__import__("npgen").__version__ + "+")
    for edit in PROSE_EDITS:
        assert math_copies("numpy_ref", [edit]) == before, edit
    assert math_copies("numpy_ref", PROSE_EDITS) == before


@pytest.mark.parametrize("edit", CODE_EDITS, ids=["constant", "operator"])
def test_code_edits_change_the_fingerprint(math_copies, edit):
    before = math_copies("numpy_ref", [])
    assert math_copies("numpy_ref", [edit]) != before


def test_a_device_module_keys_that_devices_runs_only(math_copies):
    cpu, cuda = math_copies("cuda", []), math_copies("cuda", [], "cuda")
    assert cpu != cuda
    edit = [("LAUNCH = {\"threads\": 256", "LAUNCH = {\"threads\": 128")]
    assert math_copies("cuda", edit) == cpu
    assert math_copies("cuda", edit, "cuda") != cuda


def test_cpu_runs_are_not_keyed_on_cuda_only_modules(monkeypatch):
    """The real fingerprints: cuda runs hash the CUDA kernels, batched training, batched
    sampling and the study's batching besides every module of a CPU run; CPU runs do not hash
    those four."""
    from npgen.study import devices, fingerprint, plans

    hashed, parse = [], fingerprint.executable_source

    def recorded(path):
        hashed.append(path)
        return parse(path)

    monkeypatch.setattr(fingerprint, "executable_source", recorded)
    fingerprint.code_fingerprint.__wrapped__("cpu")
    cpu, hashed[:] = set(hashed), []
    fingerprint.code_fingerprint.__wrapped__("cuda")
    paths = [os.path.relpath(p, os.path.dirname(p)) for p in set(hashed) - cpu]
    assert cpu < set(hashed) and sorted(paths) == ["cuda.py", "devices.py", "replicas.py", "sgm_device.py"]
    for configs in devices.device_plan(plans.plan("quick"), "cuda").values():
        for config in configs:
            assert config["code"] == runs.code_fingerprint(config.get("device", "cpu"))


def test_reproduce_reuses_runs_of_the_same_code_only(tiny, monkeypatch, capsys):
    out = str(tiny / "study")
    reproduce.reproduce("tiny", only="fig2", out=out, jobs=1)
    assert "reused 0 finished runs, trained 3, 0 failed" in capsys.readouterr().err
    reproduce.reproduce("tiny", only="fig2", out=out, jobs=1)
    assert "reused 3 finished runs, trained 0, 0 failed" in capsys.readouterr().err
    monkeypatch.setattr(runs, "code_fingerprint", lambda: "0.1.0+after-a-fix")
    reproduce.reproduce("tiny", only="fig2", out=out, jobs=1)
    err = capsys.readouterr().err
    assert "reused 0 finished runs, trained 3, 0 failed; 3 other runs" in err
    assert len(os.listdir(tiny / "study" / "runs")) >= 6     # the old runs are kept


def test_lipschitz_reads_the_score_network_that_train_sgm_writes(tiny, capsys):
    train("sgm", "--m", "5", "--out", "run")
    capsys.readouterr()
    path = str(tiny / "run" / "model" / "score.npz")
    assert cli.main(["lipschitz", path]) == 0
    text = capsys.readouterr().out
    assert "standardized scale" in text and "data scale" in text
    assert len(re.findall(r"^ +[0-9.e+-]+ +[0-9.e+-]+ +[0-9.e+-]+$", text, re.M)) == 10   # one per level
    assert cli.main(["lipschitz", path, "--sigma", "1,0.01"]) == 0
    metrics = json.loads((tiny / "run" / "metrics.json").read_text())
    levels = {round(row["sigma_standardized"], 12): row["exact_standardized"]
              for row in metrics["score_lipschitz_per_sigma"]}
    assert f"{levels[1.0]:18.8g}" in capsys.readouterr().out
    assert isinstance(load_network(path), ScoreNetwork)
    np.testing.assert_array_equal(ScoreNetwork.load(path).params, SGM.load(tiny / "run" / "model").score.params)


def test_sgm_reports_the_per_sample_mean_and_steps_along_the_sum():
    x = np.random.default_rng(0).standard_normal((64, 1)).astype(np.float32)
    a, b = SGM(seed=3), SGM(seed=3)
    a.rng = np.random.default_rng(9)
    reported = a.step(x)["loss"]
    sigma = float(b.sigmas[np.random.default_rng(9).integers(b.sigmas.size)])
    rng = np.random.default_rng(9)
    rng.integers(b.sigmas.size)
    eps = rng.standard_normal(x.shape, dtype=np.float32)
    total = b.denoising_loss(x, eps, sigma)
    assert reported == pytest.approx(total / len(x), rel=1e-12)
    b.optimizer.step()
    np.testing.assert_array_equal(a.score.params, b.score.params)


def test_reproduce_with_failed_runs_says_so_and_exits_non_zero(tiny, monkeypatch, capsys):
    """Every run of the 'blowup' preset diverges: the report lists them and the command fails."""
    monkeypatch.setitem(plans.PLANS, "blowup", ONE_RUN_PLAN)
    status = cli.main(["reproduce", "--preset", "blowup", "--only", "fig3", "--jobs", "1", "--out", "study"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("npgen reproduce: error:")]
    assert len(message) == 1 and "3 of 3 runs failed" in message[0], err
    text = (tiny / "study" / "report.md").read_text()
    assert "## Failed runs" in text and text.count("TrainingDiverged") == 3
    assert len(json.loads((tiny / "study" / "runs" / "failures.json").read_text())) == 3


def test_a_run_folder_follows_the_umask(tiny):
    previous = os.umask(0o027)
    try:
        train("sgm", "--m", "5", "--out", "run")
    finally:
        os.umask(previous)
    assert os.stat(tiny / "run").st_mode & 0o777 == 0o750
