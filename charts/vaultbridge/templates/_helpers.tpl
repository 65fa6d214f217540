{{/* The chart name, cut to 63 characters. */}}
{{- define "vaultbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: objects are named after it. */}}
{{- define "vaultbridge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vaultbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vaultbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vaultbridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vaultbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vaultbridge
{{- end -}}

{{- define "vaultbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vaultbridge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespaces watched (namespaced mode): watchNamespaces, else the release namespace. */}}
{{- define "vaultbridge.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- join "," (uniq .Values.watchNamespaces) -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "vaultbridge.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "vaultbridge.leaseName" -}}
{{- printf "%s-leader" (include "vaultbridge.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Restricted-profile container securityContext, shared by both containers. */}}
{{- define "vaultbridge.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The rules vaultbridge needs where CredentialRotations live. */}}
{{- define "vaultbridge.workloadRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [vaultbridge.io]
  resources: [credentialrotations]
  verbs: [get, list, watch, patch]  # patch: the cephx-cleanup finalizer
- apiGroups: [vaultbridge.io]
  resources: [credentialrotations/status]
  verbs: [get, update, patch]
# blockOwnerDeletion on the Secrets' ownerReference needs this where the
# OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift, hardened clusters)
- apiGroups: [vaultbridge.io]
  resources: [credentialrotations/finalizers]
  verbs: [update]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- range .Values.rbac.extraOwnerRules }}
- apiGroups: {{ toJson .apiGroups }}
  resources: {{ toJson .resources }}
  verbs: [get]
{{- end }}
{{- range .Values.rbac.rolloutRestartRules }}
# spec.rolloutRestartTargets: read and annotate these workloads' Pod templates
- apiGroups: [apps]
  resources: {{ toJson .resources }}
  {{- with .resourceNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
  verbs: [get, patch]
{{- end }}
{{- end -}}
