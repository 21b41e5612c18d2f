#!/usr/bin/env bash
# One-shot setup of the compose stack's Elasticsearch users: kibana_system's password, and a
# `shipper` user whose role can only write log data streams (logs-*-*) and install templates.
set -euo pipefail
es="${ES_URL:-http://elasticsearch:9200}"
auth="elastic:${ELASTIC_PASSWORD:?}"

call() { # method path body
    curl -fsS -u "$auth" -X "$1" "$es$2" -H 'Content-Type: application/json' -d "$3" >/dev/null
}
# A JSON string literal: a password holding `"` or `\` must not break the request body.
json_string() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

until curl -fsS -u "$auth" "$es/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null; do
    echo "setup: waiting for Elasticsearch at $es"
    sleep 2
done

call POST /_security/user/kibana_system/_password "{\"password\": $(json_string "${KIBANA_PASSWORD:?}")}"
# What the shipper does with it: GET / for the cluster version (monitor); component and index
# templates shipper-* (manage_index_templates) and, with elasticsearch.ilm.enabled, its ILM
# policy (manage_ilm); bulk `create` into its data streams, created on first write
# (create_doc, auto_configure). logs-*-* rather than logs-docker-*: the dead-letter stream
# (logs-shipper.deadletter-default), elasticsearch.routing rules and the labels
# shipper.dataset / shipper.namespace all write to other logs-<dataset>-<namespace> streams.
call PUT /_security/role/shipper_writer '{
  "cluster": ["monitor", "manage_index_templates", "manage_ilm"],
  "indices": [{
    "names": ["logs-*-*"],
    "privileges": ["create_doc", "auto_configure"]
  }]
}'
call PUT /_security/user/shipper "{
  \"password\": $(json_string "${SHIPPER_ES_PASSWORD:?}"),
  \"roles\": [\"shipper_writer\"],
  \"full_name\": \"shipper log forwarder\"
}"
echo "setup: users kibana_system and shipper are ready"
