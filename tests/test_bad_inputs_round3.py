"""Bad inputs, round 3: what a hostile pass over the newer features found.

More rows for the table of tests/test_bad_inputs.py, checked by its own tests (one sentence on
one line, naming the argument or the file, and nothing changed), and the checks that are no
single refusal: work kept on Ctrl-C, long work that shows progress or stops between chunks,
files written all or none.
"""

import errno
import json
import os
import shutil
import re
import signal
import threading
import time

import numpy as np
import pytest

import test_bad_inputs as table
from test_bad_inputs import trained, world  # noqa: F401 -- world: the shared folder of the table
from tiny_study import ONE_RUN_PLAN, register

from npgen import GAN, MLP, SGM, ScoreNetwork, cli, theory
from npgen.analysis import lipschitz, transport
from npgen.data import mnist
from npgen.models import Particles
from npgen.models import sgm as sgm_module
from npgen.study import plans, report, reproduce
from npgen.util import io

HUGE = "1" + "0" * 400  # a 401-digit integer: no float holds it


@pytest.fixture(scope="module")
def world3(world):  # noqa: F811 -- the imported fixture, extended
    """The table's shared folder, with the files this round's rows read."""
    table.rewrite_network_file(world / "nets" / "mlp.npz", world / "nets" / "extra.npz",
                               arrays_change={"extra": np.ones(2), "notes": np.zeros(1)})
    return world


CLI_ROWS = [
    # integers beyond a float's range (401 digits), refused like any value out of range
    ("train-particles-401-digits", ["train", "particles", "--m", "5", "--particles", HUGE],
     "n_particles (--particles) must be an integer in [2, 1e+08], got 100000...000 (401 digits)"),
    ("train-seed-401-digits", ["train", "gan", "--m", "5", "--seed", HUGE],
     "seed (--seed) must be an integer in [0, 2**63 - 1]"),
    ("train-layers-401-digits", ["train", "gan", "--m", "5", "--layers", HUGE], "n_layers (--layers)"),
    ("reproduce-jobs-401-digits", ["reproduce", "--jobs", HUGE, "--out", "study"], "--jobs must be an integer"),
    # --mnist '' names no folder, with or without Figure 7
    ("reproduce-mnist-empty", ["reproduce", "--preset", "tiny", "--mnist", "", "--out", "study"],
     "--mnist must be a folder path, got ''"),
    ("reproduce-mnist-empty-without-fig7", ["reproduce", "--preset", "tiny", "--only", "fig1", "--mnist", "",
                                            "--out", "study"], "--mnist applies to Figure 7 only"),
    # malformed scheduler addresses: refused at once, not after a 30 s wait
    ("reproduce-scheduler-not-a-url", ["reproduce", "--preset", "tiny", "--scheduler", "not a url",
                                       "--out", "study"], "'not a url' is neither a host name nor an IP address"),
    ("reproduce-scheduler-port-99999", ["reproduce", "--preset", "tiny", "--scheduler", "tcp://127.0.0.1:99999",
                                        "--out", "study"], "the port must be in [1, 65535]"),
    # a network file that carries arrays no network has
    ("lipschitz-extra-arrays", ["lipschitz", "nets/extra.npz"], "extra.npz holds arrays that no MLP has ('extra', 'notes')"),
]

API_ROWS = [
    ("sample-401-digits", lambda w: trained(w, "gan").sample(10 ** 400), ValueError,
     "n must be an integer in [1, 1e+08], got 100000...000 (401 digits)"),
    ("gan-seed-401-digits", lambda w: GAN(seed=10 ** 400), ValueError, "seed must be an integer in [0, 2**63 - 1]"),
    ("sample-seed-401-digits", lambda w: trained(w, "sgm").sample(10, seed=10 ** 400, quiet=True), ValueError,
     "seed must be an integer in [0, 2**63 - 1]"),
    ("bounds-lip-401-digits", lambda w: theory.bounds_table(10, lip=10 ** 400), ValueError, "lip must be a real number"),
    ("particles-401-digits", lambda w: Particles(n_particles=10 ** 400), ValueError,
     "n_particles must be an integer in [1, 1e+08]"),
    ("sgm-steps-per-level-huge", lambda w: trained(w, "sgm").sample(1, n_steps_per_level=10 ** 12, quiet=True),
     ValueError, "n_steps_per_level must be an integer in [1, 100000]"),
    ("mlp-load-extra-arrays", lambda w: MLP.load(w / "nets" / "extra.npz"), ValueError,
     "holds arrays that no MLP has ('extra', 'notes')"),
    ("mnist-empty-folder-argument", lambda w: mnist(""), ValueError, "directory must be a folder path, got ''"),
]


@pytest.mark.parametrize("argv, fragment", [row[1:] for row in CLI_ROWS], ids=[row[0] for row in CLI_ROWS])
def test_the_cli_refuses_in_one_sentence_and_changes_nothing(world3, argv, fragment, capsys, monkeypatch):
    table.test_the_cli_refuses_in_one_sentence_and_changes_nothing(world3, argv, fragment, capsys, monkeypatch)


@pytest.mark.parametrize("action, error, fragment", [row[1:] for row in API_ROWS], ids=[row[0] for row in API_ROWS])
def test_the_api_refuses_in_one_sentence_and_changes_nothing(world3, action, error, fragment):
    table.test_the_api_refuses_in_one_sentence_and_changes_nothing(world3, action, error, fragment)


# --------------------------------------------------------------------------- damaged studies


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished tiny study of the figures that read samples, metrics and traces."""
    patch = pytest.MonkeyPatch()
    register(patch, ONE_RUN_PLAN)
    out = tmp_path_factory.mktemp("round3") / "study"
    reproduce.reproduce("tiny", only="fig2,fig3,fig3b,cauchy,particles", out=str(out), jobs=1, quiet=True)
    yield out
    patch.undo()


def run_of(study, **fields):
    """The run folder of ``study`` whose config.json holds ``fields``."""
    for folder in sorted((study / "runs").iterdir()):
        if folder.is_dir() and not folder.name.startswith("."):
            config = json.loads((folder / "config.json").read_text())
            if all(config.get(k) == v for k, v in fields.items()):
                return folder
    raise AssertionError(f"no run with {fields}")


def remark(run):
    """Rewrite the run's completion marker to the files' new sizes, as if it had been written so."""
    marker = json.loads((run / "COMPLETE.json").read_text())
    marker["files"] = {name: (run / name).stat().st_size for name in marker["files"]}
    (run / "COMPLETE.json").write_text(json.dumps(marker))


def metrics(change, keep_marker=True):
    def damage(run):
        path = run / "metrics.json"
        values = json.loads(path.read_text())
        path.write_text(json.dumps(change(values) or values))
        if keep_marker:
            remark(run)
    return damage


def samples(array):
    def damage(run):
        np.save(run / "samples.npy", array, allow_pickle=True)
        remark(run)
    return damage


def raw(name, content):
    def damage(run):
        (run / name).write_bytes(content)
        remark(run)
    return damage


def declared(shape):
    """A samples.npy whose header declares ``shape`` float32 but that holds 40 bytes."""
    def damage(run):
        with open(run / "samples.npy", "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": shape})
            handle.write(b"\0" * 40)
        remark(run)
    return damage


def truncate(run):
    path = run / "metrics.json"
    path.write_bytes(path.read_bytes()[:40])


def other_key(run):
    marker = json.loads((run / "COMPLETE.json").read_text())
    marker["key"] = "0" * 64
    (run / "COMPLETE.json").write_text(json.dumps(marker))


def pickled_trace(run):
    np.savez(run / "sampler_trace.npz", grad_sq=np.array([{"a": 1}], dtype=object))
    remark(run)


def study_json_device(run):
    (run.parent.parent / "study.json").write_text('{"preset": "tiny", "device": "tpu"}')


GAN_RUN = {"model": "gan", "latent": "gaussian", "m": 5}
SGM_RUN = {"model": "sgm"}
NAN = float("nan")

#: (id, figure, the run damaged, damage(run folder), fragment: "{run}" is that folder's name)
STUDY_ROWS = [
    # runs that are no longer what their marker says: never left out in silence
    ("truncated-metrics", "3", GAN_RUN, truncate, "{run} is a damaged run (metrics.json has 40 bytes, the marker says"),
    ("truncated-metrics-marker-rewritten", "2", GAN_RUN, lambda run: (truncate(run), remark(run)),
     "{run} is a damaged run (unreadable config.json or metrics.json)"),
    ("list-valued-metrics", "cauchy", GAN_RUN, metrics(lambda mt: [1, 2]),
     "{run} is a damaged run (config.json or metrics.json does not match the marker)"),
    ("marker-of-another-run", "3", SGM_RUN, other_key, "{run} is a damaged run (completion marker of another"),
    # NaN and inf in the numbers a figure draws, named with the run and the field
    ("nan-mass-figure-2", "2", GAN_RUN, metrics(lambda mt: mt.update(mass_between=NAN)),
     "{run}/metrics.json: 'mass_between' must be a finite number, not nan"),
    ("nan-mass-figure-3", "3", SGM_RUN, metrics(lambda mt: mt.update(mass_left=NAN)), "{run}/metrics.json: 'mass_left'"),
    ("nan-sampler-figure-3b", "3b", SGM_RUN, metrics(lambda mt: mt.update(sampler_lipschitz=NAN)),
     "{run}/metrics.json: 'sampler_lipschitz' must be a finite number"),
    ("inf-lipschitz", "3", GAN_RUN, metrics(lambda mt: mt.update(lipschitz=float("inf"))),
     "{run}/metrics.json: 'lipschitz' must be a finite number, not inf"),
    ("nan-lipschitz", "cauchy", GAN_RUN, metrics(lambda mt: mt.update(lipschitz=NAN)), "{run}/metrics.json: 'lipschitz'"),
    ("nan-energies", "particles", {"model": "particles"},
     metrics(lambda mt: mt.update(kinetic_energy_vs_step=[[0, NAN]])), "{run}/metrics.json: 'kinetic_energy_vs_step'"),
    # samples.npy: every way it can be other than npgen train wrote it
    ("samples-3d", "2", GAN_RUN, samples(np.zeros((5, 5, 5), np.float32)),
     "{run}/samples.npy must hold n >= 1 real numbers of shape (n,) or (n, 1), got float32 of shape (5, 5, 5)"),
    ("samples-nan", "cauchy", GAN_RUN, samples(np.array([0.5, NAN], np.float32)), "{run}/samples.npy holds 1 NaN or inf"),
    ("samples-nan-figure-2", "2", SGM_RUN, samples(np.full((4, 1), NAN, np.float32)), "{run}/samples.npy holds 4 NaN"),
    ("samples-complex", "2", GAN_RUN, samples(np.ones(4, np.complex64)), "{run}/samples.npy must hold n >= 1 real"),
    ("samples-empty", "2", GAN_RUN, samples(np.zeros(0, np.float32)), "got float32 of shape (0,)"),
    ("samples-strings", "2", GAN_RUN, samples(np.array(["a", "b"])), "{run}/samples.npy must hold n >= 1 real numbers"),
    ("samples-declare-1e11", "2", GAN_RUN, declared((10 ** 11,)),
     "{run}/samples.npy is damaged: its header declares 100,000,000,000 values of float32"),
    ("samples-pickled", "2", GAN_RUN, samples(np.array([{"a": 1}], dtype=object)),
     "{run}/samples.npy holds Python objects (a pickled array), which npgen never loads"),
    ("samples-garbage", "cauchy", GAN_RUN, raw("samples.npy", b"\x80\x04garbage, not an array" * 4),
     "{run}/samples.npy is not a .npy array file written by numpy.save"),
    ("samples-particles", "particles", {"model": "particles"}, samples(np.zeros((3, 2), np.float32)),
     "{run}/samples.npy must hold"),
    # the sampler's trace
    ("trace-corrupt", "3b", SGM_RUN, raw("sampler_trace.npz", b"PK\x03\x04 not a zip archive"),
     "{run}/sampler_trace.npz is not a readable .npz file (BadZipFile"),
    ("trace-pickled", "3b", SGM_RUN, pickled_trace, "{run}/sampler_trace.npz holds Python objects"),
    # the study's own file
    ("study-json-device-tpu", "3", GAN_RUN, study_json_device, "study.json names the device 'tpu'; expected one of"),
]


@pytest.mark.parametrize("number, fields, damage, fragment", [row[1:] for row in STUDY_ROWS],
                         ids=[row[0] for row in STUDY_ROWS])
def test_a_figure_of_a_damaged_study_is_refused_naming_the_run(study, number, fields, damage, fragment, tmp_path,
                                                              capsys, monkeypatch):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    run = run_of(copy, **fields)
    damage(run)
    argv = ["figure", number, "--from", "."]
    table.test_the_cli_refuses_in_one_sentence_and_changes_nothing(copy, argv, fragment.format(run=run.name),
                                                                   capsys, monkeypatch)


def test_the_study_draws_when_nothing_is_damaged(study, tmp_path, capsys):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    for number in ("2", "3", "3b", "cauchy", "particles"):
        assert cli.main(["figure", number, "--from", str(copy)]) == 0, capsys.readouterr().err
    assert (run_of(copy, **SGM_RUN) / "sampler_trace.npz").exists()  # so the trace rows read one


def test_the_table_grew_by_this_round():
    rows = len(table.CLI_ROWS) + len(table.API_ROWS)
    assert rows + len(CLI_ROWS) + len(API_ROWS) + len(STUDY_ROWS) >= 255 + 40  # 255 before this round


def test_a_garbage_npy_is_not_called_pickled(tmp_path):
    path = tmp_path / "samples.npy"
    path.write_bytes(b"\x80\x04garbage" * 8)
    with pytest.raises(ValueError) as caught:
        io.read_npy(path)
    assert "pickle" not in str(caught.value) and "unsafe" not in str(caught.value)


# --------------------------------------------------------------------------- work kept, files whole


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_an_interrupted_pair_cost_loop_saves_every_cost_it_computed(stop, tmp_path, monkeypatch):
    """Ctrl-C in the loop, or the SIGTERM with which a sweep stops its workers on Ctrl-C, after
    5 pairs: the cache holds those 5 costs, and the next call computes only the rest."""
    images = np.random.default_rng(0).random((12, 784))
    cache = tmp_path / "pairs.npz"
    monkeypatch.setattr(transport, "SAVE_EVERY_S", 1e9)  # no periodic save: only the one on exit
    real, calls = transport.ot_cost, []

    def interrupted(a, b, cost=None):
        if len(calls) == 5:
            if stop == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        calls.append(1)
        return real(a, b, cost)
    monkeypatch.setattr(transport, "ot_cost", interrupted)
    with pytest.raises(KeyboardInterrupt):
        transport.pair_costs(images, 9, cache=cache, quiet=True)
    with np.load(cache) as data:
        assert np.isfinite(data["cost"]).sum() == 5
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was put back
    monkeypatch.setattr(transport, "ot_cost", real)
    counted = []
    monkeypatch.setattr(transport, "ot_cost", lambda a, b, cost=None: counted.append(1) or real(a, b, cost))
    _, _, costs = transport.pair_costs(images, 9, cache=cache, quiet=True)
    assert len(counted) == 4 and np.isfinite(costs).all()


def no_space(suffix=""):
    """An os.fsync that fails with ENOSPC, as on a full disk, for the files whose name ends with
    ``suffix`` (every file by default)."""
    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    return fsync


def test_a_full_disk_is_one_sentence_naming_the_file(world3, capsys, monkeypatch):
    monkeypatch.setattr(os, "fsync", no_space())
    table.test_the_cli_refuses_in_one_sentence_and_changes_nothing(
        world3, ["train", "gan", "--m", "5", "--preset", "tiny", "--out", "full-disk-run"],
        "config.json (No space left on device)", capsys, monkeypatch)


def test_the_report_files_are_written_all_or_none(study, tmp_path, monkeypatch):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    names = ("report.md", "report.html", "summary.json")
    before = {name: (copy / name).read_bytes() for name in names}
    runs = plans.plan("tiny")
    monkeypatch.setattr(os, "fsync", no_space(".html"))  # report.md goes to disk, report.html does not
    with pytest.raises(ValueError, match="report.html .No space left on device"):
        report.write_report(str(copy), "tiny", ["fig3"], runs)
    assert {name: (copy / name).read_bytes() for name in names} == before
    assert not [p for p in os.listdir(copy) if p.startswith(".tmp-")]
    monkeypatch.undo()
    report.write_report(str(copy), "tiny", ["fig3"], runs)
    assert all((copy / name).read_bytes() != before[name] for name in names)


# --------------------------------------------------------------------------- long work


def random_sgm():
    model = SGM(seed=0)
    model.mean, model.std = 0.0, 1.0  # an untrained score network samples all the same
    return model


def test_a_long_chain_runs_in_chunks_with_the_same_numbers(monkeypatch):
    model = random_sgm()
    whole = model.sample(300, seed=3, n_steps_per_level=50, quiet=True, lipschitz=True)
    monkeypatch.setattr(sgm_module, "CHAIN_CALL_WORK", 300 * 7)  # 7 steps a call: 8 calls a level
    calls = []
    real = sgm_module._HostChain.run
    monkeypatch.setattr(sgm_module._HostChain, "run", lambda self, *a: calls.append(a) or real(self, *a))
    chunked = model.sample(300, seed=3, n_steps_per_level=50, quiet=True, lipschitz=True)
    assert len(calls) == 8 * model.sigmas.size and calls[1] == (0, 7, 7) and calls[7] == (0, 1, 49)
    for a, b in ((whole[0], chunked[0]), (whole[1].dx0, chunked[1].dx0), (whole[1].grad_sq, chunked[1].grad_sq)):
        assert np.array_equal(a, b)


def test_ctrl_c_stops_a_long_chain_between_two_chunks():
    """A chain of 20 000 samples x 10^5 steps x 10 levels would run for hours in one kernel call
    per level; SIGINT one second in stops it within seconds."""
    model = random_sgm()
    model.sample(10, seed=0, n_steps_per_level=2, quiet=True)  # compiled before the clock starts
    # as in a terminal: a job started in the background (CI's, say) inherits SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.sample(20_000, seed=0, n_steps_per_level=100_000, quiet=True)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 60


def test_bounds_in_many_dimensions_show_progress(tmp_path, capsys):
    path = tmp_path / "wide.npz"
    MLP([20, 16, 16, 20], seed=0).save(path)
    lipschitz.lipschitz_report(str(path), quiet=False)
    err = capsys.readouterr().err
    # a tqdm line: the count done of the total, then [elapsed<remaining]: the ETA
    assert re.search(r"Lipschitz bounds.* 0/\d+", err) and re.search(r"\[\d\d:\d\d<", err)
    lipschitz.lipschitz_report(str(path))
    assert capsys.readouterr().err == ""


def test_many_noise_levels_show_progress(tmp_path, capsys):
    path = tmp_path / "score.npz"
    ScoreNetwork(seed=0).save(path, noise_levels=np.geomspace(1.0, 0.01, 150))
    assert cli.main(["lipschitz", str(path)]) == 0
    assert re.search(r"noise levels.*150/150", capsys.readouterr().err)


INTERRUPTED_STUDY = """
import sys
sys.path.insert(0, {tests!r})

if __name__ == "__main__":
    import pytest
    from tiny_study import register
    from npgen import cli
    register(pytest.MonkeyPatch())
    sys.exit(cli.main(["reproduce", "--preset", "tiny", "--only", "fig3,fig4,fig6", "--scheduler", "local",
                       "--out", sys.argv[1]]))
"""


def test_ctrl_c_on_a_local_dask_cluster_prints_only_interrupted(tmp_path):
    """Ctrl-C reaches every process of the terminal's group: the workers ignore it and this
    process closes the cluster, so no worker or nanny prints a traceback or an ERROR line."""
    pytest.importorskip("distributed")
    import subprocess
    import sys
    script = tmp_path / "study.py"
    script.write_text(INTERRUPTED_STUDY.format(tests=os.path.dirname(os.path.abspath(__file__))))
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        # SIGINT as a terminal's process has it (a background job, CI's say, inherits it ignored)
        process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out")], stdout=subprocess.DEVNULL,
                                   stderr=err, start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while "first run on worker" not in log.read_text() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)  # as the terminal sends it: to the whole group
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text
    assert text.splitlines()[-1] == "npgen reproduce: interrupted"
