# shellcheck shell=bash
# A private single-node SLURM on localhost for tests: munged, MariaDB, slurmdbd, slurmctld and slurmd.
#
# Source this file, then `slurm_start STATE_DIR` and (in an EXIT trap) `slurm_stop`. Everything lives
# under STATE_DIR (configs, keys, database, spool, logs); the only trace outside it is a link at
# /etc/slurm/slurm.conf, made only where none exists and removed by slurm_stop. Each daemon runs in the
# foreground of a background job whose PID is recorded, so slurm_stop ends exactly the daemons
# slurm_start began. Every wait is bounded; a daemon that dies or never gets ready stops the start with
# its log tail. Needs root and the Debian 12 packages slurmctld slurmd slurmdbd slurm-client munge
# mariadb-server (installed by .ci/slurm.sh).

SLURM_TEST_CLUSTER=preimage
SLURM_TEST_ACCOUNT=preimage
# A second, non-default partition: jobs landing there prove the profile's partition setting is used.
SLURM_TEST_PARTITION=preimage
SLURM_TEST_DB_PORT=${SLURM_TEST_DB_PORT:-23306}
SLURM_TEST_PORTS=(6817 6818 6819 "$SLURM_TEST_DB_PORT")
SLURM_TEST_READY_TIMEOUT=${SLURM_TEST_READY_TIMEOUT:-60}

# srun inside a job reads the default path only: the jobstep plugin strips SLURM_* (SLURM_CONF too)
# from the environment of its nested srun. slurm_start links it to the private config while it runs.
SLURM_TEST_DEFAULT_CONF=/etc/slurm/slurm.conf

_slurm_pids=()   # "name:pid", in start order
_slurm_state=""
_slurm_linked_conf=""

_slurm_die() {
    echo "slurm test cluster: $*" >&2
    return 1
}

_slurm_log_tail() {
    local log=$1
    [[ -f $log ]] && { echo "--- last lines of $log:" >&2; tail -n 25 "$log" >&2; }
    return 0
}

# Start "$@" as daemon NAME in the background, output to STATE/log/NAME.log, and record its PID.
_slurm_spawn() {
    local name=$1
    shift
    "$@" >"$_slurm_state/log/$name.log" 2>&1 &
    _slurm_pids+=("$name:$!")
}

_slurm_pid_of() {
    local entry
    for entry in "${_slurm_pids[@]}"; do
        [[ ${entry%%:*} == "$1" ]] && { echo "${entry#*:}"; return 0; }
    done
    return 1
}

# Wait until command "$@" succeeds, at most SLURM_TEST_READY_TIMEOUT seconds, while daemon NAME stays alive.
# Each probe gets a few seconds of its own: SLURM clients can hang on a daemon that is half up.
_slurm_wait_ready() {
    local name=$1 what=$2
    shift 2
    local pid deadline=$((SECONDS + SLURM_TEST_READY_TIMEOUT))
    pid=$(_slurm_pid_of "$name")
    until timeout 10 "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            _slurm_log_tail "$_slurm_state/log/$name.log"
            _slurm_die "$name exited before $what"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            _slurm_log_tail "$_slurm_state/log/$name.log"
            _slurm_die "$name: no $what within ${SLURM_TEST_READY_TIMEOUT}s"
            return 1
        fi
        sleep 0.5
    done
}

_slurm_preflight() {
    local cmd port
    [[ $(id -u) == 0 ]] || { _slurm_die "must run as root (daemons switch to the slurm, munge and mysql users)"; return 1; }
    for cmd in munged munge unmunge mariadb-install-db mariadbd mariadb slurmdbd slurmctld slurmd sacctmgr \
        sbatch sacct scontrol sinfo squeue scancel setpriv; do
        command -v "$cmd" >/dev/null || { _slurm_die "'$cmd' not found; run .ci/slurm.sh or install slurmctld slurmd slurmdbd slurm-client munge mariadb-server"; return 1; }
    done
    for user in slurm munge mysql; do
        id "$user" >/dev/null 2>&1 || { _slurm_die "system user '$user' missing; are the packages installed?"; return 1; }
    done
    getent hosts "$(hostname -s)" >/dev/null ||
        { _slurm_die "host name '$(hostname -s)' does not resolve; SLURM's NodeName must resolve (add it to /etc/hosts)"; return 1; }
    if [[ -e $SLURM_TEST_DEFAULT_CONF || -L $SLURM_TEST_DEFAULT_CONF ]]; then
        _slurm_die "$SLURM_TEST_DEFAULT_CONF exists; this test brings its own cluster and will not replace a real configuration"
        return 1
    fi
    for port in "${SLURM_TEST_PORTS[@]}"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            _slurm_die "port $port on localhost is in use (another SLURM or database running?); stop it or set SLURM_TEST_DB_PORT"
            return 1
        fi
    done
}

_slurm_write_configs() {
    local s=$_slurm_state node=$1 node_hw=$2 cpus=$3 memory=$4 db_password=$5
    cat >"$s/etc/slurm.conf" <<EOF
ClusterName=$SLURM_TEST_CLUSTER
SlurmctldHost=$node
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=socket=$s/munge/munge.socket
StateSaveLocation=$s/ctld
SlurmdSpoolDir=$s/slurmd
SlurmctldPidFile=$s/run/slurmctld.pid
SlurmdPidFile=$s/run/slurmd.pid
# No systemd and no cgroups in containers: track processes by parent PID.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that gives no --mem would take the whole node's memory.
DefMemPerCPU=$((memory / cpus))
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# slurm.conf's AuthInfo does not reach connections to slurmdbd; this names their munge socket.
AccountingStoragePass=$s/munge/munge.socket
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
GresTypes=gpu
$node_hw Gres=gpu:fake:1 State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=$SLURM_TEST_PARTITION Nodes=$node Default=NO MaxTime=INFINITE State=UP
EOF
    # A fake GPU: SLURM only needs a character device to hand out; it then sets CUDA_VISIBLE_DEVICES.
    cat >"$s/etc/gres.conf" <<EOF
NodeName=$node Name=gpu Type=fake File=/dev/null
EOF
    cat >"$s/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$s/munge/munge.socket
DbdHost=localhost
SlurmUser=slurm
PidFile=$s/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$SLURM_TEST_DB_PORT
StorageUser=slurm
StoragePass=$db_password
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm "$s/etc/slurmdbd.conf"
    chmod 600 "$s/etc/slurmdbd.conf"
}

_slurm_start_munge() {
    local m=$_slurm_state/munge
    install -d -o munge -g munge -m 0755 "$m"
    head -c 1024 /dev/urandom >"$m/munge.key"
    chown munge:munge "$m/munge.key"
    chmod 0400 "$m/munge.key"
    # munged refuses to run as root.
    _slurm_spawn munged setpriv --reuid=munge --regid=munge --clear-groups \
        munged --foreground --key-file="$m/munge.key" --socket="$m/munge.socket" \
        --pid-file="$m/munged.pid" --seed-file="$m/munged.seed" --log-file="$m/munged.log"
    _slurm_wait_ready munged "credential round trip" \
        bash -c "munge -n -S '$m/munge.socket' | unmunge -S '$m/munge.socket'"
}

_slurm_start_mariadb() {
    local db=$_slurm_state/mysql db_password=$1
    timeout 60 mariadb-install-db --no-defaults --user=mysql --datadir="$db" --auth-root-authentication-method=socket \
        --skip-test-db >"$_slurm_state/log/mariadb-install-db.log" 2>&1 ||
        { _slurm_log_tail "$_slurm_state/log/mariadb-install-db.log"; _slurm_die "mariadb-install-db failed"; return 1; }
    _slurm_spawn mariadbd mariadbd --no-defaults --user=mysql --datadir="$db" --socket="$db/mysqld.sock" \
        --pid-file="$db/mysqld.pid" --bind-address=127.0.0.1 --port="$SLURM_TEST_DB_PORT" --skip-name-resolve
    _slurm_wait_ready mariadbd "answer to ping" mariadb-admin --no-defaults --socket="$db/mysqld.sock" ping
    timeout 30 mariadb --no-defaults --socket="$db/mysqld.sock" -e \
        "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$db_password';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" ||
        { _slurm_die "could not create the database user for slurmdbd"; return 1; }
}

_slurm_register_accounts() {
    if ! { timeout 30 sacctmgr -i add cluster "$SLURM_TEST_CLUSTER" &&
        timeout 30 sacctmgr -i add account "$SLURM_TEST_ACCOUNT" Description=tests Organization=preimage &&
        timeout 30 sacctmgr -i add user "$(id -un)" Account="$SLURM_TEST_ACCOUNT"; } >/dev/null; then
        _slurm_die "sacctmgr could not register cluster, account and user"
        return 1
    fi
}

# Start the cluster with its state in $1 (created if missing). Exports SLURM_CONF for clients.
slurm_start() {
    _slurm_state=$(realpath -m "$1")
    local node node_hw cpus memory db_password
    _slurm_preflight || return 1
    node=$(hostname -s)
    node_hw=$(slurmd -C | head -n 1)
    cpus=$(sed -E 's/.*CPUs=([0-9]+).*/\1/' <<<"$node_hw")
    memory=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$node_hw")
    db_password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

    install -d -m 0755 "$_slurm_state" "$_slurm_state/etc" "$_slurm_state/log" "$_slurm_state/slurmd"
    install -d -o slurm -g slurm -m 0755 "$_slurm_state/ctld" "$_slurm_state/run"
    setpriv --reuid=munge --regid=munge --clear-groups test -x "$_slurm_state" ||
        { _slurm_die "$_slurm_state is not reachable by the daemon users; give its parents o+x"; return 1; }
    _slurm_write_configs "$node" "$node_hw" "$cpus" "$memory" "$db_password"
    export SLURM_CONF=$_slurm_state/etc/slurm.conf
    install -d -m 0755 "$(dirname "$SLURM_TEST_DEFAULT_CONF")"
    ln -s "$SLURM_CONF" "$SLURM_TEST_DEFAULT_CONF"
    _slurm_linked_conf=$SLURM_CONF

    _slurm_start_munge || return 1
    _slurm_start_mariadb "$db_password" || return 1
    _slurm_spawn slurmdbd slurmdbd -D
    _slurm_wait_ready slurmdbd "connection from sacctmgr" sacctmgr -n list cluster || return 1
    _slurm_register_accounts || return 1
    _slurm_spawn slurmctld slurmctld -D
    _slurm_wait_ready slurmctld "answer to scontrol ping" bash -c "scontrol ping | grep -q UP" || return 1
    _slurm_spawn slurmd slurmd -D
    # shellcheck disable=SC2016  # the probe's own shell expands it
    _slurm_wait_ready slurmd "idle node $node" \
        bash -c '[[ $(sinfo -h -N -n "$0" -p main -o %t) == idle ]]' "$node" || return 1
    echo "slurm test cluster: up on $node ($cpus CPUs, ${memory} MB, 1 fake GPU), state in $_slurm_state"
}

# Cancel the cluster's jobs, then end every daemon slurm_start began, newest first. Safe under `set -e`
# in an EXIT trap: nothing here may stop it halfway.
slurm_stop() {
    local i name pid deadline
    if _slurm_pid_of slurmctld >/dev/null && kill -0 "$(_slurm_pid_of slurmctld)" 2>/dev/null; then
        timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
        deadline=$((SECONDS + 30))
        while [[ -n $(timeout 5 squeue -h -o %i 2>/dev/null) ]] && ((SECONDS < deadline)); do sleep 0.5; done
    fi
    for ((i = ${#_slurm_pids[@]} - 1; i >= 0; i--)); do
        name=${_slurm_pids[i]%%:*}
        pid=${_slurm_pids[i]#*:}
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 15))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm test cluster: $name (pid $pid) ignored SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    _slurm_pids=()
    if [[ -n $_slurm_linked_conf && $(readlink "$SLURM_TEST_DEFAULT_CONF") == "$_slurm_linked_conf" ]]; then
        rm -f "$SLURM_TEST_DEFAULT_CONF"
    fi
    _slurm_linked_conf=""
}
