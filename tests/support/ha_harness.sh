#!/usr/bin/env bash
# ha_harness.sh - start a REAL Home Assistant Core + private mosquitto on 127.0.0.1, onboard it
# non-interactively, add the MQTT integration via the config-entries flow REST API, publish an MQTT
# discovery config for a sensor and show it in /api/states.
#
# Verified on Debian 12 x86-64 (2 cores), mosquitto 2.0.11 (apt), with
#   HA 2024.3.3 on pyenv Python 3.11.7 (default), HA 2025.1.4 on 3.12.1, HA 2025.4.4 on 3.13.0
#   (HA_VERSION=2025.1.4 / 2025.4.4 picks the pyenv interpreter automatically).
#
# Usage:
#   bash ha_harness.sh setup     # only install the venv (cached in $HA_CACHE)
#   bash ha_harness.sh start     # (default) install if needed, start, onboard, add MQTT, demo sensor
#   bash ha_harness.sh stop      # stop HA + mosquitto started by this script (by recorded PID)
#   source /tmp/ha_harness/env   # after start: HA_URL, HA_TOKEN (long-lived), MQTT_HOST, MQTT_PORT
#
# Env knobs: HA_WORK (/tmp/ha_harness), HA_VERSION (2024.3.3), HA_PYTHON (python3.11 interpreter),
#            HA_PORT (free port), MQTT_PORT (free port), HA_SKIP_DEMO=1 (skip demo sensor),
#            HA_CACHE ($HA_WORK): where the venvs live, apart from one run's config, logs and PIDs,
#            HA_EXTRA_CONFIG: a file appended to configuration.yaml
#
# edge_vlm's copy (tests/support/ha_harness.sh; the original is ../shared/tools/ha_harness.sh):
# the venv cache (HA_CACHE) is apart from the run's state (HA_WORK), so the tests keep one cache
# in .cache/ha across runs while each run (an xdist worker too) has its own config, PIDs and ports;
# the install holds a lock (flock) so two runs never build one venv at once, and a half-built venv
# is never taken for a built one; `setup` installs without starting; `start` returns once Home
# Assistant says RUNNING (not only once HTTP answers); the env file also says HA_VERSION,
# HA_CONFIG_DIR and HA_LOG; the config dir has an empty automations.yaml and scripts.yaml (for an
# HA_EXTRA_CONFIG that includes them), the venv mobile_app's requirement, and mosquitto logs each
# subscription (a test can see when Home Assistant has subscribed to a topic).
# Timings seen: venv install ~50 s (first time; ~740 MB), HA HTTP up ~1.2 s after start,
#   MQTT flow ~2 s (+ ~4 s the first time while HA pip-installs paho-mqtt==1.6.1), entity visible ~0.3 s
#   after the discovery publish, HA stop ~1.7 s. RSS ~165 MB.
set -euo pipefail

HA_WORK=${HA_WORK:-/tmp/ha_harness}
HA_CACHE=${HA_CACHE:-$HA_WORK}
HA_VERSION=${HA_VERSION:-2024.3.3}
VENV=$HA_CACHE/venv-$HA_VERSION
CONF=$HA_WORK/config
MQ=$HA_WORK/mosquitto
mkdir -p "$HA_WORK" "$MQ" "$HA_CACHE"

log() { printf '[ha_harness %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
jget() { python3 -c 'import sys,json; d=json.load(sys.stdin); print(d'"$1"')'; }

stop_all() {
  for f in "$HA_WORK/hass.pid" "$MQ/mosquitto.pid"; do
    if [[ -f $f ]]; then
      pid=$(cat "$f")
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        # alive = exists and not a zombie (an orphan's zombie may linger until PID 1 reaps it)
        for _ in $(seq 1 100); do [[ $(ps -o stat= -p "$pid" 2>/dev/null) == [!Z]* ]] || break; sleep 0.1; done
        [[ $(ps -o stat= -p "$pid" 2>/dev/null) == [!Z]* ]] && kill -9 "$pid" || true
        log "stopped pid $pid ($f)"
      fi
      rm -f "$f"
    fi
  done
}

if [[ ${1:-start} == stop ]]; then stop_all; exit 0; fi

# ---------- 0. prerequisites ----------
if ! command -v mosquitto >/dev/null; then
  log "installing mosquitto from apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients >/dev/null
fi
pick_python() {
  # HA 2024.3.x is the last line for Python 3.11; 2025.1.x needs 3.12; 2025.2-2025.4 need 3.13;
  # later ones need >=3.13.2 (pyenv here has 3.13.0 -> 2025.4.4 is the newest installable).
  [[ -n ${HA_PYTHON:-} ]] && { echo "$HA_PYTHON"; return; }
  local want=3.11; [[ $HA_VERSION == 2025.1.* ]] && want=3.12; [[ $HA_VERSION > 2025.2 ]] && want=3.13
  for c in /root/.pyenv/versions/$want*/bin/python python$want python3; do
    command -v "$c" >/dev/null 2>&1 && [[ $("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])') == "$want" ]] && { echo "$c"; return; }
  done
  echo "no python$want found (set HA_PYTHON)" >&2; exit 1
}

# ---------- 1. venv with pinned HA ----------
# one install at a time per version; the marker file is written last, so a venv that an interrupted
# install left behind is rebuilt rather than used
exec 9> "$HA_CACHE/.lock-$HA_VERSION"
flock 9
if [[ ! -f $VENV/.ha_venv_ok ]]; then
  PY=$(pick_python); log "creating $VENV with $($PY --version)"
  t=$SECONDS
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip wheel
  # HA ships its runtime constraints inside the wheel; without them pip resolves drifted deps
  # (e.g. josepy 2.x -> 'module josepy has no attribute ComparableX509' -> every HTTP request 500s).
  DL=$HA_CACHE/dl-$HA_VERSION
  rm -rf "$DL"; "$VENV/bin/pip" download -q --no-deps -d "$DL" "homeassistant==$HA_VERSION"
  python3 - "$DL" "$HA_CACHE/constraints-$HA_VERSION.txt" <<'EOF'
import sys, zipfile, glob
whl = glob.glob(sys.argv[1] + "/homeassistant-*.whl")[0]
open(sys.argv[2], "wb").write(zipfile.ZipFile(whl).read("homeassistant/package_constraints.txt"))
EOF
  # pre-install the mqtt integration's own requirement (paho-mqtt 1.6.1 up to 2025.1, 2.1.0 in 2025.4)
  # so HA does not pip-install it at runtime when the MQTT entry is created
  # (edge_vlm: and mobile_app's, PyNaCl, for the tests' phone)
  REQS=$(python3 -c 'import sys,json,zipfile,glob; z=zipfile.ZipFile(glob.glob(sys.argv[1]+"/homeassistant-*.whl")[0]); print(" ".join(r for i in ("mqtt","mobile_app") for r in json.loads(z.read(f"homeassistant/components/{i}/manifest.json"))["requirements"]))' "$DL")
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q "homeassistant==$HA_VERSION" "josepy<2" $REQS -c "$HA_CACHE/constraints-$HA_VERSION.txt"
  rm -rf "$DL"
  touch "$VENV/.ha_venv_ok"
  log "installed $("$VENV/bin/hass" --version 2>/dev/null || true) in $((SECONDS - t)) s"
fi
exec 9>&-
[[ ${1:-start} == setup ]] && { log "setup done: $VENV"; exit 0; }

stop_all   # never leave a previous harness instance around

# ---------- 2. private mosquitto ----------
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

# ---------- 3. HA config + start ----------
HA_PORT=${HA_PORT:-$(free_port)}
B=http://127.0.0.1:$HA_PORT
rm -rf "$CONF"; mkdir -p "$CONF"
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
"$VENV/bin/hass" -c "$CONF" > "$HA_WORK/hass.log" 2>&1 &
echo $! > "$HA_WORK/hass.pid"
t0=$(date +%s)
until [[ $(curl -s -o /dev/null -w '%{http_code}' "$B/api/onboarding" || true) == 200 ]]; do
  kill -0 "$(cat "$HA_WORK/hass.pid")" 2>/dev/null || { tail -30 "$HA_WORK/hass.log"; log "hass died"; exit 1; }
  (( $(date +%s) - t0 > 120 )) && { tail -30 "$HA_WORK/hass.log"; log "hass not up in 120 s"; exit 1; }
  sleep 0.2
done
log "HA $HA_VERSION up at $B (pid $(cat "$HA_WORK/hass.pid")) after $(( $(date +%s) - t0 )) s"

# ---------- 4. onboarding -> tokens (no browser) ----------
CID="$B/"   # client_id must be a URL; HA accepts the instance's own URL
AUTH_CODE=$(curl -sf -X POST "$B/api/onboarding/users" -H 'Content-Type: application/json' \
  -d "{\"client_id\":\"$CID\",\"name\":\"Test\",\"username\":\"test\",\"password\":\"test-pass-123\",\"language\":\"en\"}" | jget '["auth_code"]')
TOKJSON=$(curl -sf -X POST "$B/auth/token" -d grant_type=authorization_code -d "code=$AUTH_CODE" -d "client_id=$CID")
ACCESS=$(echo "$TOKJSON" | jget '["access_token"]')          # expires in 1800 s
REFRESH=$(echo "$TOKJSON" | jget '["refresh_token"]')
# the remaining onboarding steps only matter for the web UI; 'core_config' is skipped on purpose
# (it tries to create met/radio_browser/google_translate entries and 500s on missing 'mutagen').
curl -sf -X POST "$B/api/onboarding/analytics" -H "Authorization: Bearer $ACCESS" -H 'Content-Type: application/json' -d '{}' >/dev/null || true
curl -sf -X POST "$B/api/onboarding/integration" -H "Authorization: Bearer $ACCESS" -H 'Content-Type: application/json' \
  -d "{\"client_id\":\"$CID\",\"redirect_uri\":\"${CID}?auth_callback=1\"}" >/dev/null || true
# long-lived token via the websocket API (aiohttp is in the HA venv)
HA_TOKEN=$("$VENV/bin/python" - "$B" "$ACCESS" <<'EOF'
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
EOF
)
H="Authorization: Bearer $HA_TOKEN"
curl -sf -H "$H" "$B/api/" | grep -q "API running" && log "long-lived token OK"

# ---------- 5. MQTT integration via config-entries flow ----------
FLOW=$(curl -sf -X POST "$B/api/config/config_entries/flow" -H "$H" -H 'Content-Type: application/json' -d '{"handler":"mqtt","show_advanced_options":false}')
FID=$(echo "$FLOW" | jget '["flow_id"]'); STEP=$(echo "$FLOW" | jget '["step_id"]')
[[ $STEP == broker ]] || { log "unexpected flow step: $FLOW"; exit 1; }
RES=$(curl -sf -X POST "$B/api/config/config_entries/flow/$FID" -H "$H" -H 'Content-Type: application/json' \
  -d "{\"broker\":\"127.0.0.1\",\"port\":$MQTT_PORT}")
[[ $(echo "$RES" | jget '["type"]') == create_entry ]] || { log "MQTT flow failed: $RES"; exit 1; }
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

# ---------- 6. demo: MQTT discovery -> entity in /api/states ----------
if [[ ${HA_SKIP_DEMO:-0} != 1 ]]; then
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -q 1 -t homeassistant/sensor/edge_vlm_demo/description/config -m \
   '{"name":"Description","unique_id":"edge_vlm_demo_description","state_topic":"edge_vlm/demo/description","json_attributes_topic":"edge_vlm/demo/attributes","availability_topic":"edge_vlm/status","icon":"mdi:cctv","device":{"identifiers":["edge_vlm_demo"],"name":"Demo Camera VLM","manufacturer":"edge_vlm"}}'
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -q 1 -t edge_vlm/status -m online
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -q 1 -t edge_vlm/demo/attributes -m '{"full_text":"A person in a red jacket is standing at the front door holding a parcel.","model":"demo"}'
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -q 1 -t edge_vlm/demo/description -m 'A person in a red jacket is at the door.'
  for _ in $(seq 1 50); do
    S=$(curl -sf -H "$H" "$B/api/states/sensor.demo_camera_vlm_description" || true)
    [[ $S == *red* ]] && break; sleep 0.2
  done
  log "entity: $S"
  curl -sf -H "$H" "$B/api/states" | python3 -c 'import sys,json; [print("  ", e["entity_id"], "=", e["state"][:60]) for e in json.load(sys.stdin) if e["entity_id"].startswith(("sensor.","binary_sensor.","image.","camera."))]'
fi
log "ready. 'source $HA_WORK/env' for HA_URL/HA_TOKEN/MQTT_PORT; 'bash $0 stop' to stop."
