# A real REAPI cluster on this machine, for the remote suite and bench/remote.sh.
# Source after common.sh. Parts (prepared once by e2e/setup/remote-cluster.sh):
#   PostgreSQL 15 (BuildGrid's scheduler database), as user postgres, on a free
#     127.0.0.1 port with a data directory of its own under $KILN_WORK/remote;
#   BuildGrid 0.4.4 (`bgd server start`): CAS and ByteStream on an in-memory LRU
#     storage, an LRU action cache, an SQL scheduler, Execution and ActionCache,
#     instance name "", on one insecure channel on a free 127.0.0.1 port;
#   one worker chrooted in its own Debian sid root: buildbox-casd (a local CAS
#     proxy on a unix socket) and buildbox-worker running actions with
#     buildbox-run-hosttools (4 at a time: actions wait on I/O as much as on the
#     CPU), with platform OSFamily=linux, ISA=x86-64.
# Every process is started in the background and stopped by its pid.
# shellcheck shell=bash

REMOTE_CACHE="${KILN_REMOTE_CACHE:-/var/cache/kiln-remote}"
REMOTE_DIR="$KILN_WORK/remote"
REMOTE_PG_BIN=/usr/lib/postgresql/15/bin
REMOTE_ROOT="$REMOTE_CACHE/worker-root"
REMOTE_BGD="$REMOTE_CACHE/buildgrid-venv/bin/bgd"
# Names this cluster's casd sockets and caches in the shared worker root, so
# that two clusters (a suite and a benchmark) can run at once.
REMOTE_TAG="kiln-$$"

# wait_for_port PORT SECONDS: polls until something accepts on 127.0.0.1:PORT.
wait_for_port() {
    local port=$1 limit=$2 start=$SECONDS
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        [ $((SECONDS - start)) -lt "$limit" ] || return 1
        sleep 0.2
    done
}

# stop_pid NAME: stops the process whose pid is in $REMOTE_DIR/NAME.pid (TERM,
# then KILL after 20 s) and waits until it is gone.
stop_pid() {
    local file="$REMOTE_DIR/$1.pid" pid start=$SECONDS
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || { rm -f "$file"; return 0; }
    while kill -0 "$pid" 2>/dev/null; do
        if [ $((SECONDS - start)) -ge 20 ]; then kill -9 "$pid" 2>/dev/null || true; fi
        sleep 0.1
    done
    rm -f "$file"
}

_remote_start_postgres() {
    local pg="$REMOTE_DIR/pg"
    REMOTE_PG_PORT=$(free_port)
    rm -rf "$pg" && mkdir -p "$pg/data" "$pg/sock" && chown -R postgres: "$pg"
    setpriv --reuid=postgres --regid=postgres --init-groups "$REMOTE_PG_BIN/initdb" -D "$pg/data" -A trust -U postgres \
        >"$REMOTE_DIR/initdb.log" 2>&1 || { tail -5 "$REMOTE_DIR/initdb.log"; return 1; }
    setpriv --reuid=postgres --regid=postgres --init-groups "$REMOTE_PG_BIN/postgres" -D "$pg/data" \
        -p "$REMOTE_PG_PORT" -h 127.0.0.1 -k "$pg/sock" >"$REMOTE_DIR/postgres.log" 2>&1 &
    echo $! >"$REMOTE_DIR/postgres.pid"
    disown $!
    local start=$SECONDS
    until "$REMOTE_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$REMOTE_PG_PORT"; do
        [ $((SECONDS - start)) -lt 30 ] || { echo "postgres did not start"; tail -5 "$REMOTE_DIR/postgres.log"; return 1; }
        sleep 0.2
    done
    # psycopg2, not psycopg 3: with plain postgresql:// SQLAlchemy picks
    # psycopg 3, with which BuildGrid's job notifier breaks (clients then
    # wait forever).
    REMOTE_DB_URL="postgresql+psycopg2://postgres@127.0.0.1:$REMOTE_PG_PORT/postgres"
    "$REMOTE_BGD" migrate apply "$REMOTE_DB_URL" >"$REMOTE_DIR/migrate.log" 2>&1 ||
        { tail -5 "$REMOTE_DIR/migrate.log"; return 1; }
}

# start_remote_server: BuildGrid on $REMOTE_PORT (chosen on the first start and
# kept across restarts, so that clients' --remote_executor stays valid).
start_remote_server() {
    REMOTE_PORT=${REMOTE_PORT:-$(free_port)}
    cat >"$REMOTE_DIR/server.yml" <<YAML
server:
  - !channel
    address: "127.0.0.1:$REMOTE_PORT"
    insecure-mode: true
# gRPC's limit of concurrent RPCs is this pool's size: Bazel's uploads
# (thousands of small files: the Go SDK) and every action's Execute stream
# need more than the default (5 per CPU); at 400 a cold build of the seven
# services on a loaded machine still hit "Concurrent RPC limit exceeded", which
# makes buildbox-worker exit.
thread-pool-size: 2000
connections:
  - !sql-connection &sql
    connection-string: $REMOTE_DB_URL
storages:
  - !lru-storage &cas
    size: 4G
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: false
schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    storage: *cas
    action-cache: *ac
    # A lost worker's job goes back to the queue after this long.
    bot-session-keepalive-timeout: 15
    session-expiry-timer-interval: 2
    # One machine: poll often (the defaults suit a cluster of many bots).
    poll-interval: 0.2
    bot-poll-interval: 0.2
    proactive-fetch-to-capacity: true
    property-set: !dynamic-property-set {}
instances:
  - name: ""
    services:
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
      - !action-cache
        cache: *ac
      - !execution
        scheduler: *scheduler
YAML
    "$REMOTE_BGD" server start "$REMOTE_DIR/server.yml" >>"$REMOTE_DIR/server.log" 2>&1 &
    echo $! >"$REMOTE_DIR/server.pid"
    disown $!
    wait_for_port "$REMOTE_PORT" 60 || { echo "BuildGrid did not listen on $REMOTE_PORT"; tail -20 "$REMOTE_DIR/server.log"; return 1; }
    REMOTE_EXECUTOR="grpc://127.0.0.1:$REMOTE_PORT"
}

stop_remote_server() { stop_pid server; }

# start_remote_worker NAME: buildbox-casd and buildbox-worker, chrooted in the
# worker's own Debian root (none of this machine's tools), with a clean
# environment. The worker's own processes (and the actions they run) are what
# `remote_worker_busy` looks for.
start_remote_worker() {
    local name=$1 sock="/run/casd-$REMOTE_TAG-$1.sock" cache="/var/cache/casd-$REMOTE_TAG-$1"
    mountpoint -q "$REMOTE_ROOT/proc" || mount -t proc proc "$REMOTE_ROOT/proc"
    mkdir -p "$REMOTE_ROOT$cache"
    rm -f "$REMOTE_ROOT$sock"
    # copy-or-link: the root has no /dev/fuse for buildbox-fuse.
    env -i PATH=/usr/bin:/bin BUILDBOX_STAGER=copy-or-link /usr/sbin/chroot "$REMOTE_ROOT" /usr/bin/buildbox-casd \
        --cas-remote="http://127.0.0.1:$REMOTE_PORT" --bind="unix:$sock" \
        --quota-high=8G --reserved=1G "$cache" >"$REMOTE_DIR/casd-$name.log" 2>&1 &
    echo $! >"$REMOTE_DIR/casd-$name.pid"
    disown $!
    local start=$SECONDS
    until [ -S "$REMOTE_ROOT$sock" ]; do
        [ $((SECONDS - start)) -lt 30 ] || { echo "buildbox-casd did not start"; tail -5 "$REMOTE_DIR/casd-$name.log"; return 1; }
        sleep 0.1
    done
    env -i PATH=/usr/bin:/bin HOME=/nonexistent /usr/sbin/chroot "$REMOTE_ROOT" /usr/bin/buildbox-worker \
        --bots-remote="http://127.0.0.1:$REMOTE_PORT" --cas-remote="unix:$sock" \
        --buildbox-run=/usr/bin/buildbox-run-hosttools --bots-retry-limit=10 \
        --platform OSFamily=linux --platform ISA=x86-64 --concurrent-jobs=4 \
        "kiln-$name" >"$REMOTE_DIR/worker-$name.log" 2>&1 &
    echo $! >"$REMOTE_DIR/worker-$name.pid"
    disown $!
    REMOTE_WORKER=$name
}

# descendants PID: the pids of PID's children, their children, and so on.
descendants() {
    local child
    for child in $(pgrep -P "$1"); do
        echo "$child"
        descendants "$child"
    done
}

# stop_remote_worker NAME [KILL]: stops the worker, then its casd. With KILL, the
# worker and the actions it runs are killed (SIGKILL) as in a crash: the server
# learns of it only when the worker's session times out.
stop_remote_worker() {
    local name=$1 pid
    if [ "${2:-}" = KILL ] && [ -f "$REMOTE_DIR/worker-$name.pid" ]; then
        pid=$(cat "$REMOTE_DIR/worker-$name.pid")
        # shellcheck disable=SC2046
        kill -9 "$pid" $(descendants "$pid") 2>/dev/null || true
    fi
    stop_pid "worker-$name"
    stop_pid "casd-$name"
    rm -rf "$REMOTE_ROOT/var/cache/casd-$REMOTE_TAG-$name"
}

# remote_worker_busy NAME: true while an action's command runs on the worker
# (a process below buildbox-run-hosttools that is not buildbox's own).
remote_worker_busy() {
    [ -n "$(remote_worker_action "$1")" ]
}

# remote_worker_action NAME: the command line (cut) of an action the worker runs.
remote_worker_action() {
    local pid p
    pid=$(cat "$REMOTE_DIR/worker-$1.pid" 2>/dev/null) || return 0
    for p in $(descendants "$pid"); do
        ps -o args= -p "$p" 2>/dev/null
    done | grep -v '^/usr/bin/buildbox' | head -1 | cut -c1-80
}

# start_remote_cluster: prepares the parts when missing, then PostgreSQL, the
# server and worker `w1`. Sets REMOTE_EXECUTOR (grpc://127.0.0.1:PORT).
start_remote_cluster() {
    "$KILN_ROOT/e2e/setup/remote-cluster.sh" || return 1
    mkdir -p "$REMOTE_DIR"
    unset REMOTE_PORT
    _remote_start_postgres || return 1
    start_remote_server || return 1
    start_remote_worker w1 || return 1
}

# stop_remote_cluster: workers first, then the server, then PostgreSQL.
stop_remote_cluster() {
    local f
    for f in "$REMOTE_DIR"/worker-*.pid; do
        [ -f "$f" ] || continue
        f=${f##*/worker-}
        stop_remote_worker "${f%.pid}"
    done
    for f in "$REMOTE_DIR"/casd-*.pid; do
        [ -f "$f" ] || continue
        f=${f##*/}
        stop_pid "${f%.pid}"
    done
    stop_remote_server
    stop_pid postgres
    # /proc of the worker root stays while another cluster's processes use it.
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$REMOTE_ROOT" ] && return 0
    done
    if mountpoint -q "$REMOTE_ROOT/proc"; then umount "$REMOTE_ROOT/proc" 2>/dev/null || true; fi
}
