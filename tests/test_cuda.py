"""The CUDA backend without a GPU: its kernels compile to PTX for sm_90 (Hopper, H100/H200),
run under numba-cuda's simulator against numpy_ref (tests/test_cuda_kernels.py, in a fresh
process), and asking for it where it cannot run is one sentence."""

import os
import subprocess
import sys
import types as pytypes

import pytest

from npgen import kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_simulated(*test_files, timeout=600):
    """Run test modules of this folder under the simulator in a fresh interpreter (the switch
    must be set before numba is imported); returns (exit code, output)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
         "ignore::DeprecationWarning", *(os.path.join("tests", f) for f in test_files)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout + done.stderr


def test_kernels_and_batched_training_under_the_simulator():
    """tests/test_cuda_kernels.py (every kernel against numpy_ref),
    tests/test_cuda_replicas.py (batched training) and tests/test_cuda_sampler.py (batched SGM
    sampling) pass under the simulator."""
    pytest.importorskip("numba_cuda")
    code, output = _run_simulated("test_cuda_kernels.py", "test_cuda_replicas.py",
                                  "test_cuda_sampler.py")
    assert code == 0 and " passed" in output and "skipped" not in output, output[-4000:]


# --------------------------------------------------------------------------- PTX for sm_90

#: Argument codes of each kernel: aN float array of rank N in the float type compiled for,
#: dN float64 array, uN uint64 array, jN int64 array, s xoroshiro128+ states, i int64,
#: f float64, b bool; CODE*K a tuple of K of them (one per layer of a network).
KERNEL_ARGUMENTS = {
    "_bias_activation": "a3 a3 b a2 i f a3 a3",
    "_tangent": "i f a1 a1 a1",
    "_chain_rule": "i f a1 a1 a1",
    "_backward_columns": "i f a3 a3 a3 a3 a3 a3 a2 b b a3 a3 b",
    "_mean_loss": "i a2 a2 a2 d1",
    "_adam": "a1*2 a1*2 a1*2 a1*2 f f f f f",
    "_spectral_norm_layers": "a3*3 a2*3 a2*3 i a3*3 d1*3",
    "_spectral_norm_backward_layers": "a3*3 a2*3 a2*3 d1*3 a3*3 a3*3 b",
    "_shuffle_keys": "u1 i u2",
    "_score_embedding": "a3 a3 a2 a3 a2 a3 a2 a3 a2 f a3 a3 a3 a3 a3 a3 a3",
    "_score_embedding_backward": "a3 a3 a3 a3 f a3 a3 a3 a3 a3 a3 a3 a3 a3 a3 a3 a3"
                                 " a3 a2 a3 a2 a3 a2 a3 a2",
    "_standard_normal": "s b a3",
    "_vae_reparameterize": "a3 a3 i a3 a3 d1",
    "_vae_residual": "a3 a3 f a3 d1",
    "_vae_code_gradient": "a3 a3 a3 a3 i a3",
    "_score_matching_noisy": "a3 a3 d1 a3",
    "_score_matching_loss": "a3 a3 d1 i a3 d1",
    "_score_matching_noisy_levels": "a3 a3 j2 a2 a3",
    "_score_matching_loss_levels": "a3 a3 a3 j2 a2 a2 d1 a3 d1",
    "_gradient_penalty": "a3 d1 f a3 d1",
    "_gather_rows": "a3 j2 i a3 i i",
    "_langevin": "a2 a2 a3 a3 a3 a2 a2 a3 i u1 i a1 b a2 a2 a3 j2 a3 j1",
    "_langevin_mlp_move": "a3 a3 a2 a2 a2 d1 a2 i u1 i",
    "_softmax_cross_entropy": "a3 a3 a3 d1",
    "_dual_loss": "i a2 a2 d1 f a2 a2 d1 d1",
    "_particle_step": "a3 a3 f d1",
    "_copy_columns": "a3 i a3 i i i b",
}


def _argument_types(spec, dtype):
    from numba import types
    from numba.cuda.random import xoroshiro128p_type

    scalars = {"i": types.int64, "f": types.float64, "b": types.boolean}
    arrays = {"a": dtype, "d": types.float64, "u": types.uint64, "j": types.int64}
    out = []
    for code in spec.split():
        if "*" in code:
            one, count = code.split("*")
            out.append(types.UniTuple(_argument_types(one, dtype)[0], int(count)))
        elif code in scalars:
            out.append(scalars[code])
        elif code == "s":
            out.append(types.Array(xoroshiro128p_type, 1, "C"))
        else:
            out.append(types.Array(arrays[code[0]], int(code[1]), "C"))
    return tuple(out)


@pytest.fixture
def ptx_compiler(monkeypatch):
    """numba-cuda's compile_ptx with no GPU: device functions called from a kernel ask the
    current device for its compute capability, so the test names sm_90's."""
    pytest.importorskip("numba_cuda")
    from numba import config
    if config.ENABLE_CUDASIM:
        pytest.skip("PTX needs numba-cuda's compiler, not its simulator")
    from cuda.pathfinder import DynamicLibNotFoundError
    from numba import cuda
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv.error import NvvmSupportError

    monkeypatch.setattr(dispatcher, "get_current_device",
                        lambda: pytypes.SimpleNamespace(compute_capability=(9, 0)))

    def compile_ptx(kernel, argument_types):
        try:
            return cuda.compile_ptx(kernel.py_func, argument_types, cc=(9, 0))[0]
        except (NvvmSupportError, DynamicLibNotFoundError) as err:
            pytest.skip(f"NVVM or NVRTC is missing (the test extra installs them):"
                        f" {str(err).splitlines()[0]}")

    return compile_ptx


def test_every_kernel_compiles_to_ptx_for_sm_90(ptx_compiler):
    from npgen.kernels import cuda as ck
    from numba import types
    from numba.cuda.dispatcher import CUDADispatcher

    found = {name for name, value in vars(ck).items() if isinstance(value, CUDADispatcher)
             and not value.targetoptions.get("device")}
    assert found == set(KERNEL_ARGUMENTS)
    for name, spec in KERNEL_ARGUMENTS.items():
        for dtype in (types.float32, types.float64):
            ptx = ptx_compiler(getattr(ck, name), _argument_types(spec, dtype))
            assert ".target sm_90" in ptx and ".entry" in ptx, name


def test_the_strided_level_bias_compiles_to_ptx_for_sm_90(ptx_compiler):
    """annealed_langevin_mlp hands linear_forward the level's bias beff[:, level], a strided
    (R, H) view: _bias_activation compiles for that layout too."""
    from npgen.kernels import cuda as ck
    from numba import types

    for dtype in (types.float32, types.float64):
        argument_types = _argument_types(KERNEL_ARGUMENTS["_bias_activation"], dtype)
        strided = argument_types[:3] + (types.Array(dtype, 2, "A"),) + argument_types[4:]
        assert ".target sm_90" in ptx_compiler(ck._bias_activation, strided)


# --------------------------------------------------------------------------- one sentence


def test_cuda_without_numba_cuda_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba_cuda", None)  # find_spec then says: not installed
    monkeypatch.delitem(sys.modules, "npgen.kernels.cuda", raising=False)
    with pytest.raises(ValueError, match=r'^backend "cuda" needs numba-cuda and CuPy .*'
                                         r'pip install "npgen\[cuda\]"$'):
        kernels.get_replica_backend("cuda")


def test_cuda_without_a_gpu_is_one_sentence():
    pytest.importorskip("numba_cuda")
    from numba import config, cuda
    if config.ENABLE_CUDASIM or cuda.is_available():
        pytest.skip("this machine can run the cuda backend")
    with pytest.raises(ValueError, match=r'pip install "npgen\[cuda\]"$'):
        kernels.get_replica_backend("cuda")


@pytest.mark.parametrize("name, message", [
    ("cuda", "trains batched replicas"),
    ("gpu", "backend must be one of"),
])
def test_a_network_backend_named_cuda_is_one_sentence(name, message):
    with pytest.raises(ValueError, match=message):
        kernels.backend_name(name)
    with pytest.raises(ValueError, match="replica backend must be one of"):
        kernels.get_replica_backend("gpu")


def test_replica_states_are_numba_cudas_seeding():
    pytest.importorskip("numba_cuda")
    import numpy as np
    from numba import config
    if config.ENABLE_CUDASIM:
        pytest.skip("numba-cuda's host seeding is compiled outside the simulator only")
    from numba.cuda.random import init_xoroshiro128p_states_cpu, xoroshiro128p_dtype

    from npgen.kernels import cuda as ck

    for seed in (0, 7, 2 ** 63 + 5):
        want = np.empty(ck.RNG_STATES_PER_REPLICA, xoroshiro128p_dtype)
        init_xoroshiro128p_states_cpu(want, np.uint64(seed), 0)
        got = np.array(ck._seeded_states(seed, ck.RNG_STATES_PER_REPLICA), xoroshiro128p_dtype)
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- npgen reproduce --device cuda


def test_the_cuda_plan_batches_the_sgms_vaes_and_gans_only():
    """GANs (plain, resnet or densenet, with or without the gradient penalty) with Gaussian
    latents, VAEs and SGMs, keyed on the code of cuda runs; the Cauchy-latent GANs, which
    fit_many refuses, stay CPU runs."""
    from npgen.study import devices, plans
    from npgen.study.fingerprint import code_fingerprint

    runs = plans.plan("quick")
    cuda_runs = devices.device_plan(runs, "cuda")
    assert devices.device_plan(runs, "cpu") is runs
    for figure, configs in runs.items():
        for config, on_device in zip(configs, cuda_runs[figure]):
            batched = (config["model"] in ("sgm", "vae", "gan")
                       and config.get("latent", "gaussian") == "gaussian")
            assert on_device.get("device") == ("cuda" if batched else None)
            assert on_device["code"] == code_fingerprint("cuda" if batched else "cpu")
            assert {k: v for k, v in on_device.items() if k not in ("device", "code")} == \
                {k: v for k, v in config.items() if k != "code"}
    assert any(c.get("device") for c in cuda_runs["fig3"])
    assert {c["skip"] for c in cuda_runs["fig6"] if c.get("device")} == {
        "plain", "resnet", "densenet"}
    assert {c["latent"] for c in cuda_runs["cauchy"] if c.get("device")} == {"gaussian"}
    assert any(c["latent"] == "cauchy" and not c.get("device") for c in cuda_runs["cauchy"])


def test_batches_group_an_architecture_and_split_at_the_memory_estimate():
    from npgen.study import devices, plans

    configs = [c for c in devices.device_plan(plans.plan("quick"), "cuda")["fig3"]
               if c.get("device") and c["model"] == "gan"]
    assert len(configs) == 21  # 4 m x 5 seeds and m = 0 at one seed, one architecture
    [whole] = devices.batches(configs, lambda config: 100, None)
    assert whole == configs
    split = devices.batches(configs, lambda config: 100, 1000)  # 0.8 * 1000 / 100 = 8 a batch
    assert [len(b) for b in split] == [8, 8, 5] and sum(split, []) == configs
    assert [len(b) for b in devices.batches(configs, lambda config: 10 ** 9, 1000)] == [1] * 21
    deeper = dict(configs[0], n_layers=4)
    assert len(devices.batches(configs[:2] + [deeper], lambda config: 1, None)) == 2
    penalized = [dict(configs[0], gp_lipschitz=target) for target in (1.0, 5.0, 25.0)]
    assert [len(b) for b in devices.batches(configs[:2] + penalized, lambda config: 1, None)] == [2, 3]
    vae = dict(configs[0], model="vae")
    assert len(devices.batches(configs[:2] + [vae], lambda config: 1, None)) == 2


def test_replica_bytes_grow_with_the_batch_and_the_widths():
    from npgen import GAN
    from npgen.models.replicas import replica_bytes

    small = replica_bytes(GAN(base_width=8), 100, 1000)
    params = GAN(base_width=8)
    floor = 4 * 4 * (params.generator.n_params + params.discriminator.n_params)
    assert floor < small < replica_bytes(GAN(base_width=8), 200, 1000)
    assert small < replica_bytes(GAN(base_width=16), 100, 1000)


def test_reproduce_on_cuda_without_a_gpu_is_one_sentence(tmp_path, capsys, monkeypatch):
    pytest.importorskip("numba_cuda")
    from numba import config, cuda
    if config.ENABLE_CUDASIM or cuda.is_available():
        pytest.skip("this machine can run the cuda backend")
    from npgen import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["reproduce", "--device", "cuda", "--out", "study"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith('pip install "npgen[cuda]"') and "--device cuda" in err
    assert len(err.splitlines()) == 1 and os.listdir(tmp_path) == []


def test_a_failed_batch_fails_each_of_its_runs_once(tmp_path, monkeypatch):
    """An error of fit_many itself (not of one replica) is every run's error, and the batch
    is not trained again for each run; a configuration listed twice is one replica."""
    from npgen.study import devices, plans

    configs = [c for c in devices.device_plan(plans.plan("quick"), "cuda")["fig3"]
               if c.get("device") and c["model"] == "gan"][:3]
    calls = []

    def out_of_memory(models, *args, **options):
        calls.append(len(models))
        raise MemoryError("device out of memory")

    monkeypatch.setattr(devices.kernels, "get_replica_backend",
                        lambda name: pytypes.SimpleNamespace(free_bytes=lambda: None))
    monkeypatch.setattr(devices, "fit_many", out_of_memory)
    runs = devices.BatchedRuns(configs + configs[:1], tmp_path)
    for config in configs:
        with pytest.raises(MemoryError, match="device out of memory"):
            runs(config, tmp_path / "run")
    assert calls == [3]
