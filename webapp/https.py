"""`./run_app.sh --https`: the page over TLS, so that browsers on other machines give it the camera.

Browsers give the camera only to secure pages (https, or localhost). `--https` serves the page with a self-signed
certificate made on first use and kept outside the work tree (~/.cache/fer-realtime/tls/, $XDG_CACHE_HOME or
$FER_REALTIME_TLS_DIR), reused after; `--cert FILE --key FILE` (or $FER_REALTIME_TLS_CERT and $FER_REALTIME_TLS_KEY)
serves a real one. Every other argument goes to `streamlit run` (docs/page.md, "The camera from another machine").

    python -m webapp.https --https [--cert FILE --key FILE] [streamlit options]
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CERT_NAME, KEY_NAME = "cert.pem", "key.pem"
VALID_DAYS = 825
RENEW_DAYS = 30  # a certificate closer than this to its end is made again


def tls_dir() -> Path:
    if os.environ.get("FER_REALTIME_TLS_DIR"):
        return Path(os.environ["FER_REALTIME_TLS_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "fer-realtime" / "tls"


def host_addresses() -> tuple[list[str], list[str]]:
    """This machine's names and network addresses (IPv4 and IPv6, loopback included), as the certificate names them."""
    names = {"localhost", socket.gethostname(), socket.getfqdn()}
    addresses = {"127.0.0.1", "::1"}
    try:
        addresses |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        pass
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:  # the address of the default route's interface: a UDP "connection" sends nothing
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                addresses.add(s.getsockname()[0])
        except OSError:
            pass
    addresses = {a.split("%")[0] for a in addresses}
    return sorted(n for n in names if n), sorted(addresses, key=lambda a: (":" in a, a))


def _expires(cert_path: Path) -> datetime.datetime:
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert_path.read_bytes()).not_valid_after_utc


def fingerprint(cert_path: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(cert_path.read_bytes()).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def self_signed(folder: Path | None = None) -> tuple[Path, Path, bool]:
    """(certificate, key, made now): the folder's self-signed pair, made when missing or near its end."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = folder or tls_dir()
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    now = datetime.datetime.now(datetime.UTC)
    if cert_path.is_file() and key_path.is_file():
        try:
            if _expires(cert_path) - now > datetime.timedelta(days=RENEW_DAYS):
                return cert_path, key_path, False
        except ValueError:  # not a certificate: made again below
            pass
    names, addresses = host_addresses()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fer-realtime on {socket.gethostname()}"[:64])])
    alt_names = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())
    for path, data, mode in ((key_path, key_bytes, 0o600), (cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)):
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return cert_path, key_path, True


def _take(args: list[str], flag: str) -> str | None:
    """Remove `flag VALUE` or `flag=VALUE` from args; its value, or None."""
    for i, arg in enumerate(args):
        if arg == flag:
            if i + 1 >= len(args):
                sys.exit(f"{flag} needs a file.")
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if arg.startswith(flag + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


def streamlit_command(argv: list[str]) -> list[str]:
    """The `streamlit run` command line for run_app.sh's arguments; prints where to open the page."""
    args = list(argv)
    https = "--https" in args
    args = [a for a in args if a != "--https"]
    cert = _take(args, "--cert") or os.environ.get("FER_REALTIME_TLS_CERT")
    key = _take(args, "--key") or os.environ.get("FER_REALTIME_TLS_KEY")
    port = _take(list(args), "--server.port") or os.environ.get("STREAMLIT_SERVER_PORT") or "8501"
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
               "--browser.gatherUsageStats", "false", *args]
    if not (https or cert or key):
        return command
    if bool(cert) != bool(key):
        sys.exit("A real certificate needs both --cert FILE and --key FILE (or neither, for the self-signed one).")
    if cert:
        cert_path, key_path = Path(cert).expanduser().resolve(), Path(key).expanduser().resolve()
        for path in (cert_path, key_path):
            if not path.is_file():
                sys.exit(f"{path} does not exist.")
        note = f"Serving {cert_path} over https."
    else:
        cert_path, key_path, made = self_signed()
        note = (f"{'Made' if made else 'Using'} the self-signed certificate {cert_path} (SHA-256 {fingerprint(cert_path)}).\n"
                "Browsers warn about it once (\"Your connection is not private\", NET::ERR_CERT_AUTHORITY_INVALID): it\n"
                "was signed by this machine, not by an authority they know; the connection is encrypted all the same.\n"
                "Choose Advanced -> Proceed (Firefox: Accept the Risk and Continue); then the camera prompt appears.")
    _, addresses = host_addresses()
    urls = [f"https://{socket.gethostname()}:{port}"] + [
        f"https://{a if ':' not in a else f'[{a}]'}:{port}" for a in addresses if not ipaddress.ip_address(a).is_loopback]
    print("fer-realtime over https, so that browsers on other machines give the page the camera.", flush=True)
    print(note)
    print("Open from another machine: " + "  ".join(urls) + f"\nOn this one: https://localhost:{port}", flush=True)
    return [*command, "--server.sslCertFile", str(cert_path), "--server.sslKeyFile", str(key_path)]


def main(argv: list[str] | None = None) -> None:
    command = streamlit_command(sys.argv[1:] if argv is None else argv)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
