# Helpers for the monorepo suites (cache, compose) and bench/cache.sh: a copy
# of examples/ that tests may edit, and Debian's nginx as a Bazel HTTP cache.
# shellcheck shell=bash

MONO_SERVICES=(api gateway ctrl vault krane worker dashboard)

# mono_workspace DIR: a copy of examples/ at DIR using this rules_kiln
# checkout, so that tests can change services without touching the tree.
mono_workspace() {
    local dir=$1
    rm -rf "$dir"; mkdir -p "$dir"
    (cd "$KILN_ROOT/examples" && tar -cf - --exclude=./bazel-\* .) | (cd "$dir" && tar -xf -)
    sed -i "s|path = \"\\.\\.\"|path = \"$KILN_ROOT\"|" "$dir/MODULE.bazel"
    grep -q "path = \"$KILN_ROOT\"" "$dir/MODULE.bazel"
}

# start_cache NAME: nginx on a free 127.0.0.1 port storing what Bazel PUTs
# (WebDAV) under $KILN_WORK/cache-NAME/data. Sets CACHE_URL, CACHE_DIR and
# CACHE_LOG (one line per request: method uri status bytes_sent request_length).
start_cache() {
    local dir="$KILN_WORK/cache-$1" port
    port=$(free_port)
    rm -rf "$dir"; mkdir -p "$dir/data" "$dir/tmp"
    cat >"$dir/nginx.conf" <<NGINX
user root;
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 512; }
http {
    log_format cache '\$request_method \$uri \$status \$body_bytes_sent \$request_length';
    access_log $dir/access.log cache;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
    client_max_body_size 0;
    server {
        listen 127.0.0.1:$port;
        root $dir/data;
        location / {
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }
    }
}
NGINX
    : >"$dir/access.log"
    nginx -c "$dir/nginx.conf" -p "$dir" >"$dir/stderr.log" 2>&1 &
    echo $! >"$dir/pid"
    CACHE_URL="http://127.0.0.1:$port"
    CACHE_DIR="$dir/data"
    CACHE_LOG="$dir/access.log"
    wait_http "$CACHE_URL/" 30 || { cat "$dir/stderr.log" "$dir/error.log" >&2; return 1; }
}

stop_cache() {
    local pidfile="$KILN_WORK/cache-$1/pid"
    [ -f "$pidfile" ] || return 0
    kill "$(cat "$pidfile")" 2>/dev/null
    wait "$(cat "$pidfile")" 2>/dev/null
    rm -f "$pidfile"
    return 0
}

# cache_bytes LOG FROM_LINE METHOD: bytes moved by METHOD requests after line
# FROM_LINE (GET: body bytes sent for hits; PUT: request length).
cache_bytes() {
    tail -n +"$(($2 + 1))" "$1" | awk -v m="$3" '$1 == m && $3 < 300 { n += (m == "GET" ? $4 : $5) } END { print n + 0 }'
}

# executed_actions LOG: actions Bazel ran (not cache hits) from its summary line
# "INFO: N processes: A remote cache hit, B internal, C linux-sandbox." (internal
# ones do not execute anything).
executed_actions() {
    # One awk (no grep in a pipeline): a summary with no executed kind must
    # give 0, not a failed pipeline under `set -o pipefail`.
    awk '/^INFO: [0-9]+ process/ { line = $0 }
        END {
            sub(/^INFO: [0-9]+ processes?:? */, "", line)
            k = split(line, parts, ", "); n = 0
            for (i = 1; i <= k; i++)
                if (parts[i] !~ /cache hit|internal/ && parts[i] ~ /^[0-9]+ (linux-sandbox|local|processwrapper-sandbox|sandbox|worker|remote)/) {
                    split(parts[i], w, " "); n += w[1]
                }
            print n
        }' "$1"
}
