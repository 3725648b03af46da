#!/usr/bin/env bash
# Prove the Docker image with a real engine (called by .ci/run; needs root):
#
#  1. install Debian's docker.io, docker-compose and debootstrap when missing, and
#     start dockerd (stopped again at the end, by PID, with all it started);
#  2. make the base images the Dockerfile names (no registry here): debian:bookworm-slim
#     with debootstrap, and rust:1.95-bookworm from it plus this machine's toolchain;
#  3. build docker/Dockerfile as written when docker/, Cargo.lock or .cargo/ changed
#     since the last full build (and always on a machine that never built it);
#     otherwise build its runtime stage around a host release build of the binary;
#  4. smoke-test: volume, healthy, setup link, superuser by `docker exec`, a record
#     through the published port that survives re-creating the container, non-root,
#     `docker stop` under 5 s; the image on the machine's PostgreSQL, Redis and
#     RabbitMQ (host network) with /api/ready naming all three up; the compose file
#     and the Kubernetes example parse.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
say() { echo "docker/ci: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (dockerd, debootstrap)"
state=${BASALT_DOCKER_CI_STATE:-/var/lib/basalt-docker-ci}
mkdir -p "$state"
started=$(date +%s)

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

containers=()
dockerd_pid=""
cleanup() {
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  docker volume rm -f basalt-ci-data >/dev/null 2>&1 || true
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$dockerd_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  dockerd --pidfile "$state/dockerd.pid" >"$state/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 "$state/dockerd.log" >&2; fail "dockerd did not start"; }
fi
# Containers may talk to this machine only: drop forwarded traffic leaving the host.
uplink=$(ip route show default | awk '{print $5; exit}')
if [ -n "$uplink" ] && iptables -L DOCKER-USER >/dev/null 2>&1; then
  iptables -C DOCKER-USER -o "$uplink" -j DROP 2>/dev/null \
    || iptables -I DOCKER-USER -o "$uplink" -j DROP
fi

# --- base images ---------------------------------------------------------------
bootstrap() { # dir [--include=...]
  local dir=$1; shift
  rm -rf "$dir"
  debootstrap --variant=minbase "$@" bookworm "$dir" http://deb.debian.org/debian >/dev/null \
    || fail "debootstrap bookworm"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
}
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  say "making debian:bookworm-slim with debootstrap"
  bootstrap "$state/slim"
  # Slim as Debian's own: no docs, man pages or locales, now or from later installs,
  # and apt keeps no package caches.
  slim=$state/slim
  cat >"$slim/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
  cat >"$slim/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CFG
  find "$slim/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "$slim"/usr/share/man/* "$slim"/usr/share/info/* "$slim"/usr/share/lintian/*
  find "$slim/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  rm -rf "$slim"/var/cache/apt/*.bin "$slim"/var/log/*.log "$slim"/var/cache/debconf/*-old
  tar -C "$state/slim" -c . | docker import - debian:bookworm-slim >/dev/null
  rm -rf "$state/slim"
fi
toolchain=$(rustc --print sysroot)
# The builder trusts what this machine trusts (a registry behind a local CA, say).
local_cas=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-12)
rust_label="$(rustc --version | awk '{print $2}')-$local_cas"
if ! docker image inspect rust:1.95-bookworm >/dev/null 2>&1 \
   || [ "$(docker image inspect -f '{{index .Config.Labels "made"}}' rust:1.95-bookworm 2>/dev/null)" != "$rust_label" ]; then
  say "making rust:1.95-bookworm from debootstrap and this machine's Rust ($rust_label)"
  bootstrap "$state/rust" --include=gcc,libc6-dev,binutils,make,pkg-config,ca-certificates
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$state/rust/usr/local/share/ca-certificates/"
    chroot "$state/rust" update-ca-certificates >/dev/null 2>&1 || fail "update-ca-certificates"
  fi
  mkdir -p "$state/rust/usr/local/rust" "$state/rust/usr/local/cargo"
  for part in bin lib libexec etc; do
    [ -d "$toolchain/$part" ] && cp -a "$toolchain/$part" "$state/rust/usr/local/rust/"
  done
  tar -C "$state/rust" -c . | docker import \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change "LABEL made=$rust_label" \
    - rust:1.95-bookworm >/dev/null
  rm -rf "$state/rust"
fi

# --- the image -----------------------------------------------------------------
stamp=$(cat docker/Dockerfile .dockerignore Cargo.lock .cargo/config.toml 2>/dev/null | sha256sum | cut -c1-16)
if [ "$(cat "$state/full-build.stamp" 2>/dev/null)" != "$stamp" ]; then
  say "building docker/Dockerfile as written (docker/, Cargo.lock or .cargo/ changed)"
  docker build --network host -f docker/Dockerfile -t basalt:ci . >"$state/build.log" 2>&1 \
    || { tail -40 "$state/build.log" >&2; fail "docker build"; }
  echo "$stamp" >"$state/full-build.stamp"
else
  say "building the runtime stage around a host release build (the full build is current)"
  cargo build --release --locked -p basalt-server --bin basalt >/dev/null 2>&1 \
    || fail "cargo build --release"
  context="$state/prebuilt"
  rm -rf "$context" && mkdir -p "$context"
  target_dir=$(cargo metadata --format-version 1 --no-deps | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  cp "$target_dir/release/basalt" "$context/basalt"
  strip "$context/basalt"
  # The runtime stage exactly as the Dockerfile writes it, the binary from the context.
  sed -n '/^FROM debian:bookworm-slim AS runtime/,$p' docker/Dockerfile \
    | sed 's|^COPY --from=build /usr/local/bin/basalt /usr/local/bin/basalt|COPY basalt /usr/local/bin/basalt|' \
    >"$context/Dockerfile"
  grep -q '^COPY basalt /usr/local/bin/basalt' "$context/Dockerfile" || fail "runtime stage not found in docker/Dockerfile"
  docker build --network host -t basalt:ci "$context" >"$state/build.log" 2>&1 \
    || { tail -40 "$state/build.log" >&2; fail "docker build (runtime stage)"; }
fi
size=$(docker image inspect -f '{{.Size}}' basalt:ci)
say "image size $((size / 1024 / 1024)) MiB"
[ "$size" -le $((120 * 1024 * 1024)) ] || fail "the image is over 120 MB"

# --- smoke test ----------------------------------------------------------------
port=18090
url=http://127.0.0.1:$port
wait_healthy() { # container
  for _ in $(seq 1 60); do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$1")" = healthy ] && return 0
    sleep 1
  done
  docker logs "$1" 2>&1 | tail -20 >&2
  fail "$1 did not become healthy"
}
json() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

docker volume create basalt-ci-data >/dev/null
containers+=(basalt-ci)
docker run -d --name basalt-ci -p "127.0.0.1:$port:8090" -v basalt-ci-data:/data \
  -e BASALT_APP_URL="http://localhost:$port" basalt:ci >/dev/null
wait_healthy basalt-ci
docker logs basalt-ci 2>&1 | grep -q "http://localhost:$port/_/setup/" || fail "no setup link on app_url in the log"
[ "$(docker exec basalt-ci id -u)" != 0 ] || fail "runs as root"
docker exec basalt-ci basalt superuser upsert ci@example.com ci-password-1 >/dev/null 2>&1
token=$(curl -sf -X POST "$url/api/collections/_superusers/auth-with-password" \
  -H 'content-type: application/json' -d '{"identity":"ci@example.com","password":"ci-password-1"}' | json '["token"]')
curl -sf -X POST "$url/api/collections" -H "authorization: $token" -H 'content-type: application/json' \
  -d '{"name":"notes","listRule":"","viewRule":"","fields":[{"name":"title","type":"text"}]}' >/dev/null \
  || fail "create a collection"
id=$(curl -sf -X POST "$url/api/collections/notes/records" -H "authorization: $token" \
  -H 'content-type: application/json' -d '{"title":"kept"}' | json '["id"]')
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/_/login")" = 200 ] || fail "the admin UI is not served"
t0=$(date +%s%N)
docker stop basalt-ci >/dev/null
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
say "docker stop took ${stop_ms} ms"
[ "$stop_ms" -lt 5000 ] || fail "docker stop took ${stop_ms} ms"
docker rm basalt-ci >/dev/null
docker run -d --name basalt-ci -p "127.0.0.1:$port:8090" -v basalt-ci-data:/data basalt:ci >/dev/null
wait_healthy basalt-ci
[ "$(curl -sf "$url/api/collections/notes/records/$id" | json '["title"]')" = kept ] \
  || fail "the record did not survive re-creating the container"

# On the machine's PostgreSQL, Redis and RabbitMQ, over the host network.
db=basalt_docker_ci
export PGOPTIONS="-c client_min_messages=warning"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" >/dev/null
containers+=(basalt-ci-services)
docker run -d --name basalt-ci-services --network host \
  -e BASALT_HTTP=127.0.0.1:18091 \
  -e BASALT_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" \
  -e BASALT_REDIS_URL=redis://127.0.0.1:6379 \
  -e BASALT_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
  basalt:ci >/dev/null
wait_healthy basalt-ci-services
ready=$(curl -s http://127.0.0.1:18091/api/ready)
for service in database redis rabbitmq; do
  echo "$ready" | /usr/bin/python3 -c "
import json, sys
ready = json.load(sys.stdin)
assert ready['data']['$service']['code'] == 'up', ready
" || fail "/api/ready does not name $service up: $ready"
done
docker rm -f basalt-ci-services >/dev/null
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null

docker-compose -f docker/compose.yml config -q || fail "docker/compose.yml"
docker-compose -f docker/compose.yml --profile replicas config -q || fail "docker/compose.yml (replicas)"
/usr/bin/python3 - docker/k8s/*.yaml <<'EOF' || fail "docker/k8s"
import sys, yaml
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    assert docs and all("kind" in d and "apiVersion" in d for d in docs), path
EOF
say "passed in $(( $(date +%s) - started )) s"
