# Sourced by slurm/dev/start.sh (one node on loopback) and slurm/dev/multihost.sh (login +
# node1 + node2 in network namespaces): what both dev clusters share. Not run on its own.
#
# The caller defines log (its own prefix) before calling wait_for.

# alive NAME PID: the pid exists and its command name is NAME.
alive() {
    [[ -n "${2:-}" && -r "/proc/$2/comm" && "$(cat "/proc/$2/comm" 2>/dev/null)" == "$1" ]]
}

# pid_from_file FILE: the digits of a pid file, or nothing.
pid_from_file() { [[ -f "$1" ]] && tr -dc '0-9' < "$1" || true; }

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
    local what="$1" secs="$2"; shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) >= deadline )); then
            log "gave up after ${secs}s waiting for: $what"
            return 1
        fi
        sleep 0.1
    done
}

# write_slurm_conf FILE WRITER FIRST_JOB_ID [HEAD]: write FILE (through FILE.tmp, so a reader
# never sees half of it). HEAD is the cluster's own part: name, controller host, ports or
# munge socket, state / spool / pid / log paths; the node and partition lines come on stdin.
# Between them go the settings that made Slurm work here without cgroups or accounting:
# root daemons, linuxproc tracking, no task plugin,
# CPU-only consumable resources, pmi2 by default, impossible requests refused at once
# (EnforcePartLimits=ALL), node CPUs from slurm.conf rather than the real cores.
write_slurm_conf() {
    local file="$1" writer="$2" first_job_id="$3" head="${4:-}"
    [[ "$first_job_id" =~ ^[0-9]+$ ]] || { log "ERROR: FirstJobId '$first_job_id' is not a number"; return 1; }
    {
        echo "# Written by clusterml $writer."
        printf '%s\n' "$head"
        cat <<EOF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmi2
EnforcePartLimits=ALL
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
InactiveLimit=0
MinJobAge=30
FirstJobId=$first_job_id
EOF
        cat
    } > "$file.tmp"
    mv "$file.tmp" "$file"
}
