"""Pick the CA provider the settings name; callers only see ``CertificateAuthority``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from federation.ca.base import CertificateAuthority
from federation.settings import ConfigurationError, Settings

# StepCA's constructor arguments and the variables they come from, for error messages.
_STEP_CA_VARIABLES = {
    "url": "STEP_CA_URL",
    "provisioner_key_json": "STEP_CA_PROVISIONER_KEY_JSON",
    "root_cert_path": "STEP_CA_ROOT_CERT_PATH",
}


def ca_from_settings(settings: Settings) -> CertificateAuthority:
    """The configured CA; a step-ca setting it cannot use is a ``ConfigurationError``."""
    if settings.mosaic_ca == "step-ca":
        from federation.ca.stepca import StepCA, StepCAConfigError

        try:
            return StepCA(
                url=settings.step_ca_url,
                provisioner_key_json=settings.step_ca_provisioner_key_json.get_secret_value(),
                root_cert_path=Path(settings.step_ca_root_cert_path),
                lifetime_seconds=settings.mosaic_cert_lifetime_seconds,
            )
        except StepCAConfigError as exc:
            variable = _STEP_CA_VARIABLES[exc.argument]
            raise ConfigurationError(f"invalid configuration: {variable}: {exc}") from None
    from federation.ca.builtin import BuiltinCA

    return BuiltinCA.open_or_create(
        settings.builtin_ca_dir, validity=timedelta(seconds=settings.mosaic_cert_lifetime_seconds)
    )


def check_ca_settings(settings: Settings) -> None:
    """Raise ``ConfigurationError`` now if the step-ca settings cannot work (start-up check)."""
    if settings.mosaic_ca == "step-ca":
        ca_from_settings(settings)
