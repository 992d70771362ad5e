"""A real single-node SLURM cluster for the tests: munge, slurmctld and slurmd started from
Debian's packages (no systemd), a `cpu` and a `gpu` partition as in profiles/slurm, and a
fake GPU (`gres.conf` File=/dev/null) so that GPU jobs are scheduled.

Everything lives in one temporary folder except slurm.conf and gres.conf, which must be
in /etc/slurm: Snakemake's job step drops SLURM_CONF from the environment of the `srun`
it runs inside each job, so that srun finds only the default path. The helper writes them
there only when /etc/slurm holds no configuration of its own (a real cluster's is never
touched), and removes them afterwards. munge runs on its own key and socket; the daemons
are stopped by their PID files, never by name; the ports are picked free.

Run by hand (as root):
    python -m tests.cluster.slurm_cluster start   # prints how to stop it
    python -m tests.cluster.slurm_cluster stop /tmp/imganalyzer-slurm-XXXX
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
ETC = Path("/etc/slurm")
MARKER = "# written by imganalyzer's tests/cluster/slurm_cluster.py; removed when it stops\n"
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "scontrol")
# What the node advertises: more than the machine has (SlurmdParameters=config_overrides),
# so that every rule's threads and mem_mb fit and no job stays PENDING forever.
NODE_CPUS = 8
NODE_MEMORY_MB = 32000
# Finished jobs stay visible to squeue this long: the plugin polls with squeue here
# (no accounting database), and must still see a job that ended between two polls.
MIN_JOB_AGE_S = 300


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    missing = [d for d in DAEMONS if not os.access(d, os.X_OK)]
    missing += [c for c in CLIENTS if shutil.which(c) is None]
    if missing:
        return (
            f"SLURM is not installed ({', '.join(missing)} missing): apt-get install "
            "slurmctld slurmd slurm-client munge (see .ci/run)"
        )
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs: run the cluster tests as root"
    own = [p for p in (ETC / "slurm.conf", ETC / "gres.conf") if p.exists() and not _ours(p)]
    if own:
        return f"{own[0]} exists: this machine has a SLURM configuration that the tests keep"
    running = _running_test_cluster()
    if running:
        return f"another test cluster runs here ({running}): one at a time (/etc/slurm)"
    return None


def _running_test_cluster() -> Path | None:
    """The folder of a test cluster whose slurmctld still runs, from /etc/slurm/slurm.conf."""
    conf = ETC / "slurm.conf"
    if not conf.exists() or not _ours(conf):
        return None
    found = re.search(r"^SlurmctldPidFile=(.+)$", conf.read_text(), re.MULTILINE)
    pid_file = Path(found.group(1)) if found else None
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (AttributeError, OSError, ValueError):
        return None  # a leftover of a run that was killed: replaced by the next cluster
    return pid_file.parent


def _ours(path: Path) -> bool:
    return path.read_text(errors="replace").startswith(MARKER)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_conf(folder: Path, host: str) -> str:
    return f"""\
ClusterName=imganalyzer
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={folder}/ctld
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={folder}/log/jobcomp.txt
MpiDefault=none
MailProg=/bin/true
DefMemPerCPU=1000
MinJobAge={MIN_JOB_AGE_S}
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP
"""  # noqa: E501


class SlurmCluster:
    """One node, two partitions, one fake GPU; `env` is the environment to submit from."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.host = socket.gethostname().split(".")[0]
        self.conf = ETC / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    @property
    def jobcomp(self) -> Path:
        """One line per finished job: JobId, Partition, JobState, ExitCode..."""
        return self.folder / "log" / "jobcomp.txt"

    def start(self, timeout_s: float = 60) -> SlurmCluster:
        self._write_config()
        self._start_munge()
        self._run("/usr/sbin/slurmctld")
        self._run("/usr/sbin/slurmd")
        self._wait_for_idle_node(timeout_s)
        return self

    def _write_config(self) -> None:
        for sub in ("ctld", "spool", "log", "munge", "key"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses a socket folder that everyone cannot traverse, and a readable key
        self.folder.chmod(0o755)
        (self.folder / "munge").chmod(0o755)
        (self.folder / "key").chmod(0o700)
        key = self.folder / "key" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        ETC.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(MARKER + slurm_conf(self.folder, self.host))
        # a fake GPU: File=/dev/null (Count=1 alone marks the node INVAL)
        gres = f"NodeName={self.host} Name=gpu File=/dev/null\n"
        (ETC / "gres.conf").write_text(MARKER + gres)

    def _start_munge(self) -> None:
        self._run(
            "/usr/sbin/munged",
            f"--socket={self.folder}/munge/munge.socket",
            f"--key-file={self.folder}/key/munge.key",
            f"--seed-file={self.folder}/key/munged.seed",
            f"--pid-file={self.folder}/munge/munged.pid",
            f"--log-file={self.folder}/log/munged.log",
        )

    def _run(self, *command: str) -> None:
        # the daemons fork into the background; their PID files say where they went
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr}{self.logs()}")

    def _wait_for_idle_node(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            state = self.sinfo_state()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node never became idle (last state {state!r}){self.logs()}")

    def sinfo_state(self) -> str:
        result = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True, timeout=30
        )
        return result.stdout.split()[0] if result.stdout.split() else ""

    def squeue(self) -> list[dict[str, str]]:
        """Jobs known to slurmctld (running, pending, and finished less than MinJobAge ago)."""
        result = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%i|%P|%T|%k"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        keys = ("id", "partition", "state", "comment")
        return [
            dict(zip(keys, line.split("|", 3), strict=True)) for line in result.stdout.splitlines()
        ]

    def gpus_of(self, job_id: str) -> int:
        """GPUs the job asked for (scontrol knows a job until MinJobAge after its end)."""
        result = subprocess.run(
            ["scontrol", "show", "job", job_id],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        match = re.search(r"TresPerJob=\S*gpu:(\d+)", result.stdout)
        return int(match.group(1)) if match else 0

    def scancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], env=self.env, check=True, timeout=30)

    def logs(self) -> str:
        log = self.folder / "log"
        parts = [
            f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in log.glob("*.log")
        ]
        return "".join(parts)

    def stop(self, timeout_s: float = 30) -> None:
        """Cancel what still runs (slurmstepd outlives slurmd), then stop the daemons."""
        if (self.folder / "slurmctld.pid").exists() and self.conf.exists():
            subprocess.run(["scancel", "--full", "--user", "root"], env=self.env, timeout=30)
            self._wait_for_no_running_jobs(timeout_s / 2)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            _stop_by_pid_file(self.folder / pid_file, timeout_s)
        for path in (ETC / "slurm.conf", ETC / "gres.conf"):
            if path.exists() and _ours(path):
                path.unlink()

    def _wait_for_no_running_jobs(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                jobs = self.squeue()
            except (subprocess.SubprocessError, OSError):
                return
            if not any(job["state"] in ("RUNNING", "COMPLETING", "PENDING") for job in jobs):
                return
            time.sleep(0.5)


def _stop_by_pid_file(pid_file: Path, timeout_s: float) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def new_cluster_folder() -> Path:
    # under /tmp, not pytest's 0700 folders: munged checks every folder above its socket
    return Path(tempfile.mkdtemp(prefix="imganalyzer-slurm-"))


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"]:
        reason = missing_reason()
        if reason:
            print(reason, file=sys.stderr)
            return 1
        cluster = SlurmCluster(new_cluster_folder()).start()
        print(
            f"cluster up; stop it with: python -m tests.cluster.slurm_cluster stop {cluster.folder}"
        )
        return 0
    if argv[:1] == ["stop"] and len(argv) == 2:
        SlurmCluster(Path(argv[1])).stop()
        shutil.rmtree(argv[1], ignore_errors=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
