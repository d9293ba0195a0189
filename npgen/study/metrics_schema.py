"""What a finished run's metrics.json must hold for the report to read it: :data:`METRICS_READ`,
checked by :func:`check_metrics`, and the one-line summary ``npgen train`` prints."""

import math

from .run_metrics import COLLAPSES

def _is_number(value):
    """A finite int or float: NaN or inf in a metric the report reads means a damaged run."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_number_or_inf(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _is_epoch_curve(value):
    return isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 and all(map(_is_number, p))
                                           for p in value)


def _is_sigma_table(value):
    return isinstance(value, list) and bool(value) and all(
        isinstance(row, dict) and _is_number(row.get("exact_standardized")) and _is_number(row.get("grid_standardized"))
        for row in value)


def _is_level_table(value):
    return isinstance(value, list) and bool(value) and all(
        isinstance(row, dict) and all(_is_number(row.get(key)) for key in
                                      ("sigma_standardized", "grad_sq_factor_median", "grad_sq_factor_at_max"))
        for row in value)


def _is_steps_by_end(value):
    return isinstance(value, dict) and all(
        isinstance(value.get(name), list) and all(isinstance(k, int) and not isinstance(k, bool) for k in value[name])
        for name in ("left", "between", "right"))


def _is_score_error_table(value):
    return isinstance(value, list) and bool(value) and all(
        isinstance(row, dict) and _is_number(row.get("sigma_standardized")) and _is_number(row.get("relative_error"))
        for row in value)


def _is_search(value):
    return isinstance(value, dict) and all(
        isinstance(value.get(name), dict) and (value[name].get("largest") is None or _is_number(value[name]["largest"]))
        for name in ("trained", "exact"))


#: The exact-score sampler's numbers the report reads.
EXACT_SAMPLER_NUMBERS = ("mass_between", "smaller_mode_share", "mw2_squared", "lipschitz",
                         "theorem1_required_lipschitz")
_NUMBER = ("a finite number", _is_number)
#: The metrics.json keys the report and the figures read, per model: key -> (what is accepted, test).
METRICS_READ = {
    "any": {key: _NUMBER for key in ("mass_between", "true_mass_between", "mass_left", "mass_right",
                                     "tv_estimate", "narrowest_90pct_interval_width", "smaller_mode_share",
                                     "mw2_squared")},
    "push_forward": {"lipschitz": _NUMBER, "lipschitz_grid": _NUMBER,
                     "lipschitz_vs_epoch": ("a list of [epoch, Lip] number pairs", _is_epoch_curve)},
    "particles": {"discriminator_lipschitz": _NUMBER, "train_seconds": _NUMBER,
                  "kinetic_energy_vs_step": ("a list of [step, energy] number pairs", _is_epoch_curve)},
    "sgm": {"score_lipschitz_standardized": _NUMBER, "score_lipschitz_data_scale": _NUMBER,
            "sampler_lipschitz": _NUMBER, "sampler_lipschitz_x0": _NUMBER, "sampler_lipschitz_noise": _NUMBER,
            "sampler_gradient_median": _NUMBER, "sampler_steps_per_level": _NUMBER,
            "theorem1_required_lipschitz": ("a number or Infinity (no mass between the modes)", _is_number_or_inf),
            "theorem1_required_lipschitz_upper": ("a number or null", lambda v: v is None or _is_number(v)),
            "sampler_meets_theorem1": ("true or false", lambda v: isinstance(v, bool)),
            "sampler_levels": ("a list of objects with numbers 'sigma_standardized', 'grad_sq_factor_median' and "
                               "'grad_sq_factor_at_max'", _is_level_table),
            "sampler_expansion_steps": ("an object of integer lists 'left', 'between' and 'right'", _is_steps_by_end),
            "score_lipschitz_per_sigma": ("a list of objects with numbers 'exact_standardized' and "
                                          "'grid_standardized'", _is_sigma_table),
            "score_error_per_level": ("a list of objects with numbers 'sigma_standardized' and 'relative_error'",
                                      _is_score_error_table),
            "exact_sampler": ("an object with numbers " + ", ".join(map(repr, EXACT_SAMPLER_NUMBERS)),
                              lambda v: isinstance(v, dict) and all(_is_number(v.get(k)) for k in EXACT_SAMPLER_NUMBERS)),
            "sampler_search": ("an object 'trained' and 'exact', each with 'largest' a number or null",
                               _is_search)},
}
METRICS_READ["any"]["collapse"] = (f"null or one of {list(COLLAPSES)}", lambda v: v is None or v in COLLAPSES)


def check_metrics(metrics, model, path):
    """Raise ValueError (one sentence naming ``path``) unless ``metrics`` holds every key the report
    reads for ``model``, each of the accepted type."""
    kind = model if model in ("sgm", "particles") else "push_forward"
    expected = {**METRICS_READ["any"], **METRICS_READ[kind]}
    for key, (accepted, test) in expected.items():
        if key not in metrics:
            raise ValueError(f"{path} lacks the key {key!r} ({accepted}); delete that run's folder and rerun "
                             "npgen reproduce to retrain it")
        if not test(metrics[key]):
            shown = repr(metrics[key])
            raise ValueError(f"{path}: {key!r} must be {accepted}, not {shown[:40] + '...' * (len(shown) > 40)}; "
                             "delete that run's folder and rerun npgen reproduce to retrain it")


def summarize_metrics(metrics):
    """A few lines for the terminal."""
    keys = ["lipschitz", "lipschitz_grid", "score_lipschitz_standardized", "score_lipschitz_data_scale",
            "score_lipschitz_grid_standardized", "sampler_lipschitz", "theorem1_required_lipschitz",
            "mass_between", "true_mass_between", "fig3_bound", "mass_between_bound", "mw2_squared",
            "discriminator_lipschitz", "final_kinetic_energy",
            "tv_estimate", "kl_estimate", "best_tv_bound", "best_kl_bound", "wall_seconds"]
    lines = [f"{k:>33}: {metrics[k]:.6g}" for k in keys if k in metrics]
    return "\n".join(lines + [f"{'collapse':>33}: {metrics.get('collapse') or 'none'}"])
