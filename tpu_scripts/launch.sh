#!/usr/bin/env bash
set -euo pipefail
usage() {
  cat <<HELP
Usage: tpu_scripts/launch.sh NAME --accelerator TYPE [options] -- COMMAND...

Preemption-friendly run: until COMMAND succeeds (at most --max-attempts times), make sure TPU VM
NAME is READY (creating it, or deleting and recreating a PREEMPTED one, then setup.sh), and run
COMMAND on every worker (run.sh). rtc resumes from the last checkpoint in its --workdir, so each
attempt continues where the last one stopped; use --sync so the workdir outlives a recreated VM.

  --accelerator TYPE  TPU type for create.sh (required)
  --spot              spot capacity (create.sh --spot)
  --queued            create as a queued resource (create.sh --queued)
  --version VERSION   runtime image (create.sh --version)
  --sync URL          gs:// copy of the workdir (run.sh --sync)
  --max-attempts N    give up after N failed runs (default 20)
  --retry-wait S      seconds to wait after a failed run (default 60)
  --delete            delete the TPU VM once COMMAND succeeds
$COMMON_HELP
HELP
}
source "$(dirname "$0")/common.sh"

NAME="" CREATE=() RUN=() CMD=() MAX_ATTEMPTS=20 RETRY_WAIT=60 DELETE=0 QUEUED=()
while (($#)); do
  if common_flag "$@"; then shift "$SHIFT"; continue; fi
  case $1 in
    -h | --help) usage; exit 0 ;;
    --accelerator | --version) CREATE+=("$1" "${2:?}"); shift ;;
    --accelerator=* | --version=*) CREATE+=("$1") ;;
    --spot) CREATE+=("$1") ;;
    --queued) CREATE+=("$1"); QUEUED=(--queued) ;;
    --sync) RUN+=("$1" "${2:?}"); shift ;;
    --sync=*) RUN+=("$1") ;;
    --max-attempts) MAX_ATTEMPTS=${2:?}; shift ;;
    --retry-wait) RETRY_WAIT=${2:?}; shift ;;
    --delete) DELETE=1 ;;
    --) shift; CMD=("$@"); break ;;
    -*) die "unknown flag $1 (see --help)" ;;
    *) [[ -z $NAME ]] || die "unexpected argument $1"; NAME=$1 ;;
  esac
  shift
done
[[ -n $NAME ]] || die "no TPU name (see --help)"
((${#CMD[@]})) || die "no command after -- (see --help)"
location
COMMON=("${LOCATION[@]}")
if ((DRY_RUN)); then COMMON+=(--dry-run); fi

if ((!DRY_RUN)) && ! command -v gcloud >/dev/null; then die "gcloud not found (or use --dry-run)"; fi
describe=(gcloud compute tpus tpu-vm describe "$NAME" "${LOCATION[@]}" --format='value(state)')

for ((attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)); do
  echo "# attempt $attempt of $MAX_ATTEMPTS"
  state=""  # READY, PREEMPTED, ... or "" when there is no such VM (always "" in a dry run)
  if ((DRY_RUN)); then run "${describe[@]}"; else state=$("${describe[@]}" 2>/dev/null || true); fi
  if [[ $state != READY ]]; then
    if [[ -n $state ]]; then
      echo "# $NAME is $state: recreating it"
      "$SCRIPTS/delete.sh" "$NAME" "${COMMON[@]}" "${QUEUED[@]}"
    fi
    if ! "$SCRIPTS/create.sh" "$NAME" "${COMMON[@]}" "${CREATE[@]}" || ! "$SCRIPTS/setup.sh" "$NAME" "${COMMON[@]}"; then
      echo "# creating or setting up $NAME failed on attempt $attempt (no capacity?); retrying in ${RETRY_WAIT}s" >&2
      sleep "$RETRY_WAIT"
      continue
    fi
  fi
  if "$SCRIPTS/run.sh" "$NAME" "${COMMON[@]}" "${RUN[@]}" -- "${CMD[@]}"; then
    if ((DELETE)); then "$SCRIPTS/delete.sh" "$NAME" "${COMMON[@]}" "${QUEUED[@]}"; fi
    exit 0
  fi
  echo "# run failed on attempt $attempt (preempted?); retrying in ${RETRY_WAIT}s" >&2
  sleep "$RETRY_WAIT"
done
die "still failing after $MAX_ATTEMPTS attempts"
