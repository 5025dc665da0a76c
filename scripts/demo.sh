#!/usr/bin/env bash
# The whole job on one machine, with the same commands an operator would type:
# a server on its embedded SQLite database, a publisher key, a signed demo check,
# a policy, and a local agent that verifies and runs it. Ctrl-C stops everything.
#
#   make demo            (or: bash scripts/demo.sh, after make install)
#
# Everything lives in ./demo-data; delete it to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=$(realpath -m "${AAMI_DEMO_DIR:-demo-data}")
PORT=${AAMI_DEMO_PORT:-8080}
METRICS_PORT=${AAMI_DEMO_METRICS_PORT:-9101}
SERVER=http://127.0.0.1:$PORT
DB="sqlite:///$DATA/aami.db"
mkdir -p "$DATA"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

step "Starting aami-server on $SERVER (database $DB)"
"$BIN/aami-server" serve --database "$DB" --listen "127.0.0.1:$PORT" >"$DATA/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do curl -fsS "$SERVER/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$SERVER/health/ready" >/dev/null || { echo "server did not start; see $DATA/server.log"; exit 1; }

if [ ! -s "$DATA/admin-token" ]; then
    step "Creating an admin API token (shown once; kept in $DATA/admin-token)"
    (umask 077; "$BIN/aami-server" token create --role admin --name demo --database "$DB" >"$DATA/admin-token")
fi
export AAMI_SERVER=$SERVER AAMI_TOKEN
AAMI_TOKEN=$(cat "$DATA/admin-token")

if [ ! -f "$DATA/keys/publisher.key" ]; then
    step "Generating a publisher key (the private half never leaves this workstation)"
    "$BIN/aami" keys generate --out "$DATA/keys" --name publisher
    "$BIN/aami" key register "$DATA/keys/publisher.pub" --name demo-publisher || true
fi
mkdir -p "$DATA/trusted-keys"
cp "$DATA/keys/publisher.pub" "$DATA/trusted-keys/publisher.pub"

step "Signing and publishing the demo check examples/scripts/disk-usage.sh"
# Ed25519 signatures are deterministic: re-signing the same bytes as the same
# version gives the identical signed script, which the server accepts as unchanged.
version=1.0.0
cp examples/scripts/disk-usage.sh "$DATA/disk-usage.sh"
"$BIN/aami" script sign "$DATA/disk-usage.sh" --key "$DATA/keys/publisher.key" \
    --name disk-usage --version "$version" --interpreter bash --timeout 30s \
    --params-schema examples/scripts/disk-usage.schema.json
"$BIN/aami" script verify "$DATA/disk-usage.sh.signed.json" --trusted-keys "$DATA/trusted-keys"
"$BIN/aami" script publish "$DATA/disk-usage.sh.signed.json"

step "Applying the policy examples/policies/demo.yaml"
"$BIN/aami" policy apply examples/policies/demo.yaml

if [ ! -s "$DATA/agent/state.json" ]; then
    step "Creating a single-use bootstrap token for the local agent"
    (umask 077; "$BIN/aami-server" bootstrap-token create --max-uses 1 --expires 1h \
        --database "$DB" >"$DATA/bootstrap-token")
fi
cat >"$DATA/agent.yaml" <<YAML
server:   {url: $SERVER, timeout: 10s}
agent:    {hostname: demo-node, state_dir: $DATA/agent, poll_interval: 10s,
           heartbeat_interval: 10s, bootstrap_token_file: $DATA/bootstrap-token}
trust:    {keys_dir: $DATA/trusted-keys}
executor: {max_concurrent: 2, default_timeout: 60s, output_limit: 64KiB, run_as: ""}
metrics:  {listen: 127.0.0.1:$METRICS_PORT, textfile_dir: $DATA/textfile}
logging:  {level: info, format: text}
YAML

step "Starting aami-agent (log: $DATA/agent.log)"
# AAMI_TOKEN holds the operator's admin token; the agent must not mistake it for
# a bootstrap token, so it runs without the operator's environment variables.
env -u AAMI_TOKEN -u AAMI_SERVER "$BIN/aami-agent" run --config "$DATA/agent.yaml" \
    >"$DATA/agent.log" 2>&1 &
pids+=($!)

step "Waiting for the first verified run to be reported"
result=""
for _ in $(seq 1 60); do
    result=$(curl -fsS -H "Authorization: Bearer $AAMI_TOKEN" \
        "$SERVER/api/v1/executions?script=disk-usage&limit=1" 2>/dev/null || true)
    if printf '%s' "$result" | grep -q '"id"'; then break; fi
    result=""
    sleep 1
done
if [ -z "$result" ]; then
    echo "no run reported within a minute; see $DATA/agent.log and $DATA/server.log"
    exit 1
fi
printf '%s\n' "$result" | python3 -m json.tool
cat <<MSG

The server is at $SERVER (web UI: $SERVER/ui/, log in with the token in $DATA/admin-token).
Agent metrics: http://127.0.0.1:$METRICS_PORT/metrics   node_exporter textfile: $DATA/textfile/
Try: $BIN/aami-agent status --config $DATA/agent.yaml
     $BIN/aami-agent poll --now --config $DATA/agent.yaml
Press Ctrl-C to stop the server and the agent.
MSG
wait
