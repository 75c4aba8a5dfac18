"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "federation_peers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("common_name", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("endpoint_url", sa.String(length=2048), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=True),
        sa.Column("cert_serial", sa.String(length=64), nullable=True),
        sa.Column("cert_not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cert_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("client_key_sealed", sa.Text(), nullable=True),
        sa.Column("enrollment_url_sealed", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'active', 'failed', 'revoked')", name="ck_federation_peers_state"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("common_name"),
    )
    with op.batch_alter_table("federation_peers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_federation_peers_cert_serial"), ["cert_serial"], unique=False
        )
        batch_op.create_index("ix_federation_peers_state", ["state"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "federation_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject_user_id", sa.Uuid(), nullable=False),
        sa.Column("peer_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cert_serial", sa.String(length=64), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'revoked', 'expired')",
            name="ck_federation_grants_status",
        ),
        sa.ForeignKeyConstraint(
            ["peer_id"],
            ["federation_peers.id"],
        ),
        sa.ForeignKeyConstraint(
            ["subject_user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("federation_grants", schema=None) as batch_op:
        batch_op.create_index(
            "ix_federation_grants_peer_status", ["peer_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_federation_grants_status_created", ["status", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_federation_grants_subject_user_id"), ["subject_user_id"], unique=False
        )

    op.create_table(
        "federation_audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("verb", sa.String(length=50), nullable=False),
        sa.Column("resource", sa.String(length=50), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=True),
        sa.Column("peer_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("cert_serial", sa.String(length=64), nullable=True),
        sa.CheckConstraint("outcome IN ('allowed', 'denied')", name="ck_federation_audit_outcome"),
        sa.ForeignKeyConstraint(["grant_id"], ["federation_grants.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["peer_id"], ["federation_peers.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("federation_audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_federation_audit_created", ["created_at"], unique=False)
        batch_op.create_index("ix_federation_audit_grant", ["grant_id"], unique=False)
        batch_op.create_index("ix_federation_audit_peer", ["peer_id"], unique=False)

    op.create_table(
        "federation_enrollment_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("peer_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("csr_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("cert_serial", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["federation_grants.id"],
        ),
        sa.ForeignKeyConstraint(
            ["peer_id"],
            ["federation_peers.id"],
        ),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("federation_enrollment_tokens", schema=None) as batch_op:
        batch_op.create_index(
            "ix_federation_enrollment_tokens_claimed",
            ["used_at"],
            unique=False,
            postgresql_where=sa.text("used_at IS NOT NULL AND cert_serial IS NULL"),
            sqlite_where=sa.text("used_at IS NOT NULL AND cert_serial IS NULL"),
        )
        batch_op.create_index("ix_federation_enrollment_tokens_grant", ["grant_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("federation_enrollment_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_federation_enrollment_tokens_grant")
        batch_op.drop_index(
            "ix_federation_enrollment_tokens_claimed",
            postgresql_where=sa.text("used_at IS NOT NULL AND cert_serial IS NULL"),
            sqlite_where=sa.text("used_at IS NOT NULL AND cert_serial IS NULL"),
        )

    op.drop_table("federation_enrollment_tokens")
    with op.batch_alter_table("federation_audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_federation_audit_peer")
        batch_op.drop_index("ix_federation_audit_grant")
        batch_op.drop_index("ix_federation_audit_created")

    op.drop_table("federation_audit_log")
    with op.batch_alter_table("federation_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_federation_grants_subject_user_id"))
        batch_op.drop_index("ix_federation_grants_status_created")
        batch_op.drop_index("ix_federation_grants_peer_status")

    op.drop_table("federation_grants")
    op.drop_table("users")
    with op.batch_alter_table("federation_peers", schema=None) as batch_op:
        batch_op.drop_index("ix_federation_peers_state")
        batch_op.drop_index(batch_op.f("ix_federation_peers_cert_serial"))

    op.drop_table("federation_peers")
