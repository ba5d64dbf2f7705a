#!/usr/bin/env bash
# Start a local Ray head and an MLflow tracking server for mistudy: the HTTP endpoints (MLflow,
# Ray dashboard + jobs API) on loopback only, Ray token auth on (a fresh token in
# $STUDY_HOME/run/ray_auth_token, mode 0600).
# Usage: cluster/local-up.sh [options] [-- extra `ray start` args]; `eval "$(cluster/local-up.sh)"`
# sets the exports, because stdout carries only `export ...` lines and progress goes to stderr.
# State (PIDs, logs, env.sh) lives in $STUDY_HOME/run/; cluster/local-down.sh undoes it (Linux).
set -euo pipefail
set +m  # no job control: a background child must not lead a process group (see detach below)

usage() {
    cat <<'EOF'
Usage: cluster/local-up.sh [options] [-- extra ray start args]

Starts, from the repository's .venv:
  1. a Ray head:      RAY_AUTH_MODE=token ray start --head --dashboard-host=127.0.0.1 ...
                        (every request to the jobs API, GCS and the client server needs the
                        token)
  2. an MLflow server: mlflow server --backend-store-uri sqlite:///$STUDY_HOME/mlflow.db
                        --artifacts-destination $STUDY_HOME/mlartifacts --host 127.0.0.1
and prints the lines to export (RAY_ADDRESS, MLFLOW_TRACKING_URI, STUDY_HOME, RAY_AUTH_MODE and,
with auth, RAY_AUTH_TOKEN_PATH). They are also written to $STUDY_HOME/run/env.sh (mode 0600).

Options (environment variable in brackets; flags win):
  --study-home DIR        folder for everything [STUDY_HOME, default ./studies]; made absolute
  --num-cpus N            CPUs Ray may schedule [STUDY_NUM_CPUS, default: nproc]
  --num-gpus G            GPUs Ray may schedule [STUDY_NUM_GPUS, default: Ray detects]
  --ray-port P            GCS port [STUDY_RAY_PORT, default 6379]
  --dashboard-port P      dashboard + jobs API [STUDY_DASHBOARD_PORT, default 8265]
  --client-port P         Ray client server [STUDY_CLIENT_PORT, default 10001]
  --agent-port P          dashboard agent HTTP [STUDY_AGENT_PORT, default 52365]
  --mlflow-port P         MLflow server [STUDY_MLFLOW_PORT, default 5000]
  --mlflow-workers N      uvicorn workers [STUDY_MLFLOW_WORKERS, default 2]
  --timeout S             seconds to wait for each service [STUDY_UP_TIMEOUT, default 180]
  --no-auth               start Ray without token auth (RAY_AUTH_MODE=disabled)
                          [STUDY_RAY_AUTH=disabled]: anyone who reaches the ports can then
                          submit jobs, i.e. run code as you
  -h, --help              this text

What listens where (measured with Ray 2.60): MLflow and the Ray dashboard/jobs API on 127.0.0.1
only. Ray's GCS, raylet, agents and client server bind every interface (or the machine's
address) whatever the flags: `ray start` turns --node-ip-address=127.0.0.1 into the machine's
address, and the client server cannot be switched off. The token guards them; on a machine
others can reach, also firewall the Ray ports (cluster/README.md, "Security").

Ray's session files go to a fresh /tmp/mistudy-ray.XXXXXX (or STUDY_RAY_TEMP_DIR, which
must be short: Ray's socket paths live under it). Ports 10002-19999 are Ray's default worker
ports; keep the ports above outside that range.

The old names of these variables (MISTUDY_NUM_CPUS, ..., MISTUDY_RAY_TEMP_DIR) still work, with
a deprecation line; the STUDY_ name wins when both are set.
EOF
}

say() { printf 'local-up: %s\n' "$*" >&2; }

# --- locate the project's virtualenv from this script's own path -------------------------------
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(dirname -- "$script_dir")
venv_bin="$repo_root/.venv/bin"
for tool in python ray mlflow; do
    if [[ ! -x "$venv_bin/$tool" ]]; then
        say "no '$tool' in the project's virtualenv ($venv_bin/$tool is missing)."
        say "Create it first with 'make setup' (from $repo_root)."
        exit 1
    fi
done
PY="$venv_bin/python"
# Jobs run `python` from the PATH of the process that ran `ray start` (docs/stack.md §5.1), so the
# head must see the project venv first.
export PATH="$venv_bin:$PATH"
export VIRTUAL_ENV="$repo_root/.venv"

# --- options -----------------------------------------------------------------------------------
# setting NAME DEFAULT -> $STUDY_NAME, else the old $MISTUDY_NAME (with a deprecation line),
# else DEFAULT; an empty variable counts as unset
setting() {
    local new="STUDY_$1" old="MISTUDY_$1"
    if [[ -n "${!new:-}" ]]; then
        printf '%s' "${!new}"
    elif [[ -n "${!old:-}" ]]; then
        say "$old is deprecated; set $new instead."
        printf '%s' "${!old}"
    else
        printf '%s' "$2"
    fi
}
study_home=${STUDY_HOME:-./studies}
num_cpus=$(setting NUM_CPUS "")
num_gpus=$(setting NUM_GPUS "")
ray_port=$(setting RAY_PORT 6379)
dashboard_port=$(setting DASHBOARD_PORT 8265)
client_port=$(setting CLIENT_PORT 10001)
agent_port=$(setting AGENT_PORT 52365)
mlflow_port=$(setting MLFLOW_PORT 5000)
mlflow_workers=$(setting MLFLOW_WORKERS 2)
timeout_s=$(setting UP_TIMEOUT 180)
auth_mode=$(setting RAY_AUTH token)
ray_tmp=$(setting RAY_TEMP_DIR "")
extra_ray_args=()

need_value() {
    if [[ $# -lt 2 || -z "$2" ]]; then
        say "option $1 needs a value."
        exit 2
    fi
}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --study-home) need_value "$@"; study_home=$2; shift 2 ;;
        --num-cpus) need_value "$@"; num_cpus=$2; shift 2 ;;
        --num-gpus) need_value "$@"; num_gpus=$2; shift 2 ;;
        --ray-port) need_value "$@"; ray_port=$2; shift 2 ;;
        --dashboard-port) need_value "$@"; dashboard_port=$2; shift 2 ;;
        --client-port) need_value "$@"; client_port=$2; shift 2 ;;
        --agent-port) need_value "$@"; agent_port=$2; shift 2 ;;
        --mlflow-port) need_value "$@"; mlflow_port=$2; shift 2 ;;
        --mlflow-workers) need_value "$@"; mlflow_workers=$2; shift 2 ;;
        --timeout) need_value "$@"; timeout_s=$2; shift 2 ;;
        --no-auth) auth_mode=disabled; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; extra_ray_args=("$@"); break ;;
        *) say "unknown option '$1' (see --help)."; exit 2 ;;
    esac
done

[[ -n "$num_cpus" ]] || num_cpus=$(nproc)

check_int() {  # name value min max
    if ! [[ "$2" =~ ^[0-9]+$ ]] || ((10#$2 < $3 || 10#$2 > $4)); then
        say "$1 must be an integer in [$3, $4], but got '$2'."
        exit 2
    fi
}
check_int --num-cpus "$num_cpus" 0 100000
[[ -z "$num_gpus" ]] || check_int --num-gpus "$num_gpus" 0 1024
check_int --mlflow-workers "$mlflow_workers" 1 64
check_int --timeout "$timeout_s" 1 3600
if [[ "$auth_mode" != token && "$auth_mode" != disabled ]]; then
    say "STUDY_RAY_AUTH must be 'token' or 'disabled', but got '$auth_mode'."
    exit 2
fi

for pair in "--ray-port:$ray_port" "--dashboard-port:$dashboard_port" \
    "--client-port:$client_port" "--agent-port:$agent_port" "--mlflow-port:$mlflow_port"; do
    check_int "${pair%%:*}" "${pair#*:}" 1 65535
done
ports=("$ray_port" "$dashboard_port" "$client_port" "$agent_port" "$mlflow_port")
if [[ $(printf '%s\n' "${ports[@]}" | sort -u | wc -l) -ne ${#ports[@]} ]]; then
    say "the five ports must differ, but got ray=$ray_port dashboard=$dashboard_port" \
        "client=$client_port agent=$agent_port mlflow=$mlflow_port."
    exit 2
fi

# --- STUDY_HOME, made absolute (jobs run from a temporary working dir: docs/stack.md §5.1) ---------
umask 077  # the stores, logs, token and env.sh are the user's alone
mkdir -p -- "$study_home"
study_home=$(cd -- "$study_home" && pwd -P)
run_dir="$study_home/run"
mkdir -p -- "$run_dir" "$study_home/mlartifacts"

# --- refuse if a previous local-up from this STUDY_HOME still runs -----------------------------
session_alive() {  # pid-of-session-leader -> 0 if any live (non-zombie) process is in it
    ps -e -o sid=,stat= | awk -v s="$1" '$1 == s && $2 !~ /^Z/ {found = 1} END {exit !found}'
}
for kind in ray mlflow; do
    f="$run_dir/$kind.pid"
    if [[ -f "$f" ]]; then
        old=$(<"$f")
        if [[ "$old" =~ ^[0-9]+$ ]] && session_alive "$old"; then
            say "the $kind processes that local-up started from $study_home still run" \
                "(session $old)."
            say "Stop it with: cluster/local-down.sh --study-home '$study_home'"
            exit 1
        fi
        say "removing stale $f (its processes are gone)."
        rm -f -- "$f"
    fi
done

# --- refuse if anything already listens on our ports -------------------------------------------
busy=$("$PY" - "${ports[@]}" <<'EOF'
import errno, socket, sys

def in_use(port):
    # A bind test sees listeners on any interface, including IPv6 and dual-stack sockets;
    # SO_REUSEADDR keeps TIME_WAIT leftovers of a previous run from counting as busy.
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
        finally:
            s.close()
    return False

print(" ".join(p for p in sys.argv[1:] if in_use(int(p))))
EOF
)
if [[ -n "$busy" ]]; then
    say "something already listens on port(s) $busy; refusing to start."
    say "Is a Ray head or MLflow server already running? Stop it, or pick other ports" \
        "(--ray-port, --dashboard-port, --client-port, --agent-port, --mlflow-port)."
    exit 1
fi

# --- helpers -----------------------------------------------------------------------------------
detach() {  # exec "$@" as the leader of a new session, so its pid is the session id
    exec "$PY" -c 'import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])' "$@"
}
http_ok() {  # url [token-file] -> 0 if it answers 2xx (no proxy: http_proxy must not catch
    # loopback); with a token file, the request carries the Ray token
    "$PY" - "$1" "${2:-}" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
request = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    with open(sys.argv[2]) as f:
        request.add_header("Authorization", "Bearer " + f.read().strip())
with opener.open(request, timeout=3) as r:
    sys.exit(0 if 200 <= r.status < 300 else 1)
EOF
}
show_tail() {  # file -> last lines on stderr
    say "last lines of $1:"
    tail -n 40 -- "$1" >&2 || true
}
started=0
rollback() {
    if ((started)); then
        say "rolling back what this run started..."
        "$script_dir/local-down.sh" --study-home "$study_home" >&2 || true
    fi
}
fail() {  # message... ; roll back and exit 1
    say "$@"
    rollback
    exit 1
}
trap 'say "interrupted."; rollback; exit 130' INT TERM

# --- 1. MLflow server, started first: its schema migration runs while Ray starts ---------------
say "starting MLflow server on http://127.0.0.1:$mlflow_port (store $study_home/mlflow.db)..."
# MLflow's background job runner (GenAI jobs, several Huey processes) is of no use here.
(
    cd -- "$study_home"
    detach env MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}" \
        mlflow server \
        --backend-store-uri "sqlite:///$study_home/mlflow.db" \
        --artifacts-destination "$study_home/mlartifacts" \
        --host 127.0.0.1 --port "$mlflow_port" --workers "$mlflow_workers"
) >"$run_dir/mlflow.log" 2>&1 </dev/null &
mlflow_sid=$!
printf '%s\n' "$mlflow_sid" >"$run_dir/mlflow.pid"
started=1

# --- 2. Ray head ---------------------------------------------------------------------------------
if [[ -n "$ray_tmp" ]]; then
    mkdir -p -- "$ray_tmp"
    ray_tmp=$(cd -- "$ray_tmp" && pwd -P)
else
    # A private, short temp dir: `ray_current_cluster` and `session_latest` of other Ray
    # instances on this machine stay untouched, and socket paths stay under 107 bytes.
    ray_tmp=$(mktemp -d /tmp/mistudy-ray.XXXXXX)
fi
printf '%s\n' "$ray_tmp" >"$run_dir/ray.temp_dir"
if ((${#ray_tmp} > 40)); then
    fail "the Ray temp dir '$ray_tmp' is ${#ray_tmp} characters long; Ray's unix socket" \
        "paths under it would exceed the OS limit. Use a path of at most 40 characters."
fi

ray_args=(
    start --head
    --num-cpus="$num_cpus"
    --port="$ray_port"
    --dashboard-host=127.0.0.1
    --dashboard-port="$dashboard_port"
    --ray-client-server-port="$client_port"
    --dashboard-agent-listen-port="$agent_port"
    --temp-dir="$ray_tmp"
    --disable-usage-stats
)
[[ -z "$num_gpus" ]] || ray_args+=(--num-gpus="$num_gpus")
ray_args+=("${extra_ray_args[@]}")

# Token auth: a fresh random token per local-up, readable by this user only. Jobs and clients
# find it through RAY_AUTH_TOKEN_PATH (exported below).
token_file=""
auth_env=(RAY_AUTH_MODE=disabled)
if [[ "$auth_mode" == token ]]; then
    token_file="$run_dir/ray_auth_token"
    "$PY" -c 'import secrets; print(secrets.token_hex(32))' >"$token_file"
    chmod 600 -- "$token_file"
    auth_env=(RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token_file")
fi

say "starting Ray head (GCS :$ray_port, dashboard http://127.0.0.1:$dashboard_port," \
    "auth $auth_mode, temp dir $ray_tmp)..."
# Jobs inherit the head's environment, so a job submitted here logs to this MLflow server and
# writes under this STUDY_HOME without any --runtime-env edits. RAY_ADDRESS from the caller's
# shell must not leak into `ray start`.
(
    cd -- "$study_home"
    detach env -u RAY_ADDRESS -u RAY_AUTH_TOKEN "${auth_env[@]}" \
        STUDY_HOME="$study_home" MLFLOW_TRACKING_URI="http://127.0.0.1:$mlflow_port" \
        PYTHONUNBUFFERED=1 timeout "$timeout_s" ray "${ray_args[@]}"
) >"$run_dir/ray-start.log" 2>&1 </dev/null &
ray_sid=$!
printf '%s\n' "$ray_sid" >"$run_dir/ray.pid"
if ! wait "$ray_sid"; then
    show_tail "$run_dir/ray-start.log"
    fail "'ray start' failed (log: $run_dir/ray-start.log)."
fi
# The daemons outlive `ray start`; they must be in its session, or local-down cannot find them.
if ! ps -e -o sid=,comm= |
    awk -v s="$ray_sid" '$1 == s && $2 == "gcs_server" {f = 1} END {exit !f}'; then
    show_tail "$run_dir/ray-start.log"
    fail "'ray start' returned, but no gcs_server runs in its session $ray_sid."
fi

# --- 3. wait until both answer -------------------------------------------------------------------
deadline=$((SECONDS + timeout_s))
until http_ok "http://127.0.0.1:$dashboard_port/api/version" "$token_file"; do
    if ((SECONDS >= deadline)); then
        show_tail "$run_dir/ray-start.log"
        fail "the Ray dashboard did not answer on http://127.0.0.1:$dashboard_port/api/version" \
            "within ${timeout_s}s (logs: $ray_tmp/session_latest/logs)."
    fi
    sleep 0.5
done
say "Ray head is up."

deadline=$((SECONDS + timeout_s))
until http_ok "http://127.0.0.1:$mlflow_port/health"; do
    if ! session_alive "$mlflow_sid"; then
        show_tail "$run_dir/mlflow.log"
        fail "the MLflow server exited during start-up (log: $run_dir/mlflow.log)."
    fi
    if ((SECONDS >= deadline)); then
        show_tail "$run_dir/mlflow.log"
        fail "the MLflow server did not answer http://127.0.0.1:$mlflow_port/health within" \
            "${timeout_s}s (log: $run_dir/mlflow.log)."
    fi
    sleep 0.5
done
say "MLflow server is up."
trap - INT TERM

# --- exports -----------------------------------------------------------------------------------
{
    printf 'export RAY_ADDRESS=%q\n' "http://127.0.0.1:$dashboard_port"
    printf 'export MLFLOW_TRACKING_URI=%q\n' "http://127.0.0.1:$mlflow_port"
    printf 'export STUDY_HOME=%q\n' "$study_home"
    printf 'export RAY_AUTH_MODE=%q\n' "$auth_mode"
    [[ -z "$token_file" ]] || printf 'export RAY_AUTH_TOKEN_PATH=%q\n' "$token_file"
} >"$run_dir/env.sh"
say "ready. Exports (also in $run_dir/env.sh); stop with cluster/local-down.sh" \
    "--study-home '$study_home':"
cat -- "$run_dir/env.sh"
