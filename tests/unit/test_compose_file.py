"""Static checks of the container deployment: docker-compose.yml, Dockerfile, .env.example.

No Docker engine runs where this suite runs, so the stack is never started here: these
tests read the files and check the properties the stack relies on (pinned images,
healthchecks, ordering, settings, secrets from .env only). docs/DEPLOY.md says as much.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from api.devserver import SEARCH_ATTRIBUTES
from federation.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_PATH = ROOT / "docker-compose.yml"
DOCKERFILE_PATH = ROOT / "Dockerfile"
ENV_EXAMPLE_PATH = ROOT / ".env.example"
DOCKERIGNORE_PATH = ROOT / ".dockerignore"

# Secrets the stack needs from .env; each must stop compose when missing.
REQUIRED_SECRETS = (
    "POSTGRES_PASSWORD",
    "MOSAIC_ADMIN_TOKEN",
    "BETTER_AUTH_SECRET",
    "STEP_CA_PROVISIONER_KEY_JSON",
)
# What the API and the worker must receive (federation/settings.py, README: Settings).
GATEWAY_SETTINGS = (
    "MOSAIC_ADMIN_TOKEN",
    "BETTER_AUTH_SECRET",
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "STEP_CA_URL",
    "STEP_CA_PROVISIONER_KEY_JSON",
    "STEP_CA_ROOT_CERT_PATH",
    "MOSAIC_CA",
)
GATEWAY_SERVICES = ("api", "worker")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
LONG_RUNNING_RESTART = {"always", "unless-stopped", "on-failure"}
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|KEY_JSON")

# Compose's interpolation syntax: $$ (a literal $), ${VAR}, ${VAR:-d}, ${VAR-d},
# ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, ${VAR+alt}, $VAR.
_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingRequiredVariable(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"required variable {name} is missing a value: {message}")
        self.name = name


def interpolate(text: str, env: dict[str, str]) -> str:
    """Substitute variables as `docker compose config` does (no nesting: we use none)."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        # With a colon, empty counts as missing; without, only unset does.
        missing = not value if (op or ":").startswith(":") else value is None
        if op in (":-", "-"):
            return arg if missing else str(value)
        if op in (":?", "?"):
            if missing:
                raise MissingRequiredVariable(name, arg)
            return str(value)
        if op in (":+", "+"):
            return "" if missing else arg
        return value or ""

    return _REFERENCE.sub(replace, text)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def strings(node: Any) -> list[str]:
    """Every key and value of the parsed file: what compose interpolates (not comments)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*strings(key), *strings(value))]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def references(compose: dict[str, Any]) -> list[re.Match[str]]:
    """Each ${VAR...} / $VAR in the parsed file; $$ escapes are not references."""
    return [
        match
        for text in strings(compose)
        for match in _REFERENCE.finditer(text)
        if not match["escaped"]
    ]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; one pair of surrounding quotes is removed, as compose does."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def generated_secrets() -> dict[str, str]:
    """Values an operator would put in .env: random secrets and a real P-256 JWK."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    jwk.update({"use": "sig", "alg": "ES256", "kid": "test-kid"})
    return {
        "POSTGRES_PASSWORD": "0123456789abcdef0123456789abcdef",
        "MOSAIC_ADMIN_TOKEN": "compose-test-admin-token-0123456789",
        "BETTER_AUTH_SECRET": "compose-test-sealing-secret-0123456789",
        "STEP_CA_PROVISIONER_KEY_JSON": json.dumps(jwk, separators=(",", ":")),
    }


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_PATH.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    # safe_load resolves the file's anchors and `<<` merge keys as compose does.
    loaded = yaml.safe_load(compose_text)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line, continuations joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE_PATH.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def image_tag(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else ""


def version(tag: str) -> tuple[int, ...]:
    match = re.match(r"v?(\d+(?:\.\d+)*)", tag)
    assert match, f"no version in tag {tag!r}"
    return tuple(int(part) for part in match.group(1).split("."))


def is_one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def builds_our_dockerfile(service: dict[str, Any]) -> bool:
    build = service.get("build")
    if not isinstance(build, dict):
        return False
    path = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    return path.resolve() == DOCKERFILE_PATH.resolve()


def has_healthcheck(service: dict[str, Any], dockerfile: list[tuple[str, str]]) -> bool:
    check = service.get("healthcheck")
    if check is not None:
        return not check.get("disable", False) and bool(check.get("test"))
    return builds_our_dockerfile(service) and any(i == "HEALTHCHECK" for i, _ in dockerfile)


def dockerfile_healthcheck_command(dockerfile: list[tuple[str, str]]) -> list[str]:
    args = next(rest for instr, rest in dockerfile if instr == "HEALTHCHECK")
    return json.loads(args[args.index("CMD") + len("CMD") :].strip())


def test_every_image_is_pinned_to_a_version_tag_not_latest(
    services: dict[str, dict[str, Any]], compose_text: str, dockerfile: list[tuple[str, str]]
) -> None:
    images = {name: svc["image"] for name, svc in services.items() if "image" in svc}
    images.update(
        {
            f"Dockerfile FROM {i}": rest.split()[0]
            for i, (instr, rest) in enumerate(dockerfile)
            if instr == "FROM"
        }
    )
    assert set(services) <= {name for name in images if not name.startswith("Dockerfile")}
    for where, image in images.items():
        tag = image_tag(image)
        assert tag, f"{where}: image {image} has no tag"
        assert tag != "latest", f"{where}: {image} uses latest"
        assert re.search(r"\d", tag), f"{where}: tag of {image} names no version"
    assert not re.search(r":latest\b", compose_text)
    assert not re.search(r":latest\b", DOCKERFILE_PATH.read_text())


def test_postgres_major_and_minor_version_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    image = services["postgres"]["image"]
    assert image.startswith("postgres:")
    assert re.fullmatch(r"\d+\.\d+(-[a-z0-9]+)?", image_tag(image)), image
    assert version(image_tag(image))[0] >= 16


def test_step_ca_image_is_at_least_0_27(services: dict[str, dict[str, Any]]) -> None:
    step_images = [
        svc["image"]
        for svc in services.values()
        if svc.get("image", "").startswith("smallstep/step-ca:")
    ]
    assert services["step-ca"]["image"] in step_images
    for image in step_images:
        assert version(image_tag(image)) >= (0, 27), image


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]]
) -> None:
    long_running = [name for name, svc in services.items() if not is_one_shot(svc)]
    assert {"postgres", "temporal", "temporal-ui", "step-ca", "api", "worker"} <= set(long_running)
    for name in long_running:
        assert has_healthcheck(services[name], dockerfile), f"{name} has no healthcheck"


def test_long_running_services_restart_and_one_shots_do_not(
    services: dict[str, dict[str, Any]],
) -> None:
    one_shots = {"temporal-setup", "step-ca-trust", "migrate"}
    for name, svc in services.items():
        restart = str(svc.get("restart", "no"))
        if name in one_shots:
            assert restart == "no", f"one-shot {name} would run again: restart {restart}"
        else:
            assert restart in LONG_RUNNING_RESTART, f"{name} has restart policy {restart}"


def test_every_depends_on_waits_for_a_condition(
    services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]]
) -> None:
    for name, svc in services.items():
        depends_on = svc.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on is a bare list"
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = (spec or {}).get("condition")
            assert condition in CONDITIONS, f"{name} -> {target}: no condition"
            if condition == "service_healthy":
                assert has_healthcheck(services[target], dockerfile), f"{target} never healthy"
            if condition == "service_completed_successfully":
                assert is_one_shot(services[target]), f"{target} never completes"


def test_gateway_starts_after_migrations_temporal_and_step_ca(
    services: dict[str, dict[str, Any]],
) -> None:
    expected = {
        "migrate": "service_completed_successfully",
        "temporal": "service_healthy",
        "temporal-setup": "service_completed_successfully",
        "step-ca": "service_healthy",
        "step-ca-trust": "service_completed_successfully",
    }
    for name in GATEWAY_SERVICES:
        conditions = {t: s["condition"] for t, s in services[name]["depends_on"].items()}
        assert conditions == expected, name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["temporal"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["temporal-ui"]["depends_on"]["temporal"]["condition"] == "service_healthy"


def test_api_worker_and_migrate_build_from_the_same_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    ours = [services[name] for name in (*GATEWAY_SERVICES, "migrate")]
    for svc in ours:
        assert builds_our_dockerfile(svc)
    assert len({json.dumps(svc["build"], sort_keys=True) for svc in ours}) == 1
    assert len({svc["image"] for svc in ours}) == 1
    assert services["api"]["command"] == ["gateway", "api", "--host", "0.0.0.0", "--port", "8080"]
    assert services["worker"]["command"] == ["gateway", "worker"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert "8080:8080" in [str(port) for port in services["api"]["ports"]]


def test_api_and_worker_receive_every_required_setting(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in GATEWAY_SERVICES:
        env = environment(services[name])
        missing = [var for var in GATEWAY_SETTINGS if not env.get(var)]
        assert not missing, f"{name} lacks {missing}"
        assert env["MOSAIC_CA"] == "step-ca"
        assert env["STEP_CA_URL"] == "https://step-ca:9000"
        assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["DATABASE_URL"].endswith("@postgres:5432/mosaic")
    assert environment(services["api"]) == environment(services["worker"])
    assert (
        environment(services["migrate"])["DATABASE_URL"]
        == environment(services["api"])["DATABASE_URL"]
    )


def test_compose_environment_satisfies_the_gateway_settings(
    compose: dict[str, Any],
) -> None:
    env = {**read_env_file(ENV_EXAMPLE_PATH), **generated_secrets()}
    resolved = interpolate_tree(compose, env)["services"]
    for name in GATEWAY_SERVICES:
        values = environment(resolved[name])
        # An empty variable is "unset" to the gateway (env_ignore_empty), as in the container.
        settings = load_settings(**{key.lower(): value for key, value in values.items() if value})
        assert settings.mosaic_ca == "step-ca"
        assert settings.database_url == (
            f"postgresql+asyncpg://mosaic:{env['POSTGRES_PASSWORD']}@postgres:5432/mosaic"
        )
        assert settings.mosaic_admin_token.get_secret_value() == env["MOSAIC_ADMIN_TOKEN"]
        assert settings.better_auth_secret.get_secret_value() == env["BETTER_AUTH_SECRET"]
        key = json.loads(settings.step_ca_provisioner_key_json.get_secret_value())
        assert key["crv"] == "P-256" and "d" in key
        assert settings.step_ca_root_cert_path == "/etc/mosaic/step-ca/root_ca.crt"


# Settings the compose file fixes for its own services instead of passing them through
# (the image sets MOSAIC_DATA_DIR).
FIXED_BY_COMPOSE = {
    "MOSAIC_DATA_DIR",
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "MOSAIC_CA",
    "STEP_CA_URL",
    "STEP_CA_ROOT_CERT_PATH",
}


def test_every_setting_the_gateway_reads_can_be_set_from_env(
    services: dict[str, dict[str, Any]],
) -> None:
    """Derived from the Settings model: a new setting fails here until compose passes it."""
    from federation.settings import Settings

    for name in GATEWAY_SERVICES:
        env = environment(services[name])
        for field in Settings.model_fields:
            var = field.upper()
            if var in FIXED_BY_COMPOSE:
                continue
            assert var in env, f"{name}: {var} cannot be set in the compose stack"
            assert re.search(r"\$\{" + var + r"(?::?[-?]|\})", env[var]), (
                f"{name}: {var} = {env[var]!r} does not come from .env"
            )


def test_example_env_starts_the_gateway_with_its_defaults(compose: dict[str, Any]) -> None:
    """Every optional setting left empty in .env.example means the gateway's default."""
    from federation.settings import Settings

    env = {**read_env_file(ENV_EXAMPLE_PATH), **generated_secrets()}
    values = environment(interpolate_tree(compose, env)["services"]["api"])
    settings = load_settings(**{k.lower(): v for k, v in values.items() if v})
    default = {name: field.default for name, field in Settings.model_fields.items()}
    assert settings.mosaic_enroll_rate_per_minute == default["mosaic_enroll_rate_per_minute"]
    assert settings.mosaic_cert_lifetime_seconds == default["mosaic_cert_lifetime_seconds"]
    assert settings.mosaic_federation_listen == "0.0.0.0:8443"
    assert settings.mosaic_federation_tls_cert.startswith("/etc/mosaic/config/")
    assert settings.mosaic_worker_metrics_address == "0.0.0.0:9464"


def test_listener_and_metrics_ports_are_published_and_files_mounted(
    services: dict[str, dict[str, Any]],
) -> None:
    assert "8443:8443" in [str(port) for port in services["api"]["ports"]]
    assert "127.0.0.1:9464:9464" in [str(port) for port in services["worker"]["ports"]]
    for name in GATEWAY_SERVICES:
        assert "./mosaic-config:/etc/mosaic/config:ro" in services[name]["volumes"]


def test_step_ca_root_reaches_the_gateway_through_a_read_only_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    trust = services["step-ca-trust"]
    assert "step-ca-data:/home/step:ro" in trust["volumes"]
    written = next(v.split(":")[0] for v in trust["volumes"] if v.split(":")[1] == "/trust")
    assert "/home/step/certs/root_ca.crt" in trust["command"][0]
    assert "chmod 0644" in trust["command"][0]
    for name in GATEWAY_SERVICES:
        root = Path(environment(services[name])["STEP_CA_ROOT_CERT_PATH"])
        assert f"{written}:{root.parent}:ro" in services[name]["volumes"], name
        # The CA's own volume holds its keys: the gateway never mounts it.
        assert not any(v.startswith("step-ca-data:") for v in services[name]["volumes"])


def test_no_secret_literal_in_compose_file(compose: dict[str, Any], compose_text: str) -> None:
    for name, svc in compose["services"].items():
        for var, value in environment(svc).items():
            if SECRET_NAME.search(var):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), f"{name}.{var} = {value!r}"
            password = re.search(r"://[^:/@]+:(?P<pw>[^@]+)@", value)
            if password:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", password["pw"]), f"{name}.{var}"
    # Every secret the gateway sees is whatever .env says, nothing written in the file.
    markers = {var: f"marker-{var.lower()}-0123456789" for var in REQUIRED_SECRETS}
    resolved = interpolate_tree(compose, markers)["services"]
    for name in GATEWAY_SERVICES:
        env = environment(resolved[name])
        for var in ("MOSAIC_ADMIN_TOKEN", "BETTER_AUTH_SECRET", "STEP_CA_PROVISIONER_KEY_JSON"):
            assert env[var] == markers[var]
        assert f":{markers['POSTGRES_PASSWORD']}@" in env["DATABASE_URL"]
    assert "PRIVATE KEY" not in compose_text
    assert '"d":' not in compose_text
    assert not re.search(r"[0-9a-fA-F]{32,}", compose_text)


def test_required_secrets_use_colon_question_mark_and_fail_loudly_when_missing(
    compose: dict[str, Any],
) -> None:
    found: dict[str, list[re.Match[str]]] = {var: [] for var in REQUIRED_SECRETS}
    for match in references(compose):
        name = match["braced"] or match["named"]
        if name in found:
            found[name].append(match)
    filled = generated_secrets()
    for var, matches in found.items():
        assert matches, f"{var} is never used"
        for match in matches:
            assert match["op"] == ":?", f"{match[0]} does not fail when {var} is missing"
            assert match["arg"].strip(), f"{match[0]} gives no message"
        # Unset and empty both stop `docker compose` before anything starts.
        unset = {k: v for k, v in filled.items() if k != var}
        for env in (unset, {**filled, var: ""}):
            with pytest.raises(MissingRequiredVariable) as caught:
                interpolate_tree(compose, env)
            assert caught.value.name == var
    interpolate_tree(compose, filled)


def test_env_example_lists_every_variable_the_compose_file_uses(compose: dict[str, Any]) -> None:
    used = {m["braced"] or m["named"] for m in references(compose)}
    listed = set(read_env_file(ENV_EXAMPLE_PATH))
    assert used, "the compose file interpolates nothing"
    assert used <= listed, f".env.example lacks {sorted(used - listed)}"
    assert set(REQUIRED_SECRETS) <= used


def test_env_example_holds_no_usable_secret(compose: dict[str, Any]) -> None:
    example = read_env_file(ENV_EXAMPLE_PATH)
    for var in REQUIRED_SECRETS:
        value = example[var]
        if var == "STEP_CA_PROVISIONER_KEY_JSON":
            with pytest.raises(ValueError):
                json.loads(value)
        else:
            assert value == "", f"{var} in .env.example must be left empty"
    # An unedited copy of .env.example cannot start the stack.
    with pytest.raises(MissingRequiredVariable):
        interpolate_tree(compose, example)


def test_dockerfile_builds_in_two_stages_from_pinned_images(
    dockerfile: list[tuple[str, str]],
) -> None:
    stages = [rest.split() for instr, rest in dockerfile if instr == "FROM"]
    assert len(stages) >= 2
    for stage in stages:
        tag = image_tag(stage[0])
        assert tag and tag != "latest" and re.search(r"\d", tag), stage
    # The venv is copied between stages: both must be the same Python.
    assert stages[0][0] == stages[-1][0]
    assert any("--from=builder" in rest for instr, rest in dockerfile if instr == "COPY")


def test_dockerfile_runs_as_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [rest.split(":")[0] for instr, rest in dockerfile if instr == "USER"]
    assert users, "no USER: the image runs as root"
    assert users[-1] not in {"root", "0"}
    setup = " ".join(rest for instr, rest in dockerfile if instr == "RUN")
    assert "--uid 10001" in setup


def test_dockerfile_healthcheck_gets_healthz_with_urllib(
    dockerfile: list[tuple[str, str]],
) -> None:
    command = dockerfile_healthcheck_command(dockerfile)
    assert command[:2] == ["python", "-c"]
    assert "urllib" in command[2]
    assert "http://127.0.0.1:8080/healthz" in command[2]
    compile(command[2], "<HEALTHCHECK>", "exec")


def test_image_entrypoint_is_the_mosaic_cli_serving_the_api(
    dockerfile: list[tuple[str, str]],
) -> None:
    last = {instr: rest for instr, rest in dockerfile}
    assert json.loads(last["ENTRYPOINT"]) == ["mosaic"]
    assert json.loads(last["CMD"]) == ["gateway", "api", "--host", "0.0.0.0", "--port", "8080"]


def test_worker_healthcheck_connects_to_temporal(services: dict[str, dict[str, Any]]) -> None:
    test = services["worker"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "Client.connect(os.environ['TEMPORAL_ADDRESS']" in test[3]
    compile(test[3], "<worker healthcheck>", "exec")


def test_step_ca_service_runs_init_sh(services: dict[str, dict[str, Any]]) -> None:
    step_ca = services["step-ca"]
    assert step_ca["entrypoint"] == ["/bin/bash", "/mosaic/init.sh"]
    assert "./infra/step-ca/init.sh:/mosaic/init.sh:ro" in step_ca["volumes"]
    assert "./infra/step-ca/templates:/mosaic/templates:ro" in step_ca["volumes"]
    assert (ROOT / "infra/step-ca/init.sh").is_file()
    env = environment(step_ca)
    template = Path(env["MOSAIC_CA_TEMPLATE"])
    assert template.parent == Path("/mosaic/templates")
    assert (ROOT / "infra/step-ca/templates" / template.name).is_file()
    # Compose drops the image's CMD when entrypoint is set: init.sh must be handed step-ca.
    assert step_ca["command"][0] == "/usr/local/bin/step-ca"
    assert any(v.startswith("step-ca-data:/home/step") for v in step_ca["volumes"])
    # The CA's TLS certificate must name the host the gateway dials.
    assert "step-ca" in env["MOSAIC_CA_DNS_NAMES"].split(",")
    assert "step ca health" in " ".join(step_ca["healthcheck"]["test"])


def test_temporal_setup_registers_the_search_attributes_the_workflow_upserts(
    services: dict[str, dict[str, Any]],
) -> None:
    setup = services["temporal-setup"]
    env = environment(setup)
    wanted = dict(attr.split("=") for attr in SEARCH_ATTRIBUTES)
    assert set(wanted.values()) == {"Keyword"}
    assert env["MOSAIC_SEARCH_ATTRIBUTES"].split() == list(wanted)
    script = setup["command"][0]
    assert "temporal operator search-attribute create" in script
    assert "--type Keyword" in script
    assert "search-attribute list" in script, "not idempotent: never checks what exists"
    assert env["MOSAIC_NAMESPACE"] == environment(services["api"])["TEMPORAL_NAMESPACE"]
    assert env["MOSAIC_NAMESPACE"] == environment(services["temporal"])["DEFAULT_NAMESPACE"]


def test_temporal_runs_on_the_compose_postgres(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["temporal"])
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgres"
    assert env["DB_PORT"] == "5432"
    assert env["POSTGRES_USER"] == environment(services["postgres"])["POSTGRES_USER"]
    assert env["POSTGRES_PWD"] == environment(services["postgres"])["POSTGRES_PASSWORD"]
    health = " ".join(services["temporal"]["healthcheck"]["test"])
    assert "cluster health" in health


def test_temporal_ui_is_published_on_8233(services: dict[str, dict[str, Any]]) -> None:
    ports = [str(port) for port in services["temporal-ui"]["ports"]]
    assert any(port.endswith("8233:8080") for port in ports)


def test_postgres_healthcheck_uses_pg_isready(services: dict[str, dict[str, Any]]) -> None:
    test = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in shlex.join(test)
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE_PATH.read_text().splitlines()}
    for entry in (".venv", ".mosaic", ".git", ".env", "infra/step-ca/.build"):
        assert entry in ignored, entry
