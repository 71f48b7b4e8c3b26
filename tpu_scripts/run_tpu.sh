#!/usr/bin/env bash
# Copies this checkout to every worker of a TPU VM (single host or pod slice), sets up a venv with
# jax[tpu], and runs one rtc command on all workers at once (big_vision's run_tpu.sh pattern).
#
#   tpu_scripts/run_tpu.sh NAME ZONE python -m rtc.main --distributed \
#       --config=experiments/configs/quickstart.py --workdir=/tmp/rtc_run
#
# `--distributed` joins the workers with jax.distributed (needed on a pod slice). The workdir is a
# local path on each worker (process 0 writes metrics and checkpoints); gs:// workdirs are not
# supported yet. Not exercised in CI: there is no TPU here.
set -euo pipefail
name=$1 zone=$2; shift 2
cmd="$*"
repo=$(cd "$(dirname "$0")/.." && pwd)
tar -C "$repo" --exclude=.venv --exclude=workdir --exclude=.git -czf /tmp/rtc.tgz .
gcloud compute tpus tpu-vm scp /tmp/rtc.tgz "$name":/tmp/rtc.tgz --zone="$zone" --worker=all
gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="
  set -e; mkdir -p ~/rtc && tar -xzf /tmp/rtc.tgz -C ~/rtc && cd ~/rtc
  [ -d .venv ] || python3 -m venv .venv
  .venv/bin/pip install -q -e . 'jax[tpu]==0.10.2'
  .venv/bin/$cmd"
