#!/usr/bin/env bash
# Make sure a Redis server binary exists (the broker of the Celery executor tests).
# Idempotent; never starts a server (tests/helpers/celery_cluster.py starts a throwaway
# one on 127.0.0.1 per test). Prints exactly one summary line.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -E "$@"
    else
        echo "install-redis: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

if command -v redis-server >/dev/null 2>&1; then
    did="redis-server already present"
else
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-redis: redis-server missing and apt-get not available" >&2
        exit 1
    fi
    as_root apt-get update -qq >/dev/null
    # a policy-rc.d keeps the package from starting a system-wide server
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    as_root apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        redis-server >/dev/null
    if [ "$made_policy" -eq 1 ]; then
        as_root rm -f /usr/sbin/policy-rc.d
    fi
    did="installed redis-server"
fi
echo "install-redis: ${did}; $(redis-server --version)"
