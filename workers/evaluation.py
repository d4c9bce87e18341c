"""Accuracy and macro-F1 without extra dependencies."""
from __future__ import annotations


def classification_metrics(predictions: list[int], labels: list[int], num_labels: int) -> dict[str, float]:
    correct = sum(p == y for p, y in zip(predictions, labels))
    f1s = []
    for c in range(num_labels):
        tp = sum(p == c and y == c for p, y in zip(predictions, labels))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels))
        if tp + fp + fn == 0:
            continue  # class absent from both: not part of the macro average
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": correct / len(labels) if labels else 0.0, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0}
