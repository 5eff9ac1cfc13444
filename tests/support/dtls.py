"""DTLS certificates for test peers that are not aiortc's default.

aiortc makes an ECDSA certificate for every connection. GStreamer's webrtcbin,
and other stacks, use RSA; a peer may also allow fewer cipher suites than the
relay. These helpers swap a test peer's certificate after its transceivers
exist and before it makes its offer (which carries the certificate's
fingerprint); they reach into aiortc's private attributes, like any test-side
fault injection here.
"""

from __future__ import annotations

import datetime

from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_certificate(bits: int = 2048) -> RTCCertificate:
    """A self-signed RSA certificate, as GStreamer's DTLS elements make."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "gst")])
    now = datetime.datetime.now(tz=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return RTCCertificate(key=key, cert=cert)  # type: ignore[arg-type]


class _RestrictedCertificate(RTCCertificate):
    ciphers = b""

    def _create_ssl_context(self, srtp_profiles):  # type: ignore[no-untyped-def]
        context = super()._create_ssl_context(srtp_profiles)
        context.set_cipher_list(self.ciphers)
        return context


def restricted(certificate: RTCCertificate, ciphers: bytes) -> RTCCertificate:
    """``certificate`` allowing only the cipher suites ``ciphers`` (OpenSSL names)."""
    kept = _RestrictedCertificate(key=certificate._key, cert=certificate._cert)
    kept.ciphers = ciphers
    return kept


def use_certificate(pc: RTCPeerConnection, certificate: RTCCertificate) -> None:
    """Make every DTLS transport of ``pc`` present ``certificate``."""
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        transport._RTCDtlsTransport__local_certificate = certificate  # type: ignore[attr-defined]
