"""How the federation listener is served: address, TLS, whom it trusts.

Two modes, from the settings:
- direct (the default): TLS with a client certificate required, trusting only B's
  federation CA (its roots, and the built-in CA's intermediate); a certificate from any
  other CA fails the handshake and no handler runs. The server certificate is
  ``MOSAIC_FEDERATION_TLS_CERT``/``_KEY``, or, with the built-in CA, one it issues for
  the listener's names (peers verify the listener against the CA they pinned).
- behind a TLS-terminating proxy (``MOSAIC_FEDERATION_TRUSTED_PROXIES`` set): plain
  HTTP on an address only the proxy reaches; the proxy verifies client certificates and
  relays them in RFC 9440 ``Client-Cert``, believed from those addresses only.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization

from api.tlsinfo import ServerTLS
from federation.ca.base import CertificateAuthority
from federation.ca.builtin import BuiltinCA
from federation.ca.listener_cert import builtin_listener_credentials
from federation.settings import ConfigurationError, Settings

LOOPBACK_NAMES = ["localhost", "127.0.0.1"]


@dataclass(frozen=True)
class FederationListener:
    host: str
    port: int
    # Where remote peers reach it (the enrollment answers' ``federationUrl``).
    url: str
    # None: plain HTTP behind a trusted proxy.
    tls: ServerTLS | None
    # The CA root file a peer pins, for the start-up banner.
    ca_bundle: str | None


def federation_listener(settings: Settings, ca: CertificateAuthority) -> FederationListener | None:
    """The listener the settings ask for, or None when this gateway serves none."""
    if not settings.mosaic_federation_listen:
        return None
    host, port = _host_port(settings.mosaic_federation_listen)
    url = settings.federation_url or f"https://{settings.mosaic_federation_listen}"
    bundle = ca_bundle(settings)
    if settings.mosaic_federation_trusted_proxies:
        return FederationListener(host, port, url, None, bundle)
    trusted = ca.root_certificates()
    if isinstance(ca, BuiltinCA):
        trusted = trusted + ca.intermediate_certificates()
    client_ca = "".join(
        cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in trusted
    )
    if settings.mosaic_federation_tls_cert or settings.mosaic_federation_tls_key:
        if not (settings.mosaic_federation_tls_cert and settings.mosaic_federation_tls_key):
            raise ConfigurationError(
                "MOSAIC_FEDERATION_TLS_CERT and MOSAIC_FEDERATION_TLS_KEY go together"
            )
        _check_server_credentials(
            settings.mosaic_federation_tls_cert, settings.mosaic_federation_tls_key
        )
        tls = ServerTLS(
            settings.mosaic_federation_tls_cert,
            settings.mosaic_federation_tls_key,
            client_ca,
            require_client_cert=True,
        )
    elif isinstance(ca, BuiltinCA):
        credentials = builtin_listener_credentials(
            ca, settings.builtin_ca_dir / "listener", _names(host, url)
        )
        tls = ServerTLS(
            str(credentials.certfile),
            str(credentials.keyfile),
            client_ca,
            require_client_cert=True,
            key_password=credentials.password,
        )
    else:
        raise ConfigurationError(
            "MOSAIC_FEDERATION_TLS_CERT and MOSAIC_FEDERATION_TLS_KEY are required with"
            " MOSAIC_CA=step-ca: a server certificate for the listener from the same CA"
        )
    return FederationListener(host, port, url, tls, bundle)


def _check_server_credentials(certfile: str, keyfile: str) -> None:
    """Refuse at start-up, in one line naming the setting, what the listener could not load."""
    for name, path in (
        ("MOSAIC_FEDERATION_TLS_CERT", certfile),
        ("MOSAIC_FEDERATION_TLS_KEY", keyfile),
    ):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigurationError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigurationError(
            "MOSAIC_FEDERATION_TLS_CERT, MOSAIC_FEDERATION_TLS_KEY: not a PEM certificate"
            f" and its matching unencrypted key ({getattr(exc, 'reason', None) or exc})"
        ) from None


def _no_password() -> bytes:
    raise ValueError("the key is encrypted")


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"MOSAIC_FEDERATION_LISTEN: {value!r} is not host:port")
    return host, int(port)


def _names(host: str, url: str) -> list[str]:
    """The names the listener's certificate carries: its public name, its address, and
    the loopback names when it answers on loopback."""
    names: list[str] = []
    for name in (urlsplit(url).hostname, host):
        if name and name not in ("0.0.0.0", "::") and name not in names:  # noqa: S104
            names.append(name)
    if _loopback_ok(host):
        names += [name for name in LOOPBACK_NAMES if name not in names]
    return names


def _loopback_ok(host: str) -> bool:
    """A listener on loopback or on every address answers loopback names too."""
    if host in ("localhost", "0.0.0.0", "::"):  # noqa: S104
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ca_bundle(settings: Settings) -> str | None:
    """The CA root file peers pin (and the banners name)."""
    if settings.mosaic_ca == "step-ca":
        return settings.step_ca_root_cert_path or None
    return str(settings.builtin_ca_dir / "certs" / "root_ca.crt")
