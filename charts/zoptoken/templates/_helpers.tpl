{{- define "zoptoken.labels" -}}
app.kubernetes.io/name: zoptoken
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}
{{- define "zoptoken.selector" -}}
app.kubernetes.io/name: zoptoken
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "zoptoken.workerURL" -}}
{{- .Values.gateway.workerURL | default (printf "https://zop-gateway.%s.svc:%v" .Release.Namespace .Values.gateway.port) -}}
{{- end }}
