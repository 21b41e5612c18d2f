#!/usr/bin/env bash
# One-shot setup of the compose stack's Elasticsearch users: kibana_system's password, and a
# `shipper` user whose role can only write logs-docker-* and manage its own templates.
set -euo pipefail
es="${ES_URL:-http://elasticsearch:9200}"
auth="elastic:${ELASTIC_PASSWORD:?}"

call() { # method path body
    curl -fsS -u "$auth" -X "$1" "$es$2" -H 'Content-Type: application/json' -d "$3" >/dev/null
}

until curl -fsS -u "$auth" "$es/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null; do
    echo "setup: waiting for Elasticsearch at $es"
    sleep 2
done

call POST /_security/user/kibana_system/_password "{\"password\":\"${KIBANA_PASSWORD:?}\"}"
call PUT /_security/role/shipper_writer '{
  "cluster": ["monitor", "manage_index_templates", "manage_ilm", "manage_pipeline"],
  "indices": [{
    "names": ["logs-docker-*"],
    "privileges": ["create_doc", "auto_configure", "create_index", "view_index_metadata"]
  }]
}'
call PUT /_security/user/shipper "{
  \"password\": \"${SHIPPER_ES_PASSWORD:?}\",
  \"roles\": [\"shipper_writer\"],
  \"full_name\": \"shipper log forwarder\"
}"
echo "setup: users kibana_system and shipper are ready"
