{{/* Names and labels. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.fullname" -}}
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

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: sink
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "sluice.configMapName" -}}
{{- default (include "sluice.fullname" .) .Values.existingConfigMap }}
{{- end }}

{{- define "sluice.configKey" -}}
{{- if .Values.existingConfigMap }}{{ .Values.existingConfigMapKey }}{{ else }}sluice.yaml{{ end }}
{{- end }}

{{/*
The port sluice listens on, parsed from config.http.listen. The probes and
Prometheus reach the pod from outside, so the address must be 0.0.0.0 or
[::]; sluice's own default (127.0.0.1:9187) is refused too.
*/}}
{{- define "sluice.port" -}}
{{- $http := default dict .Values.config.http }}
{{- if not (hasKey $http "listen") }}
{{- fail "config.http.listen is not set: sluice would listen on its default 127.0.0.1:9187, which neither the probes nor Prometheus can reach; set config.http.listen: \"0.0.0.0:9187\"" }}
{{- end }}
{{- $listen := toString $http.listen }}
{{- if not (regexMatch "^(0\\.0\\.0\\.0|\\[::\\]):[0-9]{1,5}$" $listen) }}
{{- fail (printf "config.http.listen is %q: in a pod it must be 0.0.0.0:PORT (or [::]:PORT) so that the kubelet's probes and Prometheus reach it, e.g. \"0.0.0.0:9187\"" $listen) }}
{{- end }}
{{- $port := regexReplaceAll "^.*:" $listen "" | atoi }}
{{- if or (lt $port 1) (gt $port 65535) }}
{{- fail (printf "config.http.listen is %q: the port must be between 1 and 65535" $listen) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
A sluice duration ("25s", "1m", "500ms", "1m30s") in milliseconds.
Called with (list "config.shutdown_grace" value).
*/}}
{{- define "sluice.durationMs" -}}
{{- $path := index . 0 }}
{{- $text := index . 1 | toString }}
{{- /* sluice's grammar (src/config/units.rs): <digits><unit> terms, no
spaces, units ms, s, m, h in lower case. */}}
{{- $units := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 }}
{{- if not (regexMatch "^([0-9]+[a-zA-Z]+)+$" $text) }}
{{- fail (printf "%s is %q: write a duration with a unit and no spaces, like \"25s\", \"1m\", \"1m30s\" or \"500ms\"" $path $text) }}
{{- end }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+[a-zA-Z]+" $text -1 }}
{{- $n := regexFind "^[0-9]+" . | atoi }}
{{- $unit := regexReplaceAll "^[0-9]+" . "" }}
{{- if not (hasKey $units $unit) }}
{{- fail (printf "%s is %q: unknown unit %q (use ms, s, m or h, lower case)" $path $text $unit) }}
{{- end }}
{{- $total = add $total (mul $n (get $units $unit)) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
Fails unless terminationGracePeriodSeconds exceeds config.shutdown_grace:
the kubelet would otherwise kill sluice while it drains.
*/}}
{{- define "sluice.checkGrace" -}}
{{- $grace := "25s" }}
{{- if hasKey .Values.config "shutdown_grace" }}{{ $grace = .Values.config.shutdown_grace }}{{ end }}
{{- $ms := include "sluice.durationMs" (list "config.shutdown_grace" $grace) | atoi }}
{{- $tgps := int .Values.terminationGracePeriodSeconds }}
{{- if le (mul $tgps 1000) $ms }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than config.shutdown_grace (%v): the kubelet would kill sluice while it drains; raise terminationGracePeriodSeconds to at least %d" $tgps $grace (add (div $ms 1000) 5)) }}
{{- end }}
{{- end }}

{{/* PromQL matchers for this release's series. */}}
{{- define "sluice.metricsSelector" -}}
{{- if .Values.metricsSelector }}
{{- .Values.metricsSelector }}
{{- else }}
{{- printf "namespace=%q,service=%q" .Release.Namespace (include "sluice.fullname" .) }}
{{- end }}
{{- end }}

{{/* The lag query: one series per partition, summed (max: during a
rebalance two replicas may briefly both export a partition). */}}
{{- define "sluice.lagQuery" -}}
{{- if .Values.autoscaling.keda.prometheus.query }}
{{- .Values.autoscaling.keda.prometheus.query }}
{{- else }}
{{- printf "sum(max by (topic, partition) (sluice_partition_lag_records{%s}))" (include "sluice.metricsSelector" .) }}
{{- end }}
{{- end }}

{{/* Autoscaling bounds; fails on settings that cannot work. */}}
{{- define "sluice.maxReplicas" -}}
{{- $a := .Values.autoscaling }}
{{- $partitions := int .Values.partitions }}
{{- if lt $partitions 1 }}
{{- fail (printf "partitions must be set (the total partition count of the consumed topics) when autoscaling.mode is %s: autoscaling.maxReplicas defaults to it and may not exceed it" $a.mode) }}
{{- end }}
{{- $max := $partitions }}
{{- if not (kindIs "invalid" $a.maxReplicas) }}{{ $max = int $a.maxReplicas }}{{ end }}
{{- if gt $max $partitions }}
{{- fail (printf "autoscaling.maxReplicas (%d) is above partitions (%d): a replica beyond the partition count owns no partition and only adds rebalances" $max $partitions) }}
{{- end }}
{{- if lt $max (int $a.minReplicas) }}
{{- fail (printf "autoscaling.maxReplicas (%d) is below autoscaling.minReplicas (%d)" $max (int $a.minReplicas)) }}
{{- end }}
{{- $max }}
{{- end }}

{{/* Settings that contradict each other. */}}
{{- define "sluice.checkConflicts" -}}
{{- $a := .Values.autoscaling }}
{{- if and (ne $a.mode "keda") (ne $a.keda.trigger "prometheus") }}
{{- fail (printf "autoscaling.keda.trigger is %q but autoscaling.mode is %q: the KEDA trigger only applies with autoscaling.mode: keda" $a.keda.trigger $a.mode) }}
{{- end }}
{{- if and (ne $a.mode "hpa") (or (ne $a.hpa.metricName "sluice_consumer_lag_records") $a.hpa.metricSelector) }}
{{- fail (printf "autoscaling.hpa is customised but autoscaling.mode is %q: only one autoscaler may own the Deployment; set autoscaling.mode: hpa or drop the autoscaling.hpa settings" $a.mode) }}
{{- end }}
{{- if and .Values.existingSecret .Values.secret.create }}
{{- fail "existingSecret and secret.create are both set: choose one source for the Secret" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) }}
{{- fail "serviceMonitor.enabled needs service.enabled: the ServiceMonitor scrapes the Service's endpoints" }}
{{- end }}
{{- end }}
