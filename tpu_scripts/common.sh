#!/usr/bin/env bash
# Shared by the tpu_scripts: flag parsing and `run`, which prints a command under --dry-run instead
# of running it. Sourced, not run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS="$REPO/tpu_scripts"
DRY_RUN=${DRY_RUN:-0}
ZONE=${TPU_ZONE:-}
PROJECT=${TPU_PROJECT:-}
JAX_VERSION=${JAX_VERSION:-0.10.2}

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# One argument as a shell word: left bare when safe, else single-quoted.
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}

# Prints `+ CMD` (copy-pasteable) and runs it, or only prints it under --dry-run.
run() {
  local words=() arg
  for arg in "$@"; do words+=("$(quote "$arg")"); done
  echo "+ ${words[*]}"
  if [[ $DRY_RUN == 1 ]]; then return 0; fi
  if [[ $1 == gcloud ]] && ! command -v gcloud >/dev/null; then
    die "gcloud not found: install the Google Cloud CLI (or use --dry-run)"
  fi
  "$@"
}

# Handles the flags every script takes; returns 1 for a flag it does not know.
# Usage: common_flag "$@" && shift "$SHIFT"
common_flag() {
  SHIFT=1
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --zone) ZONE=${2:?--zone needs a value}; SHIFT=2 ;;
    --zone=*) ZONE=${1#*=} ;;
    --project) PROJECT=${2:?--project needs a value}; SHIFT=2 ;;
    --project=*) PROJECT=${1#*=} ;;
    *) return 1 ;;
  esac
}

COMMON_HELP="  --zone ZONE        GCP zone (default: \$TPU_ZONE)
  --project PROJECT  GCP project (default: \$TPU_PROJECT, else gcloud's default)
  --dry-run          print the commands instead of running them
  -h, --help         this help"

# gcloud's --zone/--project arguments for the settings.
location() {
  [[ -n $ZONE ]] || die "no zone: pass --zone ZONE or set TPU_ZONE"
  LOCATION=(--zone="$ZONE")
  if [[ -n $PROJECT ]]; then LOCATION+=(--project="$PROJECT"); fi
}
