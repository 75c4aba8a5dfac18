{{- /*
  Mosaic federation client certificate, for step-ca 0.19 (Debian build).
  0.19 has no asn1Enc, so each OID value is a hand-built DER UTF8String:
  tag 0x0c, one short-form length byte, the bytes. Short form only holds
  lengths under 128, hence the guard; our values are 36-char UUIDs.
*/ -}}
{{- $grant := .Token.mosaic_grant_id -}}
{{- $user := .Token.mosaic_subject_user_id -}}
{{- if not (and (kindIs "string" $grant) (kindIs "string" $user)) -}}
  {{- fail "token must carry mosaic_grant_id and mosaic_subject_user_id strings" -}}
{{- end -}}
{{- if or (not $grant) (not $user) (ge (len $grant) 128) (ge (len $user) 128) -}}
  {{- fail "mosaic_grant_id and mosaic_subject_user_id must be 1..127 bytes" -}}
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
		{"id": "1.3.6.1.4.1.99999.1", "critical": false, "value": {{ printf "\x0c%c%s" (len $grant) $grant | b64enc | toJson }}},
		{"id": "1.3.6.1.4.1.99999.2", "critical": false, "value": {{ printf "\x0c%c%s" (len $user) $user | b64enc | toJson }}}
	]
}
