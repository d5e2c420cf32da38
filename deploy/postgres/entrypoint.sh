#!/bin/sh
# Start Patroni with the mounted configuration; the data directory must be private to the postgres user.
set -eu
install -d -m 0700 "${PGDATA:-/var/lib/postgresql/data/pgdata}"
exec patroni "${PATRONI_CONFIG:-/etc/patroni/patroni.yml}"
