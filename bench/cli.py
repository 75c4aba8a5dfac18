"""CLI start-up (issue 13): wall time of ``mosaic --help`` and ``mosaic user list``.

``python -m bench.cli [--runs 15] [--ratio 1.5]``

The floor is ``python -c "import httpx, click"``: an admin command cannot start
faster than the two libraries it needs. The bench starts its own API (SQLite in
a temporary data dir: ``mosaic db upgrade``, then ``mosaic gateway api``; ``user
list`` needs no Temporal) with 20 users, then runs the three commands ``--runs``
times each, interleaved so that noise from the shared machine spreads evenly,
and prints the medians, the ratios to the floor and ``[met]``/``[NOT met]``
against ``--ratio``. Then, as a diagnostic, ``python -X importtime`` of ``user
list``: what it imports, biggest first. Exits 0 either way; fails only when the
API cannot start. The API runs in its own process group and is stopped at exit.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from bench.procs import Children, free_port

BIN = Path(sys.executable).parent
MOSAIC = str(BIN / "mosaic")


def _wall(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - fixed argv
        list(argv), env=dict(env), cwd=cwd, capture_output=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def _start_api(children: Children, data_dir: Path, env: dict[str, str]) -> str:
    port = free_port()
    subprocess.run([MOSAIC, "db", "upgrade"], env=env, check=True, capture_output=True)  # noqa: S603
    api = children.spawn(
        "api",
        [MOSAIC, "gateway", "api", "--port", str(port)],
        env=env,
        log_path=data_dir / "api.log",
        cwd=data_dir,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.1)
        if api.process.poll() is not None:
            break
    raise SystemExit(f"the API did not start:\n{api.log_tail()}")


def _import_profile(env: Mapping[str, str], cwd: Path, top: int = 8) -> list[str]:
    """``-X importtime`` of ``mosaic user list``: the biggest imports (cumulative µs)."""
    code = "import sys; sys.argv = ['mosaic', 'user', 'list']; import api.cli.main as m; m.main()"
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-X", "importtime", "-c", code],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), len(parts[2]) - len(parts[2].lstrip()), parts[2].strip()))
    # Top-level imports only (least indented): what the command itself pulls in.
    outer = [r for r in rows if r[1] == min(r[1] for r in rows)] if rows else []
    outer.sort(reverse=True)
    return [f"  {us / 1000:7.1f} ms  {name}" for us, _, name in outer[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--ratio", type=float, default=1.5, help="target: CLI / floor")
    args = parser.parse_args()

    children = Children()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        data_dir = Path(tmp) / ".mosaic"
        data_dir.mkdir()
        token = secrets.token_urlsafe(24)
        (data_dir / "admin-token").write_text(token + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MOSAIC_", "DATABASE"))}
        env.update(
            MOSAIC_DATA_DIR=str(data_dir),
            MOSAIC_ADMIN_TOKEN=token,
            BETTER_AUTH_SECRET=secrets.token_urlsafe(32),
            TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        )
        try:
            url = _start_api(children, data_dir, env)
            (data_dir / "api-url").write_text(url + "\n")
            headers = {"Authorization": f"Bearer {token}"}
            for i in range(20):
                body = {"name": f"User {i}", "email": f"user{i}@bench.local"}
                httpx.post(f"{url}/api/admin/users", json=body, headers=headers).raise_for_status()
            # The CLI as a person runs it: inside the data dir's parent, nothing exported.
            cli_env = {k: v for k, v in env.items() if not k.startswith("MOSAIC_")}
            commands = {
                "python -c 'import httpx, click'": [sys.executable, "-c", "import httpx, click"],
                "mosaic --help": [MOSAIC, "--help"],
                "mosaic user list": [MOSAIC, "user", "list"],
            }
            times: dict[str, list[float]] = {name: [] for name in commands}
            for argv in commands.values():  # warm the page cache, not measured
                _wall(argv, cli_env, Path(tmp))
            for _ in range(args.runs):
                for name, argv in commands.items():
                    times[name].append(_wall(argv, cli_env, Path(tmp)))
            profile = _import_profile(cli_env, Path(tmp))
        finally:
            children.stop_all()

    medians = {name: statistics.median(values) for name, values in times.items()}
    floor_name = next(iter(commands))
    floor = medians[floor_name]
    print(f"CLI start-up, median of {args.runs} runs each (wall, subprocess):")
    for name, value in medians.items():
        spread = f"min {min(times[name]) * 1000:.0f}, max {max(times[name]) * 1000:.0f} ms"
        if name == floor_name:
            print(f"  {name:<32} {value * 1000:6.0f} ms  ({spread})  floor")
            continue
        ratio = value / floor
        verdict = "met" if ratio <= args.ratio else "NOT met"
        print(
            f"  {name:<32} {value * 1000:6.0f} ms  ({spread})"
            f"  {ratio:.2f}x floor  [{verdict}] (target <= {args.ratio}x)"
        )
    print("\nimports of `mosaic user list` (python -X importtime, top level, cumulative):")
    print("\n".join(profile))


if __name__ == "__main__":
    main()
