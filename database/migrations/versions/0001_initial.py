"""Initial schema: folders, images, classes, model versions, predictions, label revisions, jobs.

Revision ID: 0001_initial
Revises: (none)
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001_initial'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('classes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_classes')),
    sa.UniqueConstraint('task', 'index', name='uq_classes_task_index'),
    sa.UniqueConstraint('task', 'name', name='uq_classes_task_name')
    )
    op.create_table('folders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('root_path', sa.String(length=4096), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('indexed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_folders')),
    sa.UniqueConstraint('root_path', name=op.f('uq_folders_root_path'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('params', sa.JSON(none_as_null=True), nullable=False),
    sa.Column('result', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('priority', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('progress_done', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('progress_failed', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('progress_total', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('claimed_by', sa.String(length=255), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('has_items', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed', 'cancelled')", name=op.f('ck_jobs_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_index('ix_jobs_status', 'jobs', ['status'], unique=False)
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('family', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('checkpoint_path', sa.String(length=4096), nullable=False),
    sa.Column('config', sa.JSON(none_as_null=True), nullable=False),
    sa.Column('metrics', sa.JSON(none_as_null=True), nullable=False),
    sa.Column('card', sa.JSON(none_as_null=True), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('bundled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['model_versions.id'], name=op.f('fk_model_versions_parent_id_model_versions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('family', 'name', name='uq_model_versions_family_name')
    )
    op.create_index('uq_model_versions_active_family', 'model_versions', ['family'], unique=True, sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))
    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('folder_id', sa.Integer(), nullable=False),
    sa.Column('rel_path', sa.String(length=4096), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('review_state', sa.String(length=16), server_default='unreviewed', nullable=False),
    sa.Column('flagged', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('priority', sa.Float(), server_default=sa.text('0'), nullable=False),
    sa.Column('missing', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("review_state IN ('unreviewed', 'accepted', 'corrected', 'rejected')", name=op.f('ck_images_review_state')),
    sa.ForeignKeyConstraint(['folder_id'], ['folders.id'], name=op.f('fk_images_folder_id_folders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_images')),
    sa.UniqueConstraint('folder_id', 'rel_path', name='uq_images_folder_rel_path')
    )
    op.create_index('ix_images_content_hash', 'images', ['content_hash'], unique=False)
    op.create_index('ix_images_folder_state', 'images', ['folder_id', 'review_state'], unique=False)
    op.create_table('workers',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('current_job_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['current_job_id'], ['jobs.id'], name=op.f('fk_workers_current_job_id_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workers'))
    )
    op.create_table('job_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('claimed_by', sa.String(length=255), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed', 'cancelled')", name=op.f('ck_job_items_status')),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_job_items_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_items_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_items'))
    )
    op.create_index('ix_job_items_claimed_by', 'job_items', ['claimed_by'], unique=False)
    op.create_index('ix_job_items_job_status', 'job_items', ['job_id', 'status'], unique=False)
    op.create_table('predictions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('class_scores', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('predicted_class', sa.String(length=255), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('mask_png', sa.LargeBinary(), nullable=True),
    sa.Column('mask_ref', sa.String(length=4096), nullable=True),
    sa.Column('target_count', sa.Integer(), nullable=True),
    sa.Column('anomaly_score', sa.Float(), nullable=True),
    sa.Column('anomaly_map_ref', sa.String(length=4096), nullable=True),
    sa.Column('flags', sa.JSON(none_as_null=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_predictions_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_predictions_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_predictions')),
    sa.UniqueConstraint('image_id', 'model_version_id', name='uq_predictions_image_model')
    )
    op.create_index('ix_predictions_model_version', 'predictions', ['model_version_id'], unique=False)
    op.create_table('label_revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('author', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('changed', sa.String(length=64), nullable=False),
    sa.Column('class_name', sa.String(length=255), nullable=True),
    sa.Column('mask_png', sa.LargeBinary(), nullable=True),
    sa.Column('anomaly_verdict', sa.String(length=16), nullable=True),
    sa.Column('anomaly_mask_png', sa.LargeBinary(), nullable=True),
    sa.Column('review_state', sa.String(length=16), nullable=False),
    sa.Column('from_prediction_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.CheckConstraint("anomaly_verdict IS NULL OR anomaly_verdict IN ('normal', 'anomalous')", name=op.f('ck_label_revisions_anomaly_verdict')),
    sa.CheckConstraint("review_state IN ('unreviewed', 'accepted', 'corrected', 'rejected')", name=op.f('ck_label_revisions_review_state')),
    sa.ForeignKeyConstraint(['from_prediction_id'], ['predictions.id'], name=op.f('fk_label_revisions_from_prediction_id_predictions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_label_revisions_image_id_images'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label_revisions')),
    sa.UniqueConstraint('image_id', 'revision', name='uq_label_revisions_image_revision')
    )


def downgrade() -> None:
    op.drop_table('label_revisions')
    op.drop_index('ix_predictions_model_version', table_name='predictions')
    op.drop_table('predictions')
    op.drop_index('ix_job_items_job_status', table_name='job_items')
    op.drop_index('ix_job_items_claimed_by', table_name='job_items')
    op.drop_table('job_items')
    op.drop_table('workers')
    op.drop_index('ix_images_folder_state', table_name='images')
    op.drop_index('ix_images_content_hash', table_name='images')
    op.drop_table('images')
    op.drop_index('uq_model_versions_active_family', table_name='model_versions')
    op.drop_table('model_versions')
    op.drop_index('ix_jobs_status', table_name='jobs')
    op.drop_table('jobs')
    op.drop_table('folders')
    op.drop_table('classes')
