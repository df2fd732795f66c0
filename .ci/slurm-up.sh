#!/usr/bin/env bash
# Bring up a throw-away one-node Slurm cluster on localhost (Debian 12, run as root).
#   WITH_DBD=1 (default): also MariaDB + slurmdbd, so `sacct` works (submitit needs it
#                         to notice cancelled / killed jobs).
#   WITH_DBD=0          : controller + node only; sacct fails ("accounting storage is disabled").
# Every start is a fresh cluster: old Slurm state and the accounting DB are wiped.
set -euo pipefail
if [[ $(id -u) != 0 ]]; then echo "slurm-up.sh must run as root (it installs packages and starts daemons)" >&2; exit 1; fi
WITH_DBD="${WITH_DBD:-1}"
CLUSTER=localci
DBPASS=slurmci            # local-only MariaDB user, bound to 127.0.0.1 / unix socket
T_START=$SECONDS
log() { echo "[slurm-ci +$((SECONDS - T_START))s] $*"; }
wait_for() {  # wait_for TIMEOUT_S CMD... : poll every 0.2 s
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then log "TIMEOUT waiting for: $*"; return 1; fi
    sleep 0.2
  done
}
# stop a daemon by its pidfile, only if the pid really is that program
stop_pidfile() {  # stop_pidfile PIDFILE COMM
  local f=$1 comm=$2 pid
  [[ -s $f ]] || return 0
  pid=$(cat "$f")
  if [[ -r /proc/$pid/comm && $(cat /proc/$pid/comm) == "$comm" ]]; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}

# ---- 1. packages --------------------------------------------------------------------
pkgs=(munge slurmctld slurmd slurm-client)
[[ $WITH_DBD == 1 ]] && pkgs+=(slurmdbd mariadb-server)
n_ok=$(dpkg-query -W -f='${Status}\n' "${pkgs[@]}" 2>/dev/null | grep -c '^install ok installed$' || true)
if [[ $n_ok == "${#pkgs[@]}" ]]; then
  log "packages already installed"
else
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d / no systemd: postinst cannot start the services; we start them below.
  # retried: ride out a blip in the Debian archive
  for attempt in 1 2 3; do
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; then
      break
    fi
    ((attempt == 3)) && { log "apt-get failed 3 times"; exit 1; }
    log "apt-get failed (attempt $attempt), retrying"; sleep $((attempt * 5))
  done
  log "packages installed"
fi

# ---- 2. stop leftovers of an earlier run (pidfiles may survive, processes may not) -----
stop_pidfile /run/slurmd.pid slurmd
stop_pidfile /run/slurmctld.pid slurmctld
stop_pidfile /run/slurmdbd.pid slurmdbd

# ---- 3. munge -------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then          # Debian's postinst normally creates it
  mungekey --create --force --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key && chmod 0600 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge   # systemd's RuntimeDirectory, made by hand
if ! (munge -n | unmunge) >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged              # forks into the background itself
fi
wait_for 10 bash -c 'munge -n | unmunge'
log "munged up (pid $(cat /run/munge/munged.pid))"

# ---- 4. slurm.conf ------------------------------------------------------------------
# Node shape from `slurmd -C`; RealMemory a bit BELOW the detected value, otherwise the
# node registers as INVAL/DRAIN "Low RealMemory".
NODE_HW=$(slurmd -C | head -1 | grep -oE 'CPUs=.*ThreadsPerCore=[0-9]+')
MEM_MB=$(awk '/^MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld /var/log/slurm
install -d -o root -g root -m 0755 /var/spool/slurmd
rm -rf /var/spool/slurmctld/* /var/spool/slurmd/*  # fresh cluster state every run
if [[ $WITH_DBD == 1 ]]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# requeued jobs may restart only after cred_expire seconds (default 120)
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
SchedulerType=sched/backfill
# batch_sched_delay=0: start each submitted batch job within ~1 s instead of ~3 s;
# bf_interval=5, sched_interval=2: pick up requeued jobs faster (defaults 30 s and 60 s;
# a requeued job becomes eligible after cred_expire, which wakes no scheduler by itself)
SchedulerParameters=batch_sched_delay=0,bf_interval=5,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job that asks for no memory gets ALL of the node's memory
DefMemPerCPU=1024
# reject (instead of leaving PENDING forever) jobs asking for more CPUs than the node has
EnforcePartLimits=ALL
JobCompType=jobcomp/none
$ACCT
KillWait=5
InactiveLimit=0
MinJobAge=300
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 $NODE_HW RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
log "slurm.conf written ($NODE_HW RealMemory=$MEM_MB)"

# ---- 5. MariaDB + slurmdbd (optional) --------------------------------------------------
if [[ $WITH_DBD == 1 ]]; then
  install -d -o mysql -g root -m 0755 /run/mysqld
  if ! mariadb -e 'SELECT 1' >/dev/null 2>&1; then
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    setsid -f /usr/sbin/mariadbd --user=mysql </dev/null >>/var/log/slurm/mariadbd.log 2>&1
  fi
  wait_for 60 mariadb -e 'SELECT 1'
  mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db; CREATE DATABASE slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  log "mariadb up (pid $(cat /run/mysqld/mysqld.pid))"
  cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm /etc/slurm/slurmdbd.conf
  chmod 0600 /etc/slurm/slurmdbd.conf               # slurmdbd refuses a world-readable one
  slurmdbd                                          # forks into the background
  wait_for 60 sacctmgr -n show cluster
  log "slurmdbd up (pid $(cat /run/slurmdbd.pid))"
fi

# ---- 6. slurmctld + slurmd -------------------------------------------------------------
slurmctld                                           # -D would keep it in the foreground
wait_for 30 scontrol ping
slurmd -N localhost                                 # node name independent of `hostname`
wait_for 60 bash -c '[[ $(sinfo -h -n localhost -o %T) == idle ]]'
log "slurmctld (pid $(cat /run/slurmctld.pid)) + slurmd (pid $(cat /run/slurmd.pid)) up"
if [[ $WITH_DBD == 1 ]]; then
  wait_for 30 bash -c "sacctmgr -n -P show cluster format=cluster | grep -qx $CLUSTER"
fi
sinfo
log "cluster ready"
