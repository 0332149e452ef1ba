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

{{/* Local backend: the Secret of the operator tokens (the user's, or the one the chart makes when no auth is given). */}}
{{- define "wes-arvados.generatesAuth" -}}
{{- if and (eq .Values.backend "local") (not (or .Values.auth.existingSecret .Values.auth.tokenFileSecret .Values.auth.oidc.issuer)) -}}true{{- end -}}
{{- end -}}

{{- define "wes-arvados.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "wes-arvados.fullname" .)) -}}
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
{{- if and .Values.auth.oidc.issuer (not .Values.auth.oidc.audience) -}}
{{- fail "auth.oidc.issuer needs auth.oidc.audience: a token is checked for both." -}}
{{- end -}}
{{- else if eq .Values.backend "arvados" -}}
{{- if not .Values.arvados.apiHost -}}
{{- fail "backend: arvados needs arvados.apiHost, the Arvados API server (host[:port])." -}}
{{- end -}}
{{- end -}}
{{- end -}}
