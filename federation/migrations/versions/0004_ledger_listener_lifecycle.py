"""certificate ledger, grant-level enrollment claim, gateway identity, federated resources,
peer lifecycle (requesting side), federated-request audit columns

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_OLD_PEER_STATES = "state IN ('pending', 'active', 'failed', 'revoked')"
_NEW_PEER_STATES = "state IN ('pending', 'active', 'degraded', 'expired', 'failed', 'revoked')"


def _owned_resource_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_user_id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.create_index(
            f"ix_{name}_owner_keyset", ["owner_user_id", "created_at", "id"], unique=False
        )


def upgrade() -> None:
    op.create_table(
        "federation_certificates",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("peer_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("csr_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("issued_by", sa.String(length=200), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=True),
        sa.Column("chain_pem", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(length=200), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('requested', 'issued', 'active', 'superseded', 'revoked')",
            name="ck_federation_certificates_state",
        ),
        sa.CheckConstraint(
            "purpose IN ('enrollment', 'renewal')", name="ck_federation_certificates_purpose"
        ),
        sa.ForeignKeyConstraint(["grant_id"], ["federation_grants.id"]),
        sa.ForeignKeyConstraint(["peer_id"], ["federation_peers.id"]),
        sa.PrimaryKeyConstraint("serial"),
    )
    with op.batch_alter_table("federation_certificates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_federation_certificates_grant_state", ["grant_id", "state"], unique=False
        )
        batch_op.create_index(
            "ix_federation_certificates_state_created", ["state", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_federation_certificates_revoke_after", ["state", "revoke_after"], unique=False
        )

    # Certificates activated before the ledger existed: one active row per active grant.
    op.execute(
        "INSERT INTO federation_certificates (serial, grant_id, peer_id, state, purpose,"
        " csr_fingerprint, issued_by, cert_pem, fingerprint, not_after, created_at, updated_at)"
        " SELECT g.cert_serial, g.id, g.peer_id, 'active', 'enrollment', '', 'before-ledger',"
        " p.cert_pem, p.cert_fingerprint, g.cert_not_after,"
        " COALESCE(g.activated_at, g.updated_at), COALESCE(g.activated_at, g.updated_at)"
        " FROM federation_grants g LEFT JOIN federation_peers p"
        " ON p.id = g.peer_id AND p.cert_serial = g.cert_serial"
        " WHERE g.status = 'active' AND g.cert_serial IS NOT NULL"
    )

    with op.batch_alter_table("federation_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enrolling_token_hash", sa.String(length=64), nullable=True))

    with op.batch_alter_table("federation_peers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("federation_url", sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column("cert_chain_pem", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("remote_ca_pem", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("remote_ca_fingerprint", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("next_key_sealed", sa.Text(), nullable=True))
        batch_op.drop_constraint("ck_federation_peers_state", type_="check")
        batch_op.create_check_constraint("ck_federation_peers_state", _NEW_PEER_STATES)

    with op.batch_alter_table("federation_audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("query_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rows_out", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("bytes_out", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("latency_ms", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("client_address", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("occurrences", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )

    op.create_table(
        "mosaic_gateway",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )

    for name in ("tasks", "notes", "credentials"):
        _owned_resource_table(name)


def downgrade() -> None:
    for name in ("credentials", "notes", "tasks"):
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{name}_owner_keyset")
        op.drop_table(name)
    op.drop_table("mosaic_gateway")
    with op.batch_alter_table("federation_audit_log", schema=None) as batch_op:
        for column in (
            "occurrences",
            "client_address",
            "latency_ms",
            "bytes_out",
            "rows_out",
            "query_sha256",
        ):
            batch_op.drop_column(column)
    # Peers in the new states go back to the nearest old one.
    op.execute("UPDATE federation_peers SET state = 'active' WHERE state = 'degraded'")
    op.execute("UPDATE federation_peers SET state = 'failed' WHERE state = 'expired'")
    with op.batch_alter_table("federation_peers", schema=None) as batch_op:
        batch_op.drop_constraint("ck_federation_peers_state", type_="check")
        batch_op.create_check_constraint("ck_federation_peers_state", _OLD_PEER_STATES)
        for column in ("next_key_sealed", "remote_ca_fingerprint", "remote_ca_pem"):
            batch_op.drop_column(column)
        batch_op.drop_column("cert_chain_pem")
        batch_op.drop_column("federation_url")
    with op.batch_alter_table("federation_grants", schema=None) as batch_op:
        batch_op.drop_column("enrolling_token_hash")
    with op.batch_alter_table("federation_certificates", schema=None) as batch_op:
        batch_op.drop_index("ix_federation_certificates_revoke_after")
        batch_op.drop_index("ix_federation_certificates_state_created")
        batch_op.drop_index("ix_federation_certificates_grant_state")
    op.drop_table("federation_certificates")
