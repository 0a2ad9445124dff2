#!/usr/bin/env bash
# local-cluster.sh start|stop|status
#
# A real, single-node SLURM cluster on this (Debian 12, root, no systemd)
# machine, so that sbatch/srun/submitit code paths can be exercised for real
# instead of being mocked.
#
#   start   install slurm-wlm + munge if missing, write the config, start
#           munged, slurmctld and slurmd, wait until the node is idle.
#           Idempotent: returns quickly if everything is already up.
#   stop    stop slurmd, slurmctld and munged. Idempotent.
#   status  print sinfo; exit 0 only if the node is up (idle/mixed/alloc).
#
# There is no systemd in this container (PID 1 is not an init system), so the
# daemons are started directly and tracked through their pid files.
set -euo pipefail

# ---- layout (all fixed paths, so stop/status find what start created) -------
SLURM_CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
# Generic GPUs, so GPU job lines (--gpus-per-node, --gres=gpu:N, --gpus) run as on a GPU cluster:
# SLURM hands out these device files and sets CUDA_VISIBLE_DEVICES; there is no GPU behind them.
FAKE_GPUS=${FAKE_GPUS:-2}
CTLD_STATE=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
SLURM_LOG_DIR=/var/log/slurm
CTLD_LOG=$SLURM_LOG_DIR/slurmctld.log
SLURMD_LOG=$SLURM_LOG_DIR/slurmd.log
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MUNGE_PID=$MUNGE_RUN/munged.pid
MUNGE_LOG=/var/log/munge/munged.log
PARTITION=debug
# The node is named after the short hostname: slurmd identifies itself by it,
# and NodeAddr=127.0.0.1 means we never depend on DNS/hosts resolution.
NODE=$(hostname -s)
START_TIMEOUT=${START_TIMEOUT:-60}

log() { echo "[local-cluster] $*" >&2; }

need_root() {
  if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (daemons, /etc and /var are written)"
    exit 1
  fi
}

# pid_alive PIDFILE NAME: true if the pid file points at a live (non-zombie)
# process whose command name is NAME (guards against stale pid files and
# reused pids).
pid_alive() {
  local pidfile=$1 name=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  local comm stat
  read -r comm stat < <(ps -o comm=,stat= -p "$pid" 2>/dev/null) || return 1
  # A killed daemon can linger as a zombie: PID 1 here is not a reaping init.
  [[ $comm == "$name" && $stat != Z* ]]
}

# kill_daemon PIDFILE NAME: TERM the daemon from its pid file, falling back to
# an exact-name match (pid file lost), then wait up to 10 s, then KILL.
kill_daemon() {
  local pidfile=$1 name=$2 pids="" i
  if pid_alive "$pidfile" "$name"; then
    pids=$(<"$pidfile")
  else
    pids=$(pgrep -x "$name" || true)
  fi
  if [[ -n $pids ]]; then
    log "stopping $name ($(echo $pids))"
    kill $pids 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 $pids 2>/dev/null || break
      sleep 0.2
    done
    kill -9 $pids 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Node state as sinfo reports it (idle, mix, alloc, down*, drain, unk*, ...),
# empty if slurmctld is not answering.
node_state() {
  sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1 || true
}

node_up() {
  case "$(node_state)" in
    idle | mix | mixed | alloc | allocated | comp | completing) return 0 ;;
    *) return 1 ;;
  esac
}

all_daemons_alive() {
  pid_alive "$MUNGE_PID" munged && pid_alive "$CTLD_PID" slurmctld &&
    pid_alive "$SLURMD_PID" slurmd
}

show_logs() {
  local f
  for f in "$MUNGE_LOG" "$CTLD_LOG" "$SLURMD_LOG"; do
    [[ -f $f ]] || continue
    echo "----- tail $f -----" >&2
    tail -n 25 "$f" >&2 || true
  done
}

install_packages() {
  local missing=() p
  for p in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

start_munge() {
  if [[ ! -s $MUNGE_KEY ]]; then
    log "creating $MUNGE_KEY"
    install -d -o munge -g munge -m 0700 /etc/munge
    mungekey --create --keyfile="$MUNGE_KEY" 2>/dev/null ||
      dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
  fi
  # munged refuses keys that are readable by others or owned by someone else.
  chown munge:munge "$MUNGE_KEY"
  chmod 0400 "$MUNGE_KEY"
  pid_alive "$MUNGE_PID" munged && return 0
  # /run is a tmpfs-like dir without systemd-tmpfiles here, so recreate the
  # socket dir ourselves. munged must run as the munge user (owner of key).
  install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  rm -f "$MUNGE_PID"
  runuser -u munge -- /usr/sbin/munged
  # munged daemonizes once its socket is ready; verify a round trip.
  munge -n | unmunge >/dev/null
}

# make_fake_gpus: /dev/fakegpu0..N-1, character devices like /dev/null (slurmd only checks that
# gres.conf's File= exists; a gres.conf with Count= and no File= makes it report 0 and drain the node).
make_fake_gpus() {
  local i
  for ((i = 0; i < FAKE_GPUS; i++)); do
    [[ -e /dev/fakegpu$i ]] || mknod "/dev/fakegpu$i" c 1 3
  done
}

# install_if_changed TMP DEST: put TMP in place unless DEST already has the same text; true if changed.
install_if_changed() {
  if cmp -s "$1" "$2"; then
    rm -f "$1"
    return 1
  fi
  install -m 0644 "$1" "$2"
  rm -f "$1"
}

write_config() {
  local cpus mem_mib real_mem def_mem tmp changed=1
  # The machine's CPUs: nproc alone honours OMP_NUM_THREADS (a test suite's 1 would shrink the node).
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  mem_mib=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  # Leave a margin: if RealMemory exceeds what slurmd measures the node gets
  # drained with "Low RealMemory".
  real_mem=$((mem_mib - mem_mib / 20 - 256))
  # Without a default, a job that does not ask for --mem is given the whole
  # node's memory and array tasks would run one at a time.
  def_mem=$((real_mem / cpus))

  install -d -m 0755 /etc/slurm "$SLURM_LOG_DIR" "$CTLD_STATE" "$SLURMD_SPOOL"
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Generated by slurm/local-cluster.sh -- single-node local test cluster.
ClusterName=local
SlurmctldHost=${NODE}(127.0.0.1)
# Everything runs as root: no slurm user/dir ownership juggling in a container.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# No cgroups (gVisor/containers): track processes via /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=${def_mem}
StateSaveLocation=${CTLD_STATE}
SlurmdSpoolDir=${SLURMD_SPOOL}
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
SlurmctldLogFile=${CTLD_LOG}
SlurmdLogFile=${SLURMD_LOG}
SlurmctldDebug=info
SlurmdDebug=info
# A node that comes back after a restart is usable again without manual resume.
ReturnToService=2
# Fast turnaround for tests: short timeouts, frequent scheduling, and completed
# jobs are kept around long enough for squeue/sacct-less tooling to see them.
MessageTimeout=10
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
SchedulerParameters=sched_interval=1,bf_interval=5
GresTypes=gpu
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${real_mem} Gres=gpu:${FAKE_GPUS} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
  install_if_changed "$tmp" "$SLURM_CONF" && changed=0
  tmp=$(mktemp)
  echo "NodeName=${NODE} Name=gpu File=/dev/fakegpu[0-$((FAKE_GPUS - 1))]" >"$tmp"
  install_if_changed "$tmp" "$GRES_CONF" && changed=0
  return $changed # 0: changed, the daemons must restart
}

wait_for_node() {
  local deadline=$((SECONDS + START_TIMEOUT)) state
  while ((SECONDS < deadline)); do
    state=$(node_state)
    case "$state" in
      idle | mix | mixed | alloc | allocated | comp | completing) return 0 ;;
      down* | drain* | drng* | fail*)
        # e.g. left "down" by an unclean previous shutdown; slurmd is running
        # and registered, so just put it back into service.
        scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
        ;;
    esac
    sleep 1
  done
  log "node $NODE not idle after ${START_TIMEOUT}s (state: ${state:-no answer})"
  return 1
}

cmd_start() {
  need_root
  local t0=$SECONDS
  install_packages
  make_fake_gpus
  if write_config; then
    # New/changed config (a cluster started by an older version of this script too): daemons still
    # running the old one must restart.
    kill_daemon "$SLURMD_PID" slurmd
    kill_daemon "$CTLD_PID" slurmctld
  elif all_daemons_alive && node_up; then # fast path: already up with this config
    log "already running: $(sinfo -h -o '%P %t %D node(s) %C cpus(A/I/O/T) %G' | head -n1)"
    return 0
  fi
  start_munge
  if ! pid_alive "$CTLD_PID" slurmctld; then
    rm -f "$CTLD_PID"
    # Daemonizes itself; non-zero exit means it failed during startup.
    slurmctld || { show_logs; exit 1; }
  fi
  if ! pid_alive "$SLURMD_PID" slurmd; then
    rm -f "$SLURMD_PID"
    slurmd -N "$NODE" || { show_logs; exit 1; }
  fi
  if ! wait_for_node; then
    sinfo >&2 || true
    show_logs
    exit 1
  fi
  log "up in $((SECONDS - t0))s: $(sinfo -h -o '%P %t %D node(s) %C cpus(A/I/O/T) %G' | head -n1)"
}

cmd_stop() {
  need_root
  kill_daemon "$SLURMD_PID" slurmd
  kill_daemon "$CTLD_PID" slurmctld
  kill_daemon "$MUNGE_PID" munged
  log "stopped"
}

cmd_status() {
  if [[ ! -f $SLURM_CONF ]]; then
    log "not configured ($SLURM_CONF missing)"
    return 1
  fi
  sinfo || true
  if node_up; then
    return 0
  fi
  log "node $NODE is not up (state: $(node_state || true))"
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
