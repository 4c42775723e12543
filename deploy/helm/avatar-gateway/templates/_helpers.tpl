{{/*
Names and labels.
*/}}
{{- define "avatar-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "avatar-gateway.fullname" -}}
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

{{/* The headless Service: 63 characters at most, like every Service name. */}}
{{- define "avatar-gateway.headlessName" -}}
{{- printf "%s-headless" (include "avatar-gateway.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "avatar-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "avatar-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "avatar-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "avatar-gateway.labels" -}}
helm.sh/chart: {{ include "avatar-gateway.chart" . }}
{{ include "avatar-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "avatar-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "avatar-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "avatar-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Secrets. The Secret mounted with every key: the user's existingSecret (preferred) or the one
the chart creates from `secrets`. Empty when there is none.
*/}}
{{- define "avatar-gateway.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secrets }}
{{- include "avatar-gateway.fullname" . }}
{{- end }}
{{- end }}

{{/*
The Redis URL's Secret key, projected as the file AVATAR_GATEWAY_REDIS_URL, unless it already
is that file of the Secret mounted whole ("true"/"").
*/}}
{{- define "avatar-gateway.redisSecretProjected" -}}
{{- $r := .Values.redis }}
{{- if $r.existingSecret }}
{{- if not (and (eq $r.existingSecret (include "avatar-gateway.secretName" .)) (eq $r.existingSecretKey "AVATAR_GATEWAY_REDIS_URL")) }}
{{- "true" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when a secrets volume is mounted at secretsDir. */}}
{{- define "avatar-gateway.hasSecretsVolume" -}}
{{- if or (include "avatar-gateway.secretName" .) (include "avatar-gateway.redisSecretProjected" .) }}
{{- "true" }}
{{- end }}
{{- end }}

{{/* "true" when the gateway gets a Redis URL (plain, from a Secret key, or from `secrets`). */}}
{{- define "avatar-gateway.redisConfigured" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret (hasKey .Values.secrets "AVATAR_GATEWAY_REDIS_URL") }}
{{- "true" }}
{{- end }}
{{- end }}

{{/*
Where the TLS, client CA and API keys Secrets are mounted: each its own directory beside
secretsDir, never inside it or inside one another (a mount point inside a Secret volume would
have to be created in the kubelet's read-only, atomically swapped directory).
*/}}
{{- define "avatar-gateway.tlsDir" -}}/var/run/secrets/avatar-gateway-tls{{- end }}
{{- define "avatar-gateway.clientCADir" -}}/var/run/secrets/avatar-gateway-client-ca{{- end }}
{{- define "avatar-gateway.apiKeysDir" -}}/var/run/secrets/avatar-gateway-api-keys{{- end }}

{{/* "true" when config.AVATAR_GATEWAY_SANDBOX is true as the gateway reads a boolean. */}}
{{- define "avatar-gateway.sandbox" -}}
{{- $v := dig "AVATAR_GATEWAY_SANDBOX" "" .Values.config | toString | lower | trim }}
{{- if has $v (list "true" "1" "yes" "on" "t" "y") }}
{{- "true" }}
{{- end }}
{{- end }}

{{/*
"true" when gRPC is served without TLS: grpcPlaintext, or the sandbox without a certificate.
*/}}
{{- define "avatar-gateway.plaintext" -}}
{{- if and (not .Values.tls.secretName) (or .Values.grpcPlaintext (include "avatar-gateway.sandbox" .)) }}
{{- "true" }}
{{- end }}
{{- end }}

{{/* "true" when callers must authenticate: an API keys file or JWT bearer tokens. */}}
{{- define "avatar-gateway.authenticated" -}}
{{- if or .Values.auth.apiKeys.secretName (dig "AVATAR_GATEWAY_JWT_JWKS" "" .Values.config) }}
{{- "true" }}
{{- end }}
{{- end }}

{{/*
Checks that fail rendering with a message saying what to set. Included by the Deployment.
*/}}
{{- define "avatar-gateway.validate" -}}
{{- if and .Values.tls.secretName .Values.grpcPlaintext }}
{{- fail "avatar-gateway: set either tls.secretName (TLS on the gRPC port) or grpcPlaintext=true, not both" }}
{{- end }}
{{- if not (or .Values.tls.secretName .Values.grpcPlaintext (include "avatar-gateway.sandbox" .)) }}
{{- fail "avatar-gateway: choose the gRPC transport: set tls.secretName (an existing kubernetes.io/tls Secret with tls.crt and tls.key, e.g. from cert-manager), or grpcPlaintext=true to serve gRPC without TLS explicitly (only behind a mesh or on a trusted network). The gateway refuses to start in production mode with neither; only config.AVATAR_GATEWAY_SANDBOX=\"true\" may leave both unset." }}
{{- end }}
{{- if and .Values.tls.clientCA.secretName (not .Values.tls.secretName) }}
{{- fail "avatar-gateway: tls.clientCA.secretName (mutual TLS) needs tls.secretName: the server's own certificate" }}
{{- end }}
{{- if include "avatar-gateway.hasSecretsVolume" . }}
{{- $sd := trimSuffix "/" .Values.secretsDir }}
{{- $mounted := list }}
{{- if .Values.tls.secretName }}{{ $mounted = append $mounted (include "avatar-gateway.tlsDir" .) }}{{ end }}
{{- if .Values.tls.clientCA.secretName }}{{ $mounted = append $mounted (include "avatar-gateway.clientCADir" .) }}{{ end }}
{{- if .Values.auth.apiKeys.secretName }}{{ $mounted = append $mounted (include "avatar-gateway.apiKeysDir" .) }}{{ end }}
{{- range $dir := $mounted }}
{{- if or (eq $sd $dir) (hasPrefix (printf "%s/" $sd) $dir) (hasPrefix (printf "%s/" $dir) $sd) }}
{{- fail (printf "avatar-gateway: secretsDir=%s and the chart's mount %s nest; choose another secretsDir" $.Values.secretsDir $dir) }}
{{- end }}
{{- end }}
{{- end }}
{{- $multi := or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}
{{- if and $multi (not (include "avatar-gateway.redisConfigured" .)) }}
{{- fail (printf "avatar-gateway: replicaCount=%v / autoscaling.enabled=%v needs a shared Redis: set redis.url, or redis.existingSecret (a Secret key holding the URL). Without it each replica keeps its own in-memory session registry, and a session created on one replica is unknown to the others." .Values.replicaCount .Values.autoscaling.enabled) }}
{{- end }}
{{- if and (gt (int (default 1 .Values.workers)) 1) (not (include "avatar-gateway.redisConfigured" .)) }}
{{- fail (printf "avatar-gateway: workers=%v needs a shared Redis: set redis.url, or redis.existingSecret. The workers of a pod are replicas that share sessions through it." .Values.workers) }}
{{- end }}
{{- if and .Values.existingSecret .Values.secrets }}
{{- fail "avatar-gateway: set either existingSecret (preferred) or secrets, not both" }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.existingSecret }}
{{- fail "avatar-gateway: set either redis.url or redis.existingSecret, not both" }}
{{- end }}
{{- if and .Values.redis.url (hasKey .Values.secrets "AVATAR_GATEWAY_REDIS_URL") }}
{{- fail "avatar-gateway: set either redis.url or secrets.AVATAR_GATEWAY_REDIS_URL, not both" }}
{{- end }}
{{- if regexMatch "://[^/]*@" .Values.redis.url }}
{{- fail "avatar-gateway: redis.url carries credentials and would land in a ConfigMap; put the URL in a Secret and set redis.existingSecret / redis.existingSecretKey" }}
{{- end }}
{{- $computed := int (include "avatar-gateway.terminationGracePeriodSeconds.computed" .) }}
{{- $given := int .Values.shutdown.terminationGracePeriodSeconds }}
{{- if and $given (lt $given $computed) }}
{{- fail (printf "avatar-gateway: shutdown.terminationGracePeriodSeconds=%d is shorter than the drain needs: preStopSleepSeconds + graceSeconds + closeBudgetSeconds + marginSeconds = %d" $given $computed) }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: preStop sleep + stream grace + session close budget + margin
(values.yaml, "shutdown"), or a larger value given explicitly.
*/}}
{{- define "avatar-gateway.terminationGracePeriodSeconds.computed" -}}
{{- $s := .Values.shutdown }}
{{- add (int $s.preStopSleepSeconds) (int (ceil $s.graceSeconds)) (int $s.closeBudgetSeconds) (int $s.marginSeconds) }}
{{- end }}

{{- define "avatar-gateway.terminationGracePeriodSeconds" -}}
{{- max (int .Values.shutdown.terminationGracePeriodSeconds) (int (include "avatar-gateway.terminationGracePeriodSeconds.computed" .)) }}
{{- end }}

{{/*
Container resources: `resources` verbatim, or computed from `capacity` (the arithmetic is in
values.yaml). Integer arithmetic, rounded up.
*/}}
{{- define "avatar-gateway.resources" -}}
{{- if .Values.resources }}
{{- toYaml .Values.resources }}
{{- else }}
{{- $c := .Values.capacity }}
{{- $h := add 100 (int $c.headroomPercent) }}
{{- /* millicores = streams x µs/chunk x chunks/s / 1000, x headroom / 100 */}}
{{- $cpuNum := mul (int $c.streamsPerPod) (int $c.cpuMicrosPerChunk) (int $c.chunksPerSecond) $h }}
{{- $cpuMilli := div (add $cpuNum 99999) 100000 }}
{{- /* MiB = (idle MiB x 1024 + streams x KiB/stream) / 1024, x headroom / 100 */}}
{{- /* each worker process has its own idle heap (`workers`; 1 when empty), plus the supervisor's */}}
{{- $workers := max 1 (int (default 1 .Values.workers)) }}
{{- $idleMiB := mul $workers (int $c.idleMemoryMiB) }}
{{- if gt $workers 1 }}{{- $idleMiB = add $idleMiB (int $c.supervisorMemoryMiB) }}{{- end }}
{{- $memNum := mul (add (mul $idleMiB 1024) (mul (int $c.streamsPerPod) (int $c.memoryKiBPerStream))) $h }}
{{- $memMiB := div (add $memNum 102399) 102400 }}
{{- $memLimitMiB := div (add (mul $memMiB (int $c.memoryLimitPercent)) 99) 100 }}
requests:
  cpu: {{ printf "%dm" $cpuMilli }}
  memory: {{ printf "%dMi" $memMiB }}
limits:
  {{- if gt (int $c.cpuLimitPercent) 0 }}
  cpu: {{ printf "%dm" (div (add (mul $cpuMilli (int $c.cpuLimitPercent)) 99) 100) }}
  {{- end }}
  memory: {{ printf "%dMi" $memLimitMiB }}
{{- end }}
{{- end }}

{{/*
A setting's value as the string the gateway reads. Helm reads numbers of values files as
floats, which print as 1.23456789e+09: whole numbers are printed as integers.
*/}}
{{- define "avatar-gateway.settingValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . | toString }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}
