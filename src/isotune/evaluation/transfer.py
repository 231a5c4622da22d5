"""SentEval transfer tasks: logistic regression on frozen sentence embeddings (Conneau and Kiela, 2018).

The protocol follows SentEval with its scikit-learn classifier:

- MR, CR, SUBJ, MPQA: stratified 10-fold cross-validation; the accuracy is the mean over the test folds.
- SST-2: the regularisation is chosen by accuracy on dev, then the classifier trained on train is tested.
- TREC and MRPC: the regularisation is chosen by stratified inner cross-validation on train, then the
  classifier refit on all of train is tested. MRPC uses the pair features `[u, v, |u - v|, u * v]` and
  also reports F1 of the paraphrase class.

Wherever a regularisation is chosen by cross-validation (also inside each outer fold of the 10-fold
tasks), it is the C of `C_GRID` with the best mean accuracy over `INNER_FOLDS` stratified folds. All
folds are shuffled with `seed`, so two runs give identical folds and scores.

Reference: Alexis Conneau and Douwe Kiela, "SentEval: An Evaluation Toolkit for Universal Sentence
Representations", LREC 2018.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from isotune.evaluation.embedding import EmbedFunction
from isotune.evaluation.transfer_data import ClassificationData, Split

logger = logging.getLogger(__name__)

# Inverse regularisation strengths tried, 2^-2 ... 2^3, the grid of SentEval's scikit-learn classifier
# (senteval/tools/validation.py), which also uses 5 inner folds by default.
C_GRID = [2.0**power for power in range(-2, 4)]
OUTER_FOLDS = 10
INNER_FOLDS = 5
MAX_ITER = 1000


def classifier_settings(seed: int) -> dict:
    """Return the classifier settings that go into every transfer result."""
    return {
        "model": "sklearn.linear_model.LogisticRegression",
        "solver": "lbfgs",
        "max_iter": MAX_ITER,
        "C_grid": C_GRID,
        "outer_folds": OUTER_FOLDS,
        "inner_folds": INNER_FOLDS,
        "seed": seed,
    }


def _logistic_regression(C: float, seed: int) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=MAX_ITER, random_state=seed)


def _fit(features: np.ndarray, labels: np.ndarray, C: float, seed: int) -> LogisticRegression:
    # One BLAS thread: the products of lbfgs are small, and on a busy 2-core machine a second BLAS
    # thread made each fit about 10 times slower (measured with 3,400 x 384 features).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _logistic_regression(C, seed).fit(features, labels)


def _fit_with_inner_cv(features: np.ndarray, labels: np.ndarray, seed: int) -> tuple[float, LogisticRegression]:
    """Choose C by stratified inner cross-validation on (features, labels), then refit on all of them.

    Returns the C with the best mean validation accuracy (the smallest such C on a tie) and the refit
    classifier.
    """
    folds = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed).split(features, labels)
    accuracies = np.zeros(len(C_GRID))
    for train_index, valid_index in folds:
        for position, C in enumerate(C_GRID):
            classifier = _fit(features[train_index], labels[train_index], C, seed)
            accuracies[position] += accuracy_score(labels[valid_index], classifier.predict(features[valid_index]))
    best = C_GRID[int(np.argmax(accuracies))]
    return best, _fit(features, labels, best, seed)


def pair_features(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Return the MRPC features `[u, v, |u - v|, u * v]` of paired embeddings, `[n, 4 dim]`."""
    return np.concatenate([first, second, np.abs(first - second), first * second], axis=1)


def _features(embed: EmbedFunction, split: Split, pairs: bool) -> np.ndarray:
    if not pairs:
        return embed(list(split.texts))
    first = embed([pair[0] for pair in split.texts])
    second = embed([pair[1] for pair in split.texts])
    return pair_features(first, second)


def _cross_validate(features: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    outer = StratifiedKFold(OUTER_FOLDS, shuffle=True, random_state=seed)
    accuracies, chosen = [], []
    for train_index, test_index in outer.split(features, labels):
        C, classifier = _fit_with_inner_cv(features[train_index], labels[train_index], seed)
        accuracies.append(accuracy_score(labels[test_index], classifier.predict(features[test_index])) * 100)
        chosen.append(C)
    return {
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "fold_accuracies": [float(value) for value in accuracies],
        "chosen_C": chosen,
        "num_examples": int(len(labels)),
        "protocol": f"{OUTER_FOLDS}-fold cross-validation",
    }


def _select_on_dev(train: tuple[np.ndarray, np.ndarray], dev: tuple[np.ndarray, np.ndarray], seed: int):
    best = None
    dev_accuracies = {}
    for C in C_GRID:
        classifier = _fit(*train, C, seed)
        dev_accuracies[C] = accuracy_score(dev[1], classifier.predict(dev[0])) * 100
        if best is None or dev_accuracies[C] > dev_accuracies[best[0]]:
            best = (C, classifier)
    return best[0], best[1], dev_accuracies[best[0]]


def evaluate_transfer(embed: EmbedFunction, data: ClassificationData, *, seed: int = 0) -> dict:
    """Score `embed` on a transfer task with the protocol of the module docstring.

    Returns a dict with `accuracy` (x100), `f1` (x100, MRPC only), the split sizes, the `protocol`, the
    regularisation chosen (`chosen_C`, one per outer fold under cross-validation), `classifier`
    (settings and seed) and `skipped_lines` (blank lines per file).
    """
    features = {name: _features(embed, split, data.pairs) for name, split in data.splits.items()}
    labels = {name: split.labels for name, split in data.splits.items()}
    if "all" in data.splits:
        result = _cross_validate(features["all"], labels["all"], seed)
    elif "dev" in data.splits:
        C, classifier, dev_accuracy = _select_on_dev(
            (features["train"], labels["train"]), (features["dev"], labels["dev"]), seed
        )
        predictions = classifier.predict(features["test"])
        result = {
            "accuracy": float(accuracy_score(labels["test"], predictions) * 100),
            "dev_accuracy": float(dev_accuracy),
            "chosen_C": C,
            "protocol": "train/dev/test, C chosen on dev",
        }
    else:
        C, classifier = _fit_with_inner_cv(features["train"], labels["train"], seed)
        predictions = classifier.predict(features["test"])
        result = {
            "accuracy": float(accuracy_score(labels["test"], predictions) * 100),
            "chosen_C": C,
            "protocol": f"train/test, C chosen by {INNER_FOLDS}-fold cross-validation on train",
        }
        if data.pairs:
            result["f1"] = float(f1_score(labels["test"], predictions) * 100)
    for name, split in data.splits.items():
        if name != "all":
            result[f"num_{name}"] = len(split)
    result["classifier"] = classifier_settings(seed)
    result["skipped_lines"] = dict(data.skipped_lines)
    return result
