#!/usr/bin/env bash
# Writes the fixed test certificates the golden cases put in their SDS
# secrets: a root CA for mesh "default" and workload certificates for the
# services "web" and "backend", ECDSA P-256, valid for 100 years. Real
# certificates, because Envoy's validation parses them; fixed, because the
# golden files hold them. Run it again only to replace them.
set -euo pipefail
cd "$(dirname "$0")"
days=36500
openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out ca.key
openssl req -x509 -new -key ca.key -days "$days" -subj "/O=Kodiak/CN=default test root CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectAltName=URI:spiffe://default" -out ca.pem
for service in web backend; do
  openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "$service.key"
  openssl req -new -key "$service.key" -subj "/" -out "$service.csr"
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectAltName=URI:spiffe://default/$service,URI:kuma://kuma.io/service/$service" > "$service.ext"
  openssl x509 -req -in "$service.csr" -CA ca.pem -CAkey ca.key -days "$days" -set_serial "0x$(openssl rand -hex 8)" \
    -extfile "$service.ext" -out "$service.pem"
  rm "$service.csr" "$service.ext"
done
rm ca.key
