"""Mosaic's private OIDs. 99999 is a placeholder PEN: get a real one from IANA before production."""

from cryptography.x509 import ObjectIdentifier

GRANT_ID_OID = ObjectIdentifier("1.3.6.1.4.1.99999.1")
SUBJECT_USER_ID_OID = ObjectIdentifier("1.3.6.1.4.1.99999.2")
