"""A one-node Slurm on this machine for tests/test_cluster.py (not a test module itself).

Debian's `slurm-wlm` and `munge` packages, no systemd: `start()` starts `munged`, `slurmctld`
and `slurmd` directly unless Slurm answers already, after writing a minimal slurm.conf when
there is none (one node, this host, `proctrack/linuxproc`, no cgroups, no accounting). It
returns None once the node takes jobs, or one line saying why Slurm cannot run here, which the
fixture turns into a skip. The daemons stay up after the tests (a second run reuses them).
"""

import os
import pathlib
import shutil
import socket
import subprocess
import time

CONF = pathlib.Path('/etc/slurm/slurm.conf')
STATE = pathlib.Path('/tmp/slurm')
PARTITION = 'debug'
_DAEMONS = ('munged', 'slurmctld', 'slurmd')
_CLIENTS = ('sbatch', 'squeue', 'scancel', 'scontrol', 'sinfo', 'munge')


def _config(host: str, cpus: int) -> str:
  return '\n'.join([
      'ClusterName=remjax', f'SlurmctldHost={host}', 'AuthType=auth/munge',
      'ProctrackType=proctrack/linuxproc', 'TaskPlugin=task/none', 'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_Core', f'SlurmctldPidFile={STATE}/slurmctld.pid',
      f'SlurmdPidFile={STATE}/slurmd.pid', f'SlurmdSpoolDir={STATE}/spool',
      f'StateSaveLocation={STATE}/state', f'SlurmctldLogFile={STATE}/log/slurmctld.log',
      f'SlurmdLogFile={STATE}/log/slurmd.log', 'SlurmUser=root', 'ReturnToService=2',
      'MpiDefault=none', 'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      f'NodeName={host} CPUs={cpus} State=UNKNOWN',
      f'PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP', ''])


def _ok(*command) -> bool:
  try:
    return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


def _node_state() -> str:
  try:
    listing = subprocess.run(['sinfo', '-h', '-p', PARTITION, '-o', '%t'], capture_output=True,
                             text=True, timeout=30, check=False)
  except (OSError, subprocess.TimeoutExpired):
    return ''
  return listing.stdout.strip() if listing.returncode == 0 else ''


def _munge_works() -> bool:
  """Whether a credential munge encodes, unmunge decodes."""
  try:
    encoded = subprocess.run(['munge', '-n'], capture_output=True, timeout=10, check=False)
    return encoded.returncode == 0 and subprocess.run(
        ['unmunge'], input=encoded.stdout, capture_output=True, timeout=10,
        check=False).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


def wait(condition, seconds: float) -> bool:
  """Whether `condition()` became true within `seconds` (polled twice a second)."""
  deadline = time.time() + seconds
  while time.time() < deadline:
    if condition():
      return True
    time.sleep(0.5)
  return condition()


def start() -> str | None:
  """Slurm up and its node idle, or why not (one line)."""
  missing = [name for name in _DAEMONS + _CLIENTS if shutil.which(name) is None
             and not pathlib.Path('/usr/sbin', name).exists()]
  if missing:
    return f'Slurm is not installed here (no {", ".join(missing)}; apt-get install slurm-wlm munge)'
  if _node_state() in ('idle', 'mix', 'alloc'):
    return None
  if os.geteuid() != 0:
    return 'Slurm is installed but not running, and starting its daemons needs root'
  if not CONF.exists():
    CONF.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split('.')[0]
    CONF.write_text(_config(host, os.cpu_count() or 1))
  for folder in ('state', 'spool', 'log'):
    (STATE / folder).mkdir(parents=True, exist_ok=True)
  # munged as root (--force: its log folder belongs to root on this image); the slurm daemons
  # detach themselves.
  if not _munge_works() and not (_ok('/usr/sbin/munged', '--force')
                                 and wait(_munge_works, 10)):
    return 'munged does not start (see /var/log/munge/munged.log)'
  if not _ok('scontrol', 'ping') and not _ok('/usr/sbin/slurmctld'):
    return f'slurmctld does not start (see {STATE}/log/slurmctld.log)'
  if not wait(lambda: _ok('scontrol', 'ping'), 20):
    return f'slurmctld does not answer (see {STATE}/log/slurmctld.log)'
  if not _node_state().startswith(('idle', 'mix', 'alloc')):
    _ok('/usr/sbin/slurmd')
  if not wait(lambda: _node_state() in ('idle', 'mix', 'alloc'), 30):
    host = socket.gethostname().split('.')[0]
    _ok('scontrol', 'update', f'nodename={host}', 'state=resume')
    if not wait(lambda: _node_state() in ('idle', 'mix', 'alloc'), 10):
      return (f'the Slurm node is {_node_state() or "unknown"}, not idle (see '
              f'{STATE}/log/slurmd.log)')
  return None


def wait_until_gone(job_ids, seconds: float) -> bool:
  """Whether every job of `job_ids` (array tasks '<array>_<i>' or jobs) has left the queue."""
  arrays = {str(job_id).split('_')[0] for job_id in job_ids}

  def gone() -> bool:
    listing = subprocess.run(['squeue', '-h', '-r', '-o', '%i'], capture_output=True, text=True,
                             timeout=30, check=True)
    return not any(line.split('_')[0] in arrays for line in listing.stdout.split())

  return wait(gone, seconds)


def job_state(job_id) -> str:
  """squeue's state of one job ('' once it has left the queue)."""
  listing = subprocess.run(['squeue', '-h', '-j', str(job_id), '-o', '%T'], capture_output=True,
                           text=True, timeout=30, check=False)
  return listing.stdout.strip() if listing.returncode == 0 else ''
