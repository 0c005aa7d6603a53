#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests need (Debian packages
# prometheus, prometheus-alertmanager, shellcheck, postgresql, openssl, chromium and
# chromium-driver, prometheus-blackbox-exporter, the PyPI packages
# kubernetes-validate and aiosmtpd), then runs formatting, lints, docs and every test. CI runs
# exactly this (.ci/run). The tests start their own PostgreSQL servers (as the `postgres` user the
# package creates, on loopback ports, in temporary directories); the Debian service is not needed.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# The TLS tests make a throwaway CA and server certificate with the openssl CLI.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The incidents page is tested in a real headless browser over WebDriver.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# Probes are tested through the real blackbox exporter.
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || missing+=(prometheus-blackbox-exporter)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python_packages=(kubernetes-validate==1.37.0 aiosmtpd==1.4.6)
if ! python3 -m pip show -q kubernetes-validate aiosmtpd >/dev/null 2>&1; then
  echo "installing PyPI packages: ${python_packages[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${python_packages[@]}"
fi
# pip's console scripts (kubernetes-validate) must be on PATH for the tests.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
command -v kubectl >/dev/null 2>&1 || {
  echo "kubectl is missing: the tests need 'kubectl kustomize' (package kubectl)" >&2
  exit 1
}

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet
cargo test --locked
