"""requesting side: CN known after preflight, remote grant/user on peers, expiry index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("federation_peers", schema=None) as batch_op:
        batch_op.alter_column("common_name", existing_type=sa.String(length=64), nullable=True)
        batch_op.add_column(sa.Column("remote_grant_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("remote_subject_user_id", sa.String(length=36), nullable=True)
        )
        batch_op.create_index(
            "ix_federation_peers_state_not_after", ["state", "cert_not_after"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("federation_peers", schema=None) as batch_op:
        batch_op.drop_index("ix_federation_peers_state_not_after")
        batch_op.drop_column("remote_subject_user_id")
        batch_op.drop_column("remote_grant_id")
        batch_op.alter_column("common_name", existing_type=sa.String(length=64), nullable=False)
