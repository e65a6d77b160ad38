# Sourced by scripts/test: makes sure headless Chromium and its WebDriver
# (chromedriver) are available for the console's browser tests and exports
# CHROMEDRIVER_BIN. Uses the ones on PATH (or CHROMEDRIVER_BIN); otherwise
# installs Debian's `chromium` and `chromium-driver` packages.
ensure_chromium() {
  if [ -n "${CHROMEDRIVER_BIN:-}" ] && [ -x "${CHROMEDRIVER_BIN}" ]; then
    return 0
  fi
  if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    echo "chromium/chromedriver not found; installing Debian's chromium and chromium-driver packages" >&2
    local sudo=""
    if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >&2
  fi
  # Chinese glyphs for the screenshots (the page is Chinese first).
  if command -v fc-list >/dev/null 2>&1 && [ -z "$(fc-list :lang=zh 2>/dev/null | head -1)" ]; then
    local sudo2=""
    if [ "$(id -u)" != "0" ]; then sudo2="sudo"; fi
    $sudo2 apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive $sudo2 apt-get install -y -qq fonts-wqy-microhei >&2 || true
  fi
  CHROMEDRIVER_BIN="$(command -v chromedriver)"
  export CHROMEDRIVER_BIN
}
