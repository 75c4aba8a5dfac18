#!/bin/bash
# Initialises the smallstep/step-ca image for Mosaic, then execs its arguments.
#
# Use as the container entrypoint (the image's CMD then starts step-ca):
#   entrypoint: ["/bin/bash", "/mosaic/init.sh"]
#   volumes:    step-ca data on /home/step, infra/step-ca/templates/federation.tpl
#               mounted read-only at /mosaic/federation.tpl, this file at /mosaic/init.sh
#
# Idempotent: an existing config/ca.json is kept as it is; only a missing
# mosaic-fed provisioner is added to it, and the template copy is refreshed. The provisioner's private JWK goes to
# secrets/mosaic-fed.json (0600): the gateway reads it to mint one-time tokens.
set -euo pipefail

STEPPATH="${STEPPATH:-/home/step}"
export STEPPATH
ca_name="${MOSAIC_CA_NAME:-Mosaic Federation CA}"
# Comma-separated; the gateway must reach the CA under one of these names.
ca_dns="${MOSAIC_CA_DNS_NAMES:-step-ca,localhost,127.0.0.1}"
ca_address="${MOSAIC_CA_ADDRESS:-:9000}"
provisioner="${MOSAIC_CA_PROVISIONER:-mosaic-fed}"
# `step ca init` always creates one JWK provisioner; this is the operator's.
admin_provisioner="${MOSAIC_CA_ADMIN_PROVISIONER:-mosaic-admin}"
template_source="${MOSAIC_CA_TEMPLATE:-/mosaic/federation.tpl}"

config="${STEPPATH}/config/ca.json"
secrets_dir="${STEPPATH}/secrets"
password_file="${secrets_dir}/password"
provisioner_key="${secrets_dir}/${provisioner}.json"
template="${STEPPATH}/templates/federation.tpl"

# Every file this script creates holds or guards a secret.
umask 077

log() {
    echo "mosaic-init: $*" >&2
}

generate_password() {
    # head ends first, so no SIGPIPE trips pipefail.
    head -c 32 /dev/urandom | base64 | tr -d '\n=+/'
}

init_ca() {
    mkdir -p "${secrets_dir}"
    if [[ ! -s "${password_file}" ]]; then
        generate_password >"${password_file}"
    fi
    log "initialising a new CA in ${STEPPATH}"
    step ca init \
        --deployment-type standalone \
        --name "${ca_name}" \
        --dns "${ca_dns}" \
        --address "${ca_address}" \
        --provisioner "${admin_provisioner}" \
        --password-file "${password_file}" \
        --provisioner-password-file "${password_file}"
}

has_provisioner() {
    grep -Eq "\"name\"[[:space:]]*:[[:space:]]*\"${provisioner}\"" "${config}"
}

add_provisioner() {
    if [[ ! -r "${template_source}" ]]; then
        log "template ${template_source} not found; mount infra/step-ca/templates/federation.tpl there"
        exit 1
    fi
    mkdir -p "$(dirname "${template}")"
    cp "${template_source}" "${template}"

    local workdir public_key
    workdir="$(mktemp -d)"
    # Single quotes: expand at trap time, when workdir is set.
    trap 'rm -rf "${workdir}"' EXIT
    public_key="${workdir}/${provisioner}.pub.json"

    # Our own key pair rather than `--create`: that would store the private key
    # only JWE-encrypted inside ca.json, and the gateway needs the plain JWK.
    # The kid step assigns is the RFC 7638 thumbprint, as the gateway expects.
    step crypto jwk create "${public_key}" "${provisioner_key}" \
        --kty EC --crv P-256 --alg ES256 --use sig \
        --no-password --insecure --force
    chmod 600 "${provisioner_key}"

    step ca provisioner add "${provisioner}" \
        --type JWK \
        --public-key "${public_key}" \
        --x509-template "${template}" \
        --x509-min-dur 30s \
        --x509-max-dur 2160h \
        --x509-default-dur 720h \
        --ca-config "${config}"
    # exec at the end would skip the EXIT trap.
    rm -rf "${workdir}"
    trap - EXIT
    log "added provisioner ${provisioner}; private JWK at ${provisioner_key}"
}

if [[ -f "${config}" ]]; then
    log "keeping existing ${config}"
else
    init_ca
fi

if has_provisioner; then
    # The mounted template is the source of truth: a fix ships with a restart.
    if [[ -r "${template_source}" ]]; then
        cp "${template_source}" "${template}"
    fi
    if [[ ! -s "${provisioner_key}" ]]; then
        log "provisioner ${provisioner} exists but ${provisioner_key} is missing;" \
            "remove the provisioner from ca.json to mint a new key"
        exit 1
    fi
else
    add_provisioner
fi

if (($# > 0)); then
    exec "$@"
fi
