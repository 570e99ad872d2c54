#!/usr/bin/env bash
# Make sure the local services the tests talk to are up: RabbitMQ and Redis on their standard ports,
# Debian's Chromium for the console's browser tests (Playwright drives it; it never downloads one),
# and Debian's HAProxy for the replica test (which starts its own on a free port).
# Starts a stopped one; installs a missing one with apt-get (the CI machine is Debian, run as root).
# The MongoDB stand-in (nx-27017) comes from the dev extras and is started by the tests themselves.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do port_open "$port" && return 0; sleep 1; done
  echo "ensure-services: $name did not open port $port" >&2
  return 1
}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "ensure-services: $1 is missing and apt-get is not available; install it by hand" >&2
    return 1
  fi
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# `--install PKG…`: install Debian packages the benchmarks need (wrk), then stop.
if [ "${1:-}" = "--install" ]; then
  shift
  apt_install "$@"
  exit 0
fi

if ! port_open 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" >/dev/null
  wait_port 6379 Redis
fi

if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port 5672 RabbitMQ
fi
# The port opens before the broker accepts logins; wait until it answers.
if command -v rabbitmqctl >/dev/null; then
  timeout 90 rabbitmqctl await_startup >/dev/null 2>&1 || true
fi
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
command -v haproxy >/dev/null || apt_install haproxy
echo "ensure-services: RabbitMQ :5672 and Redis :6379 are up; Chromium at /usr/bin/chromium;" \
  "HAProxy $(haproxy -v | head -1 | cut -d' ' -f3)"
