#!/usr/bin/env bash
set -euo pipefail
usage() {
  cat <<HELP
Usage: tpu_scripts/delete.sh NAME [options]

Deletes TPU VM NAME (its disks and any workdir on them go too: copy results back first).

  --queued           NAME is a queued resource: delete it and its VM
$COMMON_HELP
HELP
}
source "$(dirname "$0")/common.sh"

NAME="" QUEUED=0
while (($#)); do
  if common_flag "$@"; then shift "$SHIFT"; continue; fi
  case $1 in
    -h | --help) usage; exit 0 ;;
    --queued) QUEUED=1 ;;
    -*) die "unknown flag $1 (see --help)" ;;
    *) [[ -z $NAME ]] || die "unexpected argument $1"; NAME=$1 ;;
  esac
  shift
done
[[ -n $NAME ]] || die "no TPU name (see --help)"
location
if ((QUEUED)); then
  run gcloud compute tpus queued-resources delete "$NAME" "${LOCATION[@]}" --force --quiet
else
  run gcloud compute tpus tpu-vm delete "$NAME" "${LOCATION[@]}" --quiet
fi
