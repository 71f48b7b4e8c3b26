#!/usr/bin/env bash
set -euo pipefail
usage() {
  cat <<HELP
Usage: tpu_scripts/run_tpu.sh NAME ZONE [--dry-run] COMMAND...

Copies this checkout to every worker of TPU VM NAME, sets up its venv (setup.sh) and runs COMMAND
on all workers at once (run.sh), big_vision's run_tpu.sh pattern:
  tpu_scripts/run_tpu.sh rtc-v5e us-west4-a python -m rtc.main \\
      --config=experiments/configs/quickstart.py --workdir=/tmp/rtc_run
HELP
}
source "$(dirname "$0")/common.sh"
case ${1:-} in -h | --help | "") usage; exit 0 ;; esac
(($# >= 3)) || die "need NAME ZONE COMMAND... (see --help)"
name=$1 zone=$2
shift 2
flags=(--zone "$zone")
if [[ $1 == --dry-run ]]; then flags+=(--dry-run); shift; fi
"$SCRIPTS/setup.sh" "$name" "${flags[@]}"
"$SCRIPTS/run.sh" "$name" "${flags[@]}" -- "$@"
