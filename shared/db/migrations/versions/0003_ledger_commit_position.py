"""ledger commit position: project streams without a per-project lock

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 04:40:00

Rows recorded before this revision keep their id as position: ids below the first
transaction id shifted by 16 bits, so they sort before every row recorded after.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


POSITION_DEFAULT = (
    "(CAST(CAST(pg_current_xact_id() AS text) AS bigint) << 16) + nextval('job_events_ordinal')"
)


def upgrade() -> None:
    op.execute("CREATE SEQUENCE job_events_ordinal MINVALUE 0 MAXVALUE 65535 START 0 CYCLE")
    op.add_column("job_events", sa.Column("position", sa.BigInteger(), nullable=True))
    op.execute("UPDATE job_events SET position = id")
    op.alter_column(
        "job_events", "position", nullable=False, server_default=sa.text(POSITION_DEFAULT)
    )
    op.drop_index("ix_job_events_project_id", table_name="job_events")
    op.create_index(
        "ix_job_events_project_position", "job_events", ["project_slug", "position"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_job_events_project_position", table_name="job_events")
    op.create_index("ix_job_events_project_id", "job_events", ["project_slug", "id"], unique=False)
    op.drop_column("job_events", "position")
    op.execute("DROP SEQUENCE job_events_ordinal")
