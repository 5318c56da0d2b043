"""The queue's reads of an answer's domain from its indexes: ``predictions.in_domain`` in the score and count ones.

The class filter, the score sorts and the anomaly-score range read whether each prediction that counts is in its
model's domain (its ``in_domain`` against ``QueueQuery.domain_below``, ``database/review_queue.py``: ``_stands``,
``_out_of_domain``).
No index held the score, so every row of those walks was read from the table too, and the stretch of answers out of
domain (the least confident, by name) was found by probing every image of the folder (200,000 images, SQLite, as
measured with that change: "uncertainty"'s first page 2 → 64 ms, the class count 3 → 38 ms, a page at the middle and
N 2-4× slower):

- ``ix_predictions_queue_confidence`` (family, confidence, name key, image) ends in ``in_domain``: the walks and
  counts of the answers that stand read the index alone again;
- ``ix_predictions_queue_anomaly`` and ``ix_predictions_queue_targets`` (family, score, name key, image) end in
  ``in_domain`` too: "anomaly score" and "target count" take an answer out of domain out of the values shown (a
  stretch of its own after them, by name) and the score range matches none, so their walks read it likewise;
- ``ix_predictions_folder_class`` (family, folder, class) and ``ix_predictions_folder_anomaly`` (family, folder,
  score) end in ``in_domain``: the class count's predictions of the class, and the score-range count's predictions
  in range, that stand are index-only range counts again;
- ``ix_predictions_queue_domain`` (family, folder, in-domain score, name key, image), new: a folder's answers out of
  domain are a range of it (a score below the threshold), sorted by name (as many as the folder has; not every image
  of the folder, nor other folders' answers out of domain: without the folder, as 442a9da6 wrote it, "uncertainty"'s
  first page of a folder of 10,000 images took 14 ms on SQLite beside another of 100,000 images out of domain, 1.7-1.9
  with it; 82-88 → 4.1-4.5 on PostgreSQL, where the queue's folder condition on the stretch does it alone).

Index changes only (no rows, no reads change). With them (SQLite, same machine, ms): the first page 56-60 → 7-11, the
class count 15 → 4, the middle page and N back to their times without the threshold; with the anomaly and target ones
(against this migration without them) "anomaly score"'s middle page 207-226 → 91-102 and N 382-389 → 162-176,
"target count"'s 73 → 41 and 23 → 15, the score-range count 40-44 → 3.1-3.4; benchmarks/results/
queue-domain-index.md has the plans, the PostgreSQL figures and what the indexes do not bring back.

Revision ID: 0019_queue_domain
Revises: 0018_revision_model_version
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0019_queue_domain'
down_revision = '0018_revision_model_version'
branch_labels = None
depends_on = None

OLD: dict[str, list[str | sa.TextClause]] = {
    "ix_predictions_queue_confidence": ["current_family", "confidence", "name_key", "image_id"],
    "ix_predictions_queue_anomaly": ["current_family", sa.text("anomaly_score DESC"), "name_key", "image_id"],
    "ix_predictions_queue_targets": ["current_family", sa.text("target_count DESC"), "name_key", "image_id"],
    "ix_predictions_folder_class": ["current_family", "folder_id", "predicted_class"],
    "ix_predictions_folder_anomaly": ["current_family", "folder_id", "anomaly_score"]}
NEW = {name: [*columns, "in_domain"] for name, columns in OLD.items()}
DOMAIN = ("ix_predictions_queue_domain", ["current_family", "folder_id", "in_domain", "name_key", "image_id"])


def _reindex(indexes: dict[str, list[str | sa.TextClause]]) -> None:
    for name, columns in indexes.items():
        op.drop_index(name, table_name="predictions")
        op.create_index(name, "predictions", columns)


def upgrade() -> None:
    _reindex(NEW)
    op.create_index(DOMAIN[0], "predictions", DOMAIN[1])


def downgrade() -> None:
    op.drop_index(DOMAIN[0], table_name="predictions")
    _reindex(OLD)
