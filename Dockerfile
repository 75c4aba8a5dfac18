# syntax=docker/dockerfile:1
# The Mosaic federation gateway image: one image for the API, the Temporal
# worker and the migrations (`mosaic gateway api|worker`, `mosaic db upgrade`).
# docker-compose.yml builds it once and runs it three ways.

########## builder: a virtualenv with the package and its dependencies ##########
FROM python:3.11.13-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
WORKDIR /src
# The pinned tree first (its own layer, rebuilt only when the lock changes): every
# dependency ships manylinux wheels for CPython 3.11, no compiler needed.
COPY requirements/runtime.lock ./requirements/
RUN /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install --require-hashes -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY federation ./federation
COPY activities ./activities
COPY workflows ./workflows
COPY api ./api
RUN /opt/venv/bin/pip install --no-deps .

########## runtime: the venv and the source, run as an unprivileged user ##########
FROM python:3.11.13-slim-bookworm AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MOSAIC_DATA_DIR=/var/lib/mosaic

RUN groupadd --system --gid 10001 mosaic \
    && useradd --system --uid 10001 --gid mosaic --home-dir /var/lib/mosaic \
        --create-home --shell /usr/sbin/nologin mosaic

# The venv's scripts carry /opt/venv in their shebangs: same path as the builder.
COPY --from=builder /opt/venv /opt/venv
# The source too, read-only for the runtime user: what runs is what is installed,
# and an operator can read the code and migrations the image was built from.
WORKDIR /app
COPY pyproject.toml README.md ./
COPY federation ./federation
COPY activities ./activities
COPY workflows ./workflows
COPY api ./api

USER mosaic:mosaic
EXPOSE 8080

# The API's liveness. The worker has no HTTP port: compose overrides this for it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["mosaic"]
CMD ["gateway", "api", "--host", "0.0.0.0", "--port", "8080"]
