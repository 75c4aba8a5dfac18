from __future__ import annotations

import base64

import pytest

from federation.sealing import SealedBlobError, Sealer, is_sealed, reseal

SECRET = "correct horse battery staple 42"
OTHER_SECRET = "another-secret-of-enough-length"
PEER_A = "peer:0b7d6f3e-3c1a-4f7e-9a55-6b0f2d1c9e01"
PEER_B = "peer:5c2e8a10-9d4b-4e3f-8c71-2a6d9b0e4f12"
KEY_PEM = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
    b"-----END PRIVATE KEY-----\n"
)


def _tamper(blob: str, index: int) -> str:
    version, kid, body = blob.split(":")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[index] ^= 0x01
    return f"{version}:{kid}:{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


def test_seal_then_open_round_trips() -> None:
    sealer = Sealer(SECRET)
    blob = sealer.seal(KEY_PEM, aad=PEER_A)
    assert sealer.open(blob, aad=PEER_A) == KEY_PEM


def test_a_second_sealer_from_the_same_secret_opens_the_blob() -> None:
    blob = Sealer(SECRET).seal(KEY_PEM, aad=PEER_A)
    assert Sealer(SECRET).open(blob, aad=PEER_A) == KEY_PEM


def test_sealed_blob_has_the_documented_shape() -> None:
    sealer = Sealer(SECRET)
    blob = sealer.seal(KEY_PEM, aad=PEER_A)
    version, kid, body = blob.split(":")
    assert version == "v1"
    assert kid == sealer.key_id
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    # 12-byte nonce, ciphertext as long as the plaintext, 16-byte tag.
    assert len(raw) == 12 + len(KEY_PEM) + 16
    assert is_sealed(blob)
    assert Sealer.is_sealed(blob)


def test_ciphertext_does_not_contain_the_plaintext() -> None:
    blob = Sealer(SECRET).seal(KEY_PEM, aad=PEER_A)
    assert "PRIVATE KEY" not in blob
    body = blob.split(":")[2]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert b"PRIVATE KEY" not in raw
    assert KEY_PEM[:16] not in raw


def test_sealing_twice_gives_different_blobs() -> None:
    sealer = Sealer(SECRET)
    assert sealer.seal(KEY_PEM, aad=PEER_A) != sealer.seal(KEY_PEM, aad=PEER_A)


def test_blob_copied_to_another_peer_does_not_open() -> None:
    sealer = Sealer(SECRET)
    blob = sealer.seal(KEY_PEM, aad=PEER_A)
    with pytest.raises(SealedBlobError, match="failed authentication"):
        sealer.open(blob, aad=PEER_B)


def test_blob_sealed_with_another_secret_names_its_key_id() -> None:
    other = Sealer(OTHER_SECRET)
    blob = other.seal(KEY_PEM, aad=PEER_A)
    with pytest.raises(SealedBlobError) as info:
        Sealer(SECRET).open(blob, aad=PEER_A)
    assert str(info.value) == f"sealed with a different secret (key id {other.key_id})"
    assert SECRET not in str(info.value)
    assert OTHER_SECRET not in str(info.value)


def test_key_id_is_eight_hex_chars_and_differs_per_secret() -> None:
    a, b = Sealer(SECRET), Sealer(OTHER_SECRET)
    assert len(a.key_id) == 8
    int(a.key_id, 16)
    assert a.key_id != b.key_id
    assert a.key_id == Sealer(SECRET).key_id
    assert SECRET not in repr(a)


@pytest.mark.parametrize("index", [0, 11, 12, -1])
def test_tampered_blob_does_not_open(index: int) -> None:
    sealer = Sealer(SECRET)
    blob = sealer.seal(KEY_PEM, aad=PEER_A)
    with pytest.raises(SealedBlobError, match="failed authentication"):
        sealer.open(_tamper(blob, index), aad=PEER_A)


def test_blob_with_a_forged_key_id_does_not_open() -> None:
    sealer = Sealer(SECRET)
    version, _, body = sealer.seal(KEY_PEM, aad=PEER_A).split(":")
    with pytest.raises(SealedBlobError, match="different secret"):
        sealer.open(f"{version}:deadbeef:{body}", aad=PEER_A)


@pytest.mark.parametrize(
    "blob",
    [
        "",
        "plaintext",
        "v1:abc",
        "v2:00000000:AAAA",
        "v1:XYZ:AAAA",
        "v1:0000000:AAAA",
        "v1:00000000:not base64!",
        "v1:00000000:AAAA:extra",
    ],
)
def test_malformed_blob_is_rejected(blob: str) -> None:
    with pytest.raises(SealedBlobError):
        Sealer(SECRET).open(blob, aad=PEER_A)
    assert not is_sealed(blob)


def test_truncated_blob_is_rejected() -> None:
    sealer = Sealer(SECRET)
    blob = sealer.seal(b"", aad=PEER_A)
    with pytest.raises(SealedBlobError, match="truncated"):
        sealer.open(blob[:-4], aad=PEER_A)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        Sealer("fifteen chars!!")


def test_reseal_moves_a_blob_to_the_new_secret() -> None:
    old, new = Sealer(SECRET), Sealer(OTHER_SECRET)
    blob = old.seal(KEY_PEM, aad=PEER_A)
    moved = reseal(blob, aad=PEER_A, old=old, new=new)
    assert moved.split(":")[1] == new.key_id
    assert new.open(moved, aad=PEER_A) == KEY_PEM
    with pytest.raises(SealedBlobError, match="different secret"):
        old.open(moved, aad=PEER_A)


def test_reseal_of_an_already_moved_blob_returns_it_unchanged() -> None:
    old, new = Sealer(SECRET), Sealer(OTHER_SECRET)
    moved = reseal(old.seal(KEY_PEM, aad=PEER_A), aad=PEER_A, old=old, new=new)
    assert reseal(moved, aad=PEER_A, old=old, new=new) == moved


def test_reseal_with_the_wrong_aad_fails() -> None:
    old, new = Sealer(SECRET), Sealer(OTHER_SECRET)
    blob = old.seal(KEY_PEM, aad=PEER_A)
    with pytest.raises(SealedBlobError, match="failed authentication"):
        reseal(blob, aad=PEER_B, old=old, new=new)


def test_reseal_after_rotation_moves_the_key_of_a_renewal_under_way_too() -> None:
    """A peer rotated mid-renewal must still open its next key afterwards."""
    import uuid

    from federation.client_key import client_key_aad, next_key_aad
    from federation.db.models import Peer
    from federation.secret_rotation import _reseal_peer

    old, new = Sealer(SECRET), Sealer(OTHER_SECRET)
    peer_id = uuid.uuid4()
    peer = Peer(
        id=peer_id,
        client_key_sealed=old.seal(KEY_PEM, aad=client_key_aad(peer_id)),
        next_key_sealed=old.seal(KEY_PEM, aad=next_key_aad(peer_id)),
    )

    assert _reseal_peer(peer, old=old, new=new) == 2

    assert new.open(peer.client_key_sealed, aad=client_key_aad(peer_id)) == KEY_PEM
    assert new.open(peer.next_key_sealed, aad=next_key_aad(peer_id)) == KEY_PEM
