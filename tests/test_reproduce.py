"""npgen.study (runs, plans, reproduce, report) on a tiny study: runs on disk, figures
drawn headless, the report, redrawing without training, and the CLI's one-sentence errors."""

import json
import os
import shutil

import matplotlib
import numpy as np
import pytest

from npgen import cli
from npgen.study import phase_profile, phase_times, plans, reproduce, run_metrics, runs, verdicts
from npgen.study.records import Run, Stat
from npgen.study.sweep import config_key
from tiny_study import TINY_PRESET, register

@pytest.fixture
def tiny(monkeypatch):
    """Register a 'tiny' preset: one epoch of 4 steps per run, 2000 samples."""
    register(monkeypatch)
    return "tiny"


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """One tiny reproduction of every figure, shared by the tests that read it."""
    patch = pytest.MonkeyPatch()
    register(patch)
    out = tmp_path_factory.mktemp("study")
    report = reproduce.reproduce("tiny", out=str(out), jobs=1, quiet=True)
    yield out, report
    patch.undo()


def test_the_run_cost_ranks_models_and_depths_as_their_measured_step_times():
    """run_cost per training step, for the GAN and the VAE at depths 2 to 6 and the SGM's
    training, against the step times bench/run.py measured (bench/results/depth_step_times.txt;
    the SGM's 2.3 ms, README "Presets"): the same order."""
    measured = {("sgm", None): 2.3}
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                           "results", "depth_step_times.txt"),
              encoding="utf-8") as handle:
        for line in handle:
            model, depth, ms, _ = line.split()
            measured[(model.lower(), int(depth))] = float(ms)
    per_step = {}
    for model, depth in measured:
        options = {} if model == "sgm" else {"n_layers": depth}
        config = runs.make_config(model, 5.0, "paper", **options)
        per_step[(model, depth)] = runs.run_cost(dict(config, n_samples=0)) / config["epochs"]
    assert sorted(measured, key=measured.get) == sorted(per_step, key=per_step.get)
    paper = runs.make_config("gan", 5.0, "paper")
    assert runs.run_cost(dict(paper, gp_lipschitz=1.0)) > runs.run_cost(paper)
    sgm = runs.make_config("sgm", 5.0, "paper")
    assert runs.run_cost(sgm) > runs.run_cost(dict(sgm, n_samples=0))  # its sampling counts


def test_figures_are_drawn_headless():
    import npgen.study.figures  # noqa: F401
    assert matplotlib.get_backend().lower() == "agg"


def test_reproduce_writes_every_figure_and_the_report(tiny_study):
    out, report = tiny_study
    for name in plans.FIGURES:
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.pdf").exists()
    text = open(report, encoding="utf-8").read()
    for title in ("Figure 1", "Figure 2", "Figure 3", "Figure 3b", "Figure 4", "Figure 5", "Figure 6", "grid estimate"):
        assert title in text
    assert text.count("**Paper's claim.**") == len(plans.FIGURES)
    assert text.count("**Verdict:") == len(plans.FIGURES)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(plans.FIGURES)
    assert "src='fig" not in page          # self-contained: no file references
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == set(plans.FIGURES)
    assert "Figure 7 was skipped: the tiny preset has no Figure 7 settings." in text
    assert summary["fig1"]["verdict"] == "held"


def test_every_planned_run_is_on_disk_with_its_numbers(tiny_study, tiny):
    out, _ = tiny_study
    planned = {config_key(c): c for configs in plans.plan("tiny").values() for c in configs}
    rows = plans.collect(list(planned.values()), str(out / "runs"))
    assert len(rows) == len(planned)
    for config, metrics, run_dir in rows:
        assert os.path.exists(os.path.join(run_dir, "samples.npy"))
        assert os.path.exists(os.path.join(run_dir, "histogram.png"))
        assert 0 <= metrics["mass_between"] <= 1
        if config["model"] == "particles":  # the discriminator's exact constant, at most about L
            assert 0 < metrics["discriminator_lipschitz"] <= 1.05 * metrics["discriminator_lipschitz_bound"]
            assert len(metrics["kinetic_energy_vs_step"]) == config["n_steps"]  # 4 steps: every one
            continue
        if config["model"] == "sgm":      # both scales: data scale = standardized / variance
            assert metrics["score_lipschitz_data_scale"] == pytest.approx(
                metrics["score_lipschitz_standardized"] / metrics["data_variance"], rel=1e-12)
            lip, grid = metrics["score_lipschitz_standardized"], metrics["score_lipschitz_grid_standardized"]
        else:
            lip, grid = metrics["lipschitz"], metrics["lipschitz_grid"]
        # The paper's estimate is a lower estimate of the exact constant.
        assert lip > 0 and grid <= lip * (1 + 1e-9)
        if "fig3_bound" in metrics:       # Theorem 1 with the exact Lip, up to sampling error
            assert metrics["mass_between"] >= metrics["fig3_bound"] - 4 * np.sqrt(0.25 / config["n_samples"])
        assert metrics["mw2_squared"] >= 0
        if config["model"] == "sgm":      # the sampler's constant: its parts add in squares
            assert metrics["sampler_lipschitz"] == pytest.approx(
                np.hypot(metrics["sampler_lipschitz_x0"], metrics["sampler_lipschitz_noise"]), rel=1e-9)
            upper = metrics["theorem1_required_lipschitz_upper"]  # null: infinite, no sample between
            assert metrics["sampler_meets_theorem1"] == (upper is not None and metrics["sampler_lipschitz"] > upper)
            assert upper is None or metrics["theorem1_required_lipschitz"] <= upper
            assert os.path.exists(os.path.join(run_dir, "sampler_trace.npz"))


def test_the_profile_counts_every_run_once_under_its_first_figure(tiny_study, tiny):
    out, _ = tiny_study
    planned = plans.plan("tiny")
    rows = phase_profile.reproduction_rows(str(out))
    assert len(rows) == len({config_key(c) for configs in planned.values() for c in configs})
    first = {}
    for figure in plans.FIGURES:
        for config in planned[figure]:
            first.setdefault(config_key(config), figure)
    for figure, config, metrics in rows:
        assert figure == first[config_key(config)]
        assert metrics["phase_seconds"]["train"]["cpu"] > 0
    text = phase_profile.format_profile(rows)
    total = sum(p["cpu"] for _, _, m in rows for name, p in m["phase_seconds"].items()
                if name not in phase_times.INSIDE)
    everything = next(line.split() for line in text.splitlines() if line.startswith("all "))
    assert int(everything[1]) == len(rows) and float(everything[2]) == pytest.approx(total, abs=0.06)


@pytest.mark.parametrize("p_left", [0.0, 1.0])
def test_figure3_bound_is_zero_when_all_mass_is_on_one_side(p_left):
    assert run_metrics.figure3_bound(2.0, 4.0, p_left) == 0.0


def test_figure3_bound_matches_theorem1():
    from scipy.stats import norm
    m, lip, p = 5.0, 30.0, 0.47
    assert run_metrics.figure3_bound(m, lip, p) == pytest.approx(norm.cdf(m / lip + norm.ppf(p)) - p, rel=1e-12)


def test_figure_is_redrawn_without_training(tiny_study, tiny, monkeypatch):
    out, _ = tiny_study
    os.remove(out / "fig3.png")

    def no_training(*args, **kwargs):
        raise AssertionError("redrawing a figure must not train")
    monkeypatch.setattr(runs, "train_run", no_training)
    monkeypatch.setattr(reproduce, "train_run", no_training)
    assert cli.main(["figure", "3", "--from", str(out)]) == 0
    assert (out / "fig3.png").exists()


def test_reproduce_resumes_without_recomputing(tiny_study, tiny, monkeypatch):
    out, _ = tiny_study

    def no_training(*args, **kwargs):
        raise AssertionError("every run is already on disk")
    monkeypatch.setattr(reproduce, "train_run", no_training)
    reproduce.reproduce("tiny", out=str(out), jobs=1, quiet=True, only="fig3,fig6")


def test_train_run_writes_a_run_directory(tmp_path, tiny):
    out = tmp_path / "run"
    config, metrics = runs.train_command("gan", 4, "tiny", 3, str(out), gp_lipschitz=5.0)
    for name in ("config.json", "metrics.json", "samples.npy", "histogram.png", "history.json"):
        assert (out / name).exists()
    assert json.loads((out / "config.json").read_text()) == config
    assert np.load(out / "samples.npy").shape == (TINY_PRESET["n_samples"], 1)
    for key in ("lipschitz", "lipschitz_grid", "mass_between", "true_mass_between", "fig3_bound",
                "tv_estimate", "kl_estimate", "best_tv_bound", "best_kl_bound", "wall_seconds"):
        assert key in metrics


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="flow", m=4), "model must be one of"),
    (dict(model="gan", m=-1), "m must be"),
    (dict(model="gan", m=4, preset="huge"), "preset must be one of"),
    (dict(model="gan", m=4, colour="red"), "unknown run option 'colour'"),
])
def test_make_config_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        runs.make_config(**kwargs)


def test_cli_bounds_prints_the_table(capsys):
    assert cli.main(["bounds", "--m", "10", "--lip", "25"]) == 0
    table = capsys.readouterr().out
    assert "Corollary 2" in table and "Corollary 6" in table and "Corollary 8" in table


def test_cli_lipschitz_reports_the_exact_constant(tmp_path, capsys):
    from npgen import MLP
    path = tmp_path / "g.npz"
    MLP([1, 16, 16, 1], seed=0).save(path)
    assert cli.main(["lipschitz", str(path)]) == 0
    text = capsys.readouterr().out
    assert "exact" in text and "grid estimate" in text


@pytest.mark.parametrize("argv, message", [
    (["bounds", "--m", "10", "--sigma", "-1"], "sigma"),
    (["bounds", "--m", "10", "--lam", "1.5"], "lam"),
    (["lipschitz", "missing.npz"], "no such file"),
    (["figure", "3", "--from", "nowhere"], "not a folder written by npgen reproduce"),
    (["figure", "9", "--from", "."], "figure number must be one of"),
    (["train", "gan", "--m", "-2"], "m must be"),
    (["reproduce", "--only", "fig9"], "--only entries must be one of"),
])
def test_cli_errors_are_one_sentence(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_cli_lipschitz_rejects_a_foreign_file(tmp_path, capsys):
    path = tmp_path / "weights.npz"
    np.savez(path, w=np.ones(3))
    assert cli.main(["lipschitz", str(path)]) == 2
    assert "not an npgen network" in capsys.readouterr().err


# --------------------------------------------------------------------------- a study's files, damaged

def _rewrite_metrics(study, change):
    """Apply ``change(metrics)`` to every run's metrics.json and record the new size in its
    completion marker, so that the run still counts as finished."""
    for marker_path in (study / "runs").glob("*/COMPLETE.json"):
        metrics_path = marker_path.parent / "metrics.json"
        metrics = json.loads(metrics_path.read_text())
        change(metrics)
        metrics_path.write_text(json.dumps(metrics))
        marker = json.loads(marker_path.read_text())
        marker["files"]["metrics.json"] = metrics_path.stat().st_size
        marker_path.write_text(json.dumps(marker))


def _corrupt_every_run(study):
    for metrics_path in (study / "runs").glob("*/metrics.json"):
        with open(metrics_path, "a", encoding="utf-8") as handle:
            handle.write(" ")


def _study_json(content):
    def write(study):
        path = study / "study.json"
        path.unlink()
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
    return write


STUDY_ERRORS = [
    ("3", _study_json(b"[1, 2]"), "study.json holds a JSON list; expected a JSON object"),
    ("3", _study_json(b'"tiny"'), "study.json holds a JSON str; expected a JSON object"),
    ("3", _study_json(b"{"), "study.json is not valid JSON text"),
    ("3", _study_json(b"\xff\xfe\x00"), "study.json is not valid JSON text"),
    ("3", _study_json(None), "study.json is a folder; expected a file"),
    ("3", _study_json(b'{"preset": "huge"}'), "study.json names the preset 'huge'"),
    ("3", _study_json(b'{"preset": 3}'), "study.json names the preset 3"),
] + [
    (number, lambda study: shutil.rmtree(study / "runs"), f"holds no finished run of {name} (")
    for number, name in [("2", "fig2"), ("3", "fig3"), ("3b", "fig3b"), ("4", "fig4"), ("5", "fig5"), ("6", "fig6"),
                         ("grid", "grid")]
] + [
    ("3", _corrupt_every_run, "is a damaged run (metrics.json has "),
    ("6", _corrupt_every_run, "the marker says"),
    ("3", lambda study: _rewrite_metrics(study, lambda mt: mt.update(mass_between="0.5")),
     "metrics.json: 'mass_between' must be a finite number, not '0.5'"),
    ("2", lambda study: _rewrite_metrics(study, lambda mt: mt.update(mass_left=None)),
     "metrics.json: 'mass_left' must be a finite number, not None"),
    ("4", lambda study: _rewrite_metrics(study, lambda mt: mt.update(smaller_mode_share=True)),
     "metrics.json: 'smaller_mode_share' must be a finite number, not True"),
    ("3", lambda study: _rewrite_metrics(study, lambda mt: mt.pop("mass_between")),
     "metrics.json lacks the key 'mass_between' (a finite number)"),
    ("5", lambda study: _rewrite_metrics(study, lambda mt: mt.update(lipschitz_vs_epoch=[[1, "x"]])),
     "'lipschitz_vs_epoch' must be a list of [epoch, Lip] number pairs"),
    ("grid", lambda study: _rewrite_metrics(study, lambda mt: mt.update(score_lipschitz_per_sigma={})),
     "'score_lipschitz_per_sigma' must be a list of objects"),
    ("3", lambda study: _rewrite_metrics(study, lambda mt: mt.update(collapse="maybe")),
     "'collapse' must be null or one of ['one spike', 'one mode'], not 'maybe'"),
    ("6", lambda study: _rewrite_metrics(study, lambda mt: mt.pop("collapse")), "lacks the key 'collapse'"),
    ("3b", lambda study: _rewrite_metrics(study, lambda mt: mt.update(sampler_expansion_steps={"left": [1.5]})),
     "'sampler_expansion_steps' must be an object of integer lists 'left', 'between' and 'right'"),
    ("3b", lambda study: _rewrite_metrics(study, lambda mt: mt.pop("mw2_squared")), "lacks the key 'mw2_squared'"),
]


@pytest.mark.parametrize("number, damage, message", STUDY_ERRORS)
def test_figure_from_a_damaged_study_is_one_sentence(number, damage, message, tiny_study, tiny, tmp_path, capsys):
    study = tmp_path / "study"
    shutil.copytree(tiny_study[0], study)
    damage(study)
    assert cli.main(["figure", number, "--from", str(study)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err, err
    assert str(study) in err                   # names the file or folder
    assert len(err.splitlines()) == 1 and "Traceback" not in captured.err + captured.out


def test_figure_1_needs_no_runs(tiny_study, tiny, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(tiny_study[0], study)
    shutil.rmtree(study / "runs")
    assert cli.main(["figure", "1", "--from", str(study)]) == 0


# --------------------------------------------------------------------------- collapse and verdicts

@pytest.mark.parametrize("m, samples, expected", [
    (2.0, np.random.default_rng(0).normal(0.0, 0.1, 20000), "one spike"),        # all mass at 0
    (5.0, np.random.default_rng(1).normal(5.0, 1.0, 20000), "one mode"),         # the left mode dropped
    (5.0, np.r_[np.random.default_rng(2).normal(5.0, 1.0, 19500), -5.0 + np.zeros(500)], "one mode"),  # 2.5%
    (5.0, np.r_[np.random.default_rng(3).normal(5.0, 1.0, 18800), np.random.default_rng(4).normal(-5, 1, 1200)],
     None),                                                                      # 6% in the smaller mode
    (0.0, np.random.default_rng(5).normal(0.0, 1.0, 20000), None),               # m = 0: one mode is right
    (10.0, np.r_[np.full(10000, -10.0), np.full(10000, 10.0)], None),            # two spikes keep both modes
])
def test_collapse_rules(m, samples, expected):
    assert run_metrics.distribution_metrics(samples, m)["collapse"] == expected


def test_narrowest_interval_holds_ninety_percent():
    x = np.linspace(0.0, 1.0, 100001)
    assert run_metrics.narrowest_interval_width(x) == pytest.approx(0.9, abs=1e-4)
    assert run_metrics.narrowest_interval_width(np.r_[np.zeros(95), np.linspace(5, 100, 5)]) == 0.0


@pytest.mark.parametrize("a, b, expected", [
    (Stat(1.0, 0.1, 3), Stat(2.0, 0.1, 3), verdicts.HELD),
    (Stat(2.0, 0.1, 3), Stat(1.0, 0.1, 3), verdicts.NOT_HELD),
    (Stat(1.0, 0.6, 5), Stat(2.0, 0.6, 5), verdicts.INCONCLUSIVE),   # the bands overlap
    (Stat(1.0, 0.1, 2), Stat(2.0, 0.1, 3), verdicts.INCONCLUSIVE),   # too few seeds
    (Stat(1.0, 0.1, 3), Stat.exact(2.0), verdicts.HELD),             # against an exact number
    (None, Stat(2.0, 0.1, 3), verdicts.INCONCLUSIVE),
])
def test_band_comparison(a, b, expected):
    assert verdicts.less(a, b, "a", "b")[0] == expected


@pytest.mark.parametrize("results, verdict", [
    ([verdicts.HELD, verdicts.HELD], "held"),
    ([verdicts.INCONCLUSIVE], "inconclusive"),
    ([verdicts.HELD, verdicts.INCONCLUSIVE], "partly held (1 held, 0 did not hold, 1 inconclusive)"),
    ([verdicts.NOT_HELD, verdicts.INCONCLUSIVE], "did not hold (0 held, 1 did not hold, 1 inconclusive)"),
    ([], "not checked (no finished runs)"),
])
def test_section_verdict_is_held_only_when_every_check_held(results, verdict):
    section = verdicts.Section("x", "x", "x", checks=[verdicts.Check("rule", r, "") for r in results])
    assert section.verdict == verdict


def test_a_check_on_collapsed_runs_says_so_and_is_evaluated_without_them():
    config = runs.make_config("gan", 2, "quick", 0)
    rows = [Run(dict(config, seed=seed), {"collapse": "one spike" if seed == 1 else None, "x": seed}, "")
            for seed in range(4)]
    section = verdicts.Section("x", "x", "x")
    section.add("x grows", lambda r: (verdicts.HELD, str(len(r))), rows)
    check, = section.checks
    assert check.collapsed == ["GAN m=2 seed 1"] and check.without_collapsed == (verdicts.HELD, "3")
    assert "Rests on 1 collapsed run(s) (GAN m=2 seed 1); without them: held (3)." in check.lines()[1]


def test_one_seed_per_architecture_is_inconclusive(tiny_study):
    summary = json.loads((tiny_study[0] / "summary.json").read_text())
    fig6, = summary["fig6"]["checks"]
    assert fig6["result"] == "inconclusive" and "fewer than 3 seeds" in fig6["measured"]
    text = open(tiny_study[1], encoding="utf-8").read()
    assert "rule: the mean ± std bands over >= 3 seeds must not overlap" in text


def test_cauchy_study_records_each_latents_bound_and_mw2(tiny_study, tiny):
    from npgen.analysis import mixtures, theory
    out, _ = tiny_study
    records = json.loads((out / "cauchy.json").read_text())
    assert {r["latent"] for r in records} == {"gaussian", "cauchy"}
    rows = plans.collect(plans.plan("tiny")["cauchy"], str(out / "runs"))
    assert len(rows) == len(records)
    for config, metrics, run_dir in rows:
        record, = [r for r in records if (r["latent"], r["m"], r["seed"]) == (config["latent"], config["m"], config["seed"])]
        samples = np.load(os.path.join(run_dir, "samples.npy")).astype(np.float64)
        fitted = mixtures.fit_mixture(samples.reshape(-1, 1), 2, seed=0)
        assert record["mw2_squared"] == pytest.approx(mixtures.mw2(fitted, mixtures.target_mixture(config["m"])))
        if config["m"] == 0:
            continue
        sides = (config["m"], metrics["lipschitz"], metrics["mass_left"], metrics["mass_right"])
        if config["latent"] == "cauchy":
            assert record["mass_between_bound"] == pytest.approx(theory.cauchy_mass_between_bound(*sides))
            assert "fig3_bound" not in metrics and "best_tv_bound" not in metrics  # Gaussian-latent bounds
        else:
            assert record["mass_between_bound"] == pytest.approx(max(
                theory.mass_between_modes_bound(*sides[:2], sides[2]), theory.mass_between_modes_bound(*sides[:2], sides[3])))
