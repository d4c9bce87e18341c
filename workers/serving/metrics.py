"""Scoring a model's answers against references: pure functions over plain lists (no Django, no state):
what batch predictions report and what the comparison can reuse.

- `classification_report(predicted, expected, labels)`: accuracy and macro-F1 (the same numbers as
  workers/evaluation.classification_metrics), per-label precision/recall/F1/support and the confusion
  matrix (rows: the true label, columns: the predicted one).
- `generation_report(replies, references)`: exact match and token-F1 with SQuAD's normalisation (the
  chat fine-tune's own `exact_match` / `token_f1`, workers/chat/evaluation.py, re-exported here), averaged.
- `worst_classified(rows, limit)` / `worst_generated(rows, limit)`: the examples most worth inspecting.
- `confusion_svg(labels, matrix)`: the confusion matrix as a standalone SVG picture, every label escaped.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

from ..chat.evaluation import exact_match, token_f1  # SQuAD's normalisation, the chat fine-tune's own scoring
from ..evaluation import classification_metrics

__all__ = ["classification_report", "confusion_svg", "exact_match", "generation_report", "token_f1",
           "worst_classified", "worst_generated"]


def classification_report(predicted: list[str], expected: list[str], labels: list[str]) -> dict:
    """Accuracy, macro-F1 (over the labels present in either list, as classification_metrics), per-label
    precision/recall/F1/support, and the confusion matrix over `labels` plus any label of `expected` the
    model does not know (appended, sorted): matrix[i][j] = rows whose true label is labels[i], predicted labels[j]."""
    if len(predicted) != len(expected):
        raise ValueError("predicted and expected differ in length")
    order = list(labels) + sorted(set(expected) - set(labels))
    index = {label: i for i, label in enumerate(order)}
    metrics = classification_metrics([index[p] for p in predicted], [index[y] for y in expected], len(order))
    matrix = [[0] * len(order) for _ in order]
    for p, y in zip(predicted, expected):
        matrix[index[y]][index[p]] += 1
    per_label = []
    for i, label in enumerate(order):
        tp = matrix[i][i]
        predicted_as = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label.append({"label": label, "precision": precision, "recall": recall, "f1": f1, "support": support,
                          "predicted": predicted_as})
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "rows": len(expected),
            "per_label": per_label, "confusion": {"labels": order, "matrix": matrix}}


def generation_report(replies: list[str], references: list[str]) -> dict:
    """Mean exact match and token-F1 of the replies against their references."""
    if len(replies) != len(references):
        raise ValueError("replies and references differ in length")
    n = len(references)
    return {"exact_match": sum(map(exact_match, replies, references)) / n if n else 0.0,
            "token_f1": sum(map(token_f1, replies, references)) / n if n else 0.0, "rows": n}


def worst_classified(rows: list[dict], limit: int) -> list[dict]:
    """The labelled rows the model got most wrong: lowest probability given to the true label first (a
    confident mistake before a hesitant one); ties by input order. rows: {"id", "label", "prediction",
    "score", "scores"}; each returned row adds `label_score` (the true label's probability)."""
    scored = [{**row, "label_score": float((row.get("scores") or {}).get(row["label"], 0.0))}
              for row in rows if row.get("label") is not None]
    return sorted(scored, key=lambda r: r["label_score"])[:limit]


def worst_generated(rows: list[dict], limit: int) -> list[dict]:
    """The rows with a reference whose reply scored lowest (token-F1, then exact match); ties by input order."""
    scored = [row for row in rows if row.get("reference") is not None]
    return sorted(scored, key=lambda r: (r["token_f1"], r["exact_match"]))[:limit]


def confusion_svg(labels: list[str], matrix: list[list[int]], *, cell: int = 28, max_label_chars: int = 24) -> str:
    """The confusion matrix as an SVG picture: a cell per (true, predicted) pair shaded by its share of the
    true label's rows, the count written in it, labels on both axes (escaped, shortened)."""
    n = len(labels)
    short = [label if len(label) <= max_label_chars else label[:max_label_chars - 1] + "…" for label in labels]
    margin = 8 + 7 * max((len(s) for s in short), default=1)
    top = 20 + margin
    width, height = 2 * margin + n * cell, top + n * cell + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<title>Confusion matrix: rows are the true label, columns the predicted one</title>',
           f'<text x="{margin}" y="12">predicted →</text>']
    for i, label in enumerate(short):
        y = top + i * cell + cell / 2 + 4
        out.append(f'<text x="{margin - 4}" y="{y:.0f}" text-anchor="end">{escape(label)}</text>')
        x = margin + i * cell + cell / 2
        out.append(f'<text x="{x:.0f}" y="{top - 4}" text-anchor="start" transform="rotate(-60 {x:.0f} {top - 4})">'
                   f'{escape(label)}</text>')
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            shade = round(255 - 200 * share)
            colour = f"rgb({shade},{shade},255)" if i == j else f"rgb(255,{shade},{shade})"
            x, y = margin + j * cell, top + i * cell
            out.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{colour}" stroke="#ccc"/>')
            if count:
                out.append(f'<text x="{x + cell / 2:.0f}" y="{y + cell / 2 + 4:.0f}" text-anchor="middle">{count}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
