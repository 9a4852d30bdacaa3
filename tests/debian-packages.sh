#!/usr/bin/env bash
# The Debian 12 packages `make run` (runtime) and `make test` (test) need, installed when missing.
#
#   tests/debian-packages.sh run|test [--list]
#
# As root: apt-get installs what is missing (--no-install-recommends, so every package a test
# needs is named here, recommended or not: libclang-rt-14-dev holds libFuzzer's and the
# sanitizers' runtimes, and is only recommended by clang). Not root: prints the one command to
# run and fails, unless DEPS=skip, which goes on without them (the tests that need them then skip;
# under CI=true they fail). Checks with dpkg-query only: a tool installed by other means (a
# toolchain in /opt) is not seen, so DEPS=skip is the way past this on such a machine.
set -euo pipefail

# python3-venv: `python3 -m venv`; gcc and make: the virtual board (firmware core for the host)
RUNTIME=(python3 python3-venv python3-dev gcc libc6-dev make)
# the firmware for the boards and QEMU's emulated STM32; the codec under libFuzzer with ASan and
# UBSan; the dashboard in headless Chromium; boards on other hosts through ser2net; HAProxy in
# front of several instances (its configuration checked with haproxy -c; make test-balancer) and
# as the HTTP front of one host (deploy/front/haproxy.cfg) that slow and hostile clients meet
TEST=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
      clang libclang-rt-14-dev
      chromium chromium-driver
      ser2net
      haproxy)

case "${1:-}" in
  run) want=("${RUNTIME[@]}") ;;
  test) want=("${RUNTIME[@]}" "${TEST[@]}") ;;
  *) echo "usage: $0 run|test [--list]" >&2; exit 2 ;;
esac
if [[ "${2:-}" == --list ]]; then
  printf '%s\n' "${want[@]}"
  exit 0
fi

if ! command -v dpkg-query >/dev/null; then
  echo "debian-packages: not a Debian system; install the equivalents of: ${want[*]}" >&2
  [[ "${CI:-}" =~ ^(1|true|yes)$ ]] && exit 2
  exit 0
fi

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' installed$' || missing+=("$pkg")
done
((${#missing[@]})) || exit 0

install=(apt-get install -y -q --no-install-recommends "${missing[@]}")
if [[ $(id -u) == 0 ]]; then
  echo "debian-packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  "${install[@]}" >/dev/null
  exit 0
fi
ci=false
[[ "${CI:-}" =~ ^(1|true|yes)$ ]] && ci=true
cat >&2 <<EOF
debian-packages: missing ${missing[*]}
  run:  sudo apt-get update && sudo ${install[*]}
EOF
if [[ "${DEPS:-}" == skip && $ci == false ]]; then
  echo "  DEPS=skip: going on without them; the tests that need them will skip" >&2
  exit 0
fi
echo "  or, to go on without them (their tests skip; never under CI): make $1 DEPS=skip" >&2
exit 2
