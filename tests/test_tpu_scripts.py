"""tpu_scripts/: `--help`, strict mode, the gcloud commands of each dry run, and the preemption loop
against a fake gcloud. No test reaches Google Cloud: a `gcloud` on PATH that fails is put first."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "tpu_scripts"
NAMES = ["create.sh", "setup.sh", "run.sh", "copy_back.sh", "delete.sh", "launch.sh", "run_tpu.sh"]
RUN = ["python", "-m", "rtc.main", "--config=experiments/configs/quickstart.py", "--workdir=/tmp/rtc_run"]

# Records its first four arguments, one call per line; exits 99 unless FAKE_GCLOUD_OK is set, then plays a TPU:
# `describe` prints the state in $STATE_FILE; the first run of rtc.main "is preempted" (exit 1, state
# PREEMPTED); create makes the VM READY, delete removes it.
FAKE_GCLOUD = """#!/usr/bin/env bash
echo "$1 $2 $3 $4" >> "$GCLOUD_LOG"
[ -n "${FAKE_GCLOUD_OK:-}" ] || exit 99
case "$*" in
  *"tpu-vm describe"*) cat "$STATE_FILE" 2>/dev/null; [ -s "$STATE_FILE" ] ;;
  *"tpu-vm create"*) echo READY > "$STATE_FILE" ;;
  *"tpu-vm delete"*) rm -f "$STATE_FILE" ;;
  *rtc.main*) if [ ! -e "$STATE_FILE.ran" ]; then touch "$STATE_FILE.ran"; echo PREEMPTED > "$STATE_FILE"; exit 1; fi ;;
esac
"""


def _env(tmp_path: Path, **extra) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPU_")}
    return {
        **env,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "GCLOUD_LOG": str(tmp_path / "gcloud.log"),
        "STATE_FILE": str(tmp_path / "state"),
        "TMPDIR": str(tmp_path),
        **extra,
    }


def _run(tmp_path: Path, script: str, *args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *args],
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _commands(out: str) -> list[str]:
    """The printed commands (`+ ...` lines) that call gcloud, without the `+ `."""
    return [line[2:] for line in out.splitlines() if line.startswith("+ gcloud")]


@pytest.mark.parametrize("script", NAMES)
def test_help_and_strict_mode(tmp_path, script):
    text = (SCRIPTS / script).read_text()
    assert text.startswith("#!/usr/bin/env bash\nset -euo pipefail\n")
    assert subprocess.run(["bash", "-n", str(SCRIPTS / script)]).returncode == 0
    out = _run(tmp_path, script, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: tpu_scripts/{script}")
    assert "--dry-run" in out.stdout
    assert not (tmp_path / "gcloud.log").exists()


def test_create_dry_run(tmp_path):
    out = _run(
        tmp_path, "create.sh", "rtc-v5e", "--zone", "us-west4-a", "--accelerator", "v5litepod-8", "--dry-run"
    )
    assert out.returncode == 0, out.stderr
    assert _commands(out.stdout) == [
        "gcloud compute tpus tpu-vm create rtc-v5e --zone=us-west4-a --accelerator-type=v5litepod-8 "
        "--version=v2-alpha-tpuv5-lite"
    ]
    out = _run(
        tmp_path, "create.sh", "rtc-pod", "--accelerator=v4-32", "--queued", "--spot", "--dry-run",
        TPU_ZONE="us-central2-b", TPU_PROJECT="my-project",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert _commands(out.stdout) == [
        "gcloud compute tpus queued-resources create rtc-pod --node-id=rtc-pod --zone=us-central2-b "
        "--project=my-project --accelerator-type=v4-32 --runtime-version=tpu-ubuntu2204-base --spot",
        "gcloud compute tpus queued-resources describe rtc-pod --zone=us-central2-b --project=my-project "
        "'--format=value(state.state)'",
    ]
    assert not (tmp_path / "gcloud.log").exists()


def test_setup_run_copy_delete_dry_runs(tmp_path):
    zone = ["--zone", "us-west4-a", "--dry-run"]
    setup = _run(tmp_path, "setup.sh", "rtc-v5e", *zone)
    assert setup.returncode == 0, setup.stderr
    archive = f"{tmp_path}/rtc-rtc-v5e.tgz"
    assert f"+ tar -C {SCRIPTS.parent} --exclude=.venv --exclude=.git" in setup.stdout
    commands = _commands(setup.stdout)
    assert (
        commands[0]
        == f"gcloud compute tpus tpu-vm scp {archive} rtc-v5e:/tmp/rtc.tgz --zone=us-west4-a --worker=all"
    )
    assert commands[1].startswith(
        "gcloud compute tpus tpu-vm ssh rtc-v5e --zone=us-west4-a --worker=all '--command="
    )
    assert "pip install -q -e . '\\''jax[tpu]==0.10.2'\\''" in setup.stdout
    assert not Path(archive).exists()  # printed, not run

    run = _run(tmp_path, "run.sh", "rtc-v5e", *zone, "--", *RUN)
    assert run.returncode == 0, run.stderr
    assert _commands(run.stdout) == [
        "gcloud compute tpus tpu-vm ssh rtc-v5e --zone=us-west4-a --worker=all '--command=set -euo pipefail; cd ~/rtc"
    ]
    assert (
        "{ .venv/bin/python -m rtc.main --distributed --config=experiments/configs/quickstart.py "
        "--workdir=/tmp/rtc_run ; } 2>&1 | tee -a ~/rtc_run.log'"
    ) in run.stdout
    synced = _run(
        tmp_path, "run.sh", "rtc-v5e", *zone, "--sync", "gs://bucket/run", "--", *RUN, "--distributed"
    )
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.count("--distributed") == 1
    assert "gsutil -m -q rsync -r gs://bucket/run /tmp/rtc_run || true" in synced.stdout  # restore first
    assert "kill $syncer; gsutil -m -q rsync -r /tmp/rtc_run gs://bucket/run; exit $status" in synced.stdout

    copy = _run(tmp_path, "copy_back.sh", "rtc-v5e", "/tmp/rtc_run", f"{tmp_path}/results", *zone)
    assert _commands(copy.stdout) == [
        f"gcloud compute tpus tpu-vm scp --recurse rtc-v5e:/tmp/rtc_run {tmp_path}/results --zone=us-west4-a --worker=0"
    ]
    assert _commands(_run(tmp_path, "delete.sh", "rtc-v5e", *zone).stdout) == [
        "gcloud compute tpus tpu-vm delete rtc-v5e --zone=us-west4-a --quiet"
    ]
    assert _commands(_run(tmp_path, "delete.sh", "rtc-pod", "--queued", *zone).stdout) == [
        "gcloud compute tpus queued-resources delete rtc-pod --zone=us-west4-a --force --quiet"
    ]
    legacy = _run(tmp_path, "run_tpu.sh", "rtc-v5e", "us-west4-a", "--dry-run", *RUN)
    assert [c.split(" '--command")[0] for c in _commands(legacy.stdout)] == [
        commands[0], *["gcloud compute tpus tpu-vm ssh rtc-v5e --zone=us-west4-a --worker=all"] * 2
    ]  # fmt: skip
    assert not (tmp_path / "gcloud.log").exists()


def test_launch_dry_run(tmp_path):
    out = _run(
        tmp_path, "launch.sh", "rtc-v5e", "--zone", "us-west4-a", "--accelerator", "v5litepod-8", "--spot",
        "--delete", "--dry-run", "--", *RUN,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [c.split(" '--command")[0] for c in _commands(out.stdout)] == [
        "gcloud compute tpus tpu-vm describe rtc-v5e --zone=us-west4-a '--format=value(state)'",
        "gcloud compute tpus tpu-vm create rtc-v5e --zone=us-west4-a --accelerator-type=v5litepod-8 "
        "--version=v2-alpha-tpuv5-lite --spot",
        f"gcloud compute tpus tpu-vm scp {tmp_path}/rtc-rtc-v5e.tgz rtc-v5e:/tmp/rtc.tgz --zone=us-west4-a --worker=all",
        "gcloud compute tpus tpu-vm ssh rtc-v5e --zone=us-west4-a --worker=all",  # setup
        "gcloud compute tpus tpu-vm ssh rtc-v5e --zone=us-west4-a --worker=all",  # the run
        "gcloud compute tpus tpu-vm delete rtc-v5e --zone=us-west4-a --quiet",
    ]
    assert not (tmp_path / "gcloud.log").exists()


def test_launch_recreates_a_preempted_vm_and_reruns(tmp_path):
    out = _run(
        tmp_path, "launch.sh", "rtc-v5e", "--zone", "z", "--accelerator", "v4-8", "--retry-wait", "0", "--", *RUN,
        FAKE_GCLOUD_OK="1",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    calls = (tmp_path / "gcloud.log").read_text().splitlines()
    attempt = [
        "compute tpus tpu-vm describe",  # no VM yet
        "compute tpus tpu-vm create",
        "compute tpus tpu-vm scp",
        "compute tpus tpu-vm ssh",  # setup
        "compute tpus tpu-vm ssh",  # rtc.main: preempted
    ]
    assert calls == attempt + ["compute tpus tpu-vm describe", "compute tpus tpu-vm delete"] + attempt[1:]
    assert "run failed on attempt 1 (preempted?)" in out.stderr


def test_missing_arguments_are_errors(tmp_path):
    for script, args, message in [
        ("create.sh", ["x", "--zone", "z", "--dry-run"], "no --accelerator"),
        (
            "create.sh",
            ["x", "--accelerator", "v9-8", "--zone", "z", "--dry-run"],
            "no default runtime version",
        ),
        ("setup.sh", ["x", "--dry-run"], "no zone: pass --zone ZONE or set TPU_ZONE"),
        ("run.sh", ["x", "--zone", "z", "--dry-run"], "no command after --"),
        (
            "run.sh",
            ["x", "--zone", "z", "--sync", "gs://b", "--dry-run", "--", "python", "-m", "rtc.main"],
            "--workdir",
        ),
        ("delete.sh", ["--zone", "z", "--bogus"], "unknown flag --bogus"),
    ]:
        out = _run(tmp_path, script, *args)
        assert out.returncode == 2 and message in out.stderr, (script, out.stderr)
