#!/usr/bin/env bash
# `make test` as a new user would run it, in a fresh Debian 12 root: a debootstrap chroot with
# nothing but make, git and ca-certificates, a clean clone of this repository's HEAD, the data set
# bind-mounted read-only. Runs `make test` RUNS times in a row (each from a new clone, so each
# builds its own virtual environment from PyPI with no pip cache) and prints each run's summary.
#
#   sudo tests/fresh-root.sh [ROOT_DIR] [RUNS]        (default /var/tmp/fleetvote-fresh-root, 3)
#
# Needs root, debootstrap and the network to Debian's mirror and PyPI. CIFAR10_PATH must name the
# archive. The root is kept between invocations (delete ROOT_DIR to start from nothing); the
# Debian packages `make test` installs inside it stay after the first run.
#
# Two things a debootstrap root lacks that every installed Debian machine has, added here: an
# /etc/hosts naming localhost (Selenium talks to chromedriver by that name) and the host's CA
# bundle for pip when the host reaches PyPI through a TLS-inspecting proxy (PIP_CERT).
set -euo pipefail
root=${1:-/var/tmp/fleetvote-fresh-root}
runs=${2:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
: "${CIFAR10_PATH:?set CIFAR10_PATH to cifar10-jpeg.tar.gz}"
data=$(cd "$(dirname "$CIFAR10_PATH")" && pwd)
archive=$(basename "$CIFAR10_PATH")
[[ $(id -u) == 0 ]] || { echo "fresh-root: run as root (debootstrap, chroot, mount)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "fresh-root: apt-get install debootstrap" >&2; exit 2; }

if [[ ! -x $root/usr/bin/make ]]; then
  echo "fresh-root: debootstrap --variant=minbase bookworm $root"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
  chroot "$root" /bin/bash -c 'DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends make git ca-certificates >/dev/null'
fi
cp /etc/ssl/certs/ca-certificates.crt "$root/root/host-ca.crt"

mounted=()
cleanup() { for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" || true; done; }
trap cleanup EXIT
bind() {  # bind SRC DEST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounted+=("$2")
  [[ ${3:-} == ro ]] && mount -o remount,bind,ro "$2"
  return 0
}
mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc"; mounted+=("$root/proc"); }
mountpoint -q "$root/sys" || { mount -t sysfs sys "$root/sys"; mounted+=("$root/sys"); }
mountpoint -q "$root/dev" || bind /dev "$root/dev"
mountpoint -q "$root/dev/pts" || bind /dev/pts "$root/dev/pts"
bind "$repo" "$root/src" ro
bind "$data" "$root/shared/data" ro

for ((n = 1; n <= runs; n++)); do
  log=$root/root/run$n.log
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_NO_CACHE_DIR=1 PIP_CERT=/root/host-ca.crt CIFAR10_PATH="/shared/data/$archive" /bin/bash -c '
      cd /root && rm -rf fleetvote && git clone -q /src fleetvote && cd fleetvote &&
      echo "commit $(git log --oneline -1)" && start=$(date +%s) &&
      { make test; rc=$?; echo "make test exit $rc after $(( $(date +%s) - start )) s"; exit $rc; }' > "$log" 2>&1 \
    && status=ok || status=FAILED
  echo "run $n: $status: $(grep -E '^[0-9]+ (passed|failed)|[0-9]+ passed' "$log" | tail -1) ($(tail -1 "$log"))"
done
