"""Pick the CA provider the settings name; callers only see ``CertificateAuthority``."""

from __future__ import annotations

from pathlib import Path

from federation.ca.base import CertificateAuthority
from federation.settings import Settings


def ca_from_settings(settings: Settings) -> CertificateAuthority:
    if settings.mosaic_ca == "step-ca":
        from federation.ca.stepca import StepCA

        return StepCA(
            url=settings.step_ca_url,
            provisioner_key_json=settings.step_ca_provisioner_key_json.get_secret_value(),
            root_cert_path=Path(settings.step_ca_root_cert_path),
        )
    from federation.ca.builtin import BuiltinCA

    return BuiltinCA.open_or_create(settings.builtin_ca_dir)
