#!/usr/bin/env bash
# Make sure PostgreSQL answers on 127.0.0.1:5432 (the tests create and drop their own database).
# Starts an installed-but-stopped Debian cluster; installs one when none is present.
set -euo pipefail
host=127.0.0.1 port=5432

ready() { pg_isready -q -h "$host" -p "$port" 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
if ready; then echo "postgres: ready on $host:$port"; exit 0; fi

version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$version" ]; then
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
fi
conf=/etc/postgresql/$version/main
# Trust auth on loopback for the test user, as on this machine kind.
if ! grep -q "mosaic-test" "$conf/pg_hba.conf"; then
  sed -i '1i host all all 127.0.0.1/32 trust # mosaic-test\nlocal all all trust # mosaic-test' "$conf/pg_hba.conf"
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 50); do ready && break; sleep 0.2; done
ready || { echo "postgres: not ready on $host:$port" >&2; exit 1; }
psql -h "$host" -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
  || psql -h "$host" -U postgres -c "CREATE DATABASE test" >/dev/null
echo "postgres: started $version on $host:$port"
