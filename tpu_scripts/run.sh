#!/usr/bin/env bash
set -euo pipefail
usage() {
  cat <<HELP
Usage: tpu_scripts/run.sh NAME [options] -- COMMAND...

Runs COMMAND in ~/rtc on every worker of TPU VM NAME at once (one process per host, as JAX's
multi-controller runtime wants), with the venv's python: e.g.
  tpu_scripts/run.sh rtc-pod --zone us-central2-b -- \\
      python -m rtc.main --config=experiments/configs/quickstart.py --workdir=/tmp/rtc_run
'python -m rtc.main' gets --distributed added when missing: every worker joins jax.distributed
(a single host joins as the one process). Output goes to the terminal and ~/rtc_run.log.

  --sync URL         keep the run's --workdir in gs://URL: restored from it before the command,
                     copied to it every --sync-every seconds and at the end, so a run on a
                     recreated VM resumes from its last checkpoint (single host; see README)
  --sync-every S     seconds between copies (default 600)
$COMMON_HELP
HELP
}
source "$(dirname "$0")/common.sh"

NAME="" SYNC="" SYNC_EVERY=600 CMD=()
while (($#)); do
  if common_flag "$@"; then shift "$SHIFT"; continue; fi
  case $1 in
    -h | --help) usage; exit 0 ;;
    --sync) SYNC=${2:?}; shift ;;
    --sync=*) SYNC=${1#*=} ;;
    --sync-every) SYNC_EVERY=${2:?}; shift ;;
    --) shift; CMD=("$@"); break ;;
    -*) die "unknown flag $1 (see --help)" ;;
    *) [[ -z $NAME ]] || die "unexpected argument $1"; NAME=$1 ;;
  esac
  shift
done
[[ -n $NAME ]] || die "no TPU name (see --help)"
((${#CMD[@]})) || die "no command after -- (see --help)"
location

# python -m rtc.main ... -> python -m rtc.main --distributed ...
if [[ ${CMD[0]} == python* && ${CMD[1]:-} == -m && ${CMD[2]:-} == rtc.main ]] &&
  ! printf '%s\n' "${CMD[@]}" | grep -qx -- --distributed; then
  CMD=("${CMD[@]:0:3}" --distributed "${CMD[@]:3}")
fi
command=".venv/bin/$(printf '%q ' "${CMD[@]}")"

if [[ -n $SYNC ]]; then
  workdir=""
  for ((i = 0; i < ${#CMD[@]}; i++)); do
    case ${CMD[i]} in
      --workdir=*) workdir=${CMD[i]#*=} ;;
      --workdir) workdir=${CMD[i + 1]:-} ;;
    esac
  done
  [[ -n $workdir ]] || die "--sync needs the command's --workdir"
  command="mkdir -p $workdir && gsutil -m -q rsync -r $SYNC $workdir || true
( while sleep $SYNC_EVERY; do gsutil -m -q rsync -r $workdir $SYNC || true; done ) & syncer=\$!
status=0; $command || status=\$?
kill \$syncer; gsutil -m -q rsync -r $workdir $SYNC; exit \$status"
fi
run gcloud compute tpus tpu-vm ssh "$NAME" "${LOCATION[@]}" --worker=all --command="set -euo pipefail; cd ~/rtc
{ $command; } 2>&1 | tee -a ~/rtc_run.log"
