from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from federation.errors import InvalidCSR
from federation.pki.csr import check_csr
from federation.pki.fingerprints import fingerprint_sha256, public_key_der

CN = "gateway-a.example.com"


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(
    key: CertificateIssuerPrivateKeyTypes | None = None,
    *,
    common_names: Sequence[str] = (CN,),
    sans: Sequence[x509.GeneralName] | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> str:
    key = key if key is not None else _p256()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in common_names])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _rejected(pem: object, match: str, **kwargs: object) -> InvalidCSR:
    with pytest.raises(InvalidCSR, match=match) as info:
        check_csr(pem, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in info.value.message
    assert "BEGIN" not in info.value.message
    return info.value


# --- accepted ---------------------------------------------------------------


def test_p256_csr_is_accepted_with_its_key_and_fingerprint() -> None:
    key = _p256()
    pem = make_csr(key)
    checked = check_csr(pem)
    der = x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
    assert checked.pem == pem
    assert checked.common_name == CN
    assert checked.sans == ()
    assert checked.public_key_der == public_key_der(key.public_key())
    assert checked.fingerprint == hashlib.sha256(der).hexdigest()
    assert checked.fingerprint == fingerprint_sha256(der)


def test_p384_csr_is_accepted() -> None:
    assert check_csr(make_csr(ec.generate_private_key(ec.SECP384R1()))).common_name == CN


def test_rsa_2048_csr_is_accepted() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert check_csr(make_csr(key)).common_name == CN


def test_csr_with_san_equal_to_cn_is_accepted() -> None:
    checked = check_csr(make_csr(sans=[x509.DNSName(CN)]))
    assert checked.sans == (CN,)


def test_csr_with_client_key_usages_and_non_ca_constraints_is_accepted() -> None:
    pem = make_csr(
        extensions=[
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
            (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        ]
    )
    assert check_csr(pem).common_name == CN


def test_csr_with_matching_expected_common_name_is_accepted() -> None:
    assert check_csr(make_csr(), expected_common_name=CN).common_name == CN


# --- input shape ------------------------------------------------------------


def test_non_string_csr_is_rejected() -> None:
    _rejected(make_csr().encode(), "must be a PEM string")


def test_none_csr_is_rejected() -> None:
    _rejected(None, "must be a PEM string")


def test_csr_of_17_kib_is_rejected() -> None:
    pem = make_csr() + "\n" * (17 * 1024)
    _rejected(pem, "larger than 16384 bytes")


def test_csr_over_the_byte_limit_in_multibyte_text_is_rejected() -> None:
    # 6000 characters but 18000 bytes.
    _rejected(make_csr() + "€" * 6000, "larger than 16384 bytes")


def test_truncated_csr_pem_is_rejected() -> None:
    pem = make_csr()
    _rejected(pem[: len(pem) // 2], "truncated")


def test_garbage_is_rejected() -> None:
    _rejected("hello, this is not a certificate request", "not a single PEM")


def test_certificate_pem_instead_of_csr_is_rejected() -> None:
    body = base64.b64encode(b"\x30\x03\x02\x01\x00").decode()
    pem = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    _rejected(pem, "not a single PEM")


def test_two_csrs_in_one_pem_are_rejected() -> None:
    _rejected(make_csr() + make_csr(), "not a single PEM")


def test_garbage_inside_csr_pem_armour_is_rejected() -> None:
    body = base64.b64encode(b"definitely not DER").decode()
    pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"
    _rejected(pem, "could not be parsed")


# --- signature --------------------------------------------------------------


def test_csr_with_broken_signature_is_rejected() -> None:
    csr = x509.load_pem_x509_csr(make_csr().encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    # The signature BIT STRING is the last element; flip its last byte.
    assert der.endswith(csr.signature)
    der[-1] ^= 0x01
    pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    _rejected(pem, "signature is invalid")


# --- key policy -------------------------------------------------------------


def test_rsa_1024_csr_is_rejected() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    _rejected(make_csr(key), "RSA key of 1024 bits is not allowed")


def test_p192_csr_is_rejected() -> None:
    try:
        key = ec.generate_private_key(ec.SECP192R1())
        pem = make_csr(key)
    except Exception as exc:  # the linked OpenSSL may lack P-192
        pytest.skip(f"this cryptography build cannot make a P-192 CSR: {exc}")
    _rejected(pem, "EC curve is not allowed")


def test_p224_csr_is_rejected() -> None:
    _rejected(make_csr(ec.generate_private_key(ec.SECP224R1())), "EC curve is not allowed")


def test_p521_csr_is_rejected() -> None:
    _rejected(make_csr(ec.generate_private_key(ec.SECP521R1())), "EC curve is not allowed")


def test_ed25519_csr_is_rejected() -> None:
    _rejected(make_csr(ed25519.Ed25519PrivateKey.generate()), "key type is not allowed")


# --- requested extensions ---------------------------------------------------


def test_csr_requesting_a_ca_certificate_is_rejected() -> None:
    pem = make_csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    _rejected(pem, "requests a CA certificate")


def test_csr_with_extra_san_is_rejected() -> None:
    pem = make_csr(sans=[x509.DNSName(CN), x509.DNSName("evil.example.com")])
    _rejected(pem, "exactly the common name")


def test_csr_with_a_san_other_than_the_cn_is_rejected() -> None:
    _rejected(make_csr(sans=[x509.DNSName("other.example.com")]), "exactly the common name")


def test_csr_with_ip_san_is_rejected() -> None:
    pem = make_csr(sans=[x509.DNSName(CN), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))])
    _rejected(pem, "DNS names only")


def test_csr_with_email_san_is_rejected() -> None:
    _rejected(make_csr(sans=[x509.RFC822Name("a@example.com")]), "DNS names only")


def test_csr_requesting_another_extension_is_rejected() -> None:
    pem = make_csr(
        extensions=[
            (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"x"), False)
        ]
    )
    error = _rejected(pem, "extension that is not allowed")
    assert "1.3.6.1.4.1.99999.1" in error.message


def test_csr_requesting_name_constraints_is_rejected() -> None:
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None
    )
    _rejected(make_csr(extensions=[(constraints, True)]), "extension that is not allowed")


# --- common name ------------------------------------------------------------


def test_csr_without_common_name_is_rejected() -> None:
    _rejected(make_csr(common_names=()), "exactly one common name")


def test_csr_with_two_common_names_is_rejected() -> None:
    _rejected(make_csr(common_names=(CN, "b.example.com")), "exactly one common name")


# cryptography warns while building and parsing an out-of-bounds CN; that is the point.
@pytest.mark.filterwarnings("ignore:Attribute's length must be")
def test_csr_with_65_character_common_name_is_rejected() -> None:
    key = _p256()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a" * 65, _validate=False)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    error = _rejected(pem, "longer than 64 characters")
    assert "a" * 65 not in error.message


@pytest.mark.filterwarnings("ignore:Attribute's length must be")
def test_csr_with_empty_common_name_is_rejected() -> None:
    key = _p256()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "", _validate=False)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    _rejected(csr.public_bytes(serialization.Encoding.PEM).decode(), "common name is empty")


def test_csr_with_control_character_in_common_name_is_rejected() -> None:
    _rejected(make_csr(common_names=("gw\nevil",)), "control characters")


def test_csr_with_wrong_common_name_is_rejected() -> None:
    error = _rejected(
        make_csr(common_names=("attacker.example.com",)),
        "does not match the peer's common name",
        expected_common_name=CN,
    )
    assert "attacker" not in error.message
