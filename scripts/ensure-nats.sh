# Sourced by scripts/test and scripts/run-main: makes sure a `nats-server`
# binary is available and exports NATS_SERVER_BIN. Uses one on PATH (or the
# one NATS_SERVER_BIN names); otherwise installs Debian's `nats-server` package.
ensure_nats() {
  if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "${NATS_SERVER_BIN}" ]; then
    return 0
  fi
  if command -v nats-server >/dev/null 2>&1; then
    NATS_SERVER_BIN="$(command -v nats-server)"
    export NATS_SERVER_BIN
    return 0
  fi
  echo "nats-server not found; installing Debian's nats-server package" >&2
  local sudo=""
  if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nats-server >&2
  # The package enables a system service; our tests start their own servers.
  $sudo systemctl disable --now nats-server >/dev/null 2>&1 || true
  NATS_SERVER_BIN="$(command -v nats-server)"
  export NATS_SERVER_BIN
}
