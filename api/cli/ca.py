"""``mosaic ca init``: a step-ca directory made by our own code (no ``step`` CLI needed)."""

from __future__ import annotations

from pathlib import Path

import click

from api.cli.main import example


@click.group(epilog=example("mosaic ca init --dir /srv/step-ca"))
def ca() -> None:
    """Certificate authority set-up."""


@ca.command(
    "init",
    epilog=example(
        "mosaic ca init --dir /srv/step-ca --address 0.0.0.0:9000 --dns-name ca.example.com"
    ),
)
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="where the CA's config, certificates and secrets go",
)
@click.option(
    "--address", default="127.0.0.1:9000", show_default=True, help="where step-ca listens"
)
@click.option("--dns-name", "dns_names", multiple=True, help="names in the CA's TLS certificate")
@click.option(
    "--listener-name",
    "listener_names",
    multiple=True,
    help="a name of the gateway's federation listener (repeatable): issue its TLS"
    " certificate from this CA  [default: localhost, 127.0.0.1]",
)
def init(
    directory: Path, address: str, dns_names: tuple[str, ...], listener_names: tuple[str, ...]
) -> None:
    """Create root, intermediate, the mosaic-fed JWK provisioner and federation.tpl, and a
    TLS certificate for the gateway's federation listener signed by the same CA.

    Idempotent: an existing CA in DIR is kept as it is (the listener certificate is
    issued again, for the names given).
    """
    from federation.ca.stepca_init import init_step_ca, issue_listener_certificate

    existed = (directory / "config" / "ca.json").exists()
    files = init_step_ca(directory, address=address, dns_names=list(dns_names) or None)
    click.echo(f"{'kept existing' if existed else 'created'} step-ca in {files.directory}")
    click.echo(f"  start it:  step-ca {files.ca_json} --password-file {files.password_file}")
    click.echo("  then configure the gateway with:")
    click.echo("    MOSAIC_CA=step-ca")
    click.echo(f"    STEP_CA_URL={files.url}")
    click.echo(f'    STEP_CA_PROVISIONER_KEY_JSON="$(cat {files.provisioner_key_json})"')
    click.echo(f"    STEP_CA_ROOT_CERT_PATH={files.root_cert}")
    certfile, keyfile = issue_listener_certificate(
        files.directory, list(listener_names) or ["localhost", "127.0.0.1"]
    )
    click.echo(f"    MOSAIC_FEDERATION_TLS_CERT={certfile}")
    click.echo(f"    MOSAIC_FEDERATION_TLS_KEY={keyfile}")
