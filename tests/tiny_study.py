"""Tiny presets and plans for the tests of npgen.study: one epoch of 4 steps per run, 2000 samples.

:func:`register` adds them to the study's tables through a ``pytest.MonkeyPatch``, which undoes
it at the end of the test (or of the module, for a module-scoped patch).
"""

from npgen.study import plans, runs

#: One epoch of 2000 / 500 = 4 steps, every model at the quick preset's learning rates.
TINY_PRESET = {"epochs": 1, "batch_size": 500, "lr": 1e-3, "gan_lr": 5e-4, "gan_betas": [0.5, 0.999],
               "n_data": 2000, "n_samples": 2000}
#: The particles' budget under the tiny preset: 4 particle steps.
TINY_PARTICLES = {"n_steps": 4, "batch_size": 500, "lr": 1e-3, "betas": [0.5, 0.999]}
#: A preset whose learning rate makes any model diverge within a few steps.
BLOWUP_PRESET = dict(TINY_PRESET, epochs=2, lr=1e15, gan_lr=1e15, n_samples=100)

#: One run per figure cell: m = 5, seed 0, depth 3, one gradient-penalty target.
ONE_RUN_PLAN = plans.StudyPlan(m_values=(5,), seeds=(0,), gp_values=(5,), depths=(3,), gan_depths=(3,),
                               arch_m_values=(5,), arch_seeds=(0,), fig4_seeds=(0,), depth_seeds=(0,),
                               histogram_m=5.0)
#: Two values of m, two seeds, two depths and two penalty targets: enough for trends and spreads.
TINY_PLAN = plans.StudyPlan(m_values=(0, 5), seeds=(0, 1), gp_values=(5, 25), depths=(2, 3),
                            gan_depths=(2, 3), arch_m_values=(5,), arch_seeds=(0,), fig4_seeds=(0,),
                            depth_seeds=(0, 1), fig4_m=5.0, fig5_m=5.0, histogram_m=5.0)


def register(patch, plan=TINY_PLAN):
    """Register the presets 'tiny' and 'blowup' (with their particles' budgets) and ``plan`` as
    the plan 'tiny'."""
    patch.setitem(runs.PRESETS, "tiny", TINY_PRESET)
    patch.setitem(runs.PRESETS, "blowup", BLOWUP_PRESET)
    patch.setitem(plans.PLANS, "tiny", plan)
    patch.setitem(runs.PARTICLE_PRESETS, "tiny", TINY_PARTICLES)
    patch.setitem(runs.PARTICLE_PRESETS, "blowup", dict(TINY_PARTICLES, lr=1e15))
