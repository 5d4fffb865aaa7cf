#!/usr/bin/env bash
# A three-host Slurm cluster on one machine, for tests and trials (root, Linux).
#
#   multihost.sh up [--multihomed]   bring it up; the last line on stdout is "export SLURM_CONF=..."
#   multihost.sh down                end exactly what `up` started; remove every namespace and mount
#   multihost.sh on HOST CMD...      run CMD on host login | node1 | node2, in the caller's folder
#   multihost.sh trap on|off         the multi-homed login host trap (see below), while up
#   multihost.sh status              hosts, daemons, sinfo
#
# Hosts `login`, `node1`, `node2`: each its own network + UTS (hostname) + IPC + mount
# namespace. Their eth0 are veth pairs into a bridge that lives in a namespace of its own,
# addresses $NET.10/.11/.12 exist only inside these namespaces (nothing is routed anywhere
# else: no default route). Each host mounts its own tmpfs on /dev/shm (MPICH/UCX segment
# names must not collide across "nodes") and the one hosts file "$DIR/hosts" on /etc/hosts;
# the rest of the file system is shared, as NFS would be. An own munged (own key and socket,
# slurm.conf AuthInfo=socket=...) and slurmctld run on login; one slurmd per node finds its
# node by hostname (no -N).
#
# The trap (`up --multihomed` or `trap on`): login gets a second interface pub0
# ($PUBNET.10, the "public network") and the hostname `login` resolves to it; the nodes have
# no route to it. Each node gets a `docker0` with the same address ($DOCKNET.1) on both.
#
#   CLUSTERML_MULTIHOST_DIR           state: conf, namespaces, logs, pids [/tmp/clusterml-multihost]
#   CLUSTERML_MULTIHOST_NET           first three octets of the cluster /24       [10.231.17]
#                                     (the trap uses the next two /24s for pub0 and docker0)
#   CLUSTERML_MULTIHOST_CPUS          CPUs each node claims (4 tasks need both)   [2]
#   CLUSTERML_MULTIHOST_FIRST_JOB_ID  FirstJobId                                  [61000000]
#   CLUSTERML_MULTIHOST_TIMEOUT       seconds to wait for idle nodes / job ends   [60]
#
# Namespace names are "cmlmh-<hash of DIR>-<host>", so instances with different DIRs never
# clash with each other or with anything else. Processes started here are recorded in
# "$DIR/started.pids"; `down` also ends the processes left inside these namespaces (a job's
# tasks), found by namespace identity, never by name.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

HOSTS=(login node1 node2)
DIR="${CLUSTERML_MULTIHOST_DIR:-/tmp/clusterml-multihost}"
NET="${CLUSTERML_MULTIHOST_NET:-10.231.17}"
CPUS="${CLUSTERML_MULTIHOST_CPUS:-2}"
FIRST_JOB_ID="${CLUSTERML_MULTIHOST_FIRST_JOB_ID:-61000000}"
TIMEOUT="${CLUSTERML_MULTIHOST_TIMEOUT:-60}"

log() { echo "[multihost] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$NET" =~ ^(10|172|192)\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "CLUSTERML_MULTIHOST_NET=$NET: expected a.b.c of a private range"
(( BASH_REMATCH[3] <= 252 )) || die "CLUSTERML_MULTIHOST_NET=$NET: third octet must leave room for two more /24s"
PUBNET="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.$((BASH_REMATCH[3] + 1))"
DOCKNET="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.$((BASH_REMATCH[3] + 2))"
for v in "$CPUS" "$FIRST_JOB_ID" "$TIMEOUT"; do
    [[ "$v" =~ ^[0-9]+$ ]] || die "expected a number, got '$v'"
done
[[ "$DIR" = /* && "$DIR" != *[[:space:]]* && "$DIR" != / ]] || die "CLUSTERML_MULTIHOST_DIR must be an absolute path without spaces"
DIR="${DIR%/}"
PREFIX="cmlmh-$(printf '%s' "$DIR" | md5sum | cut -c1-8)"
CONF="$DIR/slurm.conf"
PIDS="$DIR/started.pids"
NSDIR="$DIR/ns"

addr_of() { case "$1" in login) echo "$NET.10";; node1) echo "$NET.11";; node2) echo "$NET.12";; esac; }
is_host() { [[ " ${HOSTS[*]} " == *" $1 "* ]]; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ---------------------------------------------------------------- packages
ensure_packages() {
    local p missing=()
    for p in slurmctld slurmd slurm-client munge libpmix2 iproute2 util-linux; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]} (apt-get update first)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

# ---------------------------------------------------------------- helpers (and common.sh's)
record() { echo "$1 $2" >> "$PIDS"; }

# run_on HOST CMD...: CMD in HOST's namespaces, working folder kept (nsenter --wd).
run_on() {
    local h="$1"; shift
    nsenter --net="/run/netns/$PREFIX-$h" --uts="$NSDIR/$h.uts" --ipc="$NSDIR/$h.ipc" \
        --mount="$NSDIR/$h.mnt" --wd="$PWD" -- "$@"
}

write_hosts() {  # write_hosts on|off  (in place: the file is bind-mounted, keep its inode)
    local login_addr="$NET.10"
    [[ "$1" == on ]] && login_addr="$PUBNET.10"
    cat > "$DIR/hosts" <<EOF
# written by clusterml slurm/dev/multihost.sh (trap $1)
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
$login_addr login
$NET.11 node1
$NET.12 node2
EOF
}

# ---------------------------------------------------------------- namespaces
make_host() {  # make_host HOST: persistent net/uts/ipc/mount namespaces, /dev/shm, /etc/hosts
    local h="$1" a
    a=$(addr_of "$h")
    touch "$NSDIR/$h.uts" "$NSDIR/$h.ipc" "$NSDIR/$h.mnt"
    unshare --uts="$NSDIR/$h.uts" --ipc="$NSDIR/$h.ipc" --mount="$NSDIR/$h.mnt" --propagation private \
        sh -c 'hostname "$1" && mount -t tmpfs -o mode=1777,size=1g "cmlmh-shm-$1" /dev/shm \
               && mount --bind "$2" /etc/hosts' sh "$h" "$DIR/hosts"
    ip netns add "$PREFIX-$h"
    ip -n "$PREFIX-br" link add "v-$h" type veth peer name eth0 netns "$PREFIX-$h"
    ip -n "$PREFIX-br" link set "v-$h" master br0 up
    ip -n "$PREFIX-$h" link set lo up
    ip -n "$PREFIX-$h" addr add "$a/24" dev eth0
    ip -n "$PREFIX-$h" link set eth0 up
}

trap_set() {  # trap_set on|off
    if [[ "$1" == on ]]; then
        if ! ip -n "$PREFIX-login" link show pub0 >/dev/null 2>&1; then
            # peer left in the bridge namespace, up but on no bridge: nothing else reaches pub0
            ip -n "$PREFIX-br" link add v-pub type veth peer name pub0 netns "$PREFIX-login"
            ip -n "$PREFIX-br" link set v-pub up
            ip -n "$PREFIX-login" addr add "$PUBNET.10/24" dev pub0
            ip -n "$PREFIX-login" link set pub0 up
        fi
        for h in node1 node2; do
            if ! ip -n "$PREFIX-$h" link show docker0 >/dev/null 2>&1; then
                ip -n "$PREFIX-$h" link add docker0 type bridge
                ip -n "$PREFIX-$h" addr add "$DOCKNET.1/24" dev docker0
                ip -n "$PREFIX-$h" link set docker0 up
            fi
        done
    else
        ip -n "$PREFIX-br" link del v-pub 2>/dev/null || true
        for h in node1 node2; do ip -n "$PREFIX-$h" link del docker0 2>/dev/null || true; done
    fi
    write_hosts "$1"
    echo "$1" > "$DIR/trap"
}

# ---------------------------------------------------------------- daemons
write_conf() {
    write_slurm_conf "$CONF" "slurm/dev/multihost.sh: login + node1 + node2 in network namespaces" \
        "$FIRST_JOB_ID" "# Clients (on login): export SLURM_CONF=$CONF
ClusterName=cmlmh
SlurmctldHost=login($NET.10)
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log" <<EOF
NodeName=node1 NodeAddr=$NET.11 NodeHostname=node1 CPUs=$CPUS State=UNKNOWN
NodeName=node2 NodeAddr=$NET.12 NodeHostname=node2 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES DefaultTime=00:30:00 MaxTime=02:00:00 State=UP
PartitionName=one Nodes=node1 DefaultTime=00:30:00 MaxTime=02:00:00 State=UP
# a node that never comes (no slurmd, no address in use): jobs in "broken" pend for good,
# with reason ReqNodeNotAvail when they ask for it (--nodelist=node3), else Resources
NodeName=node3 NodeAddr=$NET.13 NodeHostname=node3 CPUs=8 State=FUTURE
PartitionName=broken Nodes=node3 DefaultTime=00:30:00 MaxTime=02:00:00 State=UP
EOF
}

start_munged() {
    # as root (like every daemon here): the state folder may sit below a root-only folder
    local m="$DIR/munge"
    install -d -m 0700 "$m"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$m/munge.key" --force
    else
        dd if=/dev/urandom of="$m/munge.key" bs=1024 count=1 status=none
    fi
    chmod 0600 "$m/munge.key"
    run_on login /usr/sbin/munged --force --socket="$m/munge.socket" \
        --key-file="$m/munge.key" --pid-file="$m/munged.pid" --log-file="$m/munged.log" \
        --seed-file="$m/munged.seed"
    wait_for "munged pid file" 10 test -s "$m/munged.pid" || die "munged did not start; see $m/munged.log"
    record munged "$(pid_from_file "$m/munged.pid")"
    wait_for "munged to answer" 10 sh -c 'munge -S "$1" -n </dev/null | unmunge -S "$1"' sh "$m/munge.socket" \
        || die "munged does not answer"
}

node_idle() {
    local st
    st=$(SLURM_CONF="$CONF" run_on login sinfo -h -n "$1" -o %T 2>/dev/null) || return 1
    [[ "$st" =~ ^(idle|mixed|allocated|completing)$ ]]
}

cmd_up() {
    local multihomed=off h t0
    [[ "${1:-}" == "--multihomed" ]] && multihomed=on
    [[ -z "${1:-}" || "$multihomed" == on ]] || die "up: unknown option '$1'"
    t0=$(now_ms)
    if [[ -f "$DIR/up" ]]; then
        if alive slurmctld "$(pid_from_file "$DIR/run/slurmctld.pid")"; then
            log "already up ($DIR)"
            [[ "$multihomed" == off ]] || trap_set on
            echo "export SLURM_CONF=$CONF"
            return 0
        fi
        log "a previous instance in $DIR is half up: taking it down first"
        cmd_down
    fi
    ensure_packages
    t0=$(now_ms)
    [[ ! -e "$DIR" ]] || [[ -d "$DIR" ]] || die "$DIR exists and is not a folder"
    mkdir -p "$DIR"
    chmod 0755 "$DIR"
    : > "$DIR/up"
    : > "$PIDS"
    # a failure below takes down whatever was started so far
    trap 'log "up failed: taking down what it started"; cmd_down' EXIT
    mkdir -p "$DIR/state" "$DIR/run" "$DIR/log" "$NSDIR"
    for h in node1 node2; do mkdir -p "$DIR/spool/$h"; done
    # the namespace files live on a private mount (as /run/netns for `ip netns`)
    mount --bind "$NSDIR" "$NSDIR"
    mount --make-private "$NSDIR"
    write_hosts off
    ip netns add "$PREFIX-br"
    ip -n "$PREFIX-br" link set lo up
    ip -n "$PREFIX-br" link add br0 type bridge
    ip -n "$PREFIX-br" link set br0 up
    for h in "${HOSTS[@]}"; do make_host "$h"; done
    trap_set "$multihomed"
    write_conf
    start_munged
    run_on login slurmctld -c -f "$CONF"
    wait_for "slurmctld pid file" 15 test -s "$DIR/run/slurmctld.pid" \
        || die "slurmctld did not start; see $DIR/log/slurmctld.log"
    record slurmctld "$(pid_from_file "$DIR/run/slurmctld.pid")"
    for h in node1 node2; do
        run_on "$h" slurmd -f "$CONF"
        wait_for "slurmd on $h" 15 test -s "$DIR/run/slurmd-$h.pid" \
            || die "slurmd on $h did not start; see $DIR/log/slurmd-$h.log"
        record slurmd "$(pid_from_file "$DIR/run/slurmd-$h.pid")"
    done
    for h in node1 node2; do
        if ! wait_for "node $h to become idle" "$TIMEOUT" node_idle "$h"; then
            tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd-$h.log" >&2 || true
            die "node $h not idle after ${TIMEOUT}s"
        fi
    done
    trap - EXIT
    log "up in $(( $(now_ms) - t0 )) ms: login $NET.10, node1 $NET.11, node2 $NET.12 (namespaces $PREFIX-*), trap $multihomed"
    echo "export SLURM_CONF=$CONF"
}

# ---------------------------------------------------------------- down
ns_pids() {  # pids of processes in any of our network namespaces (one find, no fork per pid)
    local h ino want=""
    for h in "${HOSTS[@]}" br; do
        [[ -e "/run/netns/$PREFIX-$h" ]] || continue
        ino=$(stat -L -c %i "/run/netns/$PREFIX-$h" 2>/dev/null) || continue
        want+=" net:[$ino]"
    done
    [[ -n "$want" ]] || return 0
    # find fails on processes that end meanwhile: not an error here (pipefail)
    { find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%l %p\n' 2>/dev/null || true; } | awk -v want="$want" '
        BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) ok[w[i]] = 1 }
        ($1 in ok) { split($2, a, "/"); printf "%s ", a[3] }'
}

stop_group() {  # stop_group NAME...: TERM the recorded daemons of these names at once, then wait
    local name pid i
    local -a names=() pids=()
    while read -r name pid; do
        [[ " $* " == *" $name "* ]] && alive "$name" "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        names+=("$name"); pids+=("$pid")
    done < "$PIDS"
    for i in "${!pids[@]}"; do
        wait_for "${names[$i]} (pid ${pids[$i]}) to end" "$TIMEOUT" eval "! alive ${names[$i]} ${pids[$i]}" && continue
        log "${names[$i]} (pid ${pids[$i]}) ignored SIGTERM; SIGKILL"
        kill -KILL "${pids[$i]}" 2>/dev/null || true
    done
}

cmd_down() {
    local t0 h name pid jobs left i
    t0=$(now_ms)
    if [[ ! -d "$DIR" ]]; then log "nothing to do: no $DIR"; return 0; fi
    # 1. cancel this Slurm's jobs while slurmctld still runs
    if [[ -f "$PIDS" ]] && alive slurmctld "$(awk '$1 == "slurmctld" {print $2}' "$PIDS" | tail -1)"; then
        jobs=$(SLURM_CONF="$CONF" run_on login squeue -h -o %i 2>/dev/null || true)
        if [[ -n "$jobs" ]]; then
            log "cancelling jobs: $(echo $jobs)"
            # shellcheck disable=SC2086
            SLURM_CONF="$CONF" run_on login scancel $jobs || true
            for ((i = 0; i < TIMEOUT * 5; i++)); do
                [[ -z "$(SLURM_CONF="$CONF" run_on login squeue -h -o %i 2>/dev/null || true)" ]] && break
                sleep 0.2
            done
        fi
    fi
    # 2. the daemons `up` recorded (checked by name, so a reused pid is never hit)
    if [[ -f "$PIDS" ]]; then
        stop_group slurmd slurmctld munged  # at once: each takes 1-2 s to exit
    fi
    # 3. whatever is still inside these namespaces (a job's stray tasks)
    left=$(ns_pids)
    if [[ -n "$left" ]]; then
        log "ending processes left in the namespaces: $left"
        # shellcheck disable=SC2086
        kill -TERM $left 2>/dev/null || true
        sleep 1
        left=$(ns_pids)
        # shellcheck disable=SC2086
        [[ -z "$left" ]] || kill -KILL $left 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do [[ -z "$(ns_pids)" ]] && break; sleep 0.1; done
    fi
    # 4. namespaces and mounts
    for h in "${HOSTS[@]}" br; do
        ip netns del "$PREFIX-$h" 2>/dev/null || true
    done
    for h in "${HOSTS[@]}"; do
        for f in uts ipc mnt; do
            mountpoint -q "$NSDIR/$h.$f" 2>/dev/null && umount "$NSDIR/$h.$f"
            [[ -f "$NSDIR/$h.$f" ]] && rm -f "$NSDIR/$h.$f"
        done
    done
    if mountpoint -q "$NSDIR" 2>/dev/null; then umount "$NSDIR"; fi
    rm -f "$DIR/up" "$PIDS"
    log "down in $(( $(now_ms) - t0 )) ms ($DIR)"
}

cmd_on() {
    local h="${1:-}"
    is_host "$h" || die "on: expected a host (${HOSTS[*]}), got '$h'"
    shift
    (($#)) || die "on $h: no command"
    [[ -f "$DIR/up" && -e "$NSDIR/$h.mnt" ]] || die "not up ($DIR): run multihost.sh up first"
    export SLURM_CONF="${SLURM_CONF:-$CONF}"
    run_on "$h" "$@"
}

cmd_status() {
    [[ -f "$DIR/up" ]] || { echo "down ($DIR)"; return 1; }
    echo "up ($DIR), namespaces $PREFIX-{login,node1,node2,br}, trap $(cat "$DIR/trap" 2>/dev/null)"
    cat "$PIDS"
    SLURM_CONF="$CONF" run_on login sinfo -N
}

[[ "$(id -u)" == 0 ]] || die "run as root (namespaces, slurmd and munged need it)"
case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    on) shift; cmd_on "$@" ;;
    trap)
        [[ "${2:-}" =~ ^(on|off)$ ]] || die "trap: expected on or off"
        [[ -f "$DIR/up" ]] || die "not up ($DIR)"
        trap_set "$2"; log "trap $2" ;;
    status) cmd_status ;;
    *) sed -n '2,8p' "$0"; exit 2 ;;
esac
