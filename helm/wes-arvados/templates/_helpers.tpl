{{/* The chart's names and labels, and the combinations it refuses. */}}

{{- define "wes-arvados.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wes-arvados.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wes-arvados.labels" -}}
{{ include "wes-arvados.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "wes-arvados.registrySecret" -}}
{{- .Values.registryCredentials.existingSecret | default (printf "%s-registry" (include "wes-arvados.fullname" .)) -}}
{{- end -}}

{{- define "wes-arvados.hasRegistryCredentials" -}}
{{- if or .Values.registryCredentials.existingSecret .Values.registryCredentials.dockerConfigJson -}}true{{- end -}}
{{- end -}}

{{/* Refuse what cannot work, with a message that says what to change. */}}
{{- define "wes-arvados.check" -}}
{{- if eq .Values.backend "local" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- fail (printf "backend: local keeps its state on one PersistentVolumeClaim and runs one replica; replicaCount is %d. Use backend: arvados for more replicas." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if .Values.autoscaling.enabled -}}
{{- fail "backend: local runs one replica; autoscaling.enabled needs backend: arvados." -}}
{{- end -}}
{{- else if eq .Values.backend "arvados" -}}
{{- if not .Values.arvados.apiHost -}}
{{- fail "backend: arvados needs arvados.apiHost, the Arvados API server (host[:port])." -}}
{{- end -}}
{{- end -}}
{{- end -}}
