# Shared helpers of the benchmark scripts (sourced, not run).
# The stack runs natively under the compose.yaml limits (cgroups v1 or v2, via target/release/stack),
# or with STACK=compose as compose.yaml under a Docker engine; the load generator runs outside both.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

build_release() {
    [[ -n ${SKIP_BUILD:-} ]] && return 0
    cargo build --release --quiet -p api -p balancer -p stack -p loadtest
}

# The stack's services, as compose.yaml names them.
services="db api1 api2 lb"

# start_stack [stack args...]: starts the stack in the background and waits until it is ready.
# The environment passes through (DB_POOL_SIZE, DB_TX_SHAPE, LB_STRATEGY, LB_MODE, ...).
# With STACK=compose the stack is compose.yaml under a Docker engine instead (start_compose).
start_stack() {
    if [[ ${STACK:-native} == compose ]]; then
        start_compose
        return
    fi
    stack_log=$(mktemp /tmp/rinha-bench-stack.XXXXXX)
    target/release/stack --limits "$@" >"$stack_log" 2>&1 &
    stack_pid=$!
    # The runner's directory (PostgreSQL's data and socket, the volumes) and its database.
    stack_dir=/tmp/rinha-stack-$stack_pid
    stack_db="postgres://postgres@localhost/rinha?host=$stack_dir/pg"
    declare -gA cg_group
    local s
    for s in $services; do cg_group[$s]=rinha-$stack_pid-$s; done
    for _ in $(seq 1 300); do
        grep -q "stack: ready" "$stack_log" && return 0
        kill -0 "$stack_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$stack_log" >&2
    echo "bench: the stack did not start" >&2
    return 1
}

# api_reports <LOG: what the APIs said at shutdown, for the results: batch_report (group
# commit) and timings_report (api/src/metrics.rs, a line per stage and instance), each a
# ';'-separated list.
api_reports() {
    local log
    log=$(cat)
    batch_report=$( (grep -h " group commit: " <<<"$log" || true) | sed 's/.*group commit: //' | paste -sd ';' -)
    timings_report=$( (grep -h " timings: " <<<"$log" || true) | sed 's/.*timings: //' | paste -sd ';' -)
}

stop_stack() {
    if [[ ${STACK:-native} == compose ]]; then
        stop_compose
        return
    fi
    kill -TERM "$stack_pid" 2>/dev/null
    wait "$stack_pid" 2>/dev/null
    api_reports <"$stack_log"
    rm -f "$stack_log"
}

# start_compose: compose.yaml built and started as project $compose_project, waited for as the
# official script does (GET /clientes/1/extrato on 9999, 40 s at most); each service's
# cgroup is its container's (cgroupfs driver: docker/ID under each controller).
# COMPOSE_FILE (Compose's own variable) runs another file, e.g. a variant being measured.
start_compose() {
    compose_project=${COMPOSE_PROJECT:-rinha-bench}
    ci/images/build >&2
    scripts/compose -p "$compose_project" build -q >&2
    scripts/compose -p "$compose_project" up -d >&2
    declare -gA cg_group
    local s id
    for s in $services; do
        id=$(scripts/compose -p "$compose_project" ps -q "$s")
        cg_group[$s]=docker/$id
    done
    for _ in $(seq 1 400); do
        curl -sf -o /dev/null http://127.0.0.1:9999/clientes/1/extrato && return 0
        sleep 0.1
    done
    scripts/compose -p "$compose_project" logs --tail 30 >&2
    echo "bench: the compose stack did not answer within 40 s" >&2
    return 1
}

stop_compose() {
    scripts/compose -p "$compose_project" stop --timeout 10 >/dev/null 2>&1
    api_reports < <(scripts/compose -p "$compose_project" logs --no-color api1 api2 2>/dev/null || true)
    scripts/compose -p "$compose_project" down -v --timeout 10 >/dev/null 2>&1
}

# pg_counters: PostgreSQL's own counts so far, as JSON: the stack database's commits (read-only
# ones included), WAL records, full-page images, bytes, and the WAL flushes with their total
# time (track_wal_io_timing), so that a run's commits per flush and mean flush time come from
# the database itself.
pg_counters() {
    local sql="SELECT json_build_object('commits', (SELECT xact_commit FROM pg_stat_database
        WHERE datname = current_database()),
        'wal_records', wal_records, 'wal_fpi', wal_fpi, 'wal_bytes', wal_bytes,
        'wal_writes', wal_write, 'wal_syncs', wal_sync, 'wal_sync_ms', wal_sync_time)
        FROM pg_stat_wal"
    if [[ ${STACK:-native} == compose ]]; then
        scripts/compose -p "$compose_project" exec -T db psql -XAtq -U rinha -d rinha -c "$sql" 2>/dev/null || echo null
    else
        psql -XAtq -d "$stack_db" -c "$sql" 2>/dev/null || echo null
    fi
}

# cg_file SERVICE FILE: a cgroup file of the running stack's service (v1 layout, or v2).
cg_file() {
    local name=${cg_group[$1]} f
    for f in "/sys/fs/cgroup/$name/$2" "/sys/fs/cgroup/cpuacct/$name/$2" "/sys/fs/cgroup/memory/$name/$2"; do
        [[ -f $f ]] && { echo "$f"; return; }
    done
}

# cpu_ns SERVICE: CPU time used so far by the service, in nanoseconds.
cpu_ns() {
    local f
    f=$(cg_file "$1" cpuacct.usage)
    if [[ -n $f ]]; then cat "$f"; return; fi
    f=$(cg_file "$1" cpu.stat)
    awk '/^usage_usec/ {printf "%.0f\n", $2 * 1000}' "$f"
}

# peak_mb SERVICE: the most memory the service has used, in MB.
peak_mb() {
    local f
    f=$(cg_file "$1" memory.max_usage_in_bytes)
    [[ -n $f ]] || f=$(cg_file "$1" memory.peak)
    awk '{printf "%.1f", $1 / 1e6}' "$f"
}

# throttling SERVICE: "PERIODS THROTTLED NS": CFS periods so far, how many of them ran out of
# quota, and the time the service's tasks spent waiting for the next period. A throttled
# service stalls every request it holds until then (up to most of the 100 ms period).
throttling() {
    local f=/sys/fs/cgroup/cpu/${cg_group[$1]}/cpu.stat # v1: the cpu controller's, not cpuacct's
    [[ -f $f ]] || f=$(cg_file "$1" cpu.stat)
    awk '/^nr_periods/ {p = $2} /^nr_throttled/ {n = $2} /^throttled_time/ {t = $2}
         /^throttled_usec/ {t = $2 * 1000} END {printf "%d %d %.0f\n", p, n, t}' "$f"
}

# mark_cpu: remembers every service's CPU time and throttling so far, for service_costs.
mark_cpu() {
    declare -gA cpu_mark throttle_mark
    local s
    for s in $services; do
        cpu_mark[$s]=$(cpu_ns "$s")
        throttle_mark[$s]=$(throttling "$s")
    done
}

# service_costs: a JSON object, per service the CPU milliseconds used since mark_cpu, the
# peak memory, and the CFS periods since then that ran out of quota and the time lost
# waiting: {"db": {"cpu_ms": 1.0, "peak_mb": 2.0, "periods": 600, "throttled": 3,
# "throttled_ms": 40.0}, ...}. Call before stop_stack.
service_costs() {
    local s json="" p0 n0 t0 p1 n1 t1
    for s in $services; do
        read -r p0 n0 t0 <<<"${throttle_mark[$s]}"
        read -r p1 n1 t1 <<<"$(throttling "$s")"
        json+=$(printf '"%s": {"cpu_ms": %.1f, "peak_mb": %s, "periods": %d, "throttled": %d, "throttled_ms": %.1f}, ' \
            "$s" "$(( $(cpu_ns "$s") - ${cpu_mark[$s]} ))e-6" "$(peak_mb "$s")" \
            $((p1 - p0)) $((n1 - n0)) "$((t1 - t0))e-6")
    done
    echo "{${json%, }}"
}

# median of the numbers on standard input
median() {
    sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# write_nginx_conf FILE DIR LISTEN SOCKET...: nginx as a Rinha entry runs it in front of the
# APIs' Unix sockets: one worker, pooled upstream connections, no access log. DIR holds its
# pid and error log.
write_nginx_conf() {
    local file=$1 dir=$2 listen=$3 servers="" socket
    shift 3
    for socket in "$@"; do servers+="server unix:$socket; "; done
    cat >"$file" <<CONF
worker_processes 1; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream api { $servers keepalive 64; }
  server { listen $listen;
    location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
}

# start_nginx_lb: nginx on port 9999 in place of our balancer, inside the lb service's cgroup
# (the stack was started with --port 19999, so ours sits idle there).
start_nginx_lb() {
    nginx_dir=$(mktemp -d /tmp/rinha-bench-nginx.XXXXXX)
    chmod 755 "$nginx_dir"
    local sockets=$stack_dir/volumes/http-sockets procs="" d
    write_nginx_conf "$nginx_dir/nginx.conf" "$nginx_dir" 9999 "$sockets/api1.sock" "$sockets/api2.sock"
    # The lb's groups: v2's one, or v1's per controller (cpu carries the quota).
    for d in /sys/fs/cgroup /sys/fs/cgroup/cpu /sys/fs/cgroup/cpuacct /sys/fs/cgroup/memory; do
        procs+=" $d/${cg_group[lb]}/cgroup.procs"
    done
    # Join the groups first, then become nginx: its master and worker are born inside them.
    sh -c 'for f in $0; do [ -f "$f" ] && echo $$ > "$f"; done; exec nginx -c "$1"' \
        "$procs" "$nginx_dir/nginx.conf"
    for _ in $(seq 50); do
        curl -sf http://127.0.0.1:9999/clientes/1/extrato >/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nginx did not start" >&2
    return 1
}

stop_nginx_lb() {
    [[ -f $nginx_dir/nginx.pid ]] && kill "$(cat "$nginx_dir/nginx.pid")" 2>/dev/null
    sleep 0.3
    rm -rf "$nginx_dir"
}

# use_split "db=0.90 api=0.25 lb=0.10": the next start_stack runs under these CPU limits
# instead of limits.yaml's, in every mode (api sets both instances), from a temporary copy of
# the repo whose limits.yaml differs only there (RINHA_REPO).
use_split() {
    split_repo=$(mktemp -d /tmp/rinha-bench-split.XXXXXX)
    ln -s "$repo/db" "$split_repo/db"
    ln -s "$repo/scripts" "$split_repo/scripts"
    cp "$repo/compose.yaml" "$split_repo/"
    python3 - "$repo/limits.yaml" "$split_repo/limits.yaml" "$1" <<'PY'
import re, sys
source, target, split = sys.argv[1], sys.argv[2], dict(s.split("=") for s in sys.argv[3].split())
service, out = None, []
for line in open(source):
    m = re.match(r"^  ([a-z]+)[0-9]*-[a-z]+:", line)  # db-handoff, api-http, ...
    if m:
        service = m.group(1)
    if service in split:
        line = re.sub(r'cpus: "[0-9.]+"', f'cpus: "{split[service]}"', line)
    out.append(line)
open(target, "w").write("".join(out))
PY
    export RINHA_REPO=$split_repo
}
