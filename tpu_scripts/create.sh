#!/usr/bin/env bash
set -euo pipefail
usage() {
  cat <<HELP
Usage: tpu_scripts/create.sh NAME --accelerator TYPE [options]

Creates a TPU VM or pod slice NAME (e.g. --accelerator v5litepod-8, v4-8, v4-32, v5litepod-32).
With --queued it asks for it as a queued resource and waits until it is ACTIVE.

  --accelerator TYPE  TPU type (required)
  --version VERSION   runtime image (default by type: v4 tpu-ubuntu2204-base, v5e v2-alpha-tpuv5-lite,
                      v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e)
  --spot              spot capacity (cheaper, preemptible)
  --queued            a queued resource (waits for capacity instead of failing)
  --poll SECONDS      queued: seconds between state checks (default 60)
$COMMON_HELP
HELP
}
source "$(dirname "$0")/common.sh"

NAME="" ACCEL="" VERSION="" SPOT=0 QUEUED=0 POLL=60
while (($#)); do
  if common_flag "$@"; then shift "$SHIFT"; continue; fi
  case $1 in
    -h | --help) usage; exit 0 ;;
    --accelerator) ACCEL=${2:?}; shift ;;
    --accelerator=*) ACCEL=${1#*=} ;;
    --version) VERSION=${2:?}; shift ;;
    --version=*) VERSION=${1#*=} ;;
    --spot) SPOT=1 ;;
    --queued) QUEUED=1 ;;
    --poll) POLL=${2:?}; shift ;;
    -*) die "unknown flag $1 (see --help)" ;;
    *) [[ -z $NAME ]] || die "unexpected argument $1"; NAME=$1 ;;
  esac
  shift
done
[[ -n $NAME ]] || die "no TPU name (see --help)"
[[ -n $ACCEL ]] || die "no --accelerator (e.g. v5litepod-8, v4-32)"
if [[ -z $VERSION ]]; then
  case $ACCEL in
    v4-*) VERSION=tpu-ubuntu2204-base ;;
    v5litepod-* | v5e-*) VERSION=v2-alpha-tpuv5-lite ;;
    v5p-*) VERSION=v2-alpha-tpuv5 ;;
    v6e-*) VERSION=v2-alpha-tpuv6e ;;
    *) die "no default runtime version for $ACCEL: pass --version" ;;
  esac
fi
location
SPOT_FLAG=()
if ((SPOT)); then SPOT_FLAG=(--spot); fi

if ((QUEUED)); then
  run gcloud compute tpus queued-resources create "$NAME" --node-id="$NAME" "${LOCATION[@]}" \
    --accelerator-type="$ACCEL" --runtime-version="$VERSION" "${SPOT_FLAG[@]}"
  describe=(gcloud compute tpus queued-resources describe "$NAME" "${LOCATION[@]}" --format='value(state.state)')
  if ((DRY_RUN)); then
    run "${describe[@]}"
    echo "# (then every ${POLL}s until the state is ACTIVE)"
    exit 0
  fi
  while true; do
    state=$(run "${describe[@]}" | tail -n 1)
    echo "queued resource $NAME: $state"
    case $state in
      ACTIVE) break ;;
      FAILED | SUSPENDED) die "queued resource $NAME is $state" ;;
    esac
    sleep "$POLL"
  done
else
  run gcloud compute tpus tpu-vm create "$NAME" "${LOCATION[@]}" \
    --accelerator-type="$ACCEL" --version="$VERSION" "${SPOT_FLAG[@]}"
fi
