#!/usr/bin/env bash
# ha_harness_chroot.sh - like ha_harness.sh, but Home Assistant Core runs inside a Debian chroot
# (default: trixie, whose python3 is 3.13.5), so HA releases that need Python >= 3.13.2
# (2025.5 and later) run on a Debian 12 host. Mosquitto runs on the host; the chroot shares the
# host's network namespace, so HA reaches it on 127.0.0.1.
#
# What it does: debootstrap a minbase chroot from the Debian mirror this machine's apt uses
# (read from /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list at run time), apt-get the
# python3 toolchain into it, make a venv there with the newest homeassistant pip picks for that
# python (or HA_VERSION), start a private mosquitto on the host + HA in the chroot on free ports,
# onboard HA non-interactively, add the MQTT integration via the config-entries flow REST API and
# write HA_URL/HA_TOKEN/MQTT_PORT to $HA_WORK/env. Chroot and venv are cached in $HA_WORK.
#
# Usage (as root: debootstrap, chroot and mount need it):
#   bash ha_harness_chroot.sh setup     # only build/refresh the cached chroot + venv
#   bash ha_harness_chroot.sh start     # (default) setup if needed, start, onboard, add MQTT, demo sensor
#   bash ha_harness_chroot.sh stop      # stop HA + mosquitto started by this script (recorded PIDs), unmount
#   source /tmp/ha_new/env           # after start: HA_URL, HA_TOKEN (long-lived), MQTT_HOST, MQTT_PORT
#
# Python vs HA (PyPI Requires-Python): 2025.5-2026.2.x need >=3.13.2, 2026.3 and later >=3.14.2. So
# trixie (python3 3.13.5) gets 2026.2.3 at most; HA_SUITE=forky (python3 3.14.8 when checked) gets the
# newest. Verified on Debian 12 x86-64 (as root): trixie -> HA 2026.2.3, forky -> HA 2026.11.0.
# Timings seen (trixie): debootstrap 76 s, apt 46 s, pip 78 s; cached start ~10-20 s; stop ~1.6 s.
#
# Env knobs: HA_WORK (/tmp/ha_new), HA_SUITE (trixie), HA_MIRROR (default: from apt sources),
#            HA_PYTHON (python3: the chroot's interpreter; its -venv/-dev packages are apt-installed),
#            HA_VERSION (empty = newest pip picks for the chroot's python; the venv is per version),
#            HA_CA_BUNDLE (CA bundle copied into the chroot for pip/HA TLS; default $SSL_CERT_FILE or
#            /etc/ssl/certs/ca-certificates.crt), HA_PORT, MQTT_PORT (free ports), HA_SKIP_DEMO=1,
#            HA_CACHE ($HA_WORK): where the chroots and their venvs live, apart from one run's state,
#            HA_RUN_ID (config): this run's config dir in the chroot is /srv/ha/$HA_RUN_ID,
#            HA_EXTRA_CONFIG: a file appended to configuration.yaml.
#
# edge_vlm's copy (tests/support/ha_harness_chroot.sh; the original is
# ../shared/tools/ha_harness_chroot.sh): the chroot cache (HA_CACHE) is apart from the run's state
# (HA_WORK: mosquitto, PIDs, logs, env), and each run has its own config dir in the chroot
# (HA_RUN_ID), so the tests keep one chroot in .cache/ha across runs while several runs (xdist
# workers) share it; building the chroot or a venv holds a lock (flock), a venv counts as built only
# once its marker file is written, and a stop leaves the chroot's mounts in place while another run's
# processes are still inside it (the last one out unmounts); `start` returns once Home Assistant
# says RUNNING, after the requirements it installs at run time the first time; the config dir has an
# empty automations.yaml and scripts.yaml (for an HA_EXTRA_CONFIG that includes them), the venv
# mobile_app's requirement, and mosquitto logs each subscription. Never `rm -rf` a
# cache with a chroot in it while mounted: its dev/ is the host's /dev (`bash ha_harness_chroot.sh
# stop` unmounts; `rm -rf --one-file-system` skips what is mounted from another file system).
set -euo pipefail

HA_WORK=${HA_WORK:-/tmp/ha_new}
HA_CACHE=${HA_CACHE:-$HA_WORK}
HA_SUITE=${HA_SUITE:-trixie}
HA_PYTHON=${HA_PYTHON:-python3}    # interpreter inside the chroot (e.g. python3.14 on a suite that ships it)
ROOT=$HA_CACHE/root-$HA_SUITE      # the chroot (one per suite, so switching HA_SUITE keeps both cached)
CVENV_BASE=/opt/ha                 # venvs live at $ROOT$CVENV_BASE/venv-<version> (chroot path $CVENV_BASE/...)
CCONF=/srv/ha/${HA_RUN_ID:-config} # HA config dir, a path inside the chroot
CONF=$ROOT$CCONF
MQ=$HA_WORK/mosquitto
mkdir -p "$HA_WORK" "$MQ" "$HA_CACHE"

log() { printf '[ha_harness_new %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
jget() { python3 -c 'import sys,json; d=json.load(sys.stdin); print(d'"$1"')'; }
CA=${HA_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
# run a command inside the chroot with a clean environment (the host's PIP_*/PYTHON* must not leak in)
IN_ROOT=(chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  HOME=/root LANG=C.UTF-8 TZ=UTC DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
  SSL_CERT_FILE=/etc/ssl/host-ca.crt PIP_CERT=/etc/ssl/host-ca.crt REQUESTS_CA_BUNDLE=/etc/ssl/host-ca.crt)
in_root() { "${IN_ROOT[@]}" "$@"; }

# ---------- mounts (proc, sys, dev, dev/pts, dev/shm); recorded so stop unmounts exactly these ----------
MOUNTS=(proc sys dev dev/pts dev/shm)
mount_all() {
  local m
  echo "$ROOT" > "$HA_WORK/current_root"   # so 'stop' finds the chroot whatever HA_SUITE it is given
  for m in "${MOUNTS[@]}"; do
    mkdir -p "$ROOT/$m"
    mountpoint -q "$ROOT/$m" && continue
    case $m in
      proc) mount -t proc proc "$ROOT/proc" ;;
      sys)  mount -t sysfs sysfs "$ROOT/sys" ;;
      *)    [[ -d /$m ]] && mount --bind "/$m" "$ROOT/$m" ;;
    esac
    mountpoint -q "$ROOT/$m" && echo "$ROOT/$m" >> "$HA_WORK/mounts"
  done
}
umount_all() {
  # the mounts this script makes are at fixed paths: unmount them even if the record was lost
  [[ -f $HA_WORK/mounts ]] || { for m in "${MOUNTS[@]}"; do mountpoint -q "$ROOT/$m" && echo "$ROOT/$m"; done > "$HA_WORK/mounts" || true; }
  [[ -s $HA_WORK/mounts ]] || { rm -f "$HA_WORK/mounts"; return 0; }
  local m p left=()
  # anything still running inside the chroot was not started through a recorded PID: say so, do not kill it
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/root" 2>/dev/null) == "$(readlink -f "$ROOT")" ]] && left+=("${p#/proc/}")
  done
  # another run's Home Assistant in the same chroot needs the mounts: the last one out unmounts
  (( ${#left[@]} )) && { log "still running inside $ROOT (not stopped by this script): ${left[*]}; mounts left"; rm -f "$HA_WORK/mounts"; return 0; }
  # reverse order: dev/shm, dev/pts before dev
  for m in $(tac "$HA_WORK/mounts"); do
    if mountpoint -q "$m"; then umount "$m" 2>/dev/null || umount -l "$m"; log "unmounted $m"; fi
  done
  rm -f "$HA_WORK/mounts"
}

stop_all() {
  for f in "$HA_WORK/hass.pid" "$MQ/mosquitto.pid"; do
    if [[ -f $f ]]; then
      pid=$(cat "$f")
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        # alive = exists and not a zombie (an orphan's zombie may linger until PID 1 reaps it)
        for _ in $(seq 1 150); do [[ $(ps -o stat= -p "$pid" 2>/dev/null) == [!Z]* ]] || break; sleep 0.1; done
        [[ $(ps -o stat= -p "$pid" 2>/dev/null) == [!Z]* ]] && kill -9 "$pid" || true
        log "stopped pid $pid ($f)"
      fi
      rm -f "$f"
    fi
  done
}

if [[ ${1:-start} == stop ]]; then
  [[ -f $HA_WORK/current_root ]] && ROOT=$(cat "$HA_WORK/current_root")
  stop_all; umount_all
  # this run's config dir in the chroot (the chroot itself is the cache)
  [[ -f $HA_WORK/current_conf ]] && rm -rf --one-file-system "$(cat "$HA_WORK/current_conf")"
  rm -f "$HA_WORK/current_conf"
  exit 0
fi
[[ $(id -u) == 0 ]] || { log "needs root (debootstrap/chroot/mount)"; exit 1; }

# ---------- 0. host prerequisites ----------
need_apt=()
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v mosquitto >/dev/null || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)
if (( ${#need_apt[@]} )); then
  log "installing ${need_apt[*]} from apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The Debian archive URI this machine's apt uses (first non-security 'debian' URI), read at run time.
apt_mirror() {
  [[ -n ${HA_MIRROR:-} ]] && { echo "$HA_MIRROR"; return; }
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      if [[ -f $f ]]; then awk 'tolower($1)=="uris:" {for (i=2;i<=NF;i++) print $i}' "$f"; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      if [[ -f $f ]]; then awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i ~ /:\/\//) {print $i; break}}' "$f"; fi
    done
  } | grep -v -- '-security' | grep -E '/debian/?$' | head -1 || true
}

# ---------- 1. chroot (cached; marker file written only after a complete build) ----------
build_root() {
  if [[ $(cat "$ROOT/.ha_root_ok" 2>/dev/null) != "$HA_SUITE" ]]; then
    local mirror; mirror=$(apt_mirror)
    [[ -n $mirror ]] || { log "no Debian mirror found in apt sources (set HA_MIRROR)"; exit 1; }
    umount_all
    # never delete through a bind mount of the host's /dev
    if [[ -e $ROOT ]] && grep -qF " $(readlink -f "$ROOT")/" /proc/self/mountinfo; then
      log "mounts remain under $ROOT; refusing to delete it"; exit 1
    fi
    rm -rf --one-file-system "$ROOT"
    log "debootstrap --variant=minbase $HA_SUITE $ROOT $mirror"
    local t=$SECONDS
    # an older debootstrap may lack a script for a newer suite (bookworm's has none for forky): use sid's
    local script=(); [[ -e /usr/share/debootstrap/scripts/$HA_SUITE ]] || script=(/usr/share/debootstrap/scripts/sid)
    debootstrap --variant=minbase --arch=amd64 "$HA_SUITE" "$ROOT" "$mirror" "${script[@]}" > "$HA_WORK/debootstrap.log" 2>&1 \
      || { tail -20 "$HA_WORK/debootstrap.log"; log "debootstrap failed"; exit 1; }
    log "debootstrap took $((SECONDS - t)) s"
    echo "deb $mirror $HA_SUITE main" > "$ROOT/etc/apt/sources.list"
    # a frozen mirror/snapshot serves testing/sid Release files past their Valid-Until (signatures are still checked)
    echo 'Acquire::Check-Valid-Until "false";' > "$ROOT/etc/apt/apt.conf.d/99ha-harness"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    mkdir -p "$ROOT/etc/ssl"; cp "$CA" "$ROOT/etc/ssl/host-ca.crt"
    mount_all
    t=$SECONDS
    in_root apt-get update -qq > "$HA_WORK/apt.log" 2>&1 || { tail -20 "$HA_WORK/apt.log"; log "apt-get update in chroot failed"; exit 1; }
    # build-essential + python3-dev: for any HA requirement without a cp3xx manylinux wheel
    in_root apt-get install -y -qq --no-install-recommends ca-certificates python3 python3-venv python3-dev \
      build-essential libffi-dev libssl-dev >> "$HA_WORK/apt.log" 2>&1 || { tail -20 "$HA_WORK/apt.log"; log "apt-get in chroot failed"; exit 1; }
    in_root apt-get clean
    log "apt in chroot took $((SECONDS - t)) s; $(in_root python3 --version)"
    echo "$HA_SUITE" > "$ROOT/.ha_root_ok"
  fi
  mount_all
  if ! in_root "$HA_PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "apt-get install $HA_PYTHON $HA_PYTHON-venv $HA_PYTHON-dev in the chroot"
    { in_root apt-get update -qq && in_root apt-get install -y -qq --no-install-recommends "$HA_PYTHON" "$HA_PYTHON-venv" "$HA_PYTHON-dev"; } >> "$HA_WORK/apt.log" 2>&1 \
      || { tail -20 "$HA_WORK/apt.log"; log "no $HA_PYTHON in $HA_SUITE"; exit 1; }
  fi
  # refresh things that may change on the host between runs
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  cp "$CA" "$ROOT/etc/ssl/host-ca.crt"
  mount_all
}

# ---------- 2. venv in the chroot (cached per HA version) ----------
build_venv() {
  local ver=${HA_VERSION:-}
  if [[ -z $ver ]]; then
    # the newest release pip would install for the chroot's python (pip resolves Requires-Python)
    local scratch=$CVENV_BASE/probe-$HA_PYTHON
    [[ -x $ROOT$scratch/bin/pip ]] || in_root "$HA_PYTHON" -m venv "$scratch"
    rm -rf "$ROOT/tmp/ha-dl"
    in_root "$scratch/bin/pip" download -q --no-deps -d /tmp/ha-dl homeassistant > "$HA_WORK/pip-probe.log" 2>&1 \
      || { tail -20 "$HA_WORK/pip-probe.log"; log "pip download homeassistant failed"; exit 1; }
    ver=$(ls "$ROOT/tmp/ha-dl" | sed -n 's/^homeassistant-\([^-]*\)-.*\.whl$/\1/p' | head -1)
    [[ -n $ver ]] || { log "could not determine the homeassistant version pip picks"; exit 1; }
    log "newest homeassistant pip picks for $(in_root "$HA_PYTHON" --version): $ver"
  fi
  HA_VERSION=$ver
  CVENV=$CVENV_BASE/venv-$ver
  VENV=$ROOT$CVENV
  if [[ ! -f $VENV/.ha_venv_ok ]]; then
    local t=$SECONDS
    rm -rf "$VENV"
    in_root "$HA_PYTHON" -m venv "$CVENV"
    in_root "$CVENV/bin/pip" install -q -U pip wheel > "$HA_WORK/pip.log" 2>&1
    rm -rf "$ROOT/tmp/ha-dl"
    in_root "$CVENV/bin/pip" download -q --no-deps -d /tmp/ha-dl "homeassistant==$ver" >> "$HA_WORK/pip.log" 2>&1
    # HA ships its runtime constraints inside the wheel; install with them, plus the mqtt integration's
    # own requirement (so HA does not pip-install it at runtime when the MQTT entry is created)
    local whl; whl=$(ls "$ROOT"/tmp/ha-dl/homeassistant-*.whl | head -1)
    python3 - "$whl" "$ROOT/tmp/ha-constraints.txt" > "$HA_WORK/mqtt-req.txt" <<'EOF'
import sys, json, zipfile
z = zipfile.ZipFile(sys.argv[1])
open(sys.argv[2], "wb").write(z.read("homeassistant/package_constraints.txt"))
print("\n".join(r for i in ("mqtt", "mobile_app")  # edge_vlm: and mobile_app's (PyNaCl), for the tests' phone
                for r in json.loads(z.read(f"homeassistant/components/{i}/manifest.json")).get("requirements", [])))
EOF
    cp "$ROOT/tmp/ha-constraints.txt" "$HA_WORK/constraints-$ver.txt"
    # shellcheck disable=SC2046
    in_root "$CVENV/bin/pip" install -q "homeassistant==$ver" $(cat "$HA_WORK/mqtt-req.txt") -c /tmp/ha-constraints.txt >> "$HA_WORK/pip.log" 2>&1 \
      || { tail -30 "$HA_WORK/pip.log"; log "pip install homeassistant==$ver failed"; exit 1; }
    touch "$VENV/.ha_venv_ok"
    log "pip install homeassistant==$ver in chroot took $((SECONDS - t)) s; $(in_root "$CVENV/bin/hass" --version 2>/dev/null || true)"
  fi
  echo "$ver" > "$HA_WORK/ha_version"
}

stop_all   # never leave a previous instance of this harness around
# on any failure from here on: stop what this run started and unmount (the logs stay in $HA_WORK)
trap 'rc=$?; if (( rc != 0 )); then stop_all; umount_all; fi' EXIT
# one build at a time per chroot (several runs may start together and share it)
exec 9> "$HA_CACHE/.lock-$HA_SUITE"
flock 9
build_root
build_venv
exec 9>&-
[[ ${1:-start} == setup ]] && { umount_all; log "setup done: chroot $ROOT, venv $VENV (HA $HA_VERSION)"; exit 0; }

# ---------- 3. private mosquitto on the host ----------
MQTT_PORT=${MQTT_PORT:-$(free_port)}
cat > "$MQ/mosquitto.conf" <<EOF
persistence false
log_dest file $MQ/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
# as root mosquitto drops to user 'mosquitto' and then cannot read files in 0700 dirs (pwfile/certs)
user root
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
EOF
mosquitto -c "$MQ/mosquitto.conf" >/dev/null 2>&1 &
echo $! > "$MQ/mosquitto.pid"
for _ in $(seq 1 50); do (echo > /dev/tcp/127.0.0.1/$MQTT_PORT) 2>/dev/null && break; sleep 0.1; done
log "mosquitto pid $(cat "$MQ/mosquitto.pid") on 127.0.0.1:$MQTT_PORT"

# ---------- 4. HA config + start (in the chroot) ----------
HA_PORT=${HA_PORT:-$(free_port)}
B=http://127.0.0.1:$HA_PORT
rm -rf "$CONF"; mkdir -p "$CONF"; echo "$CONF" > "$HA_WORK/current_conf"
cat > "$CONF/configuration.yaml" <<EOF
# minimal: no default_config (it would pull bluetooth/zeroconf/frontend/... and pip-install lots)
homeassistant:
  name: EdgeVLM Test
  latitude: 52.0
  longitude: 4.0
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: NL
  internal_url: "$B"
http:
  server_host: 127.0.0.1
  server_port: $HA_PORT
api:
config:
websocket_api:
onboarding:
logger:
  default: warning
EOF
[[ -n ${HA_EXTRA_CONFIG:-} ]] && cat "$HA_EXTRA_CONFIG" >> "$CONF/configuration.yaml"
# what the UI's automation and script editors write to (an HA_EXTRA_CONFIG may !include them)
echo '[]' > "$CONF/automations.yaml"; echo '{}' > "$CONF/scripts.yaml"
# chroot and env exec, so $! is hass's own PID (not via the in_root function: a backgrounded function
# runs in a forked subshell, whose PID is not hass's); its stdout/stderr go to a file on the host
"${IN_ROOT[@]}" "$CVENV/bin/hass" -c "$CCONF" > "$HA_WORK/hass.log" 2>&1 &
echo $! > "$HA_WORK/hass.pid"
sleep 0.5
[[ $(readlink "/proc/$(cat "$HA_WORK/hass.pid")/root") == "$(readlink -f "$ROOT")" ]] \
  || log "warning: recorded hass pid $(cat "$HA_WORK/hass.pid") is not a process inside $ROOT"
t0=$(date +%s)
until [[ $(curl -s -o /dev/null -w '%{http_code}' "$B/api/onboarding" || true) == 200 ]]; do
  kill -0 "$(cat "$HA_WORK/hass.pid")" 2>/dev/null || { tail -30 "$HA_WORK/hass.log"; log "hass died"; exit 1; }
  (( $(date +%s) - t0 > 180 )) && { tail -30 "$HA_WORK/hass.log"; log "hass not up in 180 s"; exit 1; }
  sleep 0.2
done
log "HA $HA_VERSION up at $B (pid $(cat "$HA_WORK/hass.pid"), in chroot $ROOT) after $(( $(date +%s) - t0 )) s"

# ---------- 5. onboarding -> tokens (no browser) ----------
CID="$B/"   # client_id must be a URL; HA accepts the instance's own URL
AUTH_CODE=$(curl -sf -X POST "$B/api/onboarding/users" -H 'Content-Type: application/json' \
  -d "{\"client_id\":\"$CID\",\"name\":\"Test\",\"username\":\"test\",\"password\":\"test-pass-123\",\"language\":\"en\"}" | jget '["auth_code"]')
TOKJSON=$(curl -sf -X POST "$B/auth/token" -d grant_type=authorization_code -d "code=$AUTH_CODE" -d "client_id=$CID")
ACCESS=$(echo "$TOKJSON" | jget '["access_token"]')          # expires in 1800 s
REFRESH=$(echo "$TOKJSON" | jget '["refresh_token"]')
# the remaining onboarding steps only matter for the web UI; 'core_config' is skipped on purpose
curl -sf -X POST "$B/api/onboarding/analytics" -H "Authorization: Bearer $ACCESS" -H 'Content-Type: application/json' -d '{}' >/dev/null || true
curl -sf -X POST "$B/api/onboarding/integration" -H "Authorization: Bearer $ACCESS" -H 'Content-Type: application/json' \
  -d "{\"client_id\":\"$CID\",\"redirect_uri\":\"${CID}?auth_callback=1\"}" >/dev/null || true
# long-lived token via the websocket API (aiohttp is in the HA venv, run inside the chroot)
HA_TOKEN=$(in_root "$CVENV/bin/python" -c '
import asyncio, sys, aiohttp
async def main(base, token):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(base.replace("http", "ws", 1) + "/api/websocket") as ws:
            assert (await ws.receive_json())["type"] == "auth_required"
            await ws.send_json({"type": "auth", "access_token": token})
            r = await ws.receive_json(); assert r["type"] == "auth_ok", r
            await ws.send_json({"id": 1, "type": "auth/long_lived_access_token", "client_name": "edge_vlm_tests", "lifespan": 365})
            r = await ws.receive_json(); assert r.get("success"), r
            print(r["result"])
asyncio.run(main(sys.argv[1], sys.argv[2]))
' "$B" "$ACCESS")
H="Authorization: Bearer $HA_TOKEN"
curl -sf -H "$H" "$B/api/" | grep -q "API running" && log "long-lived token OK"

# ---------- 6. MQTT integration via config-entries flow ----------
FLOW=$(curl -sf -X POST "$B/api/config/config_entries/flow" -H "$H" -H 'Content-Type: application/json' -d '{"handler":"mqtt","show_advanced_options":false}')
FID=$(echo "$FLOW" | jget '["flow_id"]'); STEP=$(echo "$FLOW" | jget '["step_id"]')
if [[ $(echo "$FLOW" | jget '["type"]') == menu ]]; then   # newer flows may open with a menu
  FLOW=$(curl -sf -X POST "$B/api/config/config_entries/flow/$FID" -H "$H" -H 'Content-Type: application/json' -d '{"next_step_id":"broker"}')
  STEP=$(echo "$FLOW" | jget '["step_id"]')
fi
[[ $STEP == broker ]] || { log "unexpected flow step: $FLOW"; exit 1; }
# fill the form like the UI would: broker + port, the schema's defaults, and required sections (newer HA
# nests the advanced fields in a required expandable 'other_settings' section) with their defaults/off
DATA=$(echo "$FLOW" | python3 -c '
import sys, json
port = int(sys.argv[1])
def fill(schema):
    out = {}
    for f in schema:
        n, sel = f["name"], f.get("selector", {})
        if n == "broker": out[n] = "127.0.0.1"
        elif n == "port": out[n] = port
        elif f.get("type") == "expandable": out[n] = fill(f["schema"])
        elif "default" in f: out[n] = f["default"]
        elif f.get("required") and "boolean" in sel: out[n] = False
        elif f.get("required") and "select" in sel:
            o = sel["select"]["options"][0]; out[n] = o["value"] if isinstance(o, dict) else o
    return out
print(json.dumps(fill(json.load(sys.stdin)["data_schema"])))' "$MQTT_PORT")
RES=$(curl -s -X POST "$B/api/config/config_entries/flow/$FID" -H "$H" -H 'Content-Type: application/json' -d "$DATA")
[[ $(echo "$RES" | jget '.get("type")' 2>/dev/null) == create_entry ]] || { log "MQTT flow failed: sent $DATA, got $RES"; exit 1; }
log "MQTT entry $(echo "$RES" | jget '["result"]["entry_id"]') state=$(echo "$RES" | jget '["result"]["state"]')"

# Home Assistant fully started: the integrations it loads by itself set up, including those whose
# requirements it installs at run time the first time (2026.x: assist_pipeline's pyspeex-noise, built
# from source, about a minute); stopped before that, it would leave its installer running (edge_vlm)
t0=$(date +%s)
until [[ $(curl -sf -H "$H" "$B/api/config" | jget '.get("state")' 2>/dev/null || true) == RUNNING ]]; do
  kill -0 "$(cat "$HA_WORK/hass.pid")" 2>/dev/null || { tail -30 "$HA_WORK/hass.log"; log "hass died"; exit 1; }
  (( $(date +%s) - t0 > 300 )) && { tail -30 "$HA_WORK/hass.log"; log "hass not RUNNING in 300 s"; exit 1; }
  sleep 0.2
done
log "HA running after $(( $(date +%s) - t0 )) s more"

cat > "$HA_WORK/env" <<EOF
export HA_URL=$B
export HA_TOKEN=$HA_TOKEN
export HA_REFRESH_TOKEN=$REFRESH
export HA_CLIENT_ID=$CID
export HA_VERSION=$HA_VERSION
export HA_CONFIG_DIR=$CONF
export HA_LOG=$HA_WORK/hass.log
export MQTT_HOST=127.0.0.1
export MQTT_PORT=$MQTT_PORT
export HA_PID=$(cat "$HA_WORK/hass.pid")
export MOSQUITTO_PID=$(cat "$MQ/mosquitto.pid")
EOF

# ---------- 7. demo: MQTT discovery -> entity in /api/states ----------
if [[ ${HA_SKIP_DEMO:-0} != 1 ]]; then
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -q 1 -t homeassistant/sensor/edge_vlm_demo/description/config -m \
   '{"name":"Description","unique_id":"edge_vlm_demo_description","state_topic":"edge_vlm/demo/description","json_attributes_topic":"edge_vlm/demo/attributes","availability_topic":"edge_vlm/status","icon":"mdi:cctv","device":{"identifiers":["edge_vlm_demo"],"name":"Demo Camera VLM","manufacturer":"edge_vlm"}}'
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -q 1 -t edge_vlm/status -m online
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -q 1 -t edge_vlm/demo/attributes -m '{"full_text":"A person in a red jacket is standing at the front door holding a parcel.","model":"demo"}'
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -q 1 -t edge_vlm/demo/description -m 'A person in a red jacket is at the door.'
  S=
  for _ in $(seq 1 50); do
    S=$(curl -sf -H "$H" "$B/api/states/sensor.demo_camera_vlm_description" || true)
    [[ $S == *red* ]] && break; sleep 0.2
  done
  log "entity: $S"
  curl -sf -H "$H" "$B/api/states" | python3 -c 'import sys,json; [print("  ", e["entity_id"], "=", e["state"][:60]) for e in json.load(sys.stdin) if e["entity_id"].startswith(("sensor.","binary_sensor.","image.","camera."))]'
fi
log "ready. 'source $HA_WORK/env' for HA_URL/HA_TOKEN/MQTT_PORT; 'bash $0 stop' to stop and unmount."
