#!/usr/bin/env bash
# Prepare this checkout: a virtual environment with KNHK and its dev tools installed, and (with
# --services) the PostgreSQL and Redis servers the test suite talks to, started or installed from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

want_services=0
[ "${1:-}" = "--services" ] && want_services=1
[ "${1:-}" = "--bench" ] && want_services=1

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "bootstrap: KNHK needs Python >= 3.11 (found: $("$python" --version 2>&1))" >&2
    exit 3
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$python" -m venv .venv
fi
stamp=.venv/.knhk-installed
digest=$(sha256sum pyproject.toml | cut -c1-64)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "bootstrap: installing KNHK and its dependencies into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    echo "$digest" > "$stamp"
fi

[ "$want_services" = 1 ] || exit 0

sudo_cmd=()
[ "$(id -u)" = 0 ] || sudo_cmd=(sudo)

apt_install() {
    echo "bootstrap: installing Debian packages: $*"
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL on 127.0.0.1:5432 with trust auth for local connections.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        apt_install postgresql postgresql-client
    fi
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then
        echo "bootstrap: PostgreSQL is installed but has no cluster; create one with pg_createcluster" >&2
        exit 3
    fi
    hba=/etc/postgresql/$version/main/pg_hba.conf
    if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
        "${sudo_cmd[@]}" sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
    fi
    echo "bootstrap: starting PostgreSQL $version"
    "${sudo_cmd[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "bootstrap: PostgreSQL did not come up on 127.0.0.1:5432" >&2
    exit 3
fi

# Node.js and npm: the identity tests run a real OpenID provider (oidc-provider from npm).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
# pg_dump: the erasure test greps a full dump of the database.
command -v pg_dump >/dev/null 2>&1 || apt_install postgresql-client

# Redis on 127.0.0.1:6379 (the service's optional cache and rate limits).
if ! (command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1); then
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    echo "bootstrap: starting Redis"
    "${sudo_cmd[@]}" mkdir -p /var/lib/redis /var/log/redis
    "${sudo_cmd[@]}" redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi

# The real tools the tests drive (promtool, pgBackRest, Patroni, etcd, shellcheck, Chromium, load generators):
# scripts/test-tools.txt maps each command to its Debian package.
missing=()
while read -r tool package; do
    case "$tool" in ''|'#'*) continue ;; esac
    command -v "$tool" >/dev/null 2>&1 || missing+=("$package")
done < scripts/test-tools.txt
if [ "${#missing[@]}" -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    apt_install "${missing[@]}"
fi
