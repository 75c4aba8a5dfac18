"""The CSR's signature hash is checked before its signature: a valid SHA-1 or MD5
self-signature is refused for what it is, not as a broken signature."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from federation.errors import InvalidCSR
from federation.pki.csr import check_csr
from tests.support.legacy_csr import LegacyHash, legacy_signed_csr

CN = "gateway-a.example.com"
NOT_ALLOWED = "CSR signature algorithm not allowed (use SHA-256 or better)"

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _p256() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _rsa() -> Key:
    return rsa.generate_private_key(65537, 2048)


def _signed_with(key: Key, algorithm: hashes.HashAlgorithm) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("digest", "make_key"),
    [("sha1", _p256), ("sha1", _rsa), ("md5", _rsa)],
    ids=["sha1-ecdsa", "sha1-rsa", "md5-rsa"],
)
def test_valid_csr_over_a_broken_hash_is_refused_for_its_algorithm(
    digest: LegacyHash, make_key: Callable[[], Key]
) -> None:
    key = make_key()
    pem = legacy_signed_csr(CN, digest, key)
    # The signature itself is sound: only the hash under it is not acceptable.
    csr = x509.load_pem_x509_csr(pem.encode())
    algorithm = csr.signature_hash_algorithm
    assert algorithm is not None and algorithm.name == digest
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key.public_key().verify(csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(algorithm))
    else:
        key.public_key().verify(
            csr.signature, csr.tbs_certrequest_bytes, padding.PKCS1v15(), algorithm
        )

    with pytest.raises(InvalidCSR) as refused:
        check_csr(pem, expected_common_name=CN)
    assert refused.value.message == NOT_ALLOWED


def test_sha224_is_below_the_floor() -> None:
    with pytest.raises(InvalidCSR) as refused:
        check_csr(_signed_with(_p256(), hashes.SHA224()))
    assert refused.value.message == NOT_ALLOWED


@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
@pytest.mark.parametrize("make_key", [_p256, _rsa], ids=["p256", "rsa2048"])
def test_sha2_256_and_up_are_accepted(
    algorithm: hashes.HashAlgorithm, make_key: Callable[[], Key]
) -> None:
    assert check_csr(_signed_with(make_key(), algorithm)).common_name == CN
