#!/usr/bin/env bash
# Stop the dev Slurm started by slurm/dev/start.sh.
#
# Cancels the jobs of that Slurm, then ends exactly the processes start.sh
# recorded in "$CLUSTERML_SLURM_DIR/started.pids" (checking each pid still
# runs the program that was recorded), and nothing else.
#   CLUSTERML_SLURM_DIR   [/tmp/clusterml-slurm]
#   CLUSTERML_SLURM_STOP_TIMEOUT seconds to wait per step [20]
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # alive

DIR="${CLUSTERML_SLURM_DIR:-/tmp/clusterml-slurm}"
TIMEOUT="${CLUSTERML_SLURM_STOP_TIMEOUT:-20}"
CONF="$DIR/slurm.conf"
PIDS="$DIR/started.pids"

log() { echo "[clusterml-slurm] $*" >&2; }

if [[ ! -f "$PIDS" ]]; then
    log "nothing recorded in $PIDS; nothing to stop"
    exit 0
fi

recorded() { awk -v n="$1" '$1 == n { p = $2 } END { if (p) print p }' "$PIDS"; }

# wait_gone NAME PID SECONDS
wait_gone() {
    local deadline=$(( $(date +%s) + $3 ))
    while alive "$1" "$2"; do
        (( $(date +%s) < deadline )) || return 1
        sleep 0.1
    done
}

# 1. cancel this Slurm's jobs while slurmctld is still up, so slurmd can
#    take down the job steps (slurmstepd and the tasks) it started.
CTLD_PID=$(recorded slurmctld)
if alive slurmctld "$CTLD_PID" && [[ -f "$CONF" ]]; then
    export SLURM_CONF="$CONF"
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [[ -n "$jobs" ]]; then
        log "cancelling jobs: $(echo $jobs)"
        # shellcheck disable=SC2086
        scancel $jobs || true
        deadline=$(( $(date +%s) + TIMEOUT ))
        while [[ -n "$(squeue -h -o %i 2>/dev/null || true)" ]]; do
            if (( $(date +%s) >= deadline )); then
                log "jobs still listed after ${TIMEOUT}s: $(squeue -h -o '%i %T' | tr '\n' ' ')"
                break
            fi
            sleep 0.2
        done
    fi
fi

# 2. end the daemons: slurmd and slurmctld together, munged last
status=0
stop_group() {
    local name pid
    local -a names=() pids=()
    for name in "$@"; do
        pid=$(recorded "$name")
        [[ -n "$pid" ]] || continue
        if ! alive "$name" "$pid"; then
            log "$name (pid $pid) already gone"
            continue
        fi
        kill -TERM "$pid" 2>/dev/null || true
        names+=("$name"); pids+=("$pid")
    done
    local i
    for i in "${!pids[@]}"; do
        name=${names[$i]}; pid=${pids[$i]}
        if ! wait_gone "$name" "$pid" "$TIMEOUT"; then
            log "$name (pid $pid) ignored SIGTERM for ${TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$name" "$pid" 5 || { log "$name (pid $pid) survives"; status=1; continue; }
        fi
        log "stopped $name (pid $pid)"
    done
}
stop_group slurmd slurmctld
stop_group munged

if (( status == 0 )); then
    rm -f "$PIDS"
fi
exit "$status"
