#!/usr/bin/env bash
# Install the external programs the test suite drives (real clients that no one
# on this team wrote).  Missing tools make their tests fail, never skip, so this
# installs them: with apt-get when run as root, otherwise it names what is missing.
set -euo pipefail

# command  debian-package
tools=(
  "openssl openssl"
  "kdig knot-dnsutils"
  "curl curl"
  "dig bind9-dnsutils"
  "named-checkzone bind9-utils"
  "nsd nsd"
  "delv bind9-dnsutils"
  "dnssec-verify bind9-utils"
  "ldns-verify-zone ldnsutils"
  "kzonecheck knot-dnssecutils"
  "nginx nginx"
  "lego lego"
  "pebble pebble"
  "chromium chromium"
  "chromedriver chromium-driver"
  "systemd-analyze systemd"
)

missing=()
for entry in "${tools[@]}"; do
  read -r cmd pkg <<<"$entry"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then
  echo "installing test tools: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "error: the test suite needs these Debian packages: ${missing[*]}" >&2
  echo "       run 'make test' as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
