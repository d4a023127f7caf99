# Sourced by .ci/run: make a Docker daemon available and build the sandbox test image.
# Installs docker.io from Debian if dockerd is missing, starts the daemon if none
# answers (and stops it on exit only if it was started here), then builds the
# image without a registry and exports OSS_AGENT_SANDBOX_IMAGE. Idempotent.

_oss_docker_ping() {
    python - <<'PY' >/dev/null 2>&1
import docker
docker.from_env(timeout=3).ping()
PY
}

if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker.sh: installing docker.io from the Debian archive" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi

if ! _oss_docker_ping; then
    _oss_dockerd_log="$(mktemp -t dockerd.XXXXXX.log)"
    echo "docker.sh: starting dockerd (log: $_oss_dockerd_log)" >&2
    dockerd >"$_oss_dockerd_log" 2>&1 &
    _oss_dockerd_pid=$!
    _oss_stop_dockerd() {
        if kill -0 "$_oss_dockerd_pid" 2>/dev/null; then
            kill -TERM "$_oss_dockerd_pid" 2>/dev/null || true
            for _ in $(seq 1 40); do
                kill -0 "$_oss_dockerd_pid" 2>/dev/null || break
                sleep 0.5
            done
            kill -KILL "$_oss_dockerd_pid" 2>/dev/null || true
        fi
    }
    trap _oss_stop_dockerd EXIT
    for _ in $(seq 1 60); do
        _oss_docker_ping && break
        if ! kill -0 "$_oss_dockerd_pid" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    if ! _oss_docker_ping; then
        echo "docker.sh: dockerd did not come up; last log lines:" >&2
        tail -n 20 "$_oss_dockerd_log" >&2 || true
        return 1
    fi
fi

OSS_AGENT_SANDBOX_IMAGE="$(python -m sandbox.image)"
export OSS_AGENT_SANDBOX_IMAGE
echo "docker.sh: sandbox image $OSS_AGENT_SANDBOX_IMAGE" >&2
