#!/usr/bin/env bash
# Make sure PostgreSQL 15 server binaries and the `postgres` OS user exist.
# Idempotent; never starts a server (the test suite starts throwaway servers
# itself, see tests/helpers/pg_server.py). Prints exactly one summary line.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_BINDIR="/usr/lib/postgresql/${PG_MAJOR}/bin"
export DEBIAN_FRONTEND=noninteractive

did=()

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -E "$@"
    else
        echo "install-postgres: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

if [ -x "${PG_BINDIR}/postgres" ] && [ -x "${PG_BINDIR}/initdb" ] && [ -x "${PG_BINDIR}/pg_ctl" ]; then
    did+=("postgresql-${PG_MAJOR} already present")
else
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-postgres: ${PG_BINDIR}/postgres missing and apt-get not available" >&2
        exit 1
    fi
    as_root apt-get update -qq >/dev/null
    # Debian bookworm ships postgresql-15 in main. On other releases it may
    # need the PGDG repository; fail loudly rather than guess.
    if ! apt-cache show "postgresql-${PG_MAJOR}" >/dev/null 2>&1; then
        echo "install-postgres: package postgresql-${PG_MAJOR} not found by apt-cache (add the PGDG apt repo?)" >&2
        exit 1
    fi
    # The Debian package creates and starts a 'main' cluster via
    # postgresql-common; suppress that: we only want the binaries.
    as_root mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.d/00-no-main-cluster.conf >/dev/null
    as_root apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}" >/dev/null
    if [ ! -x "${PG_BINDIR}/postgres" ]; then
        echo "install-postgres: installed postgresql-${PG_MAJOR} but ${PG_BINDIR}/postgres is still missing" >&2
        exit 1
    fi
    did+=("installed postgresql-${PG_MAJOR}")
fi

if id -u postgres >/dev/null 2>&1; then
    did+=("user postgres exists (uid $(id -u postgres))")
else
    as_root groupadd --system postgres 2>/dev/null || true
    as_root useradd --system --gid postgres --home-dir /var/lib/postgresql \
        --shell /bin/bash --comment "PostgreSQL administrator" postgres
    did+=("created user postgres (uid $(id -u postgres))")
fi

version="$("${PG_BINDIR}/postgres" --version 2>/dev/null || echo unknown)"
summary="$(printf '%s; ' "${did[@]}")"
echo "install-postgres: ${summary}${version} in ${PG_BINDIR}"
