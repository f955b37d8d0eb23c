#!/usr/bin/env bash
# Installs, starts and stops real registry servers (ZooKeeper, etcd, Redis) on 127.0.0.1 for the
# tests. Every server runs in the background with its own directory under the run dir, and every
# command is bounded in time.
#
#   scripts/registry-servers.sh install                    apt-get what is missing, stop package services
#   scripts/registry-servers.sh free-port [N]              P such that P..P+N-1 are free (and reserved)
#   scripts/registry-servers.sh start zookeeper NAME --port P [--tick-ms 500] [--min-session-ms M] [--max-session-ms M]
#   scripts/registry-servers.sh start zookeeper-ensemble NAME --base-port P [same ZK options]
#                                                          uses P..P+8 (client P..P+2), nodes NAME-1..NAME-3
#   scripts/registry-servers.sh start etcd NAME --port P [--peer-port Q]      peer port defaults to P+1
#   scripts/registry-servers.sh start etcd-cluster NAME --base-port P         uses P..P+5 (client P..P+2),
#                                                          nodes NAME-1..NAME-3
#   scripts/registry-servers.sh start redis NAME --port P
#   scripts/registry-servers.sh stop NAME                  a server, one cluster node (NAME-2) or a whole cluster
#   scripts/registry-servers.sh start-node NAME            start a stopped server or node again, same data
#   scripts/registry-servers.sh restart NAME               stop, then start again with the same config and data
#   scripts/registry-servers.sh pause NAME | resume NAME   SIGSTOP / SIGCONT: the server hangs, unreachable
#   scripts/registry-servers.sh expire-sessions NAME [--wait-ms MS]   a standalone ZooKeeper expires every
#                                                          session (see the function for why not a restart)
#   scripts/registry-servers.sh stop-all                   every server under the run dir
#   scripts/registry-servers.sh status                     one line per server or node: running or stopped
#   scripts/registry-servers.sh addr NAME | env NAME       its address(es) / its env file
#   scripts/registry-servers.sh wait NAME [TIMEOUT]        until it (every running node) answers
#   scripts/registry-servers.sh zkcli HOST:PORT CMD...     zkCli.sh without its banner and SLF4J noise
#   scripts/registry-servers.sh paths                      where zkCli.sh, etcdctl and redis-cli are
#
# Start options: --timeout S bounds the wait until the server answers (default 30 s, 60 s for
# clusters); start-node, restart and wait take a timeout too. `start` prints the address on stdout
# (host:port; comma-separated for clusters) and writes RUN/NAME/env. A fresh `start` wipes that
# name's old data dir. RUN is ${TETHER_RUN_DIR:-/tmp/tether-servers}. ZooKeeper's JVM flags:
# TETHER_ZK_JVM_FLAGS. Seconds between SIGTERM and SIGKILL on stop: TETHER_STOP_GRACE (5).
set -euo pipefail

RUN_DIR=${TETHER_RUN_DIR:-/tmp/tether-servers}
HOST=127.0.0.1
ZK_BIN=/usr/share/zookeeper/bin
ZK_CONF=/etc/zookeeper/conf
ZK_JVM_FLAGS=${TETHER_ZK_JVM_FLAGS:--Xms16m -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -XX:-UsePerfData}
STOP_GRACE=${TETHER_STOP_GRACE:-5}
# Seconds `install` waits for another apt-get or dpkg to release the package manager's locks.
LOCK_WAIT=${TETHER_APT_LOCK_WAIT:-300}

die() { echo "registry-servers: $*" >&2; exit 1; }
# Exit status 75 (EX_TEMPFAIL): a port was taken by something else; `start` with other ports may
# succeed, and the tests' harness does exactly that.
die_busy() { echo "registry-servers: $*" >&2; exit 75; }
note() { echo "registry-servers: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# install

PACKAGES=(zookeeper etcd-server etcd-client redis-server redis-tools protobuf-compiler libprotobuf-dev)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

cmd_install() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
        # Installing packages takes root: go through sudo when it can run without a password.
        command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
            die "missing ${missing[*]}: run 'sudo $0 install' once, or install them with apt-get"
        exec sudo -n bash "$0" install
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        note "installing ${missing[*]}"
        # Never let a package start its own service on the default ports: tests start their own.
        local policy=/usr/sbin/policy-rc.d own_policy=false
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=true
        fi
        export DEBIAN_FRONTEND=noninteractive
        # Another apt-get or dpkg (an unattended upgrade, a second job) may hold the package
        # manager's locks: apt waits for them up to LOCK_WAIT s, and a run that still found them
        # taken is tried again, until LOCK_WAIT s have passed in all.
        local apt_opts=(-q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold
            -o DPkg::Lock::Timeout="$LOCK_WAIT")
        local out rc deadline=$((SECONDS + LOCK_WAIT))
        out=$(mktemp)
        while :; do
            rc=0
            {
                timeout $((LOCK_WAIT + 300)) apt-get "${apt_opts[@]}" update &&
                    timeout $((LOCK_WAIT + 600)) apt-get "${apt_opts[@]}" install -y \
                        --no-install-recommends "${missing[@]}"
            } </dev/null >"$out" 2>&1 || rc=$?
            [ $rc -ne 0 ] && grep -qiE 'could not get lock|unable to acquire|is another process using it' "$out" &&
                [ $SECONDS -lt $deadline ] || break
            note "the package manager is busy; trying again in 5 s"
            sleep 5
        done
        $own_policy && rm -f "$policy"
        if [ $rc -ne 0 ]; then cat "$out" >&2; rm -f "$out"; die "apt-get failed ($rc)"; fi
        rm -f "$out"
    fi
    stop_system_services
    [ -x "$ZK_BIN/zkCli.sh" ] || die "zkCli.sh not found in $ZK_BIN"
    command -v etcdctl >/dev/null || die "etcdctl not found"
    command -v redis-cli >/dev/null || die "redis-cli not found"
    command -v protoc >/dev/null || die "protoc not found"
    command -v java >/dev/null || die "java not found"
}

# A system-wide zookeeper/etcd/redis started by the packages (if policy-rc.d did not stop it)
# would hold the default ports. Never `/etc/init.d/etcd stop`: it ends every /usr/bin/etcd on the
# machine (start-stop-daemon --exec), the tests' servers included. The package services run as
# their own users (etcd, redis, zookeeper); the tests' servers run as the caller.
stop_system_services() {
    local s u pid
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        for s in zookeeper etcd redis-server; do
            timeout 20 systemctl disable --now "$s" >/dev/null 2>&1 || true
        done
    fi
    if command -v update-rc.d >/dev/null; then
        for s in zookeeper etcd redis-server; do
            [ -e "/etc/init.d/$s" ] && { update-rc.d "$s" disable >/dev/null 2>&1 || true; }
        done
    fi
    for u in etcd redis zookeeper; do
        getent passwd "$u" >/dev/null || continue
        [ "$(id -u "$u")" = "$(id -u)" ] && continue
        for pid in $(pgrep -u "$u" || true); do
            note "stopping the system service process $pid ($u)"
            kill_pid "$pid"
        done
    done
}

# ---------------------------------------------------------------------------------------------
# ports

# free-port [N]: prints P such that P..P+N-1 are all free on 127.0.0.1, in 20000..31999 (below
# Linux's ephemeral range, so no outgoing connection takes them meanwhile), and reserves them under
# the run dir (.ports/, cleared by stop-all) so that concurrent callers never get the same ones.
cmd_free_port() {
    local n=${1:-1} base i ok
    if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 100 ]; then die "free-port: bad count '$n'"; fi
    mkdir -p "$RUN_DIR/.ports"
    local -A used=()
    for i in $(ss -Htan 2>/dev/null | awk '{n = split($4, a, ":"); print a[n]}'); do used[$i]=1; done
    for _ in $(seq 1 200); do
        base=$((20000 + (RANDOM * 32768 + RANDOM) % (12000 - n)))
        ok=true
        for ((i = 0; i < n; i++)); do
            if [ -n "${used[$((base + i))]:-}" ] || [ -e "$RUN_DIR/.ports/$((base + i))" ] ||
                ! port_free $((base + i)); then
                ok=false
                break
            fi
        done
        $ok || continue
        # Reserve atomically; give back what we took if another caller won a port.
        local taken=()
        for ((i = 0; i < n; i++)); do
            if mkdir "$RUN_DIR/.ports/$((base + i))" 2>/dev/null; then
                taken+=($((base + i)))
            else
                ok=false
                break
            fi
        done
        if $ok; then
            echo "$base"
            return 0
        fi
        for i in "${taken[@]}"; do rmdir "$RUN_DIR/.ports/$i" 2>/dev/null || true; done
    done
    die "free-port: no free range of $n ports found"
}

# Nothing accepts connections on the port (a cheap check on top of the ss listing).
port_free() {
    ! timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# processes

node_dir() { echo "$RUN_DIR/$1"; }

alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ]
}

kill_pid() {
    local pid=$1 i
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true # a paused server would not see SIGTERM
    for ((i = 0; i < STOP_GRACE * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    note "process $pid did not die"
    return 1
}

# The pid of a node if its process is running (and is really that node: its cwd is in the node dir).
node_pid() {
    local dir pid
    dir=$(node_dir "$1")
    [ -f "$dir/pid" ] || return 1
    pid=$(cat "$dir/pid")
    alive "$pid" || return 1
    # (redis-server changes into its --dir, a subdirectory)
    case "$(readlink "/proc/$pid/cwd" 2>/dev/null)" in
    "$dir" | "$dir"/*) echo "$pid" ;;
    *) return 1 ;;
    esac
}

is_node() { [ -f "$(node_dir "$1")/run.sh" ]; }
is_cluster() { [ -f "$(node_dir "$1")/members" ]; }

# Launches the node's run.sh detached: own session, no inherited stdio (a test harness reading the
# caller's stdout must never wait on a server), log in the node dir.
launch_node() {
    local name=$1 dir
    dir=$(node_dir "$name")
    node_pid "$name" >/dev/null && die "$name is already running"
    local p i
    for p in $(cat "$dir/ports" 2>/dev/null || cat "$dir/port"); do
        # A node started again right after it stopped may find its port still held for a moment.
        for ((i = 0; i < 50; i++)); do
            port_free "$p" && break
            sleep 0.1
        done
        port_free "$p" ||
            die_busy "$name: port $p is already in use ($(ss -Hltnp "( sport = :$p )" | awk '{print $NF}'))"
    done
    rm -f "$dir/pid"
    (cd "$dir" && exec setsid bash "$dir/run.sh" </dev/null >>"$dir/log" 2>&1) &
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$dir/pid" ] && return 0
        sleep 0.1
    done
    die "$name did not write its pid file"
}

# ready NAME: one readiness probe, silent.
ready() {
    local name=$1 dir kind port
    dir=$(node_dir "$name")
    kind=$(cat "$dir/kind")
    port=$(cat "$dir/port")
    case $kind in
    zookeeper) zk_four_letter "$port" srvr | grep -q '^Mode: standalone' ;;
    zookeeper-node) zk_four_letter "$port" srvr | grep -qE '^Mode: (leader|follower)' ;;
    etcd | etcd-node) ETCDCTL_API=3 timeout 5 etcdctl --endpoints="$HOST:$port" --dial-timeout=1s \
        --command-timeout=2s endpoint health >/dev/null 2>&1 ;;
    redis) [ "$(timeout 3 redis-cli -h "$HOST" -p "$port" ping 2>/dev/null)" = PONG ] ;;
    *) return 1 ;;
    esac
}

# owns_port NAME: the node's own process listens on its client port (so a ready answer did not
# come from another server on the same port).
owns_port() {
    local pid port
    pid=$(node_pid "$1") || return 1
    port=$(cat "$(node_dir "$1")/port")
    ss -Hltnp "( sport = :$port )" 2>/dev/null | grep -q "pid=$pid,"
}

zk_four_letter() {
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "%s" "$2" >&3 && cat <&3' "$HOST" "$1" "$2" 2>/dev/null
}

# wait_ready TIMEOUT NAME...: until every node answers, or fail with the tail of its log.
wait_ready() {
    local timeout=$1 deadline name pending
    shift
    deadline=$((SECONDS + timeout))
    pending=("$@")
    while :; do
        local left=()
        for name in "${pending[@]}"; do
            if ! node_pid "$name" >/dev/null; then
                note "$name exited while starting; last lines of its log:"
                tail -n 30 "$(node_dir "$name")/log" >&2
                return 1
            fi
            ready "$name" && owns_port "$name" || left+=("$name")
        done
        [ ${#left[@]} -eq 0 ] && return 0
        pending=("${left[@]}")
        if [ $SECONDS -ge $deadline ]; then
            for name in "${pending[@]}"; do
                note "$name not ready after ${timeout}s; last lines of its log:"
                tail -n 30 "$(node_dir "$name")/log" >&2
            done
            return 1
        fi
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------------------------
# start

# prepare_node NAME KIND PORT: a fresh node dir (refuses if the name is running).
prepare_node() {
    local name=$1 kind=$2 port=$3 dir
    dir=$(node_dir "$name")
    if [ -e "$dir" ]; then
        node_pid "$name" >/dev/null && die "$name is already running"
        rm -rf "$dir"
    fi
    mkdir -p "$dir/data"
    echo "$kind" >"$dir/kind"
    echo "$port" >"$dir/port"
    echo "$port" >"$dir/ports" # every port it listens on, checked free before each launch
}

write_env() {
    local name=$1 kind=$2 addr=$3 dir
    dir=$(node_dir "$name")
    {
        echo "NAME=$name"
        echo "KIND=$kind"
        echo "ADDR=$addr"
        echo "HOST=$HOST"
        [ -f "$dir/port" ] && echo "PORT=$(cat "$dir/port")"
        [ -f "$dir/members" ] && echo "MEMBERS=\"$(tr '\n' ' ' <"$dir/members" | sed 's/ $//')\""
        echo "DIR=$dir"
    } >"$dir/env"
}

zk_classpath() {
    # The issue's classpath works as it is: zookeeper.jar's manifest names its dependencies
    # (Class-Path, all in /usr/share/java). It has no slf4j binding though, so the server would log
    # nothing; log4j 1.2 and its binding (installed with libzookeeper-java) send its log to the
    # node's log file through /etc/zookeeper/conf/log4j.properties.
    local cp="$ZK_CONF:/usr/share/java/zookeeper.jar" j
    for j in /usr/share/java/slf4j-log4j12.jar /usr/share/java/log4j-1.2.jar; do
        [ -f "$j" ] && cp+=":$j"
    done
    echo "$cp"
}

# zk_write_node NAME PORT TICK MINSESS MAXSESS MAINCLASS: writes zoo.cfg and run.sh.
zk_write_node() {
    local name=$1 port=$2 tick=$3 minsess=$4 maxsess=$5 main=$6 dir
    dir=$(node_dir "$name")
    {
        echo "tickTime=$tick"
        echo "initLimit=20"
        echo "syncLimit=10"
        echo "dataDir=$dir/data"
        echo "clientPort=$port"
        echo "clientPortAddress=$HOST"
        echo "maxClientCnxns=0"
        [ -n "$minsess" ] && echo "minSessionTimeout=$minsess"
        [ -n "$maxsess" ] && echo "maxSessionTimeout=$maxsess"
        echo "4lw.commands.whitelist=*"
        echo "admin.enableServer=false"
        echo "forceSync=no"
        echo "preAllocSize=1024"
    } >"$dir/zoo.cfg"
    cat >"$dir/run.sh" <<EOF
#!/usr/bin/env bash
echo \$\$ > '$dir/pid'
exec java $ZK_JVM_FLAGS -Djava.net.preferIPv4Stack=true -Dzookeeper.log.dir='$dir' \\
    -Dzookeeper.root.logger=INFO,CONSOLE -Dzookeeper.jmx.log4j.disable=true \\
    -cp '$(zk_classpath)' $main '$dir/zoo.cfg'
EOF
}

cmd_start() {
    [ $# -ge 2 ] || die "usage: start KIND NAME [options]"
    local kind=$1 name=$2
    shift 2
    [[ $name =~ ^[A-Za-z0-9_.][A-Za-z0-9_.-]*$ ]] || die "bad name '$name'"
    local port="" base="" peer="" tick=500 minsess="" maxsess="" timeout=""
    while [ $# -gt 0 ]; do
        case $1 in
        --port) port=$2; shift 2 ;;
        --base-port) base=$2; shift 2 ;;
        --peer-port) peer=$2; shift 2 ;;
        --tick-ms) tick=$2; shift 2 ;;
        --min-session-ms) minsess=$2; shift 2 ;;
        --max-session-ms) maxsess=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        *) die "unknown option '$1'" ;;
        esac
    done
    mkdir -p "$RUN_DIR"
    case $kind in
    zookeeper)
        [ -n "$port" ] || die "start zookeeper needs --port"
        prepare_node "$name" zookeeper "$port"
        zk_write_node "$name" "$port" "$tick" "$minsess" "$maxsess" org.apache.zookeeper.server.ZooKeeperServerMain
        launch_node "$name"
        wait_ready "${timeout:-30}" "$name" || start_failed node "$name"
        write_env "$name" zookeeper "$HOST:$port"
        echo "$HOST:$port"
        ;;
    zookeeper-ensemble)
        [ -n "$base" ] || die "start zookeeper-ensemble needs --base-port (uses P..P+8)"
        prepare_cluster "$name" zookeeper-ensemble
        local i servers="" addrs=""
        for i in 1 2 3; do
            servers+="server.$i=$HOST:$((base + 2 + i)):$((base + 5 + i))"$'\n'
            addrs+="${addrs:+,}$HOST:$((base + i - 1))"
        done
        for i in 1 2 3; do
            prepare_node "$name-$i" zookeeper-node $((base + i - 1))
            zk_write_node "$name-$i" $((base + i - 1)) "$tick" "$minsess" "$maxsess" \
                org.apache.zookeeper.server.quorum.QuorumPeerMain
            printf '%s' "$servers" >>"$(node_dir "$name-$i")/zoo.cfg"
            echo "$((base + 2 + i)) $((base + 5 + i))" >>"$(node_dir "$name-$i")/ports"
            echo "$i" >"$(node_dir "$name-$i")/data/myid"
            echo "$name-$i" >>"$(node_dir "$name")/members"
        done
        launch_cluster "$name"
        wait_ready "${timeout:-60}" "$name-1" "$name-2" "$name-3" || start_failed cluster "$name"
        for i in 1 2 3; do write_env "$name-$i" zookeeper-node "$HOST:$((base + i - 1))"; done
        write_env "$name" zookeeper-ensemble "$addrs"
        echo "$addrs"
        ;;
    etcd)
        [ -n "$port" ] || die "start etcd needs --port"
        peer=${peer:-$((port + 1))}
        prepare_node "$name" etcd "$port"
        etcd_write_node "$name" "$port" "$peer" "$name=http://$HOST:$peer" "etcd-$name"
        launch_node "$name"
        wait_ready "${timeout:-30}" "$name" || start_failed node "$name"
        write_env "$name" etcd "$HOST:$port"
        echo "$HOST:$port"
        ;;
    etcd-cluster)
        [ -n "$base" ] || die "start etcd-cluster needs --base-port (uses P..P+5)"
        prepare_cluster "$name" etcd-cluster
        local i initial="" addrs=""
        for i in 1 2 3; do
            initial+="${initial:+,}$name-$i=http://$HOST:$((base + 2 + i))"
            addrs+="${addrs:+,}$HOST:$((base + i - 1))"
        done
        for i in 1 2 3; do
            prepare_node "$name-$i" etcd-node $((base + i - 1))
            etcd_write_node "$name-$i" $((base + i - 1)) $((base + 2 + i)) "$initial" "etcd-$name"
            echo "$name-$i" >>"$(node_dir "$name")/members"
        done
        launch_cluster "$name"
        wait_ready "${timeout:-60}" "$name-1" "$name-2" "$name-3" || start_failed cluster "$name"
        for i in 1 2 3; do write_env "$name-$i" etcd-node "$HOST:$((base + i - 1))"; done
        write_env "$name" etcd-cluster "$addrs"
        echo "$addrs"
        ;;
    redis)
        [ -n "$port" ] || die "start redis needs --port"
        prepare_node "$name" redis "$port"
        local dir
        dir=$(node_dir "$name")
        cat >"$dir/run.sh" <<EOF
#!/usr/bin/env bash
echo \$\$ > '$dir/pid'
exec redis-server --bind $HOST --port $port --dir '$dir/data' --save '' --appendonly no \\
    --daemonize no --logfile '' --databases 16
EOF
        launch_node "$name"
        wait_ready "${timeout:-30}" "$name" || start_failed node "$name"
        write_env "$name" redis "$HOST:$port"
        echo "$HOST:$port"
        ;;
    *) die "unknown kind '$kind' (zookeeper, zookeeper-ensemble, etcd, etcd-cluster, redis)" ;;
    esac
}

# launch_cluster NAME: launches every node; if one cannot (its port is taken), stops the ones
# already running and fails with that node's status.
launch_cluster() {
    local name=$1 m rc
    for m in $(cat "$(node_dir "$name")/members"); do
        (launch_node "$m") || {
            rc=$?
            stop_cluster "$1"
            exit "$rc"
        }
    done
}

# start_failed node|cluster NAME: stops what started and fails; with status 75 when a server's
# log says its port was taken (it lost a race for it), so that the caller can try other ports.
start_failed() {
    local what=$1 name=$2 logs=() m
    if [ "$what" = cluster ]; then
        for m in $(cat "$(node_dir "$name")/members"); do logs+=("$(node_dir "$m")/log"); done
        stop_cluster "$name"
    else
        logs=("$(node_dir "$name")/log")
        stop_node "$name"
    fi
    if grep -qiE 'address already in use|BindException|bind: address' "${logs[@]}" 2>/dev/null; then
        die_busy "$name did not start: a port it needs was taken"
    fi
    die "$name did not start"
}

prepare_cluster() {
    local name=$1 kind=$2 dir m
    dir=$(node_dir "$name")
    if [ -f "$dir/members" ]; then
        for m in $(cat "$dir/members"); do
            node_pid "$m" >/dev/null && die "$m is already running"
        done
    fi
    is_node "$name" && node_pid "$name" >/dev/null && die "$name is already running"
    rm -rf "$dir"
    mkdir -p "$dir"
    echo "$kind" >"$dir/kind"
    : >"$dir/members"
}

# etcd_write_node NAME CLIENT_PORT PEER_PORT INITIAL_CLUSTER TOKEN
etcd_write_node() {
    local name=$1 port=$2 peer=$3 initial=$4 token=$5 dir
    dir=$(node_dir "$name")
    echo "$peer" >>"$dir/ports"
    cat >"$dir/run.sh" <<EOF
#!/usr/bin/env bash
echo \$\$ > '$dir/pid'
exec etcd --name '$name' --data-dir '$dir/data' \\
    --listen-client-urls http://$HOST:$port --advertise-client-urls http://$HOST:$port \\
    --listen-peer-urls http://$HOST:$peer --initial-advertise-peer-urls http://$HOST:$peer \\
    --initial-cluster '$initial' --initial-cluster-token '$token' --initial-cluster-state new \\
    --heartbeat-interval 100 --election-timeout 1000 --snapshot-count 10000 \\
    --logger zap --log-outputs stderr
EOF
}

# ---------------------------------------------------------------------------------------------
# stop, restart, status

# Pids of the servers (java, etcd, redis-server) whose working directory is DIR or inside it. Not
# other programs: a shell that happens to sit in the run dir is left alone.
procs_in() {
    local dir=$1 p comm
    while read -r p; do
        p=${p#/proc/}
        p=${p%/cwd}
        comm=$(cat "/proc/$p/comm" 2>/dev/null) || continue
        case $comm in java | etcd | redis-server) alive "$p" && echo "$p" ;; esac
    done < <(find /proc/[0-9]*/cwd -maxdepth 0 \( -lname "$dir" -o -lname "$dir/*" \) 2>/dev/null)
    return 0
}

# stop_node NAME: SIGTERM, SIGKILL after $STOP_GRACE s; also any stray process of that node (one
# whose pid file was lost, say), found by its working directory.
stop_node() {
    local name=$1 dir pid
    dir=$(node_dir "$name")
    if pid=$(node_pid "$name"); then kill_pid "$pid"; fi
    for pid in $(procs_in "$dir"); do kill_pid "$pid"; done
    rm -f "$dir/pid"
}

stop_cluster() {
    local name=$1 m
    for m in $(cat "$(node_dir "$name")/members"); do stop_node "$m"; done
}

cmd_stop() {
    [ $# -eq 1 ] || die "usage: stop NAME"
    local name=$1
    if is_cluster "$name"; then
        stop_cluster "$name"
    elif is_node "$name"; then
        stop_node "$name"
    else
        die "no server named '$name' under $RUN_DIR"
    fi
}

cmd_restart() {
    [ $# -ge 1 ] || die "usage: restart NAME [--timeout S]"
    local name=$1 timeout=30 m
    shift
    [ "${1:-}" = --timeout ] && timeout=$2
    if is_cluster "$name"; then
        stop_cluster "$name"
        local members
        members=$(cat "$(node_dir "$name")/members")
        for m in $members; do launch_node "$m"; done
        # shellcheck disable=SC2086
        wait_ready "$timeout" $members || die "$name did not come back"
    elif is_node "$name"; then
        stop_node "$name"
        launch_node "$name"
        wait_ready "$timeout" "$name" || die "$name did not come back"
    else
        die "no server named '$name' under $RUN_DIR"
    fi
    cmd_addr "$name"
}

# start-node NAME: start a stopped node (of a cluster, or a single server) again, keeping its data.
cmd_start_node() {
    [ $# -ge 1 ] || die "usage: start-node NAME [--timeout S]"
    local name=$1 timeout=30
    [ "${2:-}" = --timeout ] && timeout=$3
    is_node "$name" || die "no server node named '$name' under $RUN_DIR"
    launch_node "$name"
    wait_ready "$timeout" "$name" || die "$name did not come back"
    cmd_addr "$name"
}

# pause|resume NAME: SIGSTOP / SIGCONT a server or every node of a cluster. The process keeps its
# ports and state but answers nothing: an unreachable (hanging, not refusing) registry.
cmd_signal() {
    local sig=$1 name=$2 m pid nodes=()
    if is_cluster "$name"; then
        mapfile -t nodes <"$(node_dir "$name")/members"
    elif is_node "$name"; then
        nodes=("$name")
    else
        die "no server named '$name' under $RUN_DIR"
    fi
    for m in "${nodes[@]}"; do
        if pid=$(node_pid "$m"); then kill "-$sig" "$pid"; else note "$m is not running"; fi
    done
}

# expire-sessions NAME [--wait-ms MS] [--timeout S]: make a standalone ZooKeeper server expire every
# client session, as after a long outage. Stopping the server and starting it again is not enough:
# a restarted server reloads its sessions with fresh timeouts, and a client that reconnects within
# them keeps its session (seen with ZooKeeper 3.8). Pausing (SIGSTOP) and resuming races the
# server's session expirer against the client's reconnection. So: stop the server, run it on the
# same data with a spare client port no client knows for MS milliseconds (default: its
# maxSessionTimeout plus 1 s), during which it expires the sessions and deletes their ephemeral
# nodes, then run it on its own port again. Clients then see Expired when they reconnect.
cmd_expire_sessions() {
    [ $# -ge 1 ] || die "usage: expire-sessions NAME [--wait-ms MS] [--timeout S]"
    local name=$1 wait_ms="" timeout=30 dir port spare tick max
    shift
    while [ $# -gt 0 ]; do
        case $1 in
        --wait-ms) wait_ms=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        *) die "unknown option '$1'" ;;
        esac
    done
    dir=$(node_dir "$name")
    [ "$(cat "$dir/kind" 2>/dev/null)" = zookeeper ] || die "$name is not a standalone zookeeper"
    port=$(cat "$dir/port")
    if [ -z "$wait_ms" ]; then
        tick=$(sed -n 's/^tickTime=//p' "$dir/zoo.cfg")
        max=$(sed -n 's/^maxSessionTimeout=//p' "$dir/zoo.cfg")
        wait_ms=$((${max:-$((20 * tick))} + 1000))
    fi
    spare=$(cmd_free_port)
    stop_node "$name"
    cp "$dir/zoo.cfg" "$dir/zoo.cfg.own"
    sed -i "s/^clientPort=.*/clientPort=$spare/" "$dir/zoo.cfg"
    echo "$spare" >"$dir/port"
    cp "$dir/ports" "$dir/ports.own"
    echo "$spare" >"$dir/ports"
    local ok=true
    launch_node "$name"
    wait_ready "$timeout" "$name" || ok=false
    $ok && sleep "$(awk -v ms="$wait_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
    stop_node "$name"
    mv "$dir/zoo.cfg.own" "$dir/zoo.cfg"
    mv "$dir/ports.own" "$dir/ports"
    echo "$port" >"$dir/port"
    rmdir "$RUN_DIR/.ports/$spare" 2>/dev/null || true
    $ok || die "$name did not start on the spare port $spare"
    launch_node "$name"
    wait_ready "$timeout" "$name" || die "$name did not come back"
    echo "$HOST:$port"
}

cmd_stop_all() {
    local d name
    [ -d "$RUN_DIR" ] || return 0
    for d in "$RUN_DIR"/*/; do
        [ -d "$d" ] || continue
        name=$(basename "$d")
        is_node "$name" && stop_node "$name"
    done
    # Anything else still running from inside the run dir (cwd), whatever happened to its pid file.
    local pid
    for pid in $(procs_in "$RUN_DIR"); do kill_pid "$pid"; done
    rm -rf "$RUN_DIR/.ports"
}

cmd_status() {
    local d name kind pid
    [ -d "$RUN_DIR" ] || return 0
    for d in "$RUN_DIR"/*/; do
        [ -d "$d" ] || continue
        name=$(basename "$d")
        is_node "$name" || continue
        kind=$(cat "$d/kind")
        if pid=$(node_pid "$name"); then
            printf '%-24s %-16s %-22s running pid %s\n' "$name" "$kind" "$HOST:$(cat "$d/port")" "$pid"
        else
            printf '%-24s %-16s %-22s stopped\n' "$name" "$kind" "$HOST:$(cat "$d/port")"
        fi
    done
}

cmd_addr() {
    local name=$1 dir m addrs=""
    dir=$(node_dir "$name")
    if is_cluster "$name"; then
        for m in $(cat "$dir/members"); do addrs+="${addrs:+,}$HOST:$(cat "$(node_dir "$m")/port")"; done
        echo "$addrs"
    elif is_node "$name"; then
        echo "$HOST:$(cat "$dir/port")"
    else
        die "no server named '$name' under $RUN_DIR"
    fi
}

cmd_env() {
    local f
    f="$(node_dir "$1")/env"
    [ -f "$f" ] || die "no env for '$1'"
    cat "$f"
}

# wait NAME [TIMEOUT]: until a server (or every running node of a cluster) answers.
cmd_wait() {
    local name=$1 timeout=${2:-30} m nodes=()
    if is_cluster "$name"; then
        for m in $(cat "$(node_dir "$name")/members"); do node_pid "$m" >/dev/null && nodes+=("$m"); done
        [ ${#nodes[@]} -gt 0 ] || die "no node of $name is running"
        wait_ready "$timeout" "${nodes[@]}"
    elif is_node "$name"; then
        wait_ready "$timeout" "$name"
    else
        die "no server named '$name' under $RUN_DIR"
    fi
}

# zkcli HOST:PORT COMMAND...: zkCli.sh without its noise. zkCli.sh prints a banner on stdout
# ("Connecting to ...", "WATCHER::", "WatchedEvent state:SyncConnected ...", blank lines) before the
# result, and SLF4J warnings plus some results ("Created /x") and errors ("Node does not exist: /x")
# on stderr. This prints the command's output lines (stdout, then stderr, SLF4J lines dropped) and
# exits with zkCli's status (non-zero on an error such as a missing node).
cmd_zkcli() {
    [ $# -ge 2 ] || die "usage: zkcli HOST:PORT COMMAND [ARGS...]"
    local server=$1 out err rc=0
    shift
    out=$(mktemp) err=$(mktemp)
    timeout 30 "$ZK_BIN/zkCli.sh" -server "$server" "$@" </dev/null >"$out" 2>"$err" || rc=$?
    awk 'NR == 1 && /^Connecting to / { next }
         !seen && (/^$/ || /^WATCHER::$/) { next }
         !seen && /^WatchedEvent state:SyncConnected / { seen = 1; next }
         { print }' "$out"
    grep -v '^SLF4J: ' "$err" || true
    rm -f "$out" "$err"
    return $rc
}

cmd_paths() {
    echo "ZKCLI=$ZK_BIN/zkCli.sh"
    echo "ETCDCTL=$(command -v etcdctl || echo missing)"
    echo "REDIS_CLI=$(command -v redis-cli || echo missing)"
    echo "RUN_DIR=$RUN_DIR"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

main() {
    [ $# -ge 1 ] || { usage >&2; exit 2; }
    local cmd=$1
    shift
    case $cmd in
    install) cmd_install ;;
    free-port) cmd_free_port "$@" ;;
    start) cmd_start "$@" ;;
    start-node) cmd_start_node "$@" ;;
    stop) cmd_stop "$@" ;;
    restart) cmd_restart "$@" ;;
    stop-all) cmd_stop_all ;;
    expire-sessions) cmd_expire_sessions "$@" ;;
    pause) [ $# -eq 1 ] || die "usage: pause NAME"; cmd_signal STOP "$1" ;;
    resume) [ $# -eq 1 ] || die "usage: resume NAME"; cmd_signal CONT "$1" ;;
    status) cmd_status ;;
    addr) [ $# -eq 1 ] || die "usage: addr NAME"; cmd_addr "$1" ;;
    env) [ $# -eq 1 ] || die "usage: env NAME"; cmd_env "$1" ;;
    wait) [ $# -ge 1 ] || die "usage: wait NAME [TIMEOUT]"; cmd_wait "$@" ;;
    zkcli) cmd_zkcli "$@" ;;
    paths) cmd_paths ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
    esac
}

main "$@"
