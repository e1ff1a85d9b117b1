"""clips: normalized video, poster, duration and trimming

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("clip_max_seconds", sa.Integer(), server_default="60", nullable=False)
        )
        batch_op.add_column(
            sa.Column("report_valid_days", sa.Integer(), server_default="180", nullable=False)
        )
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duration_seconds", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("trimmed_from_seconds", sa.Double(), nullable=True))
    # Clips used to be kept as uploaded ("stored"). As "processing" with their old
    # updated_at, the stuck-media tick hands them to the media queue like any lost task.
    op.execute("UPDATE media SET status = 'processing' WHERE status = 'stored'")


def downgrade() -> None:
    # Clips processed since stay "ready"/"failed"; their renditions are simply ignored.
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_column("trimmed_from_seconds")
        batch_op.drop_column("duration_seconds")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("report_valid_days")
        batch_op.drop_column("clip_max_seconds")
