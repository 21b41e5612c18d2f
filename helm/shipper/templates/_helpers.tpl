{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "shipper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "shipper.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "shipper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shipper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "shipper.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "shipper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: log-shipper
{{- end }}

{{- define "shipper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shipper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "shipper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the pod sees the node's paths, and where mounted secrets land. */}}
{{- define "shipper.socketMountPath" -}}/var/run/docker.sock{{- end }}
{{- define "shipper.stateMountPath" -}}/var/lib/shipper{{- end }}
{{- define "shipper.secretsMountPath" -}}/etc/shipper/secrets{{- end }}
{{- define "shipper.caMountPath" -}}/etc/shipper/tls{{- end }}

{{/*
The shipper's config file. It names files for every secret and never holds a secret's value:
the Secret is mounted into the pod, and only its mount path appears here.
*/}}
{{- define "shipper.config" -}}
{{- $es := .Values.elasticsearch }}
{{- $esConfig := dict "hosts" $es.hosts "data_stream" $es.dataStream "verify_certs" $es.tls.verifyCerts }}
{{- if $es.username }}
{{- $_ := set $esConfig "username" $es.username }}
{{- end }}
{{- if and $es.existingSecret $es.passwordKey }}
{{- $_ := set $esConfig "password_file" (printf "%s/%s" (include "shipper.secretsMountPath" .) $es.passwordKey) }}
{{- end }}
{{- if and $es.existingSecret $es.apiKeyKey }}
{{- $_ := set $esConfig "api_key_file" (printf "%s/%s" (include "shipper.secretsMountPath" .) $es.apiKeyKey) }}
{{- end }}
{{- if $es.tls.caSecret }}
{{- $_ := set $esConfig "ca_certs" (printf "%s/%s" (include "shipper.caMountPath" .) $es.tls.caKey) }}
{{- end }}
{{- $managed := dict
  "output" "elasticsearch"
  "shutdown_timeout_s" .Values.shutdownTimeoutSeconds
  "docker" (dict "host" (printf "unix://%s" (include "shipper.socketMountPath" .)))
  "elasticsearch" $esConfig
  "storage" (dict "path" (include "shipper.stateMountPath" .))
  "metrics" (dict "listen" (printf "0.0.0.0:%d" (int .Values.metrics.port)))
  "log" (dict "level" .Values.log.level "format" .Values.log.format)
}}
{{- toYaml (mustMerge $managed (deepCopy .Values.config)) }}
{{- end }}
