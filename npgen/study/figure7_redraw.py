"""``npgen figure 7 --from DIR``: Figure 7 from the runs a reproduction stored, without training.

The runs are keyed by the MNIST data they were trained on (:func:`npgen.study.figure7.data_identity`),
which the redraw does not read again: it takes the identity recorded in the stored classifier
runs of the study's preset, and of those the one with the most finished model runs of this code.
"""

import json
import os

from ..util.io import atomic_write_text
from .figure7 import FIG7_DIR, PLANS, PREPARATION_STAGES, fig7_runs_dir
from .figure7_report import collect_fig7, section_fig7, write_fig7_numbers
from .render import section_markdown

#: The report section ``npgen figure 7 --from DIR`` writes beside fig7.json.
SECTION_FILE = "section.md"


def _stored_identities(runs_dir, preset):
    """The data identities recorded by the classifier runs of ``preset`` in ``runs_dir`` (one
    per MNIST source the study was run with; unreadable folders are skipped, as the sweep skips them)."""
    identities = {}
    entries = os.scandir(runs_dir) if os.path.isdir(runs_dir) else ()
    for entry in entries:
        try:
            with open(os.path.join(entry.path, "config.json"), encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError):
            continue
        if (isinstance(config, dict) and config.get("figure") == "fig7" and config.get("stage") == "classifier"
                and config.get("preset") == preset and isinstance(config.get("data"), dict)):
            identities[json.dumps(config["data"], sort_keys=True)] = config["data"]
    return list(identities.values())


def _model_runs(found):
    """How many finished data and model runs :func:`collect_fig7`'s ``found`` holds."""
    return sum(len(runs) for key, runs in found.items() if key not in PREPARATION_STAGES)


def stored_fig7(out, preset):
    """(runs, identity) of the Figure 7 study stored in ``out`` (:func:`collect_fig7` of the data
    identity with the most finished model runs of this code); ValueError, one sentence naming
    the folder and how to make the runs, when it holds no finished model run."""
    runs_dir = fig7_runs_dir(out)
    if preset not in PLANS:
        raise ValueError(f"{out} holds a study of the {preset} preset, which has no Figure 7 settings;"
                         f" Figure 7 runs with --preset {' or '.join(sorted(PLANS))}")
    best, best_identity = {}, None
    for identity in _stored_identities(runs_dir, preset):
        found = collect_fig7(out, preset, identity)
        if _model_runs(found) > _model_runs(best):
            best, best_identity = found, identity
    if best_identity is None:
        raise ValueError(f"{runs_dir} holds no finished Figure 7 model runs of the {preset} preset made by this"
                         f" npgen; make them with npgen reproduce --only fig7 --preset {preset} --out {out}")
    return best, best_identity


def redraw_fig7(out, preset):
    """Figure 7 from the runs stored in ``out``, without training: fig7.json, the section's
    markdown (fig7/section.md) and the figures; returns the section."""
    found, identity = stored_fig7(out, preset)
    write_fig7_numbers(out, found)
    section = section_fig7(found, identity, preset)
    atomic_write_text(os.path.join(out, FIG7_DIR, SECTION_FILE), "\n".join(section_markdown(section)) + "\n")
    return section
