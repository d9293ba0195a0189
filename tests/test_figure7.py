"""npgen.study.figure7: the mixture's projection is the 1-D two-Gaussian mixture the exact mass
assumes, Theorem 1's bound with a certified Lipschitz bound is a true bound where the pushed
measure is known exactly, and a tiny Figure 7 runs end to end, resumes, and is skipped or
refused without MNIST data."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from npgen import MLP, cli
from npgen.analysis.theory import mixture_mass_between
from npgen.data import mnist, two_digit_mixture
from npgen.study import figure7, figure7_metrics, reproduce
from npgen.study.sweep import sweep_status
from tiny_study import register

#: Figure 7 on tiny networks: a few steps each, 300 samples, 40 bins.
TINY_FIG7 = figure7.Figure7Plan(
    mixture_repeats=150, mixture_epochs=1, subset_epochs=1, n_levels=4, steps_per_level=2,
    embedding_pairs=200, embedding_epochs=1, lipschitz_starts=2, lipschitz_steps=4, n_samples=300,
    bins=40, classifier_epochs=1, generator_hidden=(16,), discriminator_hidden=(16,),
    encoder_hidden=(16,), score_hidden=(16, 16))


def test_the_mixture_projects_to_two_gaussians_of_the_noise_scale():
    images, labels = mnist()
    x, c3, c7 = two_digit_mixture(images, labels, repeats=3000, seed=1)
    line = figure7_metrics.projection_line((c3, c7))
    t = figure7_metrics.project(line, x[:-2])
    m = line["m"]
    assert figure7_metrics.project(line, np.stack([c3, c7])) == pytest.approx([-m, m], abs=1e-9)
    for side, mode in ((t[:3000], -m), (t[3000:], m)):
        assert stats.kstest((side - mode) / figure7.MIXTURE_SIGMA, "norm").pvalue > 1e-3
    # the exact mass between the modes is the 1-D mixture's, which the samples agree with
    exact = float(mixture_mass_between(m, sigma=figure7.MIXTURE_SIGMA))
    assert exact < 1e-20 and np.mean(np.abs(t) <= m / 2) == 0


def test_theorem1_bound_with_the_certified_upper_bound_is_below_the_exact_mass():
    """A linear generator g(z) = A z + b pushes N(0, I) to N(b, A A^T), so the projection t is
    N(u . (b - c), ||A^T u||^2) and its masses are exact; the certified bound must stay below."""
    rng = np.random.default_rng(3)
    d, p = 6, 4
    g = MLP([p, 5, d], activation="identity", dtype="float64", seed=2)
    A = g.weights[1] @ g.weights[0]
    b = g.weights[1] @ g.biases[0] + g.biases[1]
    c3, c7 = rng.standard_normal(d), rng.standard_normal(d)
    line = figure7_metrics.projection_line((c3, c7))
    mean, std = float(line["direction"] @ (b - line["center"])), float(np.linalg.norm(A.T @ line["direction"]))
    m = line["m"]
    p_left = stats.norm.cdf(-m / 2, mean, std)
    between = stats.norm.cdf(m / 2, mean, std) - p_left
    config = {"lipschitz_starts": 4, "lipschitz_steps": 20, "seed": 0}
    lip = figure7_metrics.lipschitz_metrics(g, config, m, p_left)
    assert lip["lower"] <= np.linalg.norm(A, 2) * (1 + 1e-9) <= lip["upper"] * (1 + 1e-9)
    assert 0 < lip["theorem1_with_upper"] <= between


@pytest.fixture
def tiny_fig7(monkeypatch):
    register(monkeypatch)
    monkeypatch.setitem(figure7.PLANS, "tiny", TINY_FIG7)
    return "tiny"


def test_a_tiny_figure7_runs_resumes_reports_and_redraws(tiny_fig7, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "study")
    report = reproduce.reproduce("tiny", only="fig7", out=out, jobs=1, quiet=True)
    numbers = json.loads((tmp_path / "study" / "fig7" / "fig7.json").read_text())
    mixture = numbers["mixture"]
    assert set(mixture) == {"data", "vae", "gan", "sgm"}
    data, = mixture["data"]
    assert data["mass_between"] == 0 and data["exact_mass_between"] < 1e-20
    for model in ("vae", "gan", "sgm"):  # one run per training seed, each drawn with its own seed
        assert [run["seed"] for run in mixture[model]] == list(figure7.SEEDS)
        assert len({run["mass_between"] for run in mixture[model]} | {run["side_spread"] for run in mixture[model]}) > 1
    for model in ("vae", "gan"):
        for run in mixture[model]:
            lip = run["lipschitz"]
            assert lip["lower"] <= lip["upper"] and lip["theorem1_with_upper"] <= lip["theorem1_with_lower"] + 1e-12
    for runs in mixture.values():
        for source in runs:
            assert source["share_3"] + source["share_7"] + source["share_other"] == pytest.approx(1)
    for name in ("fig7.png", "fig7_samples.png"):
        assert (tmp_path / "study" / name).stat().st_size > 1000
    text = open(report, encoding="utf-8").read()
    assert "Figure 7" in text and "VAE interpolates" in text and "SGM fits both modes" in text
    assert "(n=3)" in text and "over the training seeds" in text
    configs = figure7.fig7_configs("tiny", figure7.data_identity())
    runs_dir = os.path.join(out, "fig7", "runs")
    assert sweep_status(configs, runs_dir)["done"] == len(configs) == 2 + 2 * (1 + 3 * len(figure7.SEEDS))
    before = sorted(os.listdir(runs_dir))
    assert "fig7-model-subset-gan-seed2-" in " ".join(before)
    reproduce.reproduce("tiny", only="fig7", out=out, jobs=1, quiet=True)
    assert sorted(os.listdir(runs_dir)) == before
    # npgen figure 7 --from redraws the figures, fig7.json and the section from the stored runs alone
    for name in ("fig7.png", "fig7_samples.png", "fig7/fig7.json"):
        (tmp_path / "study" / name).unlink()
    monkeypatch.setattr(figure7, "run_fig7", lambda config, run_dir: pytest.fail("trained while redrawing"))
    assert cli.main(["figure", "7", "--from", out]) == 0
    assert json.loads((tmp_path / "study" / "fig7" / "fig7.json").read_text()) == numbers
    assert (tmp_path / "study" / "fig7.png").stat().st_size > 1000
    section = (tmp_path / "study" / "fig7" / "section.md").read_text()
    assert section.startswith("## Figure 7") and "SGM fits both modes" in section
    assert sorted(os.listdir(runs_dir)) == before
    # a run whose samples were overwritten (same size, so its marker still passes) is named in one sentence
    damaged = next(os.path.join(runs_dir, name) for name in before if name.startswith("fig7-model-mixture-vae-seed0-"))
    samples = np.load(os.path.join(damaged, "samples.npy"))
    np.save(os.path.join(damaged, "samples.npy"), np.full_like(samples, np.nan))
    assert cli.main(["figure", "7", "--from", out]) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"{damaged}/samples.npy holds {samples.size} NaN or inf samples" in error
    # a run whose metrics.json was truncated is named, not left out of the figure
    truncated = next(os.path.join(runs_dir, name) for name in before if name.startswith("fig7-model-subset-sgm-seed1-"))
    with open(os.path.join(truncated, "metrics.json"), "w", encoding="utf-8") as handle:
        handle.write("{")
    assert cli.main(["figure", "7", "--from", out]) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"{truncated} is a damaged run" in error


def test_figure7_from_a_study_without_its_runs_is_refused_in_one_sentence(tiny_fig7, tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.json").write_text(json.dumps({"preset": "tiny"}))  # a study of the other figures
    assert cli.main(["figure", "7", "--from", str(out)]) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert f"{out / 'fig7' / 'runs'} holds no finished Figure 7 model runs of the tiny preset" in error
    assert f"npgen reproduce --only fig7 --preset tiny --out {out}" in error
    assert not (out / "fig7").exists()


def test_without_mnist_figure7_is_refused_alone_and_skipped_with_the_rest(tiny_fig7, tmp_path, monkeypatch):
    monkeypatch.setattr(figure7, "mnist_source", lambda directory=None, name=None: None)
    with pytest.raises(ValueError, match=r'Figure 7 cannot run: no MNIST data; pip install "npgen\[mnist\]"'):
        reproduce.reproduce("tiny", only="fig7", out=str(tmp_path / "a"), jobs=1, quiet=True)
    assert not (tmp_path / "a").exists()
    # a reproduction of every figure goes on without it (tests/test_reproduce.py reads its note)
    assert figure7.fig7_status("tiny") == (None, f"no MNIST data; {figure7.HOW_TO_GET_MNIST}")
    assert figure7.fig7_status("nameless")[1] == "the nameless preset has no Figure 7 settings"


def test_failed_figure7_runs_are_counted_and_their_file_named(tiny_fig7, tmp_path, monkeypatch):
    def fails(config, run_dir):
        raise ValueError(f"no {config['stage']} today")
    monkeypatch.setattr(figure7, "run_fig7", fails)
    out = tmp_path / "study"
    with pytest.raises(reproduce.StudyIncomplete) as caught:
        reproduce.reproduce("tiny", only="fig7", out=str(out), jobs=1, quiet=True)
    message = str(caught.value)
    # the classifier and the embedding failed, so the model runs, which read both, were not tried
    assert message.startswith("2 of 22 runs failed") and len(message.splitlines()) == 1
    assert str(out / "fig7" / "runs" / "failures.json") in message
    assert "no classifier today" in (out / "report.md").read_text()


def test_figure7s_preparation_runs_beside_the_other_figures_and_before_its_model_runs(
        tiny_fig7, tmp_path, monkeypatch):
    """On a shared executor the classifier and the embedding are handed out first, the other
    figures' runs go on while the embedding runs (it waits here until one has started: run one
    after the other, that never happens), and no Figure 7 model run starts before both end."""
    from concurrent.futures import ThreadPoolExecutor
    import threading
    import time

    events, other_started = [], threading.Event()
    lock = threading.Lock()

    def note(what, name):
        with lock:
            events.append((time.perf_counter(), what, name))

    real_sweep_run, real_fig7 = reproduce.sweep_run, figure7.run_fig7

    def other_run(config, run_dir):
        note("start", "other")
        other_started.set()
        return real_sweep_run(config, run_dir)

    def fig7_run(config, run_dir):
        name = config["stage"] if config["stage"] != "model" else "model"
        note("start", name)
        if name == "embedding":
            assert other_started.wait(60), "the other figures' runs did not start beside the embedding"
        result = real_fig7(config, run_dir)
        note("end", name)
        return result

    monkeypatch.setattr(reproduce, "sweep_run", other_run)
    monkeypatch.setattr(figure7, "run_fig7", fig7_run)
    with ThreadPoolExecutor(2) as executor:
        reproduce.reproduce("tiny", only="fig3,fig7", out=str(tmp_path / "s"), executor=executor, quiet=True)
    starts = [name for _, what, name in events if what == "start"]
    assert sorted(starts[:2]) == ["classifier", "embedding"]
    prep_end = max(t for t, what, name in events if what == "end" and name in ("classifier", "embedding"))
    model_starts = [t for t, what, name in events if what == "start" and name == "model"]
    assert len(model_starts) == 2 * (1 + 3 * len(figure7.SEEDS)) and min(model_starts) > prep_end
    assert not os.path.exists(tmp_path / "s" / "fig7" / "runs" / "failures.json") or \
        json.loads((tmp_path / "s" / "fig7" / "runs" / "failures.json").read_text()) == []
