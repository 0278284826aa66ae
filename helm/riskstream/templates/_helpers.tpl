{{- define "riskstream.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "riskstream.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "riskstream.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "riskstream.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "riskstream.env" -}}
- name: RISKSTREAM_ENVIRONMENT
  value: {{ .Values.config.environment | quote }}
- name: RISKSTREAM_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: RISKSTREAM_KAFKA__BOOTSTRAP
  value: {{ .Values.config.kafka.bootstrap | quote }}
- name: RISKSTREAM_KAFKA__PARTITIONS
  value: {{ .Values.config.kafka.partitions | quote }}
- name: RISKSTREAM_WORKER__BATCH_SIZE
  value: {{ .Values.config.worker.batchSize | quote }}
- name: RISKSTREAM_WORKER__ALLOWED_LATENESS_SECONDS
  value: {{ .Values.config.worker.allowedLatenessSeconds | quote }}
- name: RISKSTREAM_MODEL__DIR
  value: /app/models
- name: RISKSTREAM_RULES__DIR
  value: /app/rules
- name: RISKSTREAM_WORKER__DATA_DIR
  value: /tmp/worker
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.databaseUrl.name }}
      key: {{ .Values.secrets.databaseUrl.key }}
{{- end -}}

{{- define "riskstream.volumes" -}}
- name: models
{{- if .Values.models.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.models.existingClaim | default (printf "%s-models" (include "riskstream.fullname" .)) }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: tmp
  emptyDir: {}
{{- if .Values.rules.files }}
- name: rules
  configMap:
    name: {{ include "riskstream.fullname" . }}-rules
{{- end }}
{{- end -}}

{{- define "riskstream.volumeMounts" -}}
- name: models
  mountPath: /app/models
- name: tmp
  mountPath: /tmp
{{- if .Values.rules.files }}
- name: rules
  mountPath: /app/rules
  readOnly: true
{{- end }}
{{- end -}}
