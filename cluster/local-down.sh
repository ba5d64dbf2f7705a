#!/usr/bin/env bash
# Stop what cluster/local-up.sh started for one STUDY_HOME: the MLflow server, then the Ray head.
# Usage: cluster/local-down.sh [--study-home DIR] [--grace S] [--purge-logs]. Linux only.
# Only processes in the sessions recorded in $STUDY_HOME/run/*.pid are signalled, never by name:
# plain `ray stop` would kill every Ray process on the machine, other users' clusters included.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: cluster/local-down.sh [options]

Stops the MLflow server and the Ray head that cluster/local-up.sh started for STUDY_HOME, by
the session ids recorded in $STUDY_HOME/run/{mlflow,ray}.pid, and waits until they are gone.

Options (environment variable in brackets; flags win):
  --study-home DIR   [STUDY_HOME, default ./studies]
  --grace S          seconds to wait after SIGTERM before SIGKILL [STUDY_STOP_GRACE, default 15]
  --purge-logs       also delete the Ray temp dir that local-up created (session logs)
  -h, --help         this text

The old name MISTUDY_STOP_GRACE still works, with a deprecation line; STUDY_STOP_GRACE wins.
EOF
}

say() { printf 'local-down: %s\n' "$*" >&2; }

study_home=${STUDY_HOME:-./studies}
if [[ -n "${STUDY_STOP_GRACE:-}" ]]; then
    grace=$STUDY_STOP_GRACE
elif [[ -n "${MISTUDY_STOP_GRACE:-}" ]]; then
    say "MISTUDY_STOP_GRACE is deprecated; set STUDY_STOP_GRACE instead."
    grace=$MISTUDY_STOP_GRACE
else
    grace=15
fi
purge_logs=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --study-home)
            [[ $# -ge 2 && -n "$2" ]] || { say "option $1 needs a value."; exit 2; }
            study_home=$2; shift 2 ;;
        --grace)
            [[ $# -ge 2 && -n "$2" ]] || { say "option $1 needs a value."; exit 2; }
            grace=$2; shift 2 ;;
        --purge-logs) purge_logs=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) say "unknown option '$1' (see --help)."; exit 2 ;;
    esac
done
if ! [[ "$grace" =~ ^[0-9]+$ ]]; then
    say "--grace must be a whole number of seconds, but got '$grace'."
    exit 2
fi

if [[ ! -d "$study_home" ]]; then
    say "no folder $study_home; nothing to stop."
    exit 0
fi
study_home=$(cd -- "$study_home" && pwd -P)
run_dir="$study_home/run"

# --- process helpers: everything is keyed by session id (the leader's pid) ---------------------
session_pids() {  # sid [comm] -> live (non-zombie) pids in the session, optionally one command
    ps -e -o pid=,sid=,stat=,comm= | awk -v s="$1" -v c="${2:-}" \
        '$2 == s && $3 !~ /^Z/ && (c == "" || $4 == c) {print $1}'
}
session_pids_except() {  # sid comm -> live pids in the session other than that command
    ps -e -o pid=,sid=,stat=,comm= | awk -v s="$1" -v c="$2" \
        '$2 == s && $3 !~ /^Z/ && $4 != c {print $1}'
}
session_mentions() {  # sid text -> 0 if some process of the session has text in its arguments
    # All in awk: `grep -q` would exit early, and under pipefail the SIGPIPE of the writer
    # would turn a match into a failure.
    ps -e -o sid=,args= | MENTION="$2" awk -v s="$1" \
        'BEGIN {t = ENVIRON["MENTION"]} $1 == s && index($0, t) {f = 1} END {exit !f}'
}
signal_pids() {  # signal pid... (a pid that already exited is fine)
    local sig=$1
    shift
    [[ $# -gt 0 ]] || return 0
    kill "-$sig" "$@" 2>/dev/null || true
}
wait_gone() {  # seconds pid... -> 0 once all are gone, 1 on timeout
    local limit=$(($1 * 5)) i p alive
    shift
    for ((i = 0; i <= limit; i++)); do
        alive=0
        for p in "$@"; do
            if [[ -e /proc/$p ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null
            then
                alive=1
                break
            fi
        done
        ((alive)) || return 0
        sleep 0.2
    done
    return 1
}
read_pid() {  # file -> its pid on stdout, or nothing when missing or malformed
    local v
    [[ -f "$1" ]] || return 0
    v=$(<"$1")
    if [[ "$v" =~ ^[0-9]+$ ]]; then
        printf '%s\n' "$v"
    else
        say "ignoring $1: it should hold a pid, but holds '$v'."
    fi
}

stopped_any=0

# --- 1. MLflow server (the CLI, its uvicorn master and workers share one session) -------------
mlflow_sid=$(read_pid "$run_dir/mlflow.pid")
if [[ -n "$mlflow_sid" ]]; then
    mapfile -t pids < <(session_pids "$mlflow_sid")
    if ((${#pids[@]} == 0)); then
        say "MLflow server (session $mlflow_sid) is not running."
    elif ! session_mentions "$mlflow_sid" "mlflow"; then
        # The pid was reused by something else: not ours to touch.
        say "session $mlflow_sid does not look like an MLflow server any more; leaving it alone."
    else
        say "stopping MLflow server (session $mlflow_sid, ${#pids[@]} processes)..."
        signal_pids TERM "${pids[@]}"
        if ! wait_gone "$grace" "${pids[@]}"; then
            mapfile -t pids < <(session_pids "$mlflow_sid")
            say "still running after ${grace}s; sending SIGKILL to ${#pids[@]} processes."
            signal_pids KILL "${pids[@]}"
            wait_gone 5 "${pids[@]}" || say "some MLflow processes did not exit: ${pids[*]}"
        fi
        stopped_any=1
    fi
    rm -f -- "$run_dir/mlflow.pid"
fi

# --- 2. Ray head: raylet first, GCS last, as `ray stop` orders them, but only our session -------
ray_sid=$(read_pid "$run_dir/ray.pid")
ray_tmp=""
[[ ! -f "$run_dir/ray.temp_dir" ]] || ray_tmp=$(<"$run_dir/ray.temp_dir")
if [[ -n "$ray_sid" ]]; then
    mapfile -t pids < <(session_pids "$ray_sid")
    if ((${#pids[@]} == 0)); then
        say "Ray head (session $ray_sid) is not running."
    elif [[ -z "$ray_tmp" ]] || ! session_mentions "$ray_sid" "$ray_tmp"; then
        say "session $ray_sid does not look like the Ray head local-up started" \
            "(no process mentions '${ray_tmp:-?}'); leaving it alone."
    else
        say "stopping Ray head (session $ray_sid, ${#pids[@]} processes)..."
        mapfile -t bucket < <(session_pids "$ray_sid" raylet)
        signal_pids TERM "${bucket[@]}"
        wait_gone "$grace" "${bucket[@]}" || true
        mapfile -t bucket < <(session_pids_except "$ray_sid" gcs_server)
        signal_pids TERM "${bucket[@]}"
        wait_gone "$grace" "${bucket[@]}" || true
        mapfile -t bucket < <(session_pids "$ray_sid")
        signal_pids TERM "${bucket[@]}"
        wait_gone "$grace" "${bucket[@]}" || true
        mapfile -t bucket < <(session_pids "$ray_sid")
        if ((${#bucket[@]})); then
            say "sending SIGKILL to ${#bucket[@]} Ray processes that ignored SIGTERM."
            signal_pids KILL "${bucket[@]}"
            wait_gone 5 "${bucket[@]}" || say "some Ray processes did not exit: ${bucket[*]}"
        fi
        stopped_any=1
    fi
    rm -f -- "$run_dir/ray.pid"
fi

if [[ -n "$ray_tmp" ]]; then
    if ((purge_logs)) && [[ "$ray_tmp" == /tmp/mistudy-ray.* && -d "$ray_tmp" ]]; then
        rm -rf -- "$ray_tmp"
        say "deleted Ray session logs in $ray_tmp."
    elif [[ -d "$ray_tmp" ]]; then
        say "Ray session logs stay in $ray_tmp (--purge-logs deletes them)."
    fi
    rm -f -- "$run_dir/ray.temp_dir"
fi
rm -f -- "$run_dir/env.sh" "$run_dir/ray_auth_token"

if ((stopped_any)); then
    say "stopped."
elif [[ -z "$mlflow_sid" && -z "$ray_sid" ]]; then
    say "nothing recorded in $run_dir; nothing to stop."
fi
