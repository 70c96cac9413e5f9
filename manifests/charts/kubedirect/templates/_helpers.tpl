{{/* kubedirect.fullname is the name of every object of the release. */}}
{{- define "kubedirect.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* kubedirect.serviceAccountName is the agent's ServiceAccount. */}}
{{- define "kubedirect.serviceAccountName" -}}
{{- default (include "kubedirect.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* kubedirect.selectorLabels select the agent's pods. */}}
{{- define "kubedirect.selectorLabels" -}}
app.kubernetes.io/name: kubedirect
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{/* kubedirect.labels go on every object. */}}
{{- define "kubedirect.labels" -}}
{{ include "kubedirect.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* kubedirect.image is the image reference of the agent and its init container. */}}
{{- define "kubedirect.image" -}}
{{- required "image.repository is required" .Values.image.repository -}}:{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}
