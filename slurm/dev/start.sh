#!/usr/bin/env bash
# Bring up a real single-node Slurm on loopback for tests and demos.
#
# Run as root. Idempotent: re-running while it is up only checks it and
# prints the client settings again. Everything lives in one folder:
#
#   CLUSTERML_SLURM_DIR      folder for slurm.conf, state, logs, pids  [/tmp/clusterml-slurm]
#   CLUSTERML_SLURMCTLD_PORT slurmctld port                            [6817]
#   CLUSTERML_SLURMD_PORT    slurmd port                               [6818]
#   CLUSTERML_SLURM_NODE     node name                                 [clusterml-node]
#   CLUSTERML_SLURM_CPUS     CPUs the node claims (may exceed cores)   [8]
#   CLUSTERML_SLURM_TIMEOUT  seconds to wait for the node to be idle   [60]
#   CLUSTERML_SLURM_FIRST_JOB_ID  first job id (FirstJobId)            [1]
#       Give concurrent instances on one machine different ranges: MPICH names
#       its shared-memory segments after the PMI job ("1.0"), so two jobs with
#       the same id at once on one host collide ("Message truncated").
#
# Processes started here are recorded in "$CLUSTERML_SLURM_DIR/started.pids"
# ("name pid" per line); slurm/dev/stop.sh ends exactly those.
# The last line on stdout is "export SLURM_CONF=...".
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DIR="${CLUSTERML_SLURM_DIR:-/tmp/clusterml-slurm}"
CTLD_PORT="${CLUSTERML_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${CLUSTERML_SLURMD_PORT:-6818}"
NODE="${CLUSTERML_SLURM_NODE:-clusterml-node}"
CPUS="${CLUSTERML_SLURM_CPUS:-8}"
TIMEOUT="${CLUSTERML_SLURM_TIMEOUT:-60}"
FIRST_JOB_ID="${CLUSTERML_SLURM_FIRST_JOB_ID:-1}"
PARTITION="debug"

CONF="$DIR/slurm.conf"
PIDS="$DIR/started.pids"
START_NS=$(date +%s%N)

log() { echo "[clusterml-slurm] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (slurmd and munged need it)"
for v in "$CTLD_PORT" "$SLURMD_PORT" "$CPUS" "$TIMEOUT" "$FIRST_JOB_ID"; do
    [[ "$v" =~ ^[0-9]+$ ]] || die "expected a number, got '$v'"
done
[[ "$NODE" =~ ^[A-Za-z0-9_-]+$ ]] || die "bad node name '$NODE'"

# ---------------------------------------------------------------- packages
PKGS=(slurmctld slurmd slurm-client munge libpmix2)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
        log "install failed; running apt-get update and retrying"
        apt-get update >&2
        apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
fi

# ---------------------------------------------------------------- helpers (and common.sh's)
# recorded NAME: the pid start.sh recorded for NAME, if any.
recorded() {
    [[ -f "$PIDS" ]] || return 0
    awk -v n="$1" '$1 == n { p = $2 } END { if (p) print p }' "$PIDS"
}

record() {
    # keep one line per name
    local tmp="$PIDS.tmp"
    { [[ -f "$PIDS" ]] && awk -v n="$1" '$1 != n' "$PIDS"; echo "$1 $2"; } > "$tmp" || true
    mv "$tmp" "$PIDS"
}

mkdir -p "$DIR" "$DIR/state" "$DIR/spool" "$DIR/log"
chmod 0755 "$DIR"

# ---------------------------------------------------------------- munge
munge_ok() { munge -n </dev/null | unmunge >/dev/null; }
if munge_ok 2>/dev/null; then
    log "munged already answering"
else
    id munge >/dev/null 2>&1 || die "user munge missing (is the munge package installed?)"
    [[ -f /etc/munge/munge.key ]] || die "/etc/munge/munge.key missing"
    install -d -o munge -g munge -m 0755 /run/munge
    chown munge:munge /etc/munge/munge.key /var/lib/munge /var/log/munge 2>/dev/null || true
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --force
    wait_for "munged pid file" 10 test -s /run/munge/munged.pid
    record munged "$(pid_from_file /run/munge/munged.pid)"
    wait_for "munged to answer" 10 munge_ok || die "munged does not answer"
    log "started munged (pid $(recorded munged))"
fi

# ---------------------------------------------------------------- slurm.conf
CTLD_PID=$(recorded slurmctld)
SLURMD_PID=$(recorded slurmd)
if alive slurmctld "$CTLD_PID" || alive slurmd "$SLURMD_PID"; then
    log "slurm daemons already running; keeping $CONF"
else
    write_slurm_conf "$CONF" "slurm/dev/start.sh: one node on loopback, no cgroups, no accounting" \
        "$FIRST_JOB_ID" "# Clients: export SLURM_CONF=$CONF
ClusterName=clusterml
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log" <<EOF
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$(hostname -s) CPUs=$CPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES DefaultTime=00:30:00 MaxTime=02:00:00 State=UP
EOF
fi
export SLURM_CONF="$CONF"

# ---------------------------------------------------------------- daemons
if alive slurmctld "$CTLD_PID"; then
    log "slurmctld already running (pid $CTLD_PID)"
else
    rm -f "$DIR/slurmctld.pid"
    # -c: start from a clean state (no jobs survive a restart of the dev Slurm)
    slurmctld -c -f "$CONF"
    wait_for "slurmctld pid file" 15 test -s "$DIR/slurmctld.pid" \
        || die "slurmctld did not start; see $DIR/log/slurmctld.log"
    record slurmctld "$(pid_from_file "$DIR/slurmctld.pid")"
    log "started slurmctld (pid $(recorded slurmctld))"
fi
if alive slurmd "$SLURMD_PID"; then
    log "slurmd already running (pid $SLURMD_PID)"
else
    rm -f "$DIR/slurmd.pid"
    slurmd -f "$CONF" -N "$NODE"
    wait_for "slurmd pid file" 15 test -s "$DIR/slurmd.pid" \
        || die "slurmd did not start; see $DIR/log/slurmd.log"
    record slurmd "$(pid_from_file "$DIR/slurmd.pid")"
    log "started slurmd (pid $(recorded slurmd))"
fi

node_idle() {
    local st
    st=$(sinfo -h -n "$NODE" -o %T 2>/dev/null) || return 1
    # a trailing '*' means "not responding": not good enough
    [[ "$st" =~ ^(idle|mixed|allocated|completing)$ ]]
}
if ! wait_for "node $NODE to become idle (sinfo)" "$TIMEOUT" node_idle; then
    sinfo -N -l >&2 || true
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    die "node $NODE not idle after ${TIMEOUT}s"
fi

END_NS=$(date +%s%N)
log "Slurm up in $(( (END_NS - START_NS) / 1000000 )) ms: node $NODE, partition $PARTITION, ports $CTLD_PORT/$SLURMD_PORT"
echo "export SLURM_CONF=$CONF"
