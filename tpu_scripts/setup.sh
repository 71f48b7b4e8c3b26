#!/usr/bin/env bash
set -euo pipefail
usage() {
  cat <<HELP
Usage: tpu_scripts/setup.sh NAME [options]

Copies this checkout (without .venv, .git, workdirs) to ~/rtc on every worker of TPU VM NAME and
installs it into ~/rtc/.venv with jax[tpu], every other package at its tested version (constraints.txt
less its jax and jaxlib lines, which are the CPU test set's). Safe to re-run: the venv is reused.

  --jax-version V    jax[tpu] version, inside setup.py's jax range (default: \$JAX_VERSION or $JAX_VERSION)
$COMMON_HELP
HELP
}
source "$(dirname "$0")/common.sh"

NAME=""
while (($#)); do
  if common_flag "$@"; then shift "$SHIFT"; continue; fi
  case $1 in
    -h | --help) usage; exit 0 ;;
    --jax-version) JAX_VERSION=${2:?}; shift ;;
    --jax-version=*) JAX_VERSION=${1#*=} ;;
    -*) die "unknown flag $1 (see --help)" ;;
    *) [[ -z $NAME ]] || die "unexpected argument $1"; NAME=$1 ;;
  esac
  shift
done
[[ -n $NAME ]] || die "no TPU name (see --help)"
location

archive=${TMPDIR:-/tmp}/rtc-$NAME.tgz
run tar -C "$REPO" --exclude=.venv --exclude=.git --exclude=workdir --exclude='*.egg-info' -czf "$archive" .
run gcloud compute tpus tpu-vm scp "$archive" "$NAME":/tmp/rtc.tgz "${LOCATION[@]}" --worker=all
run gcloud compute tpus tpu-vm ssh "$NAME" "${LOCATION[@]}" --worker=all --command="set -euo pipefail
mkdir -p ~/rtc && tar -xzf /tmp/rtc.tgz -C ~/rtc && cd ~/rtc
[ -d .venv ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
grep -v -E '^(jax|jaxlib)==' constraints.txt > .venv/constraints-tpu.txt
.venv/bin/pip install -q -e . 'jax[tpu]==$JAX_VERSION' -c .venv/constraints-tpu.txt
.venv/bin/python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.devices()[0].device_kind)'"
