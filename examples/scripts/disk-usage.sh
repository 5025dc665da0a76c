#!/usr/bin/env bash
# Disk usage check: reports the used percentage of each mount as metrics and fails
# when one is above the threshold. Parameters arrive as AAMI_PARAM_* and as JSON
# on stdin (see docs/script-contract.md).
set -euo pipefail
threshold="${AAMI_PARAM_THRESHOLD_PERCENT:-90}"
mounts=$(python3 -c 'import json,os; print(" ".join(json.loads(os.environ["AAMI_PARAMS"]).get("mounts", ["/"])))')
status=0
metrics=()
for mount in $mounts; do
    used=$(df -P "$mount" | awk 'NR==2 {gsub("%", "", $5); print $5}')
    metrics+=("{\"name\": \"aami_disk_used_percent\", \"value\": $used, \"labels\": {\"mount\": \"$mount\"}}")
    if [ "$used" -gt "$threshold" ]; then
        echo "$mount is ${used}% full (threshold ${threshold}%)" >&2
        status=1
    fi
done
(IFS=,; echo "{\"metrics\": [${metrics[*]}]}")
exit "$status"
