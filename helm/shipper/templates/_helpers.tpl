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

{{/*
The node's container runtime, and what the pod mounts for it.

docker: the Docker socket (and json-file directory), as before. containerd, cri-o: kubelet's
log directory and the directory holding the runtime's CRI socket. auto: the log directory and
both runtimes' socket directories; the shipper uses whichever socket answers.

The socket's *directory* is mounted, not the socket file: a runtime removes and recreates its
socket when it restarts (a new inode), and a bind mount of the file would keep pointing at
the dead one (measured with containerd 1.6), while a mount of the directory sees the new
socket. Each pod sees the node's paths unchanged, so the log paths the CRI API reports
(ContainerStatus.log_path) are valid inside the pod as they are.
*/}}
{{- define "shipper.usesCri" -}}
{{- if ne .Values.runtime "docker" }}true{{ end }}
{{- end }}

{{- define "shipper.defaultCriSockets" -}}
containerd: /run/containerd/containerd.sock
cri-o: /var/run/crio/crio.sock
{{- end }}

{{/*
The runtime socket directories to mount, as a YAML list of {name, path, type}. A directory is
"Directory" (it must exist: a pod on a node without it fails to start, with the reason in its
events) when the runtime is named, and "DirectoryOrCreate" under auto, where a node has only
one of the two: kubelet then creates the other as an empty directory in /run (tmpfs), which
harms nothing, instead of blocking the pod.
*/}}
{{- define "shipper.criSocketDirs" -}}
{{- $defaults := include "shipper.defaultCriSockets" . | fromYaml }}
{{- $socket := .Values.cri.socketPath }}
{{- if eq .Values.runtime "containerd" }}
- {name: containerd-run, path: {{ dir (default $defaults.containerd $socket) | quote }}, type: Directory}
{{- else if eq .Values.runtime "cri-o" }}
- {name: crio-run, path: {{ dir (default (index $defaults "cri-o") $socket) | quote }}, type: Directory}
{{- else if eq .Values.runtime "auto" }}
- {name: containerd-run, path: {{ dir $defaults.containerd | quote }}, type: DirectoryOrCreate}
- {name: crio-run, path: {{ dir (index $defaults "cri-o") | quote }}, type: DirectoryOrCreate}
{{- end }}
{{- end }}

{{/* The `cri.socket` the shipper is given: the named runtime's socket, or auto. */}}
{{- define "shipper.criSocket" -}}
{{- $defaults := include "shipper.defaultCriSockets" . | fromYaml }}
{{- if .Values.cri.socketPath }}
{{- .Values.cri.socketPath }}
{{- else if eq .Values.runtime "auto" -}}
auto
{{- else }}
{{- index $defaults .Values.runtime }}
{{- end }}
{{- end }}

{{/*
Values that contradict the runtime fail the install with the key named, rather than being
ignored.
*/}}
{{- define "shipper.checkRuntime" -}}
{{- if and .Values.cri.socketPath (not (has .Values.runtime (list "containerd" "cri-o"))) }}
{{- fail (printf "cri.socketPath names one runtime's socket: set runtime to containerd or cri-o (it is %s; docker uses docker.socketPath)" .Values.runtime) }}
{{- end }}
{{- end }}

{{/*
Security contexts: the runtime's defaults with podSecurityContext / securityContext merged
over them (a key given there wins; lists are replaced, not appended).

docker: uid/gid 10001, non-root, and the Docker socket's group (root:docker 0660) as a
supplemental group. CRI runtimes: uid 0 with every capability dropped. The runtimes write the
log files as root (containerd 0640, CRI-O 0600; directories 0755, /var/log/pods 0750) and
their sockets are root:root 0660, so uid 0 reads and connects as their *owner*, with no
capability at all. CAP_DAC_READ_SEARCH is not needed for that, and it would also allow
open_by_handle_at(2), which reads any file on a mounted host filesystem by handle (the
"shocker" escape), so it is not added.
*/}}
{{- define "shipper.podSecurityContext" -}}
{{- $defaults := dict "seccompProfile" (dict "type" "RuntimeDefault") }}
{{- if include "shipper.usesCri" . }}
{{- $_ := mustMergeOverwrite $defaults (dict "runAsNonRoot" false "runAsUser" 0 "runAsGroup" 0) }}
{{- else }}
{{- $_ := mustMergeOverwrite $defaults (dict
  "runAsNonRoot" true "runAsUser" 10001 "runAsGroup" 10001 "fsGroup" 10001
  "supplementalGroups" (list (int .Values.docker.socketGroupId))) }}
{{- end }}
{{- toYaml (mustMergeOverwrite $defaults (deepCopy .Values.podSecurityContext)) }}
{{- end }}

{{- define "shipper.containerSecurityContext" -}}
{{- $defaults := dict
  "allowPrivilegeEscalation" false
  "readOnlyRootFilesystem" true
  "capabilities" (dict "drop" (list "ALL")) }}
{{- toYaml (mustMergeOverwrite $defaults (deepCopy .Values.securityContext)) }}
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
  "elasticsearch" $esConfig
  "storage" (dict "path" (include "shipper.stateMountPath" .))
  "metrics" (dict "listen" (printf "0.0.0.0:%d" (int .Values.metrics.port)))
  "log" (dict "level" .Values.log.level "format" .Values.log.format)
}}
{{- if include "shipper.usesCri" . }}
{{- $_ := set $managed "source" "cri" }}
{{- $_ := set $managed "cri" (dict "socket" (include "shipper.criSocket" .) "log_directory" .Values.cri.logDirectory) }}
{{- else }}
{{- $_ := set $managed "source" "docker" }}
{{- $_ := set $managed "docker" (dict "host" (printf "unix://%s" (include "shipper.socketMountPath" .))) }}
{{- end }}
{{- toYaml (mustMerge $managed (deepCopy .Values.config)) }}
{{- end }}
