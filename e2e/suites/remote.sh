# Remote execution on a real REAPI cluster started here (e2e/lib/remote.sh:
# BuildGrid + PostgreSQL, and a buildbox worker chrooted in a minimal Debian sid
# root that has none of this machine's tools). Strictly remote builds
# (--spawn_strategy=remote, no local fallback) of the seven example services and
# of e2e/basic give the local build's digests, with every action on the worker
# (Bazel's summary and its execution log say so); a pulled base builds with only
# KilnFetchBlobs local; a worker killed mid-build and a server restart change no digest.

# shellcheck source=e2e/lib/remote.sh
source "$KILN_ROOT/e2e/lib/remote.sh"

REMOTE_SERVICES=(api ctrl dashboard gateway krane vault worker)

# remote_flags: what a build needs to run every action on the cluster, strictly.
remote_flags() {
    echo "--remote_executor=$REMOTE_EXECUTOR --spawn_strategy=remote" \
        "--extra_execution_platforms=@rules_kiln//platforms:remote_linux_x86_64 --jobs=8"
}

# process_kinds LOG: the kinds of Bazel's "N processes: ..." summary line, one per
# line ("internal", "remote", "linux-sandbox", "remote cache hit", ...).
process_kinds() {
    grep -E '^INFO: [0-9]+ process(es)?: ' "$1" | tail -1 | sed -E 's/^INFO: [0-9]+ process(es)?: //; s/\.$//' |
        tr ',' '\n' | sed -E 's/^ *[0-9]+ //'
}

# remote_count LOG: N of "N remote" in the summary line (0 when absent).
remote_count() {
    grep -E '^INFO: [0-9]+ process(es)?: ' "$1" | tail -1 | grep -oE '[0-9]+ remote[,.]' | grep -oE '[0-9]+' || echo 0
}

# only_remote LOG: the summary has "N remote" and nothing but remote and internal
# (Bazel's in-process actions: symlinks, file writes).
only_remote() {
    local kinds
    kinds=$(process_kinds "$1")
    [ "$(remote_count "$1")" -gt 0 ] || { echo "no remote processes: $(grep -E '^INFO: [0-9]+ process' "$1")"; return 1; }
    if grep -vxE 'internal|remote' <<<"$kinds" | grep -q .; then
        echo "not only remote: $(grep -E '^INFO: [0-9]+ process' "$1" | tail -1)"
        return 1
    fi
}

# runners EXECLOG: "MNEMONIC RUNNER[,RUNNER]" per mnemonic of a --execution_log_json_file.
runners() {
    jq -rs 'group_by(.mnemonic)[] | "\(.[0].mnemonic) \(map(.runner) | unique | join(","))"' "$1"
}

# mnemonics_remote EXECLOG MNEMONIC...: each MNEMONIC ran, and only remotely.
mnemonics_remote() {
    local log=$1 m got
    shift
    for m in "$@"; do
        got=$(runners "$log" | awk -v m="$m" '$1 == m { $1 = ""; print substr($0, 2) }')
        [ "$got" = remote ] || { echo "$m ran on: ${got:-nothing}"; runners "$log"; return 1; }
    done
    if runners "$log" | awk '{ $1 = ""; print }' | grep -vq '^ remote$'; then
        echo "some spawn did not run remotely:"; runners "$log"; return 1
    fi
}

# digests_of BIN: "service digest" lines of the examples' seven :image indexes.
digests_of() {
    local svc
    for svc in "${REMOTE_SERVICES[@]}"; do
        printf '%s %s\n' "$svc" "$(cat "$1/build/$svc/image.digest" 2>/dev/null || echo missing)"
    done
}

# top_digests BIN: "name digest" of the *.digest files at BIN's top (e2e/basic's //:all).
top_digests() {
    local f
    for f in "$1"/*.digest; do printf '%s %s\n' "${f##*/}" "$(cat "$f")"; done
}

remote_examples_targets() {
    local svc
    for svc in "${REMOTE_SERVICES[@]}"; do printf '//build/%s:image ' "$svc"; done
}

# wait_worker_busy NAME SECONDS: polls until the worker runs an action.
wait_worker_busy() {
    local start=$SECONDS
    until remote_worker_busy "$1"; do
        [ $((SECONDS - start)) -lt "$2" ] || return 1
        sleep 0.1
    done
}

suite_remote() {
    local suite_start=$SECONDS targets local_bin remote_bin flags ob
    targets=$(remote_examples_targets)
    # Every build here starts cold: a kept output base would not execute
    # anything. Old ones are moved aside and deleted in the background.
    local trash="$KILN_WORK/remote-trash.$$"
    mkdir -p "$trash"
    for ob in remote-local remote-ex remote-lazy remote-probe remote-basic remote-basic-local remote-pulled remote-pulled-local; do
        if [ -d "$KILN_WORK/ob-$ob" ]; then
            bazel --output_base="$KILN_WORK/ob-$ob" shutdown >/dev/null 2>&1
            mv "$KILN_WORK/ob-$ob" "$trash/"
        fi
    done
    rm -rf "$trash" &
    disown $!

    # The local reference build runs while the cluster's parts are prepared
    # (debootstrap and pip wait on the network; the build on the CPU).
    # shellcheck disable=SC2086
    (cd examples && kbazel remote-local build --output_groups=+oci_layout $targets //build/base) \
        >"$KILN_WORK/remote-local.log" 2>&1 &
    local local_pid=$!
    if start_remote_cluster >"$KILN_WORK/remote-cluster.log" 2>&1; then
        pass "remote: BuildGrid, PostgreSQL and a buildbox worker start on free loopback ports"
    else
        fail "remote: the cluster starts" "$(tail -20 "$KILN_WORK/remote-cluster.log")"
        wait "$local_pid"
        stop_remote_cluster
        return
    fi
    flags=$(remote_flags)

    # The worker's root has none of this machine's tools: an action that reaches
    # for one fails there (and the same action works locally, where go is).
    remote_isolation_checks

    # Cold, strictly remote build of the seven services, alongside the local
    # one (the remote one waits on uploads and scheduling as much as on the
    # CPU); the worker is killed (SIGKILL) while it runs an action, and a
    # second one takes over.
    local log="$KILN_WORK/remote-examples.log" execlog="$KILN_WORK/remote-examples.exec.json"
    # shellcheck disable=SC2086
    (cd examples && kbazel remote-ex build $flags --execution_log_json_file="$execlog" $targets) >"$log" 2>&1 &
    local build_pid=$! action
    if wait_worker_busy w1 600; then
        action=$(remote_worker_action w1)
        stop_remote_worker w1 KILL
        pass "remote: worker w1 killed (SIGKILL) while running an action of the examples' build (${action})"
    else
        fail "remote: the worker never ran an action of the examples' build" "$(tail -5 "$log")"
    fi
    start_remote_worker w2 >>"$KILN_WORK/remote-cluster.log" 2>&1 || fail "remote: worker w2 starts"
    if wait "$build_pid"; then
        pass "remote: bazel build --spawn_strategy=remote of the seven services' :image (worker w2 finished it)"
    else
        fail "remote: bazel build --spawn_strategy=remote of the seven services' :image" "$(grep -E 'ERROR|FAIL' "$log" | head -8)"
    fi
    if ! wait "$local_pid"; then
        fail "remote: local reference build of the seven services" "$(grep -E 'ERROR' "$KILN_WORK/remote-local.log" | head -5)"
        stop_remote_cluster
        return
    fi
    local_bin="$(cd examples && kbazel remote-local info bazel-bin 2>/dev/null)"
    check "remote: examples: Bazel's summary shows N remote and nothing local" only_remote "$log"
    check "remote: examples: KilnLayer, KilnImage, KilnIndex, GoStdlib, GoStaticBinary (static_base's and the services') ran on the worker, nothing else" \
        mnemonics_remote "$execlog" KilnLayer KilnImage KilnIndex GoStdlib GoStaticBinary
    remote_bin="$(cd examples && kbazel remote-ex info bazel-bin 2>/dev/null)"
    expect_eq "remote: examples: every :image index digest equals the local build's (after the worker was killed)" \
        "$(digests_of "$local_bin")" "$(digests_of "$remote_bin")"
    check "remote: worker w2 (started after w1 was killed) ran actions to completion" \
        grep -q "Runner exited with code 0" "$REMOTE_DIR/worker-w2.log"

    # Before remote_basic_checks: it restarts the server, whose CAS is in memory.
    remote_lazy_release_checks "$flags" "$remote_bin"

    remote_basic_checks "$flags"
    remote_pull_checks "$flags" "$local_bin"

    stop_remote_cluster
    local left=""
    for f in "$REMOTE_DIR"/*.pid; do [ -f "$f" ] && left="$left ${f##*/}"; done
    expect_eq "remote: the cluster stops by pid (workers, server, PostgreSQL)" "" "$left"
    log "remote: suite wall time $((SECONDS - suite_start)) s"
}

remote_isolation_checks() {
    local ws="$KILN_WORK/remote-probe-ws"
    rm -rf "$ws" && mkdir -p "$ws"
    echo 'module(name = "kiln_remote_probe")' >"$ws/MODULE.bazel"
    cp "$KILN_ROOT/e2e/fixtures/remote_probe/BUILD.bazel" "$KILN_ROOT/e2e/fixtures/remote_probe/REPO.bazel" "$ws/"
    # The exec platform is a plain one here: no rules_kiln in this workspace.
    local probe_flags="--remote_executor=$REMOTE_EXECUTOR --spawn_strategy=remote --remote_default_exec_properties=OSFamily=linux --remote_default_exec_properties=ISA=x86-64"
    if (cd "$ws" && kbazel remote-probe build //:host_go) >"$KILN_WORK/remote-probe-local.log" 2>&1; then
        # shellcheck disable=SC2086
        if (cd "$ws" && kbazel remote-probe build $probe_flags //:host_go) >"$KILN_WORK/remote-probe.log" 2>&1; then
            fail "remote: an action running the host's go fails on the worker" "it succeeded remotely"
        elif grep -q "go: not found\|go: command not found" "$KILN_WORK/remote-probe.log"; then
            pass "remote: an action running the host's go fails on the worker (go: not found), and works locally"
        else
            fail "remote: an action running the host's go fails on the worker" "$(grep -E 'ERROR' "$KILN_WORK/remote-probe.log" | head -5)"
        fi
    else
        fail "remote: the go genrule builds locally" "$(grep ERROR "$KILN_WORK/remote-probe-local.log" | head -3)"
    fi
    # shellcheck disable=SC2086
    check "remote: on the worker: no go, cargo, docker, bazel or /root/.cargo" \
        remote_probe_bazel "$ws" build $probe_flags //:isolated
}

# remote_probe_bazel WS ARGS...: kbazel in the probe workspace (a function, for `check`).
# remote_lazy_release_checks FLAGS BIN: a lazy release of the seven services from
# a fresh output base with --remote_download_minimal reads the blobs the
# registry lacks from BuildGrid's CAS over grpc:// (BatchReadBlobs,
# ByteStream/Read): every tag holds the built digest, and again: no write.
remote_lazy_release_checks() {
    local flags=$1 bin=$2 log="$KILN_WORK/remote-lazy.log" reg reglog svc wrong="" uploads n0 writes
    start_registry remote-lazy || { fail "remote: docker-registry starts (lazy release)"; return; }
    reg=$REGISTRY reglog=$REGISTRY_LOG
    local lazy=(--remote_download_minimal --@rules_kiln//settings:push=lazy
        --@rules_kiln//settings:remote_cache="$REMOTE_EXECUTOR")
    rm -rf "$KILN_WORK/ob-remote-lazy"
    # shellcheck disable=SC2086
    if (cd examples && kbazel remote-lazy run $flags "${lazy[@]}" //:release -- --registry "$reg" --tag v1) >"$log" 2>&1; then
        pass "remote: lazy release (fresh output base, --remote_download_minimal) from BuildGrid's CAS over grpc:// exits 0"
    else
        fail "remote: lazy release from BuildGrid's CAS over grpc://" "$(grep -E 'kiln-push|ERROR' "$log" | tail -8)"
    fi
    for svc in "${REMOTE_SERVICES[@]}"; do
        [ "$(skopeo inspect --raw --tls-verify=false "docker://$reg/kiln/$svc:v1" 2>/dev/null | sha256sum | cut -d' ' -f1)" = \
            "$(sed 's/^sha256://' "$bin/build/$svc/image.digest")" ] || wrong="$wrong $svc"
    done
    expect_eq "remote: lazy release: every service's v1 tag holds the built index digest (skopeo)" "" "$wrong"
    uploads=$(sed -nE 's/.*"PUT (\/v2\/[^ ]*\/blobs\/uploads\/[^ ]*) HTTP[^"]*" 201 .*/\1/p' "$reglog" | wc -l)
    if [ "$uploads" -gt 0 ]; then
        pass "remote: lazy release: $uploads blobs uploaded (registry log)"
    else
        fail "remote: lazy release uploaded blobs (registry log)" "0 completed uploads"
    fi
    check "remote: lazy release: blobs were read from the gRPC cache (not local outputs)" \
        grep -q 'pushed (from the remote cache) blob' "$log"
    n0=$(wc -l <"$reglog")
    # shellcheck disable=SC2086
    (cd examples && kbazel remote-lazy run $flags "${lazy[@]}" //:release -- --registry "$reg" --tag v1) >"$log.2" 2>&1 ||
        fail "remote: the second lazy release exits 0" "$(grep -E 'kiln-push|ERROR' "$log.2" | tail -5)"
    writes=$(tail -n +"$((n0 + 1))" "$reglog" | grep -cE '"(PUT|POST|PATCH|DELETE) /v2/' || true)
    expect_eq "remote: the second lazy release makes 0 writes (registry log)" "0" "$writes"
    bazel --output_base="$KILN_WORK/ob-remote-lazy" shutdown >/dev/null 2>&1
    stop_registries
}

remote_probe_bazel() { (cd "$1" && kbazel remote-probe "${@:2}"); }

remote_basic_checks() {
    local flags=$1 log="$KILN_WORK/remote-basic.log" first second local_digests
    (cd e2e/basic && kbazel remote-basic-local build //:all) >"$KILN_WORK/remote-basic-local.log" 2>&1 ||
        { fail "remote: local build of e2e/basic //:all" "$(grep ERROR "$KILN_WORK/remote-basic-local.log" | head -5)"; return; }
    local_digests=$(top_digests "$(cd e2e/basic && kbazel remote-basic-local info bazel-bin 2>/dev/null)")
    # shellcheck disable=SC2086
    if (cd e2e/basic && kbazel remote-basic build $flags //:all) >"$log" 2>&1; then
        pass "remote: bazel build --spawn_strategy=remote of e2e/basic //:all"
    else
        fail "remote: bazel build --spawn_strategy=remote of e2e/basic //:all" "$(grep -E 'ERROR' "$log" | head -8)"
        return
    fi
    check "remote: e2e/basic: Bazel's summary shows N remote and nothing local" only_remote "$log"
    first=$(remote_count "$log")
    local bin
    bin="$(cd e2e/basic && kbazel remote-basic info bazel-bin 2>/dev/null)"
    expect_eq "remote: e2e/basic: every digest equals the local build's" "$local_digests" "$(top_digests "$bin")"

    # The server restarts (its in-memory CAS and action cache are gone); from a
    # clean output base, the build executes every action again, same digests.
    stop_remote_worker w2
    stop_remote_server
    if start_remote_server >>"$KILN_WORK/remote-cluster.log" 2>&1 && start_remote_worker w3 >>"$KILN_WORK/remote-cluster.log" 2>&1; then
        pass "remote: the server restarts (same port), worker w3 connects"
    else
        fail "remote: the server restarts" "$(tail -5 "$KILN_WORK/remote-cluster.log")"
        return
    fi
    (cd e2e/basic && kbazel remote-basic clean) >/dev/null 2>&1
    # shellcheck disable=SC2086
    if (cd e2e/basic && kbazel remote-basic build $flags //:all) >"$log.2" 2>&1; then
        second=$(remote_count "$log.2")
        expect_eq "remote: after the server restart, every action executes again on the worker (no cache hit)" \
            "$first remote" "$second $(process_kinds "$log.2" | grep -vx internal | sort -u | tr '\n' ' ' | sed 's/ $//')"
        expect_eq "remote: after the server restart, the same digests" "$local_digests" "$(top_digests "$bin")"
    else
        fail "remote: build after the server restart" "$(grep -E 'ERROR' "$log.2" | head -8)"
    fi
}

# A base pulled from a registry: KilnFetchBlobs (requires-network, no-remote-exec)
# runs here with --strategy=KilnFetchBlobs=local, everything else on the worker.
remote_pull_checks() {
    local flags=$1 local_bin=$2 ws="$KILN_WORK/remote-pulled-ws" digest log="$KILN_WORK/remote-pulled.log"
    start_registry remote || { fail "remote: registry starts"; return; }
    if ! skopeo copy --all --dest-tls-verify=false "oci:$local_bin/build/base/base.oci" "docker://$REGISTRY/kiln-remote/base:v1" >"$KILN_WORK/remote-copy.log" 2>&1; then
        fail "remote: skopeo copy of the base to the registry" "$(tail -3 "$KILN_WORK/remote-copy.log")"
        return
    fi
    digest=$(cat "$local_bin/build/base/base.digest")
    rm -rf "$ws" && mkdir -p "$ws"
    cp "$KILN_ROOT/e2e/basic/hello.txt" "$ws/hello.txt"
    cat >"$ws/MODULE.bazel" <<MODULE
module(name = "kiln_e2e_remote_pulled")

bazel_dep(name = "rules_kiln")
local_path_override(
    module_name = "rules_kiln",
    path = "$KILN_ROOT",
)

kiln = use_extension("@rules_kiln//rules:extensions.bzl", "kiln")
kiln.pull(name = "base", image = "$REGISTRY/kiln-remote/base", digest = "$digest", platforms = ["linux/amd64", "linux/arm64"])
use_repo(kiln, "base")
MODULE
    cp "$KILN_ROOT/e2e/fixtures/remote_pulled/BUILD.bazel" "$KILN_ROOT/e2e/fixtures/remote_pulled/REPO.bazel" "$ws/"
    (cd "$ws" && kbazel remote-pulled-local build --output_groups=+oci_layout //:app) >"$log.local" 2>&1 ||
        { fail "remote: local build on the pulled base" "$(grep ERROR "$log.local" | head -5)"; return; }
    local want
    want=$(cat "$(cd "$ws" && kbazel remote-pulled-local info bazel-bin 2>/dev/null)/app.digest")
    # shellcheck disable=SC2086
    if (cd "$ws" && kbazel remote-pulled build $flags --strategy=KilnFetchBlobs=local \
        --execution_log_json_file="$log.exec.json" --output_groups=+oci_layout //:app) >"$log" 2>&1; then
        pass "remote: image on a pulled base (its oci_layout too) builds with --spawn_strategy=remote --strategy=KilnFetchBlobs=local"
    else
        fail "remote: image on a pulled base builds remotely with --strategy=KilnFetchBlobs=local" "$(grep ERROR "$log" | head -5)"
        return
    fi
    expect_eq "remote: pulled base: KilnFetchBlobs ran locally, the rest (KilnImage, KilnLayer, ...) remotely" \
        "KilnFetchBlobs local" "$(runners "$log.exec.json" | grep -v ' remote$')"
    check "remote: pulled base: KilnImage ran on the worker" bash -c "$(declare -f runners); runners '$log.exec.json' | grep -qx 'KilnImage remote'"
    expect_eq "remote: pulled base: the image digest equals the local build's" \
        "$want" "$(cat "$(cd "$ws" && kbazel remote-pulled info bazel-bin 2>/dev/null)/app.digest")"
}
