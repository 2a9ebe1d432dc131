#!/usr/bin/env bash
# Tools the integration tests run privately (not the services the system uses): a private
# Mosquitto with a password file and an ACL (tests/kit/mosquitto.py), a Redis Cluster
# started from redis-server/redis-cli (tests/redis_cluster.py). Installs the Debian packages
# that are missing when we are root with apt (the binaries only: nothing is started);
# otherwise says exactly what to install. `make test` then requires them
# (PROXIMA_REQUIRE_TEST_TOOLS=1): a missing tool fails its tests instead of skipping them.
set -euo pipefail

missing=()
command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
command -v mosquitto_passwd >/dev/null || missing+=(mosquitto)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "test tools: mosquitto, mosquitto_passwd, redis-server, redis-cli present"
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "test tools: installing ${missing[*]} (Debian packages)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "test tools: missing ${missing[*]}; install them: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
