#!/usr/bin/env bash
# A throwaway local 3-node RabbitMQ cluster, for the broker failover test
# (tests/tests/broker_cluster.rs), next to the shared broker and apart from it.
#
#   scripts/rabbit-cluster.sh start DIR   starts nodes a, b and c, joins b and c
#                                         to a, waits for 3 running nodes
#   scripts/rabbit-cluster.sh stop DIR    stops the nodes and removes DIR
#   scripts/rabbit-cluster.sh start-node DIR NAME
#                                         starts again node NAME (stopped with
#                                         `ctl DIR -n NAME@localhost stop`); it
#                                         rejoins the cluster by itself
#   scripts/rabbit-cluster.sh ctl DIR ARGS...
#                                         rabbitmqctl ARGS with the cluster's
#                                         cookie (e.g. -n NODE stop_app)
#
# Everything a node keeps (data, logs, pid file, config, Erlang cookie) is
# under DIR. The nodes are named sluice-{a,b,c}-TAG@localhost (TAG from
# DIR's name), listen on free ports above 30000 (never the shared broker's
# 5672/25672/15672), load no plugins (no management listener) and run on
# one scheduler each. They share a cookie of their own (DIR/.erlang.cookie,
# used through HOME=DIR), so they can never talk to the shared node.
#
# After start, DIR holds:
#   nodes   one line per node: NAME AMQP_PORT DIST_PORT (a first)
#   urls    the nodes' AMQP URLs separated by commas (SLUICE_AMQP_URL)
#
# Exit status 0 on success; otherwise one line on stderr saying why.
set -euo pipefail

log() { printf '%s\n' "rabbit-cluster: $*"; }
die() { printf '%s\n' "rabbit-cluster: error: $*" >&2; exit 1; }

RABBIT_BIN=/usr/lib/rabbitmq/bin
# How long a node may take to boot, and the cluster to show three nodes.
BOOT_TIMEOUT=150

usage() { die "usage: $0 start|stop DIR, start-node DIR NAME, or ctl DIR RABBITMQCTL-ARGS..."; }

[[ $# -ge 2 ]] || usage
COMMAND="$1"
DIR="$2"
shift 2
# An Erlang VM that dies (a node, or rabbitmqctl) writes its crash dump
# into the cluster's directory, not into the caller's working directory.
export ERL_CRASH_DUMP="$DIR/erl_crash.dump"

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The node commands, with the cluster's environment (own cookie, own config).
ctl() {
    HOME="$DIR" RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf" \
        timeout 60 "$RABBIT_BIN/rabbitmqctl" "$@"
}

# Prints a free TCP port from 21000 to 32000, below Linux's ephemeral
# range (so no outgoing connection takes it before the node binds it), not
# the shared broker's 25672, not in $USED (space separated).
USED=""
free_port() {
    local port=$(( 21000 + RANDOM % 11000 ))
    while port_open "$port" || [[ " $USED " == *" $port "* ]] || (( port == 25672 )); do
        port=$(( port + 1 ))
    done
    USED="$USED $port"
    printf '%s\n' "$port"
}

start_node() {
    local name="$1" port="$2" dist="$3" base="$DIR/$1"
    mkdir -p "$base/mnesia" "$base/log"
    printf 'listeners.tcp.local = 127.0.0.1:%s\n' "$port" >"$base/rabbitmq.conf"
    HOME="$DIR" \
    RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf" \
    RABBITMQ_NODENAME="$name@localhost" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$port" \
    RABBITMQ_DIST_PORT="$dist" \
    RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$base/mnesia" \
    RABBITMQ_LOG_BASE="$base/log" \
    RABBITMQ_PID_FILE="$base/pid" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 1:1 +A 4 +sbwt none +sbwtdcpu none +sbwtdio none" \
        setsid "$RABBIT_BIN/rabbitmq-server" >"$base/log/stdout.log" 2>&1 </dev/null &
}

await_node() {
    local name="$1" deadline=$(( SECONDS + BOOT_TIMEOUT ))
    # Until the node has registered with epmd, await_startup fails at once.
    until ctl -n "$name@localhost" -t 10 await_startup >/dev/null 2>&1; do
        if (( SECONDS >= deadline )); then
            log "the last lines of $name's logs:"
            tail -n 20 "$DIR/$name/log/"*.log >&2 || true
            die "node $name did not boot within ${BOOT_TIMEOUT}s; see $DIR/$name/log (run: $0 stop $DIR)"
        fi
        sleep 1
    done
}

start() {
    [[ -x "$RABBIT_BIN/rabbitmq-server" ]] || die "$RABBIT_BIN/rabbitmq-server not found (install rabbitmq-server)"
    [[ ! -e "$DIR/nodes" ]] || die "$DIR already holds a cluster; stop it first"
    mkdir -p "$DIR"
    local began=$SECONDS tag names=() ports=()
    tag="$(basename "$DIR" | tr -c 'a-zA-Z0-9\n' '-' | tail -c 13)"
    # The nodes' own cookie and environment file: nothing of /etc/rabbitmq's
    # (which names the shared node) and no plugins.
    umask 077
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/.erlang.cookie"
    chmod 400 "$DIR/.erlang.cookie"
    umask 022
    printf '# the failover cluster: nothing from /etc/rabbitmq\n' >"$DIR/rabbitmq-env.conf"
    printf '[].\n' >"$DIR/enabled_plugins"
    : >"$DIR/nodes"
    for letter in a b c; do
        local name="sluice-$letter-$tag" port dist
        port="$(free_port)"
        dist="$(free_port)"
        start_node "$name" "$port" "$dist"
        names+=("$name")
        ports+=("$port")
        printf '%s %s %s\n' "$name" "$port" "$dist" >>"$DIR/nodes"
        log "started node $name@localhost (amqp 127.0.0.1:$port, distribution $dist)"
    done
    for name in "${names[@]}"; do
        await_node "$name"
    done
    log "all three nodes booted after $(( SECONDS - began ))s"
    local seed="${names[0]}@localhost"
    for name in "${names[@]:1}"; do
        ctl -n "$name@localhost" stop_app >/dev/null
        ctl -n "$name@localhost" join_cluster "$seed" >/dev/null \
            || die "node $name could not join $seed; see $DIR/$name/log"
        ctl -n "$name@localhost" start_app >/dev/null
        log "joined $name@localhost to $seed"
    done
    local running=0 deadline=$(( SECONDS + BOOT_TIMEOUT ))
    while (( SECONDS < deadline )); do
        running="$(ctl -n "$seed" cluster_status --formatter json 2>/dev/null \
            | grep -o '"running_nodes":\[[^]]*\]' | grep -o '@' | wc -l || true)"
        (( running == 3 )) && break
        sleep 1
    done
    (( running == 3 )) || die "cluster_status of $seed shows $running running nodes, not 3"
    local urls=() port
    for port in "${ports[@]}"; do
        urls+=("amqp://guest:guest@127.0.0.1:$port/%2f")
    done
    (IFS=,; printf '%s\n' "${urls[*]}") >"$DIR/urls"
    log "cluster of 3 running nodes ready after $(( SECONDS - began ))s; urls in $DIR/urls"
}

stop() {
    if [[ ! -f "$DIR/nodes" ]]; then
        rm -rf "$DIR"
        log "no cluster in $DIR; removed it"
        return 0
    fi
    local name port dist pid
    while read -r name port dist <&3; do
        [[ -n "$name" ]] || continue
        pid="$(cat "$DIR/$name/pid" 2>/dev/null || true)"
        if ctl -n "$name@localhost" stop >/dev/null 2>&1; then
            log "stopped node $name@localhost"
        fi
        # A node that did not answer (still booting, wedged): end the VM
        # this script started, by the pid it wrote.
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            for _ in $(seq 1 20); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            if kill -0 "$pid" 2>/dev/null; then
                kill -KILL "$pid" 2>/dev/null || true
                log "killed node $name@localhost (pid $pid)"
            fi
        fi
        : "$port" "$dist"
    done 3<"$DIR/nodes"
    rm -rf "$DIR"
    log "removed $DIR"
}

# Starts node $1 again, on the ports it had; waits until it runs.
start_node_again() {
    local wanted="${1:-}" name port dist began=$SECONDS
    [[ -n "$wanted" ]] || usage
    [[ -f "$DIR/nodes" ]] || die "no cluster in $DIR"
    while read -r name port dist <&3; do
        if [[ "$name" == "$wanted" || "$name@localhost" == "$wanted" ]]; then
            start_node "$name" "$port" "$dist"
            await_node "$name"
            log "started node $name@localhost again (amqp 127.0.0.1:$port) in $(( SECONDS - began ))s"
            return 0
        fi
    done 3<"$DIR/nodes"
    die "no node $wanted in $DIR/nodes"
}

case "$COMMAND" in
    start) start ;;
    stop) stop ;;
    start-node) start_node_again "$@" ;;
    ctl) ctl "$@" ;;
    *) usage ;;
esac
