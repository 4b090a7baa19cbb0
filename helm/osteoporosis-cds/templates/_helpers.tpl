{{/* Chart name, overridable. */}}
{{- define "osteoporosis-cds.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already contains the chart name. */}}
{{- define "osteoporosis-cds.fullname" -}}
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

{{- define "osteoporosis-cds.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "osteoporosis-cds.selectorLabels" -}}
app.kubernetes.io/name: {{ include "osteoporosis-cds.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "osteoporosis-cds.labels" -}}
helm.sh/chart: {{ include "osteoporosis-cds.chart" . }}
{{ include "osteoporosis-cds.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "osteoporosis-cds.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "osteoporosis-cds.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "osteoporosis-cds.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "external" when the database URL comes from a Secret, "sqlite" for the in-pod evaluation store. */}}
{{- define "osteoporosis-cds.databaseMode" -}}
{{- if or .Values.database.existingSecret .Values.database.url }}external{{ else }}sqlite{{ end }}
{{- end }}

{{- define "osteoporosis-cds.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- printf "%s-database" (include "osteoporosis-cds.fullname" .) }}
{{- end }}
{{- end }}

{{- define "osteoporosis-cds.patientHashSecretName" -}}
{{- if .Values.patientHash.existingSecret }}
{{- .Values.patientHash.existingSecret }}
{{- else }}
{{- printf "%s-patient-hash" (include "osteoporosis-cds.fullname" .) }}
{{- end }}
{{- end }}

{{- define "osteoporosis-cds.trustedIssuersPath" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.trustedIssuers.mountPath) .Values.trustedIssuers.key }}
{{- end }}

{{/* Refuse combinations that would deploy something broken, at render time. */}}
{{- define "osteoporosis-cds.validate" -}}
{{- /* The chart sets these itself (container env wins over the ConfigMap, so a value here would be silently ignored), or they are secrets that do not belong in a ConfigMap. */}}
{{- range $key := list "CDS_DATABASE_URL" "CDS_TRUSTED_ISSUERS" "CDS_HOST" "CDS_PORT" "CDS_AUTO_MIGRATE" "CDS_REPORT_TOKEN" "CDS_PATIENT_HASH_SECRET" }}
{{- if hasKey $.Values.settings $key }}
{{- fail (printf "settings.%s is managed by the chart: use database.*, trustedIssuers.*, containerPort, migrations.enabled, report.existingSecret or patientHash.*" $key) }}
{{- end }}
{{- end }}
{{- range $key, $_ := .Values.settings }}
{{- if not (hasPrefix "CDS_" $key) }}
{{- fail (printf "settings.%s: only CDS_ settings belong here" $key) }}
{{- end }}
{{- end }}
{{- if eq (include "osteoporosis-cds.databaseMode" .) "sqlite" }}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "the SQLite evaluation store lives in one pod: set database.existingSecret (or database.url) for more than one replica or autoscaling" }}
{{- end }}
{{- end }}
{{- if and .Values.purge.enabled (eq (include "osteoporosis-cds.databaseMode" .) "sqlite") }}
{{- fail "purge.enabled needs the external database (database.existingSecret or database.url): the SQLite evaluation store lives in the pod" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- /* Kubernetes refuses a container whose volumeMounts share a mountPath: each folder the
     pod mounts (osteoporosis-cds.volumeMounts and the metrics emptyDir) must be its own. */}}
{{- $mounts := dict }}
{{- $named := list (list "the writable /tmp emptyDir" "/tmp") (list "the metrics emptyDir (PROMETHEUS_MULTIPROC_DIR)" "/tmp/prometheus-multiproc") (list "trustedIssuers.mountPath" .Values.trustedIssuers.mountPath) }}
{{- if eq (include "osteoporosis-cds.databaseMode" .) "sqlite" }}
{{- $named = append $named (list "the folder of database.sqlitePath" (dir .Values.database.sqlitePath)) }}
{{- end }}
{{- range $named }}
{{- $path := clean (index . 1) }}
{{- if hasKey $mounts $path }}
{{- fail (printf "%s (%s) is also the mount path of %s: a container's volumeMounts need distinct mountPaths; choose another folder" (index . 0) $path (get $mounts $path)) }}
{{- end }}
{{- $_ := set $mounts $path (index . 0) }}
{{- end }}
{{- /* SIGKILL comes terminationGracePeriodSeconds after the pod is told to stop: the preStop
     sleep and the server's graceful timeout (the app's default, 20, when not in settings) must fit. */}}
{{- $graceful := int (default 20 (index .Values.settings "CDS_GRACEFUL_TIMEOUT_SECONDS")) }}
{{- $preStop := int (default 0 .Values.lifecycle.preStopSleepSeconds) }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add $preStop $graceful) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds (%d) + settings.CDS_GRACEFUL_TIMEOUT_SECONDS (%d): requests in flight would be killed; raise it to at least %d" (int .Values.terminationGracePeriodSeconds) $preStop $graceful (add $preStop $graceful 1)) }}
{{- end }}
{{- end }}

{{/* Environment shared by the service container and the migration init container. */}}
{{- define "osteoporosis-cds.env" -}}
- name: CDS_PORT
  value: {{ .Values.containerPort | quote }}
# The init container migrates; the service itself only checks readiness.
- name: CDS_AUTO_MIGRATE
  value: {{ ternary "false" "true" .Values.migrations.enabled | quote }}
{{- if .Values.report.existingSecret }}
- name: CDS_REPORT_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.report.existingSecret }}
      key: {{ .Values.report.secretKey }}
{{- end }}
- name: CDS_PATIENT_HASH_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "osteoporosis-cds.patientHashSecretName" . }}
      key: {{ .Values.patientHash.secretKey }}
- name: CDS_TRUSTED_ISSUERS
  value: {{ include "osteoporosis-cds.trustedIssuersPath" . | quote }}
{{- if eq (include "osteoporosis-cds.databaseMode" .) "external" }}
- name: CDS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "osteoporosis-cds.databaseSecretName" . }}
      key: {{ .Values.database.secretKey }}
{{- else }}
- name: CDS_DATABASE_URL
  value: {{ printf "sqlite:///%s" .Values.database.sqlitePath | quote }}
{{- end }}
{{- end }}

{{- define "osteoporosis-cds.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: trusted-issuers
  mountPath: {{ .Values.trustedIssuers.mountPath }}
  readOnly: true
{{- if eq (include "osteoporosis-cds.databaseMode" .) "sqlite" }}
- name: data
  mountPath: {{ dir .Values.database.sqlitePath }}
{{- end }}
{{- end }}
