#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, from Debian's slurm-wlm and munge
# (apt-get install slurm-wlm munge), for tests/integration/test_slurm.py and CI.
#
# Idempotent: if `sinfo` already shows this node up, it does nothing. Needs root: it
# writes /etc/slurm/slurm.conf and starts munged, slurmctld and slurmd as daemons (no
# systemd needed, so it also works in a container). Nothing here is tuned for a real
# cluster; it only has to run a sweep's jobs through sbatch on one machine:
#   - no accounting database (accounting_storage/none, jobacct_gather/none);
#   - processes tracked through /proc (proctrack/linuxproc) and no cgroup plugins,
#     which need a writable cgroup hierarchy that containers rarely give; each job is
#     bound to its CPUs by task/affinity (sched_setaffinity works even under gVisor);
#   - the node's CPUs and memory as `slurmd -C` reports them;
#   - KillWait=30: scancel sends SIGTERM, then SIGKILL 30 s later (SLURM's default),
#     the time a job has to end its MLflow run KILLED.
set -euo pipefail

PARTITION=${SLURM_TEST_PARTITION:-debug}
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm

up() { sinfo -h -p "$PARTITION" -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated|completing)'; }

if up; then
  echo "slurm: already up"; sinfo
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "start-slurm.sh: needs root (writes $CONF_DIR, starts daemons)" >&2; exit 1; }
for program in munged slurmctld slurmd sinfo; do
  command -v "$program" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
  command -v "$program" >/dev/null 2>&1 || { echo "start-slurm.sh: no $program: apt-get install slurm-wlm munge" >&2; exit 1; }
done

# munge: one key for the machine, and its daemon
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
if ! munge -n </dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- munged
  for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf from this node's real hardware
host=$(hostname -s)
node=$(slurmd -C | head -1)                     # NodeName=<host> CPUs=... RealMemory=...
node=${node/NodeName=$host /NodeName=$host NodeAddr=127.0.0.1 }
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/slurm
cat > "$CONF_DIR/slurm.conf.new" <<CONF
# written by tests/integration/slurm/start-slurm.sh: a single-node test cluster
ClusterName=mnist-exp-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=30
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
mv "$CONF_DIR/slurm.conf.new" "$CONF_DIR/slurm.conf"

# the daemons: a stale one (e.g. from an older config) is replaced
pkill_pidfile() { [ -s "$1" ] && kill "$(cat "$1")" 2>/dev/null && sleep 1 || true; }
pkill_pidfile /run/slurm/slurmctld.pid
pkill_pidfile /run/slurm/slurmd.pid
slurmctld -c                                    # -c: start clean, no saved jobs
slurmd

for _ in $(seq 100); do up && break; sleep 0.2; done
if ! up; then
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  for _ in $(seq 50); do up && break; sleep 0.2; done
fi
if ! up; then
  echo "start-slurm.sh: the node did not come up; see $LOG_DIR/slurmctld.log and slurmd.log" >&2
  sinfo >&2 || true
  exit 1
fi
sinfo
