"""Write the long-lived test certificates the client libraries' own unit tests use.

``clients/testdata/tls``: ``ca.pem``; ``server.pem``/``server-key.pem`` (localhost,
127.0.0.1, ::1); ``client.pem``/``client-key.pem`` (SPIFFE ID
``spiffe://test.avatargateway.dev/tenant/acme``); ``other-ca.pem`` (an unrelated CA, for
wrong-CA tests). Test data only: these keys protect nothing. Run from the repository root:
``.venv/bin/python tools/gen_test_certs.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tlsutil import CertificateAuthority  # noqa: E402

DAYS = 36500


def main() -> None:
    out = ROOT / "clients/testdata/tls"
    ca = CertificateAuthority("AvatarGateway client-tests CA", days=DAYS)
    (out).mkdir(parents=True, exist_ok=True)
    (out / "ca.pem").write_bytes(ca.cert_pem)
    ca.server_pair(days=DAYS).write(out, "server")
    ca.client_pair("spiffe://test.avatargateway.dev/tenant/acme", days=DAYS).write(out, "client")
    other = CertificateAuthority("Unrelated CA", days=DAYS)
    (out / "other-ca.pem").write_bytes(other.cert_pem)


if __name__ == "__main__":
    main()
