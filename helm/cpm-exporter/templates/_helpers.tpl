{{/* Chart name, at most 63 characters (a DNS label). */}}
{{- define "cpm-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: "<release>-<chart>", or the release name when it already holds the chart name. */}}
{{- define "cpm-exporter.fullname" -}}
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

{{/* Labels that select the pods: never change them between releases (a DaemonSet selector is immutable). */}}
{{- define "cpm-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cpm-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "cpm-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cpm-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: exporter
app.kubernetes.io/part-of: cpm-exporter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "cpm-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cpm-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: the digest pins it when given, else the tag (default: appVersion). */}}
{{- define "cpm-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the PodResources socket is inside the container (podResources.enabled). */}}
{{- define "cpm-exporter.podresourcesSocket" -}}
{{- if .Values.podResources.enabled }}
{{- printf "%s/kubelet.sock" (trimSuffix "/" .Values.podResources.hostPath) }}
{{- end }}
{{- end }}

{{/*
The exporter's config file: .Values.config plus the two keys the chart owns, so the config always
matches what is mounted (the schema forbids setting them in values).
*/}}
{{- define "cpm-exporter.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $kube := deepCopy (default (dict) (get $config "kubernetes")) }}
{{- /* Off: "" tells the exporter not to ask the kubelet (no socket is mounted). */}}
{{- $_ := set $kube "podresources_socket" (ternary (include "cpm-exporter.podresourcesSocket" .) "" .Values.podResources.enabled) }}
{{- $_ := set $kube "proc_root" (ternary "/host/proc" "/proc" .Values.hostProc.enabled) }}
{{- $_ = set $config "kubernetes" $kube }}
{{- if .Values.state.enabled }}
{{- if hasKey $config "state_file" }}
{{- fail "state.enabled sets config.state_file: leave it unset" }}
{{- end }}
{{- $_ := set $config "state_file" "/var/lib/cpm-exporter/state.json" }}
{{- end }}
{{- if .Values.cadvisor.enabled }}
{{- $node := deepCopy (default (dict) (get $config "node_source")) }}
{{- if or (hasKey $node "cadvisor_url") (hasKey $node "cadvisor_https") }}
{{- fail "cadvisor.enabled sets config.node_source.cadvisor_url and cadvisor_https: leave them unset" }}
{{- end }}
{{- /* ${HOST_IP} is expanded by the exporter from the pod's environment (downward API). */}}
{{- $_ := set $node "cadvisor_url" (printf "https://${HOST_IP}:%v/metrics/cadvisor" .Values.cadvisor.port) }}
{{- $https := dict "bearer_token_file" "/var/run/secrets/kubernetes.io/serviceaccount/token" }}
{{- if and .Values.cadvisor.insecureSkipVerify .Values.cadvisor.caFile }}
{{- fail "cadvisor: set caFile (and insecureSkipVerify: false) or insecureSkipVerify, not both" }}
{{- else if .Values.cadvisor.insecureSkipVerify }}
{{- $_ := set $https "insecure_skip_verify" true }}
{{- else if .Values.cadvisor.caFile }}
{{- $_ := set $https "ca_file" .Values.cadvisor.caFile }}
{{- else }}
{{- fail "cadvisor: insecureSkipVerify is false, so set caFile: the system CAs do not sign kubelet certificates" }}
{{- end }}
{{- $_ := set $node "cadvisor_https" $https }}
{{- $_ = set $config "node_source" $node }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Whether the pods need an API token: only to watch pods (config.kubernetes.enabled). */}}
{{- define "cpm-exporter.kubernetesEnabled" -}}
{{- if and .Values.config.kubernetes .Values.config.kubernetes.enabled }}true{{- end }}
{{- end }}
