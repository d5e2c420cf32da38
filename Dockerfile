# syntax=docker/dockerfile:1
# The KNHK image: `knhk serve` on port 8080 (API, /health/*, /metrics), also the CronJobs' and the migration
# Job's `knhk …` commands. Multi-stage: the build stage makes a virtual environment with KNHK and its
# dependencies; the runtime stage copies only that, runs as an unprivileged user and writes nowhere but /tmp
# and KNHK_DATA_DIR (both emptyDir volumes under Kubernetes, whose root filesystem is read-only).
# Build: docker build -t REGISTRY/knhk:0.1.0 .   (docs/deployment.md; tests/deploy/test_dockerfile.py checks it)

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY registry ./registry
RUN python -m venv /opt/knhk && /opt/knhk/bin/pip install .

FROM python:3.11.11-slim-bookworm AS runtime
# pg_dump/pg_restore of PostgreSQL 15 for `knhk backup create --logical` and `knhk backup verify`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 knhk \
 && useradd --system --uid 10001 --gid knhk --home-dir /var/lib/knhk --shell /usr/sbin/nologin knhk \
 && install -d -o knhk -g knhk -m 0700 /var/lib/knhk
COPY --from=build /opt/knhk /opt/knhk
ENV PATH=/opt/knhk/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KNHK_DATA_DIR=/var/lib/knhk \
    KNHK_BACKUP_PG_BIN=/usr/lib/postgresql/15/bin
USER 10001:10001
WORKDIR /var/lib/knhk
EXPOSE 8080
ENTRYPOINT ["knhk"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
