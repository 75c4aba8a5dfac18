{{- /*
  Mosaic federation client certificate, for the smallstep/step-ca image
  (step-ca with asn1Enc). Same certificate as federation/ca/templates/
  federation.tpl, which serves the Debian 0.19 build used in tests.
*/ -}}
{{- $grant := .Token.mosaic_grant_id -}}
{{- $user := .Token.mosaic_subject_user_id -}}
{{- if not (and (kindIs "string" $grant) (kindIs "string" $user)) -}}
  {{- fail "token must carry mosaic_grant_id and mosaic_subject_user_id strings" -}}
{{- end -}}
{{- if or (not $grant) (not $user) -}}
  {{- fail "mosaic_grant_id and mosaic_subject_user_id must not be empty" -}}
{{- end -}}
{{- /*
  The gateway reserves the serial in its certificate ledger before it calls the CA
  (claim mosaic_serial, decimal), so even a lost reply leaves a revocable row.
*/ -}}
{{- $serial := .Token.mosaic_serial -}}
{{- if and $serial (not (regexMatch "^[1-9][0-9]{0,47}$" (toString $serial))) -}}
  {{- fail "mosaic_serial must be a positive decimal integer" -}}
{{- end -}}
{
	{{- if $serial }}
	"serialNumber": {{ toJson (toString $serial) }},
	{{- end }}
	"subject": {"commonName": {{ toJson .Subject.CommonName }}},
	"sans": {{ toJson .SANs }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"],
	"extensions": [
		{"id": "1.3.6.1.4.1.99999.1", "critical": false, "value": {{ asn1Enc (printf "utf8:%s" $grant) | toJson }}},
		{"id": "1.3.6.1.4.1.99999.2", "critical": false, "value": {{ asn1Enc (printf "utf8:%s" $user) | toJson }}}
	]
}
