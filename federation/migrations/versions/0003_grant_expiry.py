"""grant certificate expiry (indexed for the reconcile sweep); tokens burnt on purpose;
audit idempotency keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("federation_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cert_not_after", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_federation_grants_status_not_after", ["status", "cert_not_after"], unique=False
        )
    with op.batch_alter_table("federation_enrollment_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("burnt_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("federation_audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint(
            "uq_federation_audit_log_idempotency_key", ["idempotency_key"]
        )
    # Grants activated before this revision take their expiry from their peer's certificate.
    op.execute(
        "UPDATE federation_grants SET cert_not_after = ("
        " SELECT p.cert_not_after FROM federation_peers p"
        " WHERE p.id = federation_grants.peer_id AND p.cert_serial = federation_grants.cert_serial)"
        " WHERE status = 'active'"
    )


def downgrade() -> None:
    with op.batch_alter_table("federation_audit_log", schema=None) as batch_op:
        batch_op.drop_constraint("uq_federation_audit_log_idempotency_key", type_="unique")
        batch_op.drop_column("idempotency_key")
    with op.batch_alter_table("federation_enrollment_tokens", schema=None) as batch_op:
        batch_op.drop_column("burnt_at")
    with op.batch_alter_table("federation_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_federation_grants_status_not_after")
        batch_op.drop_column("cert_not_after")
