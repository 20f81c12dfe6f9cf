"""verdict delivery and project ledger index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 07:16:39.639714
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_job_events_project_slug"), table_name="job_events")
    op.create_index("ix_job_events_project_id", "job_events", ["project_slug", "id"], unique=False)
    op.add_column(
        "jobs", sa.Column("verdict_published_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("jobs", "verdict_published_at")
    op.drop_index("ix_job_events_project_id", table_name="job_events")
    op.create_index(
        op.f("ix_job_events_project_slug"), "job_events", ["project_slug"], unique=False
    )
