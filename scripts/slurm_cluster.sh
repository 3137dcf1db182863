#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for testing the slurm profile (Debian, as root).
#
#   scripts/slurm_cluster.sh start    install slurm-wlm, slurmdbd, munge, mariadb-server if missing; start the daemons
#   scripts/slurm_cluster.sh status   the daemons this script started, and sinfo
#   scripts/slurm_cluster.sh stop     cancel the cluster's jobs, stop exactly the daemons `start` started
#
# Everything (configs, munge key, database, spool, logs, pid files) lives in $SLURM_CLUSTER_DIR
# (default /tmp/tbdencoder-slurm). The configs are linked into /etc/slurm while the cluster runs, since
# clients inside jobs only look there (snakemake's job step drops SLURM_CONF); an /etc/slurm/slurm.conf
# of a real installation is never touched. Every daemon listens on 127.0.0.1 only: slurmctld 6817, slurmd 6818,
# slurmdbd 6819, mariadb 6820. Accounting is on (slurmdbd + mariadb), so `sacct` works as on a real
# cluster, with each job's rule in its comment and its batch environment kept (`sacct --env-vars -j ID`).
set -euo pipefail

DIR=${SLURM_CLUSTER_DIR:-/tmp/tbdencoder-slurm}
CLUSTER=tbdtest
PARTITION=debug
ACCOUNT=tbdtest
CTLD_PORT=6817 SLURMD_PORT=6818 DBD_PORT=6819 DB_PORT=6820
DB_PASSWORD=slurm-test-only
ETC=/etc/slurm
# start order; stop goes backwards
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { echo "slurm_cluster: $*" >&2; }

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v munged >/dev/null || missing+=(munge)
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    [[ ${#missing[@]} -eq 0 ]] && return
    log "installing ${missing[*]}"
    # keep the packages' init scripts from starting system-wide daemons: we start our own below
    local policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pidfile() { echo "$DIR/run/$1.pid"; }

# pid of a daemon this script started, if it is still running
running_pid() {
    local file pid
    file=$(pidfile "$1")
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ -n $pid && -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$1" ]] || return 1
    echo "$pid"
}

# run a daemon (unless it runs already) in the foreground of a new session, logging to $DIR/log/NAME.log;
# remember its pid
launch() {
    local name=$1
    shift
    running_pid "$name" >/dev/null && return
    setsid "$@" </dev/null >>"$DIR/log/$name.log" 2>&1 &
    echo $! >"$(pidfile "$name")"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "timed out waiting for $what; logs in $DIR/log"
            tail -n 20 "$DIR"/log/* >&2 || true
            return 1
        fi
        sleep 1
    done
}

write_configs() {
    mkdir -p "$DIR"/{etc,run,log,munge,mysql,ctld,slurmd}
    # the node as slurmd sees this machine (CPUs, sockets, cores, threads, memory), named localhost
    local node
    node=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]*//')
    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
MailProg=/bin/true
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$DIR/munge/munge.socket
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment,job_env
JobAcctGatherType=jobacct_gather/linux
NodeName=localhost NodeAddr=127.0.0.1$node State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
CommunicationParameters=NoInAddrAny
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
    mkdir -p "$ETC"
    for conf in slurm.conf slurmdbd.conf; do
        if [[ -e $ETC/$conf && ! -L $ETC/$conf ]]; then
            log "$ETC/$conf belongs to another SLURM installation; not starting"
            exit 1
        fi
        ln -sfn "$DIR/etc/$conf" "$ETC/$conf"
    done
}

unlink_configs() {
    local conf
    for conf in slurm.conf slurmdbd.conf; do
        if [[ $(readlink "$ETC/$conf") == "$DIR/etc/$conf" ]]; then rm "$ETC/$conf"; fi
    done
}

sql() { mariadb --no-defaults --socket="$DIR/mysql.sock" -u root "$@"; }
node_idle() { [[ $(sinfo --noheader --nodes=localhost --format=%t) == idle ]]; }
no_jobs() { [[ -z $(squeue --noheader) ]]; }

start() {
    if running_pid slurmd >/dev/null; then
        log "already running"
        status
        return
    fi
    [[ $(id -u) -eq 0 ]] || { log "must run as root"; exit 1; }
    install_packages
    write_configs

    [[ -f $DIR/munge/munge.key ]] || mungekey --create --keyfile="$DIR/munge/munge.key"
    launch munged munged --foreground --force --key-file="$DIR/munge/munge.key" \
        --socket="$DIR/munge/munge.socket" --seed-file="$DIR/munge/munge.seed" \
        --pid-file="$DIR/run/munged.pid"
    wait_for 20 munged munge --socket="$DIR/munge/munge.socket" --no-input

    if [[ ! -d $DIR/mysql/mysql ]]; then
        mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql" --skip-test-db >"$DIR/log/mariadb-install.log"
    fi
    launch mariadbd mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$DIR/mysql.sock" \
        --bind-address=127.0.0.1 --port=$DB_PORT --pid-file="$DIR/run/mariadbd.pid" \
        --innodb-lock-wait-timeout=900 --innodb-log-file-size=16M
    wait_for 60 mariadbd sql -e "SELECT 1"
    sql -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

    launch slurmdbd slurmdbd -D
    wait_for 60 slurmdbd sacctmgr --noheader list cluster
    if [[ -z $(sacctmgr --noheader --parsable2 list cluster "$CLUSTER" format=cluster) ]]; then
        sacctmgr --immediate add cluster "$CLUSTER" >/dev/null
        sacctmgr --immediate add account "$ACCOUNT" cluster="$CLUSTER" description=tests organization=tests >/dev/null
        sacctmgr --immediate add user "$(id -un)" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
    fi

    launch slurmctld slurmctld -D
    wait_for 60 slurmctld scontrol ping
    launch slurmd slurmd -D -N localhost
    wait_for 120 "the node to be idle" node_idle
    log "up: partition $PARTITION, account $ACCOUNT"
}

status() {
    local name pid
    for name in "${DAEMONS[@]}"; do
        if pid=$(running_pid "$name"); then echo "$name: running (pid $pid)"; else echo "$name: not running"; fi
    done
    if running_pid slurmctld >/dev/null; then sinfo; fi
}

stop() {
    local name pid i
    if running_pid slurmctld >/dev/null; then
        squeue --noheader --format=%A | xargs --no-run-if-empty scancel || true
        wait_for 30 "jobs to end" no_jobs || true
    fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[i]}
        if pid=$(running_pid "$name"); then
            kill "$pid"
            for _ in $(seq 30); do [[ -d /proc/$pid ]] || break; sleep 1; done
            if [[ -d /proc/$pid ]]; then kill -KILL "$pid"; fi
            log "stopped $name (pid $pid)"
        fi
        rm -f "$(pidfile "$name")"
    done
    unlink_configs
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
