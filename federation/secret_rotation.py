"""Re-sealing the requesting side's sealed columns after BETTER_AUTH_SECRET rotates."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.client_key import client_key_aad, next_key_aad
from federation.db.models import Peer
from federation.requesting_peer import enrollment_url_aad
from federation.sealing import SealedBlobError, Sealer, reseal


async def reseal_all(session: AsyncSession, *, old: Sealer, new: Sealer) -> int:
    """Re-seal every sealed blob under ``new`` (after a secret rotation); returns how many.

    Blobs already sealed under ``new`` are left as they are, so a rerun is safe.
    """
    peers = (
        await session.scalars(
            select(Peer).where(
                (Peer.client_key_sealed.is_not(None))
                | (Peer.enrollment_url_sealed.is_not(None))
                | (Peer.next_key_sealed.is_not(None))
            )
        )
    ).all()
    count = 0
    for peer in peers:
        peer_id = peer.id  # read before a rollback expires the row
        try:
            count += _reseal_peer(peer, old=old, new=new)
        except SealedBlobError as exc:
            await session.rollback()
            raise SealedBlobError(f"peer {peer_id}: {exc}") from None
    await session.commit()
    return count


def _reseal_peer(peer: Peer, *, old: Sealer, new: Sealer) -> int:
    """Re-seal the peer's blobs; returns how many changed (already-new ones do not)."""
    count = 0
    if peer.client_key_sealed:
        blob = reseal(peer.client_key_sealed, aad=client_key_aad(peer.id), old=old, new=new)
        count += blob != peer.client_key_sealed
        peer.client_key_sealed = blob
    if peer.enrollment_url_sealed:
        blob = reseal(peer.enrollment_url_sealed, aad=enrollment_url_aad(peer.id), old=old, new=new)
        count += blob != peer.enrollment_url_sealed
        peer.enrollment_url_sealed = blob
    if peer.next_key_sealed:
        # The key of a renewal under way (federation/peer_lifecycle.py).
        blob = reseal(peer.next_key_sealed, aad=next_key_aad(peer.id), old=old, new=new)
        count += blob != peer.next_key_sealed
        peer.next_key_sealed = blob
    return count
