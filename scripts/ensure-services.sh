#!/usr/bin/env bash
# Make sure RabbitMQ and PostgreSQL answer on 127.0.0.1: probe, start, or install them.
# Used by `make demo`, `make test` and .ci/run. Exits non-zero if either cannot be had.
set -euo pipefail

AMQP_HOST=${AMQP_HOST:-127.0.0.1}; AMQP_PORT=${AMQP_PORT:-5672}
PG_HOST=${PG_HOST:-127.0.0.1}; PG_PORT=${PG_PORT:-5432}

say() { printf '[services] %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && exec 3>&- 3<&- ; }
wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 2; i++)); do port_open "$1" "$2" && return 0; sleep 0.5; done
  return 1
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
apt_install() {
  say "installing $* from the distribution's packages"
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open "$PG_HOST" "$PG_PORT"; then say "PostgreSQL answers on $PG_HOST:$PG_PORT"; return 0; fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port "$PG_HOST" "$PG_PORT" 60 || { say "PostgreSQL did not come up"; return 1; }
}

ensure_rabbitmq() {
  if port_open "$AMQP_HOST" "$AMQP_PORT"; then say "RabbitMQ answers on $AMQP_HOST:$AMQP_PORT"; return 0; fi
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached || true
  wait_port "$AMQP_HOST" "$AMQP_PORT" 120 || { say "RabbitMQ did not come up"; return 1; }
}

ensure_postgres
ensure_rabbitmq

# The management API gives `anime queues` and the dashboard unacked counts and rates;
# everything still works (with passive declares) without it.
if command -v rabbitmq-plugins >/dev/null 2>&1; then
  as_root rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null 2>&1 \
    || say "could not enable rabbitmq_management (queue views fall back to passive declares)"
fi

# The login the tests and the demo use: trust auth as postgres on TCP, as on the dev
# machines. Where the server wants a password, give postgres one we know.
if ! psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  say "setting a password for role postgres (server does not trust local TCP)"
  as_root su postgres -c "psql -qc \"ALTER ROLE postgres PASSWORD 'postgres'\"" >/dev/null
fi
say "ready"
