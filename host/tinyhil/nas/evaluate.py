"""The Tiny-TimeNAS seed's unified metrics, under its names:
evaluate_classification(y_true, y_pred) -> accuracy, precision, recall, f1 (macro), auc;
evaluate_regression(y_true, y_pred) -> rmse, mse, mae."""
from __future__ import annotations

import numpy as np

from tinyhil.errors import TinyhilError


def evaluate_regression(y_true, y_pred) -> dict:
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    y_true = np.asarray(y_true, float).ravel()
    y_pred = np.asarray(y_pred, float).reshape(len(y_true), -1)
    if y_pred.shape[1] != 1:
        raise TinyhilError(f"evaluate_regression: one prediction per window expected, got {y_pred.shape}")
    mse = float(mean_squared_error(y_true, y_pred[:, 0]))
    return {"rmse": float(np.sqrt(mse)), "mse": mse, "mae": float(mean_absolute_error(y_true, y_pred[:, 0]))}


def evaluate_classification(y_true, y_pred) -> dict:
    """y_pred: class probabilities (N, C), as model.predict gives them."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true)
    if y_true.ndim == 2:
        y_true = y_true.argmax(1)
    y_pred = np.asarray(y_pred, float)
    if y_pred.ndim != 2:
        raise TinyhilError(f"evaluate_classification: y_pred must be class probabilities (N, C), "
                           f"got shape {y_pred.shape}")
    try:
        if y_pred.shape[1] == 2:
            auc = float(roc_auc_score(y_true, y_pred[:, 1]))
        else:
            auc = float(roc_auc_score(y_true, y_pred, multi_class="ovo", labels=np.arange(y_pred.shape[1])))
    except ValueError:  # a class absent from y_true: AUC undefined
        auc = float("nan")
    predicted = y_pred.argmax(1)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, predicted, average="macro",
                                                               zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, predicted)), "precision": float(precision),
            "recall": float(recall), "f1": float(f1), "auc": auc}
