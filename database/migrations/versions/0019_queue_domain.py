"""The queue's reads of an answer's domain from its indexes: ``predictions.in_domain`` in the confidence and class ones.

The class filter and the confidence sorts read whether each prediction that counts is in its model's domain (its
``in_domain`` against ``QueueQuery.domain_below``, ``database/review_queue.py``: ``_stands``, ``_out_of_domain``).
No index held the score, so every row of those walks was read from the table too, and the stretch of answers out of
domain (the least confident, by name) was found by probing every image of the folder (200,000 images, SQLite, as
measured with that change: "uncertainty"'s first page 2 → 64 ms, the class count 3 → 38 ms, a page at the middle and
N 2-4× slower):

- ``ix_predictions_queue_confidence`` (family, confidence, name key, image) ends in ``in_domain``: the walks and
  counts of the answers that stand read the index alone again;
- ``ix_predictions_folder_class`` (family, folder, class) ends in ``in_domain``: the class count's predictions of
  the class that stand are an index-only range count again;
- ``ix_predictions_queue_domain`` (family, in-domain score, name key, image), new: the answers out of domain are a
  range of it (a score below the threshold), sorted by name (as many as there are; not every image of the folder).

Index changes only (no rows, no reads change). With them (SQLite, same machine, ms): the first page 56-60 → 7-11, the
class count 15 → 4, the middle page and N back to their times without the threshold; benchmarks/results/
queue-domain-index.md has the plans, the PostgreSQL figures and what the indexes do not bring back.

Revision ID: 0019_queue_domain
Revises: 0018_revision_model_version
"""
from __future__ import annotations

from alembic import op

revision = '0019_queue_domain'
down_revision = '0018_revision_model_version'
branch_labels = None
depends_on = None

OLD = {"ix_predictions_queue_confidence": ["current_family", "confidence", "name_key", "image_id"],
       "ix_predictions_folder_class": ["current_family", "folder_id", "predicted_class"]}
NEW = {"ix_predictions_queue_confidence": ["current_family", "confidence", "name_key", "image_id", "in_domain"],
       "ix_predictions_folder_class": ["current_family", "folder_id", "predicted_class", "in_domain"]}
DOMAIN = ("ix_predictions_queue_domain", ["current_family", "in_domain", "name_key", "image_id"])


def _reindex(indexes: dict[str, list[str]]) -> None:
    for name, columns in indexes.items():
        op.drop_index(name, table_name="predictions")
        op.create_index(name, "predictions", columns)


def upgrade() -> None:
    _reindex(NEW)
    op.create_index(DOMAIN[0], "predictions", DOMAIN[1])


def downgrade() -> None:
    op.drop_index(DOMAIN[0], table_name="predictions")
    _reindex(OLD)
