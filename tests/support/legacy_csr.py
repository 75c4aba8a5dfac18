"""CSRs with a valid self-signature over SHA-1 or MD5, which ``cryptography`` refuses to
sign: the request info is built by the library, signed with the key's own primitive,
and wrapped by hand in the three DER elements of RFC 2986."""

from __future__ import annotations

from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

LegacyHash = Literal["sha1", "md5"]

_HASHES: dict[LegacyHash, hashes.HashAlgorithm] = {"sha1": hashes.SHA1(), "md5": hashes.MD5()}
# AlgorithmIdentifier bodies (OID, and NULL parameters for RSA as RFC 3279 asks).
_EC_ALGORITHMS = {"sha1": "1.2.840.10045.4.1"}
_RSA_ALGORITHMS = {"sha1": "1.2.840.113549.1.1.5", "md5": "1.2.840.113549.1.1.4"}


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(part) for part in dotted.split("."))
    body = bytes([40 * first + second])
    for arc in rest:
        encoded = [arc & 0x7F]
        arc >>= 7
        while arc:
            encoded.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(encoded))
    return _tlv(0x06, body)


def legacy_signed_csr(
    common_name: str, digest: LegacyHash, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
) -> str:
    """A PEM CSR (CN and DNS SAN = ``common_name``) whose signature verifies over ``digest``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    info = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
        .tbs_certrequest_bytes
    )
    algorithm = _HASHES[digest]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(info, ec.ECDSA(algorithm))
        identifier = _tlv(0x30, _oid(_EC_ALGORITHMS[digest]))
    else:
        signature = key.sign(info, padding.PKCS1v15(), algorithm)
        identifier = _tlv(0x30, _oid(_RSA_ALGORITHMS[digest]) + b"\x05\x00")
    der = _tlv(0x30, info + identifier + _tlv(0x03, b"\x00" + signature))
    csr = x509.load_der_x509_csr(der)
    return csr.public_bytes(serialization.Encoding.PEM).decode()
