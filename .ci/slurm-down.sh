#!/usr/bin/env bash
# Stop the daemons started by slurm-ci-up.sh, by their pidfiles (never by name).
set -uo pipefail
stop_pidfile() {  # stop_pidfile PIDFILE COMM
  local f=$1 comm=$2 pid
  [[ -s $f ]] || return 0
  pid=$(cat "$f")
  if [[ -r /proc/$pid/comm && $(cat /proc/$pid/comm) == "$comm" ]]; then
    kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && echo "WARNING: $comm ($pid) still running"
  fi
  rm -f "$f"
}
# cancel whatever is still queued so no job processes outlive the cluster
if [[ -s /run/slurmctld.pid ]] && command -v scancel >/dev/null; then
  timeout 15 scancel --full --quiet -u root 2>/dev/null; sleep 2
fi
stop_pidfile /run/slurmd.pid slurmd
stop_pidfile /run/slurmctld.pid slurmctld
stop_pidfile /run/slurmdbd.pid slurmdbd
stop_pidfile /run/mysqld/mysqld.pid mariadbd
stop_pidfile /run/munge/munged.pid munged
echo "slurm-ci: daemons stopped"
