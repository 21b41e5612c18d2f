#!/usr/bin/env bash
# One-shot: creates Kibana's "Docker logs" data view over the shipper's data stream and makes
# it the default, so Discover shows the logs as soon as Kibana opens. Safe to run again.
set -euo pipefail
kibana="${KIBANA_URL:-http://kibana:5601}"
auth="elastic:${ELASTIC_PASSWORD:?}"
pattern="${DATA_VIEW_PATTERN:-logs-docker-*}"

tries=60
until curl -fsS -o /dev/null -u "$auth" "$kibana/api/data_views"; do
    tries=$((tries - 1))
    if [ "$tries" -eq 0 ]; then echo "kibana-setup: Kibana at $kibana never answered" >&2; exit 1; fi
    echo "kibana-setup: waiting for Kibana at $kibana ($tries tries left)"
    sleep 3
done

curl -fsS -u "$auth" -X POST "$kibana/api/data_views/data_view" \
    -H 'kbn-xsrf: shipper' -H 'Content-Type: application/json' \
    -d "{\"override\": true, \"data_view\": {\"id\": \"docker-logs\", \"name\": \"Docker logs\",
         \"title\": \"$pattern\", \"timeFieldName\": \"@timestamp\"}}" >/dev/null
curl -fsS -u "$auth" -X POST "$kibana/api/data_views/default" \
    -H 'kbn-xsrf: shipper' -H 'Content-Type: application/json' \
    -d '{"data_view_id": "docker-logs", "force": true}' >/dev/null
echo "kibana-setup: data view 'Docker logs' ($pattern) is Kibana's default"
