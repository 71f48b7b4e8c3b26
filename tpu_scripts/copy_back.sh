#!/usr/bin/env bash
set -euo pipefail
usage() {
  cat <<HELP
Usage: tpu_scripts/copy_back.sh NAME REMOTE_DIR LOCAL_DIR [options]

Copies REMOTE_DIR (e.g. a run's workdir: metrics, plots and checkpoints, which process 0 writes)
from a worker of TPU VM NAME to LOCAL_DIR.

  --worker N         the worker to copy from (default 0)
$COMMON_HELP
HELP
}
source "$(dirname "$0")/common.sh"

ARGS=() WORKER=0
while (($#)); do
  if common_flag "$@"; then shift "$SHIFT"; continue; fi
  case $1 in
    -h | --help) usage; exit 0 ;;
    --worker) WORKER=${2:?}; shift ;;
    --worker=*) WORKER=${1#*=} ;;
    -*) die "unknown flag $1 (see --help)" ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
((${#ARGS[@]} == 3)) || die "need NAME REMOTE_DIR LOCAL_DIR (see --help)"
location
run mkdir -p "${ARGS[2]}"
run gcloud compute tpus tpu-vm scp --recurse "${ARGS[0]}:${ARGS[1]}" "${ARGS[2]}" "${LOCATION[@]}" --worker="$WORKER"
